"""After QEMU has restored a snapshot: make the clone unique, then let connections in.

Clones of one snapshot start with the same kernel random state and a clock
stopped at the moment of the snapshot. Before any connection reaches the
guest, the host sends guest init a fresh 256-bit seed and the current time
over the control channel (init credits the seed and forces the CRNG to reseed,
then sets the clock); only then are the host's port forwards added, through
QMP. A restore that fails on the way raises TargetError, and the caller boots
cold instead.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import TargetError
from kiln.guest.protocol import ControlChannel
from kiln.targets.base import Restore
from kiln.targets.qemu_command import forward_rule

if TYPE_CHECKING:
    from qemu.qmp.legacy import QEMUMonitorProtocol

RESTORE_TIMEOUT = 30.0


def qmp_session(
    socket_path: Path, timeout: float = RESTORE_TIMEOUT, alive: Callable[[], bool] | None = None
) -> QEMUMonitorProtocol:
    """A connected QMP client (imported here: only restores and snapshots need it). QEMU creates
    its monitor socket a few milliseconds after it starts: wait for it (while `alive()`)."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    deadline = time.monotonic() + timeout
    while True:
        qmp = QEMUMonitorProtocol(str(socket_path))
        try:
            qmp.connect()
            return qmp
        except Exception as err:  # qemu.qmp raises several kinds
            close_quietly(qmp)
            if alive is not None and not alive():
                raise TargetError("QEMU ended before its monitor opened") from None
            if time.monotonic() > deadline:
                raise TargetError(f"QEMU's monitor {socket_path} did not answer: {err}") from None
            time.sleep(0.002)


def close_quietly(qmp: QEMUMonitorProtocol) -> None:
    """Close a QMP session; QEMU may have gone already (after quit), which is no error."""
    with contextlib.suppress(Exception):
        qmp.close()


def ignore_shared(qmp: QEMUMonitorProtocol) -> None:
    """RAM in a file stays out of the migration stream (on both sides)."""
    _qmp(qmp, "migrate-set-capabilities", capabilities=[{"capability": "x-ignore-shared", "state": True}])


def _qmp(qmp: QEMUMonitorProtocol, name: str, **args: object) -> object:
    try:
        return qmp.cmd(name, **args)
    except Exception as err:  # qemu.qmp's ExecuteError and connection errors
        raise TargetError(f"QEMU refused {name}: {err}") from None


def _migration_status(qmp: QEMUMonitorProtocol) -> str | None:
    info = _qmp(qmp, "query-migrate")
    return info.get("status") if isinstance(info, dict) else None


def complete(
    restore: Restore,
    control_socket: Path,
    qmp_socket: Path,
    alive: Callable[[], bool],
    timeout: float = RESTORE_TIMEOUT,
    via_clients: bool = False,
) -> None:
    """Load the saved state into the waiting QEMU, reseed the guest and set its clock, publish its ports (to
    init's forwarder of the client's address, `via_clients`, when the plan's relays open with its PROXY line)."""
    qmp = qmp_session(qmp_socket, timeout, alive)
    try:
        ignore_shared(qmp)
        _qmp(qmp, "migrate-incoming", uri=f"exec:cat {shlex.quote(str(restore.state))}")
        deadline = time.monotonic() + timeout
        while (status := _migration_status(qmp)) != "completed":
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise TargetError(f"QEMU could not load the snapshot (migration {status})")
            time.sleep(0.002)
        _qmp(qmp, "cont")  # it was saved paused
        with ControlChannel(control_socket, timeout=timeout, alive=alive) as ctl:
            ctl.reseed(timeout)
        for port in restore.ports:
            rule = forward_rule(port, via_clients)
            out = _qmp(qmp, "human-monitor-command", **{"command-line": f"hostfwd_add net0 {rule}"})
            if out:
                raise TargetError(f"cannot forward port {port}: {str(out).strip()}")
    finally:
        close_quietly(qmp)
