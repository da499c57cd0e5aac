"""`kiln images`: list the images in the local store."""

from __future__ import annotations

from datetime import datetime

import click
import msgspec

from kiln.cli.ui import columns, human_size, print_json
from kiln.errors import StoreError
from kiln.manifest import SnapshotRecord
from kiln.store import Image, Store


def snapshots_of(store: Store, digest: str) -> list[tuple[str, SnapshotRecord]]:
    """The image's snapshots that can be read (a damaged one shows in `kiln inspect`)."""
    out = []
    for _, _, record in store.snapshot_refs(digest):
        try:
            out.append((record, store.snapshot(record)))
        except StoreError:
            continue
    return out


def created(store: Store, image: Image) -> datetime:
    """What CREATED shows: the manifest's time when the build had one (SOURCE_DATE_EPOCH: the source's commit
    time), else when this store got the image. The manifest keeps 1970-01-01 otherwise, so that the same inputs
    give the same digest; the store's own time is not in it."""
    stamped = image.manifest.created
    return stamped if stamped.timestamp() > 0 else store.received(image.digest)


@click.command(epilog="\b\nExample:\n  kiln images\n  kiln images --json")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def images(as_json: bool) -> None:
    """List images: name, tag, digest, size, created, and their snapshots (after/memory/accelerator).

    CREATED is the source's time when the build was given one (SOURCE_DATE_EPOCH), else when this store got
    the image; the digest never depends on it."""
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
                    "created": created(store, i).isoformat(),
                    "manifest_created": i.manifest.created.isoformat(),
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
                created(store, i).strftime("%Y-%m-%d %H:%M:%S"),
                ", ".join(
                    f"{r.made_with.after}/{r.made_with.memory_mib}M/{r.made_with.accel}" for _, r in snaps[i.digest]
                )
                or "-",
            ]
        )
    columns(("NAME", "TAG", "DIGEST", "SIZE", "CREATED", "SNAPSHOTS"), table, right=("SIZE",))
