"""`kiln store check [--repair]`: is the store consistent, and putting it right."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kiln.cli import ui

if TYPE_CHECKING:
    from kiln.store import Problem

EPILOG = """\b
Examples:
  kiln store check              # every tag, blob and snapshot; exit 1 if anything is wrong
  kiln store check --repair     # then remove what is broken (damaged blobs, tags naming them, leftovers,
                                # records of killed background processes)
  kiln store check --json
"""


@click.group()
def store() -> None:
    """Check the local store."""


@store.command(epilog=EPILOG)
@click.option("--repair", is_flag=True, help="Remove what is broken; nothing is changed without it.")
@click.option("--quick", is_flag=True, help="Do not hash every blob (tags, parts and snapshots are still checked).")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def check(repair: bool, quick: bool, as_json: bool) -> None:
    """Check the store: every tag names a manifest, every blob's digest is its name, every snapshot points at
    blobs that exist, nothing was left half-written by a killed command."""
    from kiln.store import Store

    s = Store()
    problems = s.check(deep=not quick) + _dead_records()
    if repair and problems:
        s.repair(problems)
    if as_json:
        ui.print_json(
            {
                "consistent": not problems,
                "repaired": bool(repair and problems),
                "problems": [{"kind": p.kind, "path": str(p.path), "message": p.message} for p in problems],
            }
        )
    else:
        for p in problems:
            ui.say(f"{'repaired' if repair else 'problem'}: {p.message}")
        if not problems:
            ui.say("the store is consistent")
    sys.exit(1 if problems and not repair else 0)


def _dead_records() -> list[Problem]:
    """Records of kiln's background processes (supervisors, summoners, compose switches) that were killed."""
    from kiln import daemon
    from kiln.paths import home_dir, kiln_home
    from kiln.store import Problem

    found = []
    # a compose project's switches: one a network (compose/PROJECT/networks/NET/switch.pid)
    for place, below in (("instances", "*"), ("summon", "*"), ("compose", "*/networks/*")):
        for path in daemon.stale(home_dir(place), below):
            where = path.relative_to(kiln_home())
            found.append(Problem("leftover", path, f"{where}: the record of a process that was killed"))
    return found
