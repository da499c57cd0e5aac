"""`kiln images`: list the images in the local store."""

from __future__ import annotations

import click
from rich.table import Table

from kiln.cli.ui import console, human_size, print_json
from kiln.store import Store


@click.command(epilog="\b\nExample:\n  kiln images\n  kiln images --json")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def images(as_json: bool) -> None:
    """List images: name, tag, digest, size, created."""
    rows = Store().images()
    if as_json:
        print_json(
            [
                {
                    "name": i.ref.name,
                    "tag": i.ref.tag,
                    "digest": i.digest,
                    "size": i.manifest.size,
                    "created": i.manifest.created.isoformat(),
                }
                for i in rows
            ]
        )
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "TAG", "DIGEST", "SIZE", "CREATED"):
        table.add_column(col, justify="right" if col == "SIZE" else "left")
    for i in rows:
        table.add_row(
            i.ref.name,
            i.ref.tag,
            i.digest.split(":", 1)[1][:12],
            human_size(i.manifest.size),
            i.manifest.created.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
