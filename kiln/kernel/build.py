"""Build a guest kernel for a config, or find it in the cache.

    $KILN_HOME/kernel/builds/<hash>/vmlinux     stripped, uncompressed, PVH-bootable
    $KILN_HOME/kernel/builds/<hash>/vmlinux.xz  the same, as images carry it
    $KILN_HOME/kernel/builds/<hash>/vmlinux.sym the same with its symbol table, for gdb (kiln debug)
    $KILN_HOME/kernel/builds/<hash>/bzImage     with the `efi` feature: compressed, with Linux's EFI stub
    $KILN_HOME/kernel/builds/<hash>/config      the full .config
    $KILN_HOME/kernel/builds/<hash>/meta.json   features, source version, sizes
    $KILN_HOME/kernel/work/<source version>/    make's object tree, shared by every config

Every config is built in the same object tree, one after another (a lock):
`make allnoconfig` with the config's fragment, then `make vmlinux`, and Kbuild
recompiles only the objects whose sources or CONFIG_ options changed since the
last build there (it records which options each object reads). The second
and later kernels of a machine take a fraction of the first one's time, as
when a kernel developer switches configs.

Builds are reproducible: the build time, user, host and build number that a
kernel records (`uname -v`, /proc/version) are fixed (`KBUILD_BUILD_*`), and
paths to the source are relative in the objects, so a config gives the same
vmlinux on any machine with the same source package and compiler, whatever
the tree built before it. Image digests depend on it.

A build is installed into builds/<hash> only when it has finished, in one
rename; an interrupted build leaves nothing there, and the next run brings
the object tree up to date for its own config.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln import _proc, atomic
from kiln.errors import KernelError, NoSpaceError
from kiln.kernel import config as kconfig
from kiln.kernel.source import find_source, unpacked
from kiln.paths import home_dir

# (objects compiled so far, expected total or None, last make line)
Progress = Callable[[int, int | None, str], None]

# What a kernel records about its build, fixed (Documentation/kbuild/reproducible-builds.rst).
REPRODUCIBLE_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "1970-01-01",
    "KBUILD_BUILD_USER": "kiln",
    "KBUILD_BUILD_HOST": "kiln",
    "KBUILD_BUILD_VERSION": "1",
}
_OLD_WORK = re.compile(r"^[0-9a-f]{16}(\.lock)?$")  # the object trees of recipe 3, one per config

_STEP = re.compile(r"^\s+(CC|AS|LD|AR|GEN|HOSTCC|SYSTBL|SYSHDR|WRAP|UPD|OBJCOPY|SORTTAB|KSYMS)\s+(\S+)")


@dataclass(frozen=True)
class Kernel:
    """A built kernel in the cache."""

    config_hash: str
    directory: Path

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def bzimage(self) -> Path:
        """The compressed kernel with its EFI stub, built for configs with `efi` (kiln.export.disk)."""
        return self.directory / "bzImage"

    @property
    def vmlinux_xz(self) -> Path:
        return self.directory / "vmlinux.xz"

    @property
    def config_file(self) -> Path:
        return self.directory / "config"

    def enabled_options(self) -> tuple[str, ...]:
        """The CONFIG_ options this kernel has on, sorted."""
        options = kconfig.read_options(self.config_file.read_text())
        return tuple(sorted(k for k, v in options.items() if v in ("y", "m")))

    @property
    def meta(self) -> dict[str, object]:
        return json.loads((self.directory / "meta.json").read_text())

    @property
    def vmlinux_size(self) -> int:
        """The uncompressed kernel's size: what a guest keeps of it at boot."""
        return int(self.meta["vmlinux_size"])  # type: ignore[call-overload]


def builds_dir() -> Path:
    return home_dir("kernel", "builds")


def symbols(config_hash: str) -> Path:
    """The unstripped vmlinux of a kernel built here, for gdb; a clear error when it is not here."""
    path = builds_dir() / config_hash / "vmlinux.sym"
    if not path.is_file():
        raise KernelError(
            f"no symbols for kernel {config_hash}: they are kept beside a kernel built on this machine "
            "(a pulled image carries its kernel stripped); build it here with kiln kernel build --features ..."
        )
    return path


def resolve_config(features: tuple[str, ...] = kconfig.DEFAULT_FEATURES) -> kconfig.KernelConfig:
    return kconfig.merge(features, find_source().version)


def cached(cfg: kconfig.KernelConfig) -> Kernel | None:
    kernel = Kernel(cfg.hash, builds_dir() / cfg.hash)
    return kernel if (kernel.directory / "meta.json").is_file() else None


def require(cfg: kconfig.KernelConfig) -> Kernel:
    """The cached kernel for `cfg`, or a KernelError that says how to build it."""
    kernel = cached(cfg)
    if kernel is None:
        features = ",".join(cfg.features)
        hint = (
            "kiln kernel build"
            if cfg.features == tuple(sorted(kconfig.DEFAULT_FEATURES))
            else (f"kiln kernel build --features {features}")
        )
        raise KernelError(f"no kernel is built for config {cfg.hash}: run `{hint}` first")
    return kernel


