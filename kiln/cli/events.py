"""`kiln events [NAME]`: what happened to instances, and when (kiln.runtime.events)."""

from __future__ import annotations

import json
import time

import click

from kiln.cli import ui


def _line(e: dict[str, object]) -> str:
    details = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("time", "instance", "event"))
    return f"{e['time']}  {e['instance']}  {e['event']}" + (f"  {details}" if details else "")


@click.command(epilog="\b\nExamples:\n  kiln events\n  kiln events web -f\n  kiln events web --json")
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def events(name: str | None, follow: bool, as_json: bool) -> None:
    """Show instance events: start, exit, restart, stop, oom, panic, hang, summon, idle-stop."""
    from kiln.errors import KilnError
    from kiln.runtime import events as ev
    from kiln.runtime.instance import NAME_RE, instances_dir

    top = instances_dir()
    # every directory with events: a summoned instance's stays between summons, without its config
    if name is not None and (not NAME_RE.match(name) or not any((top / name).glob(ev.FILE + "*"))):
        raise KilnError(f"no events for {name} (see `kiln ps -a`)")

    def gather() -> list[dict[str, object]]:
        chosen = [top / name] if name else sorted(top.iterdir())
        found = [e for d in chosen for e in ev.read(d)]
        return sorted(found, key=lambda e: str(e["time"]))

    shown = 0
    try:
        while True:
            found = gather()
            for e in found[shown:]:
                ui.say(json.dumps(e) if as_json else _line(e))
            shown = len(found)
            if not follow:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
