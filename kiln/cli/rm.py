"""`kiln rm NAME...`: remove instances and their state directories."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.runtime.instance import get
from kiln.runtime.manage import remove


@click.command(epilog="\b\nExamples:\n  kiln rm web\n  kiln rm -f web      # stop it first")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Stop running instances first.")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove instances (their console logs go with them)."""
    for name in names:
        remove(get(name), force)
        ui.say(name)
