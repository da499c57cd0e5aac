"""`kiln build APP`: build an app into an image in the local store."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from kiln.cli.kernel import kernel_progress
from kiln.cli.ui import console, err_console, human_size, print_json
from kiln.image.build import build_python
from kiln.store import Store

EPILOG = """\b
Examples:
  kiln build examples/hello-http
  kiln build -t hello:dev app.py
"""


@click.command(epilog=EPILOG)
@click.argument("app", type=click.Path(path_type=Path))
@click.option("-t", "--tag", help="Name the image name[:tag] (default: the app's name, :latest).")
@click.option("--no-kernel-build", is_flag=True, help="Fail instead of building a kernel that is not cached.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(app: Path, tag: str | None, no_kernel_build: bool, as_json: bool) -> None:
    """Build APP (a directory with kiln.toml, or a .py file) into an image.

    The kernel is specialized for the app; if the one it needs is not cached yet,
    it is built first (minutes, with progress)."""
    result = build_python(
        app,
        Store(),
        tag,
        step=lambda msg: err_console.print(f"[dim]==>[/] {escape(msg)}"),
        build_kernel=not no_kernel_build,
        kernel_progress=kernel_progress,
    )
    m = result.manifest
    modules = len(m.python.modules) if m.python else 0
    if as_json:
        print_json(
            {
                "ref": str(result.ref),
                "digest": result.digest,
                "size": m.size,
                "kernel_size": m.kernel.size,
                "rootfs_size": m.rootfs.size,
                "files": m.rootfs.files,
                "modules": modules,
                "libraries": len(m.libraries),
            }
        )
        return
    console.print(f"built {result.ref}", style="bold green", highlight=False)
    console.print(
        f"  digest   {result.digest}\n"
        f"  size     {human_size(m.size)} (kernel {human_size(m.kernel.size)}, "
        f"root {human_size(m.rootfs.size)})\n"
        f"  modules  {modules}, libraries {len(m.libraries)}, files {m.rootfs.files}",
        highlight=False,
    )
    if m.python and m.python.optional_left_out:
        left = ", ".join(m.python.optional_left_out[:8])
        more = f" and {len(m.python.optional_left_out) - 8} more" if len(m.python.optional_left_out) > 8 else ""
        console.print(
            f"  optional imports left out (add to include= to keep): {left}{more}",
            style="dim",
            highlight=False,
            markup=False,
        )
