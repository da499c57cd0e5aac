"""`kiln snapshot IMAGE`: boot the image once, wait until it is ready, pause it, save it.

Ready means, after = "ready" (the default): every port the image declares has a
listening socket in the guest (guest init reads /proc/net/tcp), and the image's
`ready` path, if it has one, answers 200. After = "kernel": init has set up the
guest and waits for the host's seed before it starts the app, so every clone
starts its own app and shares nothing with the others.

The guest's RAM lives in a file while the snapshot is made (shared
memory-backend-file), QEMU saves the device state alone (x-ignore-shared), and
both files go into the store (kiln.store.add_snapshot) under a key made of
everything a restore must find again (kiln.manifest.MadeWith).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import shlex
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kiln import _proc
from kiln.errors import NoSpaceError, TargetError, UsageError
from kiln.guest import protocol
from kiln.guest.protocol import ControlChannel
from kiln.manifest import MEDIA_SNAPSHOT_RAM, MEDIA_SNAPSHOT_STATE, Part, SnapshotRecord
from kiln.paths import sockets_for
from kiln.store import Image, Store
from kiln.targets.base import RunConfig
from kiln.targets.console import ConsoleReader
from kiln.targets.portmap import PortMap
from kiln.targets.ports import free_port
from kiln.targets.qemu import QemuTarget
from kiln.targets.qemu_command import command
from kiln.targets.snapshot_match import made_with
from kiln.targets.snapshot_restore import close_quietly, ignore_shared, qmp_session

READY_TIMEOUT = 300.0  # a Python app under TCG takes seconds; a big one, more
SAVE_TIMEOUT = 120.0


def _http_ok(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_ready(
    ctl: ControlChannel,
    image: Image,
    after: str,
    ready_port: PortMap | None,
    deadline: float,
    alive: Callable[[], bool],
) -> None:
    entry = image.manifest.entry
    if after == "kernel":
        while ctl.ping() != "waiting-seed":
            if time.monotonic() > deadline or not alive():
                raise TargetError("guest init never waited for its seed")
            time.sleep(0.02)
        return
    ctl.wait_listening(list(entry.ports), max(1.0, deadline - time.monotonic()), alive)
    while ready_port and entry.ready and not _http_ok(ready_port.host, entry.ready):
        if time.monotonic() > deadline or not alive():
            raise TargetError(f"GET {entry.ready} never answered 200")
        time.sleep(0.05)


def _save(qmp_socket: Path, state: Path) -> None:
    qmp = qmp_session(qmp_socket)
    try:
        qmp.cmd("stop")
        ignore_shared(qmp)
        qmp.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
        deadline = time.monotonic() + SAVE_TIMEOUT
        while True:
            info = qmp.cmd("query-migrate")
            status = info.get("status") if isinstance(info, dict) else None
            if status == "completed":
                break
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                detail = info.get("error-desc", status) if isinstance(info, dict) else status
                raise TargetError(f"QEMU could not save the VM: {detail}")
            time.sleep(0.02)
        with contextlib.suppress(Exception):  # QEMU may close the monitor before it answers
            qmp.cmd("quit")
    finally:
        close_quietly(qmp)


def make(
    store: Store,
    image: Image,
    *,
    after: str = "ready",
    memory_mib: int | None = None,
    accel: str = "auto",
    timeout: float = READY_TIMEOUT,
    notify: Callable[[str], None] = lambda _: None,
) -> tuple[str, SnapshotRecord]:
    """Make and store a snapshot of `image`; return (record digest, record)."""
    entry = image.manifest.entry
    if after == "ready" and not entry.ports:
        raise UsageError(
            f"image {image.ref} declares no ports, so nothing says when it is ready: "
            "snapshot it with --after kernel, or declare its ports"
        )
    qemu = _proc.require("qemu-system-x86_64")
    target = QemuTarget(store)
    with store.staging() as tmp, sockets_for(tmp) as sockets:
        ready_port = None
        if after == "ready" and entry.ready:
            ready_port = PortMap(host_ip="127.0.0.1", host=free_port(), guest=entry.ports[0])
        cfg = RunConfig(
            memory_mib=memory_mib,
            accel=accel,  # type: ignore[arg-type]
            snapshot="never",
            qmp_socket=sockets / "qmp",
            control_socket=sockets / "ctl",
            ports=(ready_port,) if ready_port else (),
            relay=False,  # QEMU's own forward: the readiness check's, on loopback
            client_address=False,  # straight to the app (init's forwarder runs all the same, for the restores)
        )
        spec, notes = target.spec(image, cfg)
        for note in notes:
            notify(note)
        ram, state = tmp / "ram", tmp / "state"
        wait_seed = (protocol.WAIT_SEED,) if after == "kernel" else ()
        spec = dataclasses.replace(spec, ram_file=ram, ram_shared=True, cmdline=spec.cmdline + wait_seed)
        began = time.monotonic()
        proc = _proc.spawn(command(spec, qemu), merge_stderr=True)
        assert proc.stdout is not None
        console = ConsoleReader(proc.stdout, None)
        try:
            with ControlChannel(sockets / "ctl", timeout=30, alive=lambda: proc.poll() is None) as ctl:
                _wait_ready(ctl, image, after, ready_port, began + timeout, lambda: proc.poll() is None)
            boot_seconds = time.monotonic() - began
            _save(sockets / "qmp", state)
            proc.wait(30)
        except (TargetError, subprocess.TimeoutExpired) as err:
            proc.kill()
            proc.wait()
            console.join(5)
            if _proc.out_of_space(console.text()):  # the RAM file on a full disk: QEMU dies of SIGBUS
                raise NoSpaceError.at(str(tmp), f"snapshotting {image.ref}") from None
            tail = "\n".join(console.text().splitlines()[-15:])
            raise TargetError(
                f"cannot snapshot {image.ref}: {err}\n--- the guest's console, last lines ---\n{tail}"
            ) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        console.join(5)
        made = made_with(spec, qemu, after)

        def record(parts: list[tuple[str, int]]) -> bytes:
            (ram_digest, ram_size), (state_digest, state_size) = parts
            return SnapshotRecord(
                image=image.digest,
                made_with=made,
                ram=Part(digest=ram_digest, size=ram_size, media_type=MEDIA_SNAPSHOT_RAM),
                state=Part(digest=state_digest, size=state_size, media_type=MEDIA_SNAPSHOT_STATE),
                ports=entry.ports if after == "ready" else (),
                created=datetime.now(UTC).replace(microsecond=0),
                boot_seconds=round(boot_seconds, 3),
            ).to_json()

        digest = store.add_snapshot(image.digest, made.key(), [ram, state], record)
    return digest, store.snapshot(digest)
