"""`kiln inspect IMAGE`: show an image's manifest, or its attack surface."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from kiln.cli.images import snapshots_of
from kiln.cli.ui import console, err_console, human_size, print_json
from kiln.errors import StoreError
from kiln.store import Image, Store

EPILOG = """\b
Examples:
  kiln inspect hello-http
  kiln inspect --json hello-http:latest
  kiln inspect --surface hello-http      # beside Debian minbase and Debian's cloud kernel
"""


@click.command(epilog=EPILOG)
@click.argument("image")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--surface", is_flag=True, help="Show the attack surface beside a Debian minbase system.")
@click.option("--options", "show_options", is_flag=True, help="List every kernel option that is on.")
def inspect(image: str, as_json: bool, surface: bool, show_options: bool) -> None:
    """Show the manifest of IMAGE (name[:tag] or digest)."""
    store = Store()
    img = store.image(image)
    if surface:
        show_surface(store, img, as_json)
    elif as_json:
        print_json(
            {
                "digest": img.digest,
                "manifest": img.manifest.to_dict(),
                "snapshots": [{"digest": d, **r.to_dict()} for d, r in snapshots_of(store, img.digest)],
            }
        )
    else:
        show_manifest(img, show_options)
        show_snapshots(store, img)


def show_snapshots(store: Store, img: Image) -> None:
    for _, key, digest in store.snapshot_refs(img.digest):
        try:
            r = store.snapshot(digest)
        except StoreError as err:
            text = f"{key}: unreadable ({err})"
        else:
            w = r.made_with
            text = (
                f"{digest.split(':', 1)[1][:12]}  after {w.after}, {w.memory_mib} MiB, {w.accel} ({w.cpu}), "
                f"{human_size(r.size)}, ready in {r.boot_seconds:.1f} s, {w.qemu}"
            )
        console.print(f"[bold]{'snapshot':>10}[/]  {escape(text)}", highlight=False)


def show_surface(store: Store, img: Image, as_json: bool) -> None:
    from kiln import surface

    mine = surface.image_surface(store, img)
    if not (
        surface.home_dir("cache", "baselines") / f"surface-v{surface.SURFACE_VERSION}-debian-minbase.json"
    ).exists():
        err_console.print(
            "measuring the Debian minbase baseline once (debootstrap if needed: minutes)", highlight=False
        )
    debian = surface.debian_surface()
    container = surface.container_surface(img)
    if as_json:
        print_json({"image": mine.to_dict(), "debian": debian.to_dict(),
                    **({"container": container.to_dict()} if container else {})})  # fmt: skip
        return
    columns = [mine, *([container] if container else []), debian]
    table = Table(header_style="bold", show_lines=True)
    table.add_column("")
    for column in columns:
        table.add_column(column.name)
    for row in surface.rows(columns):
        table.add_row(*(escape(c) for c in row))
    console.print(table)


def show_manifest(img: Image, show_options: bool) -> None:
    from kiln.surface import cloud_kernel_options

    m = img.manifest
    cloud = cloud_kernel_options()
    options = len(m.kernel.options) or m.kernel.options_enabled
    beside = f" (Debian's cloud kernel: {cloud[0]})" if cloud else ""
    lines = [
        ("image", f"{img.ref}  {img.digest}"),
        ("created", m.created.isoformat()),
        ("size", f"{human_size(m.size)} (kernel {human_size(m.kernel.size)}, root {human_size(m.rootfs.size)})"),
        ("kernel", f"config {m.kernel.config_hash}, linux-source {m.kernel.source_version}"),
        ("options", f"{options} on{beside}"),
        ("features", ", ".join(m.kernel.features)),
    ]
    lines += [("  because", f"{feature}: {why}") for feature, why in sorted(m.kernel.reasons.items())]
    lines += [
        (
            "root",
            f"{m.rootfs.format} ({m.rootfs.compression}), {m.rootfs.files} files, "
            f"dm-verity root hash {m.rootfs.verity.root_hash[:16]}…",
        ),
        ("command", " ".join(m.entry.argv)),
        ("workdir", m.entry.workdir),
        ("ports", ", ".join(map(str, m.entry.ports)) or "none"),
        ("volumes", ", ".join(m.entry.volumes) or "none"),
        ("memory", f"{m.entry.memory_mib} MiB"),
        ("env", " ".join(f"{k}={v}" for k, v in m.entry.env.items())),
        ("refused", ", ".join(m.policy.denied)),
    ]
    lines += [("  allowed", f"{call}: {why}") for call, why in sorted(m.policy.relaxed.items())]
    if m.python:
        by_origin: dict[str, int] = {}
        for mod in m.python.modules:
            by_origin[mod.origin] = by_origin.get(mod.origin, 0) + 1
        counts = ", ".join(f"{n} {o}" for o, n in sorted(by_origin.items()))
        python = f"{m.python.version} ({m.python.interpreter})"
        lines.append(("python", f"{python}, {len(m.python.modules)} modules: {counts}"))
        if m.python.distributions:
            dists = ", ".join(f"{d.name} {d.version}" for d in m.python.distributions)
            lines.append(("packages", f"{dists} (from {m.python.dependencies_from or 'python_path'})"))
        if m.python.optional_left_out:
            lines.append(("left out", ", ".join(m.python.optional_left_out)))
        if m.python.excluded:
            lines.append(("excluded", ", ".join(m.python.excluded)))
    lines.append(("libraries", ", ".join(lib.path for lib in m.libraries)))
    b = m.build
    lines.append(("built from", f"{b.source} (sources {b.sources_digest[:19]}…, kiln {b.kiln_version})"))
    for key, value in lines:
        console.print(f"[bold]{key:>10}[/]  {escape(str(value))}", highlight=False)
    if show_options:
        console.print("\n".join(m.kernel.options), highlight=False, markup=False)
