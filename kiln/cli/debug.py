"""`kiln debug NAME`: gdb on a running instance's guest kernel, through QEMU's gdbstub."""

from __future__ import annotations

import os
import shutil

import click

from kiln.errors import ToolMissingError, UsageError


@click.command(
    epilog="\b\nExamples:\n  kiln run -d --gdb --name web -p 8080:8080 hello-http\n  kiln debug web\n"
    "  kiln debug web --ex 'break __x64_sys_accept4' --ex continue --ex bt --batch"
)
@click.argument("name")
@click.option("--ex", "commands", multiple=True, help="A gdb command to run after attaching (repeatable).")
@click.option("--batch", is_flag=True, help="Run the --ex commands, then detach and exit (gdb -batch).")
def debug(name: str, commands: tuple[str, ...], batch: bool) -> None:
    """Attach gdb, with the kernel's symbols, to instance NAME (started with kiln run -d --gdb)."""
    from kiln.kernel.build import symbols
    from kiln.runtime.instance import get
    from kiln.store import Store

    inst = get(name)
    port = inst.config.run.gdb_port
    if port is None:
        raise UsageError(f"instance {name} has no gdbstub (start it with kiln run -d --gdb ...)")
    if not inst.running():
        raise UsageError(f"instance {name} is not running")
    gdb = shutil.which("gdb")
    if gdb is None:
        raise ToolMissingError("gdb is not installed (apt-get install gdb)")
    image = Store().image_by_digest(inst.config.digest, inst.config.image)
    sym = symbols(image.manifest.kernel.config_hash)
    argv = [gdb, "-q", "-nx", str(sym), "-ex", "set pagination off", "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        argv += ["-ex", command]
    if batch:
        argv = [argv[0], "-batch", *argv[1:], "-ex", "detach"]
    os.execv(gdb, argv)
