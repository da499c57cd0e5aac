"""`kiln stack NAME`: the stack of every thread of a running instance's app (kiln.runtime.stacks)."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.cli.ui import columns

STATES = {"R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped", "t": "traced", "Z": "zombie"}


@click.command(epilog="\b\nExamples:\n  kiln stack web")
@click.argument("name")
def stack(name: str) -> None:
    """Print the Python stack of every thread of instance NAME's app (its threads, for a native app)."""
    from kiln.errors import KilnError
    from kiln.runtime import stacks
    from kiln.runtime.instance import get
    from kiln.store import Store

    inst = get(name)
    if not inst.running():
        raise KilnError(f"instance {name} is not running")
    image = Store().image_by_digest(inst.config.digest, inst.config.image)
    if image.manifest.python is not None:
        ui.say(stacks.python_stacks(inst).rstrip())
        return
    threads = stacks.native_threads(inst)
    columns(("TID", "STATE", "NAME"), [[tid, STATES.get(st, st), nm] for tid, st, nm in threads])
    ui.say(
        f"no stack for {name}: it runs a native program, and a sealed guest has no debugger or unwinder "
        "inside it; its threads and their states above are what guest init can read from /proc"
    )
