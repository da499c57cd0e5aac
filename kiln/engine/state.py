"""A container's state under the runtime's --root, as the OCI runtime spec's `state` reports it.

    ROOT/ID/state.json   id, bundle, created, annotations, started (kiln.records)
    ROOT/ID/plan.json    what the shim boots: the VM's plan, the network namespace, rlimits, cgroup
    ROOT/ID/shim.pid     the shim's record (kiln.daemon): its pid is the container's
    ROOT/ID/start        a FIFO: `start` writes a byte to it, the waiting shim reads it and boots
    ROOT/ID/exit         the app's exit status, written by the shim when the VM has ended
    ROOT/ID/*.sock       QEMU's QMP socket and guest init's control channel

The status is never only what a file says: `creating` until the shim is
recorded, `created` while it waits for `start`, `running` once started and
alive, `stopped` when its process is gone (however it ended: a `kill -9` of
QEMU, of the shim, or the app's own exit). The shim's record outlives it, so a
container that ran reads as stopped, not as never started.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from kiln import atomic, daemon, records
from kiln.errors import KilnError, UsageError
from kiln.targets.base import Plan

DEFAULT_ROOT = Path("/run/kiln-oci")
OCI_VERSION = "1.0.2"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SHIM = "shim"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class ContainerState(msgspec.Struct, kw_only=True):
    id: str
    bundle: str
    created: str = msgspec.field(default_factory=_now)
    started: bool = False
    annotations: dict[str, str] = {}


class ContainerPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What `create` decided and the shim carries out (errors are create's, not the shim's)."""

    plan: Plan
    netns: str | None = None  # a path to join, "new", or None: the runtime's own
    rlimits: tuple[tuple[str, int, int], ...] = ()
    cgroup: str | None = None


class Container:
    def __init__(self, root: Path, cid: str) -> None:
        if not ID_RE.match(cid):
            raise UsageError(f"invalid container id {cid!r}")
        self.id, self.root = cid, root
        self.dir = root / cid

    @property
    def file(self) -> Path:
        return self.dir / "state.json"

    @property
    def plan_file(self) -> Path:
        return self.dir / "plan.json"

    @property
    def fifo(self) -> Path:
        return self.dir / "start"

    @property
    def exit_file(self) -> Path:
        return self.dir / "exit"

    def exists(self) -> bool:
        return self.file.is_file()

    def load(self) -> ContainerState:
        try:
            return records.decode(self.file.read_bytes(), ContainerState)
        except (OSError, ValueError):
            raise KilnError(f"container {self.id} does not exist") from None

    def save(self, state: ContainerState) -> None:
        atomic.write_bytes(self.file, records.encode(state))

    def save_plan(self, plan: ContainerPlan) -> None:
        atomic.write_bytes(self.plan_file, records.encode(plan))

    def load_plan(self) -> ContainerPlan:
        return records.decode(self.plan_file.read_bytes(), ContainerPlan)

    def shim(self, ready_fd: int = -1) -> daemon.Daemon:
        """The container's process (`ready_fd`: the pipe it tells `create` it is ready on)."""
        return daemon.Daemon(self.dir, SHIM, "kiln.engine.shim", [str(self.root), self.id, str(ready_fd)])

    def shim_record(self) -> daemon.Record | None:
        return daemon.read(self.shim().record_path)

    def status(self, state: ContainerState | None = None) -> str:
        state = state or self.load()
        record = self.shim_record()
        if record is None:
            return "creating"
        if not record.alive():
            return "stopped"
        return "running" if state.started else "created"

    def pid(self) -> int:
        """The shim's pid while it runs, else 0."""
        record = self.shim_record()
        return record.pid if record is not None and record.alive() else 0

    def oci(self) -> dict[str, object]:
        """The state JSON of the runtime spec (and runc's `created`)."""
        state = self.load()
        status = self.status(state)
        record = self.shim_record()
        out: dict[str, object] = {
            "ociVersion": OCI_VERSION,
            "id": state.id,
            "status": status,
            "pid": record.pid if record is not None and status in ("created", "running") else 0,
            "bundle": state.bundle,
            "rootfs": str(Path(state.bundle) / "rootfs"),
            "created": state.created,
            "annotations": state.annotations,
        }
        return out

    def remove(self) -> None:
        from kiln.paths import forget_socket_dir

        forget_socket_dir(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def all_containers(root: Path) -> list[Container]:
    if not root.is_dir():
        return []
    return [Container(root, d.name) for d in sorted(root.iterdir()) if (d / "state.json").is_file()]


def make_fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path, 0o600)
