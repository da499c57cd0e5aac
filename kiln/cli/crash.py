"""`kiln crash NAME`: the last crash report of an instance (kiln.runtime.failure)."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.cli.ui import print_json
from kiln.errors import KilnError


@click.command(epilog="\b\nExamples:\n  kiln crash web\n  kiln crash web --json")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def crash(name: str, as_json: bool) -> None:
    """Show the last crash report of instance NAME: why, when, and its last console lines."""
    from kiln.runtime.failure import read_report
    from kiln.runtime.instance import get

    report = read_report(get(name).dir)
    if report is None:
        raise KilnError(f"instance {name} has no crash report (it has not ended badly)")
    if as_json:
        print_json(report)
        return
    ui.say(f"{report['time']}  {name}: {report['reason']} (exit status {report['exit_code']})")
    ui.say("last console lines:")
    for line in report["console"]:  # type: ignore[attr-defined]
        ui.say(f"  {line}")
