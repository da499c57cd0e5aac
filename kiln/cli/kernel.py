"""`kiln kernel build|show`: build the guest kernel (or reuse the cached one)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import click
from rich.markup import escape

from kiln.cli.ui import console, err_console, human_size, print_json, progress
from kiln.errors import UsageError
from kiln.image.options import Progress
from kiln.kernel import build as kbuild
from kiln.kernel import config as kconfig


def _features(value: str | None) -> tuple[str, ...]:
    return tuple(f.strip() for f in value.split(",") if f.strip()) if value else kconfig.DEFAULT_FEATURES


@click.group()
def kernel() -> None:
    """Build and inspect guest kernels."""


BUILD_EPILOG = """\b
Examples:
  kiln kernel build
  kiln kernel build --for examples/hello-http
  kiln kernel build --for examples/hello-http --disk generic   # the kernel of its exported disk
  kiln kernel build --features base,serial-console,virtio-mmio,virtio-blk,erofs,dm-verity,virtio-rng,seccomp
"""


@contextlib.contextmanager
def kernel_progress(cfg: kconfig.KernelConfig) -> Iterator[kbuild.Progress]:
    """Announce a kernel build and show its progress (a line every 30 s when not on a terminal)."""
    err_console.print(
        f"building kernel {cfg.hash} from linux-source {cfg.source_version} "
        f"({len(cfg.options)} options from {len(cfg.features)} fragments); this takes minutes",
        highlight=False,
    )
    last = [0.0]
    with progress("kernel") as bar:
        task = bar.tasks[0].id

        def report(done: int, total: int | None, detail: str) -> None:
            bar.update(task, completed=done, total=total, detail=detail)
            now = time.monotonic()
            if not err_console.is_terminal and now - last[0] > 30:
                last[0] = now
                err_console.print(f"kernel build: {done}{'/' + str(total) if total else ''} steps ({detail})")

        yield report


def features_for_app(app: Path) -> tuple[str, ...]:
    """The kernel features an app needs, from the same analysis `kiln build` runs."""
    from kiln.discover import load_app
    from kiln.image.build import analyze_python
    from kiln.image.native import analyze_native

    loaded = load_app(app)
    if loaded.native:
        return analyze_native(loaded).needs.features
    # Installing the app's dependencies may come first: show pip's progress as `kiln build` does.
    analysis = analyze_python(loaded, lambda msg: err_console.print(f"==> {msg}", markup=False, highlight=False))
    return analysis.needs.features


@kernel.command("build", epilog=BUILD_EPILOG)
@click.option("--features", help="Comma-separated fragment names (default: a networked event-loop app's).")
@click.option("--for", "for_app", type=click.Path(path_type=Path), help="Build the kernel this app needs.")
@click.option("--disk", "disk_platform", help="With --for: the kernel of its disk on this platform (kiln export disk).")
@click.option("-j", "--jobs", type=int, help="Parallel make jobs (default: number of CPUs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build_cmd(
    features: str | None, for_app: Path | None, disk_platform: str | None, jobs: int | None, as_json: bool
) -> None:
    """Build the kernel for a config from Debian's linux-source, unless it is cached."""
    if features and for_app:
        raise UsageError("give --features or --for, not both")
    if disk_platform and not for_app:
        raise UsageError("--disk goes with --for")
    wanted = features_for_app(for_app) if for_app else _features(features)
    if disk_platform:
        from kiln.export.platforms import features as disk_features

        wanted = disk_features(wanted, disk_platform)[0]
    cfg = kbuild.resolve_config(wanted)
    cached = kbuild.cached(cfg)
    if cached is None:
        with kernel_progress(cfg) as report:
            cached = kbuild.build(cfg, progress=report, jobs=jobs)
        state = "built"
    else:
        state = "cached"
    meta = cached.meta
    if as_json:
        print_json({"state": state, "path": str(cached.vmlinux), **meta})
        return
    console.print(
        f"kernel {cfg.hash} {state}: {cached.vmlinux} "
        f"({human_size(int(meta['vmlinux_size']))}, {human_size(int(meta['vmlinux_xz_size']))} compressed, "
        f"{meta['options_enabled']} options enabled)",
        highlight=False,
    )


@kernel.command("show", epilog="\b\nExample:\n  kiln kernel show --json")
@click.option("--features", help="Comma-separated fragment names.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show_cmd(features: str | None, as_json: bool) -> None:
    """Show the config hash, the fragments and whether the kernel is built."""
    cfg = kbuild.resolve_config(_features(features))
    cached = kbuild.cached(cfg)
    data = {
        "config_hash": cfg.hash,
        "features": list(cfg.features),
        "source_version": cfg.source_version,
        "built": cached is not None,
        "path": str(cached.vmlinux) if cached else None,
        "available_features": kconfig.available_features(),
    }
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        console.print(f"{key:>20}: {value}", highlight=False, markup=False)


class ConsoleProgress(Progress):
    """A build's steps as "==> ..." lines on stderr, and a kernel build's progress (kernel_progress)."""

    def step(self, message: str) -> None:
        err_console.print(f"[dim]==>[/] {escape(message)}")

    def kernel(self, cfg: kconfig.KernelConfig) -> AbstractContextManager[kbuild.Progress | None]:
        return kernel_progress(cfg)
