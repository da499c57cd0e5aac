"""A container's state under the runtime's --root, as the OCI runtime spec's `state` reports it.

    ROOT/ID/state.json   id, bundle, pid (the shim's), its start time, created, annotations, started
    ROOT/ID/start        a FIFO: `start` writes a byte to it, the waiting shim reads it and boots
    ROOT/ID/exit         the app's exit status, written by the shim when the VM has ended
    ROOT/ID/*.sock       QEMU's QMP socket and guest init's control channel

The status is never only what a file says: `creating` until the shim has
recorded itself, `created` while it waits for `start`, `running` once started
and alive, `stopped` when its process is gone (however it ended: a `kill -9`
of QEMU, of the shim, or the app's own exit).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kiln import atomic
from kiln.errors import KilnError, UsageError
from kiln.runtime.instance import alive, proc_start_time

DEFAULT_ROOT = Path("/run/kiln-oci")
OCI_VERSION = "1.0.2"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class ContainerState:
    id: str
    bundle: str
    pid: int = 0
    pid_start: float | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    started: bool = False
    annotations: dict[str, str] = field(default_factory=dict)


class Container:
    def __init__(self, root: Path, cid: str) -> None:
        if not ID_RE.match(cid):
            raise UsageError(f"invalid container id {cid!r}")
        self.id = cid
        self.dir = root / cid

    @property
    def file(self) -> Path:
        return self.dir / "state.json"

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
            return ContainerState(**json.loads(self.file.read_text()))
        except (OSError, ValueError, TypeError):
            raise KilnError(f"container {self.id} does not exist") from None

    def save(self, state: ContainerState) -> None:
        atomic.write_bytes(self.file, json.dumps(asdict(state), indent=2).encode())

    def status(self, state: ContainerState | None = None) -> str:
        state = state or self.load()
        if not state.pid:
            return "creating"
        if not alive(state.pid, state.pid_start):
            return "stopped"
        return "running" if state.started else "created"

    def oci(self) -> dict[str, object]:
        """The state JSON of the runtime spec (and runc's `created`)."""
        state = self.load()
        status = self.status(state)
        out: dict[str, object] = {
            "ociVersion": OCI_VERSION,
            "id": state.id,
            "status": status,
            "pid": state.pid if status in ("created", "running") else 0,
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


def record_pid(container: Container, pid: int) -> None:
    state = container.load()
    state.pid, state.pid_start = pid, proc_start_time(pid)
    container.save(state)


def all_containers(root: Path) -> list[Container]:
    if not root.is_dir():
        return []
    return [Container(root, d.name) for d in sorted(root.iterdir()) if (d / "state.json").is_file()]


def make_fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path, 0o600)
