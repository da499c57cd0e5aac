"""`kiln images`: list the images in the local store."""

from __future__ import annotations

import click
import msgspec

from kiln.cli.ui import columns, human_size, print_json
from kiln.errors import StoreError
from kiln.manifest import SnapshotRecord
from kiln.store import Store


def snapshots_of(store: Store, digest: str) -> list[tuple[str, SnapshotRecord]]:
    """The image's snapshots that can be read (a damaged one shows in `kiln inspect`)."""
    out = []
    for _, _, record in store.snapshot_refs(digest):
        try:
            out.append((record, store.snapshot(record)))
        except StoreError:
            continue
    return out


@click.command(epilog="\b\nExample:\n  kiln images\n  kiln images --json")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def images(as_json: bool) -> None:
    """List images: name, tag, digest, size, created, and their snapshots (after/memory/accelerator)."""
    store = Store()
    rows = store.images()
    snaps = {i.digest: snapshots_of(store, i.digest) for i in rows}
    if as_json:
        print_json(
            [
                {
                    "name": i.ref.name,
                    "tag": i.ref.tag,
                    "digest": i.digest,
                    "size": i.manifest.size,
                    "created": i.manifest.created.isoformat(),
                    "snapshots": [
                        {"digest": d, "size": r.size, **msgspec.structs.asdict(r.made_with)} for d, r in snaps[i.digest]
                    ],
                }
                for i in rows
            ]
        )
        return
    table: list[list[str]] = []
    for i in rows:
        table.append(
            [
                i.ref.name,
                i.ref.tag,
                i.digest.split(":", 1)[1][:12],
                human_size(i.manifest.size),
                i.manifest.created.strftime("%Y-%m-%d %H:%M:%S"),
                ", ".join(
                    f"{r.made_with.after}/{r.made_with.memory_mib}M/{r.made_with.accel}" for _, r in snaps[i.digest]
                )
                or "-",
            ]
        )
    columns(("NAME", "TAG", "DIGEST", "SIZE", "CREATED", "SNAPSHOTS"), table, right=("SIZE",))
