"""`kiln prune`: delete blobs that no tag and no instance uses."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.cli.ui import print_json
from kiln.runtime.instance import images_in_use
from kiln.store import Store


@click.command(epilog="\b\nExample:\n  kiln prune")
@click.option("--json", "as_json", is_flag=True, help="Print the deleted digests as JSON.")
def prune(as_json: bool) -> None:
    """Delete unused blobs (kernels, root file systems, manifests) from the store."""
    removed = Store().prune(keep=images_in_use())
    if as_json:
        print_json(removed)
    else:
        ui.say(f"deleted {len(removed)} blob{'s' if len(removed) != 1 else ''}")
