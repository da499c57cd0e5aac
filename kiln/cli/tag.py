"""`kiln tag SOURCE TARGET`: give an image another name."""

from __future__ import annotations

import click

from kiln.store import Ref, Store


@click.command(epilog="\b\nExample:\n  kiln tag hello-http localhost:5000/demo/hello:1.0")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Make TARGET name the same image as SOURCE."""
    store = Store()
    digest, _ = store.resolve(source)
    with store.lock():
        store.tag(Ref.parse(target), digest)
