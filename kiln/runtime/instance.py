"""Instances: the state directory of each detached run, and the truth about it.

    $KILN_HOME/instances/<name>/config.json    what to run (image digest, target, ports, policy)
    $KILN_HOME/instances/<name>/state.json     what happened (pids, status, exit code, restarts)
    $KILN_HOME/instances/<name>/console.log    the guest console
    $KILN_HOME/instances/<name>/supervisor.pid its supervisor's record (kiln.daemon)
    $KILN_HOME/instances/<name>/supervisor.log the supervisor's own messages

There is no central daemon: the supervisor of an instance writes state.json,
and readers check every pid it names against the processes actually alive
(pid and start time, so a reused pid is not mistaken for ours). A supervisor
that vanished (kill -9, host crash) leaves an instance that reads as exited.
The files are run records (kiln.records).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import msgspec

from kiln import atomic, daemon, records
from kiln.daemon import alive, proc_start_time
from kiln.errors import KilnError, UsageError
from kiln.paths import home_dir, socket_dir
from kiln.targets.base import RunConfig

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
Status = Literal["starting", "running", "restarting", "stopping", "exited"]


Mode = Literal["no", "on-failure", "always"]


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True):
    mode: Mode = "no"
    max_retries: int | None = None  # on-failure:N

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode) or (self.max_retries is not None and self.max_retries < 0):
            raise ValueError(f"invalid restart policy {self.mode}:{self.max_retries}")

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        mode, _, count = text.partition(":")
        if mode not in ("no", "on-failure", "always") or (count and (mode != "on-failure" or not count.isdigit())):
            raise UsageError(f"invalid restart policy {text!r} (expected no, on-failure[:N] or always)")
        return cls(mode=mode, max_retries=int(count) if count else None)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.mode + (f":{self.max_retries}" if self.max_retries is not None else "")

    def should_restart(self, exit_code: int, restarts: int) -> bool:
        if self.mode == "always":
            return True
        if self.mode == "on-failure" and exit_code != 0:
            return self.max_retries is None or restarts < self.max_retries
        return False


class InstanceConfig(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    image: str  # the reference it was started from
    digest: str  # the image it runs, pinned
    target: str
    run: RunConfig
    restart: RestartPolicy = msgspec.field(default_factory=RestartPolicy)
    created: datetime
    summoned_by: int | None = None  # the pid of the summoner (kiln summon) that runs it, if one does


class InstanceState(msgspec.Struct, kw_only=True):
    status: Status = "starting"
    vm_pid: int | None = None
    vm_start: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    restarts: int = 0
    error: str | None = None


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Instance:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.name = directory.name

    # ---- files -------------------------------------------------------------------
    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def supervisor_log(self) -> Path:
        return self.dir / "supervisor.log"

    def supervisor_daemon(self) -> daemon.Daemon:
        """Its supervisor, a kiln daemon (or, for a summoned instance, the summoner's record of itself)."""
        return daemon.Daemon(self.dir, "supervisor", "kiln.runtime.supervisor", [str(self.dir)])

    def supervisor(self) -> daemon.Record | None:
        """The record of its supervisor, if that is alive."""
        return self.supervisor_daemon().running()

    @property
    def qmp_socket(self) -> Path:
        return socket_dir(self.dir) / "qmp.sock"

    @property
    def control_socket(self) -> Path:
        return socket_dir(self.dir) / "control.sock"

    @property
    def config(self) -> InstanceConfig:
        try:
            return records.decode((self.dir / "config.json").read_bytes(), InstanceConfig)
        except (OSError, ValueError) as err:  # ValueError: kiln.records.BadRecordError
            raise KilnError(f"instance {self.name}: unreadable config ({err.__class__.__name__})") from None

    def read_state(self) -> InstanceState:
        try:
            return records.decode((self.dir / "state.json").read_bytes(), InstanceState)
        except (OSError, ValueError):
            return InstanceState(status="exited", error="no readable state")

    def write_state(self, state: InstanceState) -> None:
        atomic.write_bytes(self.dir / "state.json", records.encode(state))

    # ---- the truth ---------------------------------------------------------------
    def state(self) -> InstanceState:
        """state.json, corrected by the processes actually alive."""
        st = self.read_state()
        if st.status != "exited" and self.supervisor() is None:
            vm_alive = alive(st.vm_pid, st.vm_start)
            if not vm_alive:
                st.status = "exited"
                st.error = st.error or "its supervisor is gone (killed, or the host restarted)"
        return st

    def running(self) -> bool:
        return self.state().status in ("starting", "running", "restarting", "stopping")

    def uptime(self, st: InstanceState) -> float | None:
        if st.status != "running" or st.started_at is None:
            return None
        return max(0.0, time.time() - st.started_at.timestamp())


def instances_dir() -> Path:
    return home_dir("instances")


def get(name: str) -> Instance:
    inst = Instance(instances_dir() / name)
    if not NAME_RE.match(name) or not (inst.dir / "config.json").is_file():
        raise KilnError(f"no such instance: {name} (see `kiln ps -a`)")
    return inst


def all_instances() -> list[Instance]:
    return [Instance(d) for d in sorted(instances_dir().iterdir()) if (d / "config.json").is_file()]


def create(config: InstanceConfig) -> Instance:
    if not NAME_RE.match(config.name):
        raise UsageError(f"invalid instance name {config.name!r} (letters, digits, . _ -; at most 64)")
    directory = instances_dir() / config.name
    if (directory / "config.json").exists():
        raise UsageError(f"an instance named {config.name} already exists (kiln rm {config.name})")
    directory.mkdir(exist_ok=True)  # a summoned instance's directory keeps its events between summons
    atomic.write_bytes(directory / "config.json", records.encode(config))
    inst = Instance(directory)
    inst.write_state(InstanceState())
    return inst


def images_in_use() -> set[str]:
    """Digests of the images instances are pinned to (kept by `kiln prune`)."""
    used = set()
    for inst in all_instances():
        try:
            used.add(inst.config.digest)
        except KilnError:
            continue
    return used


def children_map() -> dict[int, list[int]]:
    """parent pid -> child pids, read from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])  # the name may hold spaces
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int | None, children: dict[int, list[int]] | None = None) -> list[int]:
    """`pid` and all its descendants (the sandbox's app runs below unshare and init)."""
    if pid is None or proc_start_time(pid) is None:
        return []
    children = children_map() if children is None else children
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as {key: value} ("VmRSS": "13908 kB"); OSError when the process is gone."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def rss_of(pids: list[int]) -> int | None:
    """Summed resident memory of pids (None if none of them is alive)."""
    total, found = 0, False
    for p in pids:
        try:
            rss = proc_status(p).get("VmRSS")
            if rss is not None:
                total += int(rss.split()[0]) * 1024
                found = True
        except (OSError, ValueError):
            continue
    return total if found else None


def rss_bytes(pid: int | None) -> int | None:
    """Resident memory of the VM process (or the whole sandbox)."""
    return rss_of(process_tree(pid))


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time used so far by the VM process (or the whole sandbox)."""
    total, found = 0.0, False
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        found = True
    return total if found else None


def dump(obj: object) -> str:
    return json.dumps(obj, default=str)
