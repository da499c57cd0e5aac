"""`kiln start NAME...`: start stopped instances again, with their original config."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.runtime.instance import get
from kiln.runtime.manage import start as start_instance


@click.command(epilog="\b\nExample:\n  kiln start web")
@click.argument("names", nargs=-1, required=True)
def start(names: tuple[str, ...]) -> None:
    """Start stopped instances."""
    for name in names:
        start_instance(get(name))
        ui.say(name)