def _missing_options(wanted: dict[str, str], got: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in wanted.items() if got.get(k, "n") != v]


def _make(argv: list[str], cwd: Path, log: Path, on_line: Callable[[str], None] | None = None) -> None:
    """Run make in its own process group, so Ctrl-C stops the whole build."""
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=_proc.tool_env(REPRODUCIBLE_ENV),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_proc.die_with_parent,  # a killed kiln leaves no make (the recipes in flight finish)
        )
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                logf.write(raw)
                if on_line:
                    on_line(raw.decode(errors="replace").rstrip())
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
    if proc.returncode != 0:
        said = log.read_text(errors="replace")
        if _proc.out_of_space(said[-20000:]):
            raise NoSpaceError.at(str(cwd), "the kernel build")
        tail = said.strip().splitlines()[-5:]
        raise KernelError(f"kernel build failed (log: {log}): " + " | ".join(t.strip() for t in tail))


def build(cfg: kconfig.KernelConfig, progress: Progress | None = None, jobs: int | None = None) -> Kernel:
    """Build the kernel for `cfg` unless it is cached; return the cached build. Two processes asking for
    the same config build it once: the second waits for the first and takes its result."""
    if (kernel := cached(cfg)) is not None:
        return kernel
    with atomic.file_lock(home_dir("kernel", "work") / f"{cfg.source_version}.lock"):
        if (kernel := cached(cfg)) is not None:
            return kernel
        return _build(cfg, progress, jobs)


def work_dir(source_version: str) -> Path:
    """The object tree every config of this source version is built in (kiln.kernel.build)."""
    return home_dir("kernel", "work", source_version)


def _drop_old_work_trees() -> None:
    """Recipe 3 kept one object tree per config (~100 MB each); nothing reads them any more."""
    for entry in home_dir("kernel", "work").iterdir():
        if _OLD_WORK.match(entry.name):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _build(cfg: kconfig.KernelConfig, progress: Progress | None, jobs: int | None) -> Kernel:
    for tool in ("make", "gcc", "flex", "bison", "bc", "objcopy"):
        _proc.require(tool)
    src = unpacked(find_source())
    _drop_old_work_trees()
    work = work_dir(cfg.source_version)
    log = work / "build.log"
    log.write_bytes(b"")
    fragment = work / "kiln.fragment"
    fragment.write_text(cfg.text)
    make = ["make", "-C", str(src), f"O={work}", f"-j{jobs or os.cpu_count() or 1}"]

    _make([*make, f"KCONFIG_ALLCONFIG={fragment}", "allnoconfig"], work, log)
    got = kconfig.read_options((work / ".config").read_text())
    missing = _missing_options(cfg.options, got)
    if missing:
        raise KernelError(f"kernel config could not honour: {', '.join(missing)} (unmet dependencies)")

    from_scratch = not (work / "vmlinux").exists()  # else: what changed since the last config built here
    expected_file = home_dir("kernel") / "expected-steps"
    expected = int(expected_file.read_text()) if expected_file.is_file() else None
    steps = 0

    def on_line(line: str) -> None:
        nonlocal steps
        if m := _STEP.match(line):
            steps += 1
            if progress:
                progress(steps, expected, f"{m.group(1)} {m.group(2)}")

    efi = got.get("CONFIG_EFI_STUB") == "y"  # a disk's kernel (kiln.export.disk): firmware loads a bzImage
    _make([*make, "vmlinux", *(["bzImage"] if efi else [])], work, log, on_line)
    if from_scratch and steps > 100:
        atomic.write_bytes(expected_file, str(steps).encode())

    final = builds_dir() / cfg.hash
    with atomic.staging_dir(final) as tmp:
        _proc.run(["objcopy", "--strip-all", work / "vmlinux", tmp / "vmlinux"], what="stripping vmlinux")
        shutil.copyfile(work / "vmlinux", tmp / "vmlinux.sym")
        with open(tmp / "vmlinux", "rb") as raw, lzma.open(tmp / "vmlinux.xz", "wb", preset=6) as xz:
            shutil.copyfileobj(raw, xz, 1 << 20)
        shutil.copyfile(work / ".config", tmp / "config")
        if efi:
            shutil.copyfile(work / "arch" / "x86" / "boot" / "bzImage", tmp / "bzImage")
        meta = {
            "config_hash": cfg.hash,
            "features": list(cfg.features),
            "source_version": cfg.source_version,
            "options_enabled": sum(1 for v in got.values() if v in ("y", "m")),
            "vmlinux_size": (tmp / "vmlinux").stat().st_size,
            "vmlinux_xz_size": (tmp / "vmlinux.xz").stat().st_size,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Kernel(cfg.hash, final)
