"""`kiln rmi IMAGE...`: remove image tags (the blobs go with `kiln prune`)."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.errors import UsageError
from kiln.runtime.instance import all_instances
from kiln.store import Store


@click.command(epilog="\b\nExample:\n  kiln rmi hello-http\n  kiln prune")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove the tag even if an instance was started from it.")
def rmi(images: tuple[str, ...], force: bool) -> None:
    """Untag IMAGES; their blobs are deleted by `kiln prune` once nothing uses them."""
    store = Store()
    for text in images:
        digest, ref = store.resolve(text)
        users = [i.name for i in all_instances() if i.config.digest == digest]
        if users and not force:
            raise UsageError(f"image {text} is used by instance {', '.join(users)} (kiln rm it, or rmi -f)")
        if ref is None:
            raise UsageError(f"rmi takes a name[:tag], not a digest ({text})")
        store.untag(str(ref))
        ui.say(f"untagged {ref}")
        if all(d != digest for _, d in store.refs()) and (n := store.remove_snapshots(digest)):
            ui.say(f"removed {n} snapshot{'s' if n != 1 else ''} of {ref}")
