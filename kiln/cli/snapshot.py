"""`kiln snapshot IMAGE`: save a ready VM of IMAGE, so runs and summons restore it instead of booting."""

from __future__ import annotations

import click

from kiln.cli import ui
from kiln.cli.ui import err_console, human_size, print_json
from kiln.errors import UsageError
from kiln.store import Store
from kiln.units import parse_memory

EPILOG = """\b
Examples:
  kiln snapshot hello-http                 # boot, wait until its ports listen, save
  kiln snapshot --after kernel hello-http  # save before the app starts: clones share nothing
  kiln run -p 8080:8080 hello-http         # now restores the snapshot (--cold boots anyway)
  kiln snapshot --rm hello-http            # forget its snapshots
"""


@click.command(epilog=EPILOG)
@click.argument("image")
@click.option(
    "--after",
    type=click.Choice(["ready", "kernel"]),
    default="ready",
    show_default=True,
    help="Save once the app is ready (fastest restore), or before it starts (clones share no app state).",
)
@click.option("-m", "--memory", help="Guest RAM, e.g. 64M (default: the image's); runs must ask the same.")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto", show_default=True)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait until it is ready.")
@click.option("--rm", "remove", is_flag=True, help="Remove the image's snapshots instead of making one.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot record as JSON.")
def snapshot(
    image: str, after: str, memory: str | None, accel: str, timeout: float, remove: bool, as_json: bool
) -> None:
    """Boot IMAGE once, wait until it is ready, and save the running VM into the store."""
    store = Store()
    img = store.image(image)
    if remove:
        n = store.remove_snapshots(img.digest)
        ui.say(f"removed {n} snapshot{'s' if n != 1 else ''} of {img.ref}")
        return
    try:
        memory_mib = parse_memory(memory) if memory else None
    except ValueError as err:
        raise UsageError(f"--memory: {err}") from None
    from kiln.snapshot.make import make

    def notify(text: str) -> None:
        ui.note(text)

    with err_console.status(f"booting {img.ref} and waiting until it is {after}…"):
        digest, record = make(
            store, img, after=after, memory_mib=memory_mib, accel=accel, timeout=timeout, notify=notify
        )
    if as_json:
        print_json({"digest": digest, **record.to_dict()})
        return
    ui.say(
        f"snapshot of {img.ref} ({record.made_with.after}, {record.made_with.accel}, "
        f"{record.made_with.memory_mib} MiB): {digest.split(':', 1)[1][:12]}, "
        f"{human_size(record.size)}, made in {record.boot_seconds:.1f} s"
    )
