"""`kiln inspect IMAGE`: show an image's manifest."""

from __future__ import annotations

import click
from rich.markup import escape

from kiln.cli.ui import console, human_size, print_json
from kiln.store import Store


@click.command(epilog="\b\nExample:\n  kiln inspect hello-http\n  kiln inspect --json hello-http:latest")
@click.argument("image")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def inspect(image: str, as_json: bool) -> None:
    """Show the manifest of IMAGE (name[:tag] or digest)."""
    img = Store().image(image)
    m = img.manifest
    if as_json:
        print_json({"digest": img.digest, "manifest": m.model_dump(mode="json")})
        return
    lines = [
        ("image", f"{img.ref}  {img.digest}"),
        ("created", m.created.isoformat()),
        ("size", f"{human_size(m.size)} (kernel {human_size(m.kernel.size)}, root {human_size(m.rootfs.size)})"),
        (
            "kernel",
            f"config {m.kernel.config_hash}, {m.kernel.options_enabled} options, "
            f"linux-source {m.kernel.source_version}; features {', '.join(m.kernel.features)}",
        ),
        ("root", f"{m.rootfs.format} ({m.rootfs.compression}), {m.rootfs.files} files"),
        ("command", " ".join(m.entry.argv)),
        ("workdir", m.entry.workdir),
        ("ports", ", ".join(map(str, m.entry.ports)) or "none"),
        ("memory", f"{m.entry.memory_mib} MiB"),
        ("env", " ".join(f"{k}={v}" for k, v in m.entry.env.items())),
    ]
    if m.python:
        by_origin: dict[str, int] = {}
        for mod in m.python.modules:
            by_origin[mod.origin] = by_origin.get(mod.origin, 0) + 1
        lines.append(
            (
                "python",
                f"{m.python.version} ({m.python.interpreter}), {len(m.python.modules)} modules: "
                + ", ".join(f"{n} {o}" for o, n in sorted(by_origin.items())),
            )
        )
        if m.python.optional_left_out:
            lines.append(("left out", ", ".join(m.python.optional_left_out)))
    lines.append(("libraries", ", ".join(lib.path for lib in m.libraries)))
    lines.append(("built from", m.build.source))
    for key, value in lines:
        console.print(f"[bold]{key:>10}[/]  {escape(str(value))}", highlight=False)
