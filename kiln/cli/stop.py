"""`kiln stop NAME...`: stop instances gracefully (QMP quit, then a kill after a timeout)."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.runtime.instance import get
from kiln.runtime.manage import STOP_TIMEOUT
from kiln.runtime.manage import stop as stop_instance


@click.command(epilog="\b\nExample:\n  kiln stop web")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-t", "--timeout", type=float, default=STOP_TIMEOUT, show_default=True, help="Seconds to wait before killing."
)
def stop(names: tuple[str, ...], timeout: float) -> None:
    """Stop running instances; they stay listed (kiln ps -a) until kiln rm."""
    for name in names:
        stop_instance(get(name), timeout)
        ui.say(name)
