"""kiln's background processes: start one detached, record it, wait until it is ready, stop it with a
grace period. The instance supervisor, the summoner, a compose project's switch and the kiln-oci shim
are all started and stopped here.

A daemon is a Python module run as `python -m MODULE ARGS` in a session of its own, and is known by
its directory and its name:

    DIR/NAME.pid    its record (kiln.records): pid, the process's start time, its command line
    DIR/NAME.log    its stdout and stderr (unless the caller hands it other stdio)

The record is written by the parent the moment the child exists, and again by the child itself first
thing (`announce`), so a parent killed in between still leaves one `stop` finds. A pid alone is not
trusted: a record names its process only while /proc/PID/stat shows the same start time, so a reused
pid is never taken for ours. A daemon that ends by itself removes its record; one that was killed
leaves it, and `kiln store check` reports it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from kiln import atomic, records
from kiln.errors import KilnError

RECORD = ".pid"
POLL = 0.05


class Record(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    start: int  # clock ticks since boot, /proc/PID/stat field 22
    argv: tuple[str, ...] = ()

    def alive(self) -> bool:
        return alive(self.pid, self.start)


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished
        return None
    return int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and proc_start_time(pid) == start


def record_of(pid: int, argv: Sequence[str] = ()) -> Record | None:
    start = proc_start_time(pid)
    return None if start is None else Record(pid=pid, start=start, argv=tuple(argv))


def read(path: Path) -> Record | None:
    """The record at `path`, alive or not (None: there is none, or it is unreadable)."""
    try:
        return records.decode(path.read_bytes(), Record)
    except (OSError, ValueError):
        return None


def write(path: Path, record: Record) -> None:
    atomic.write_bytes(path, records.encode(record))


def announce(directory: Path, name: str, forget: bool = True) -> None:
    """Called by the daemon itself, first: its own record (a parent killed before writing it leaves one
    all the same), removed when it ends by itself unless `forget` is False (the kiln-oci shim: the
    engine reads a container as stopped, not as never started, from the record of a shim that ended)."""
    path = directory / f"{name}{RECORD}"
    me = record_of(os.getpid(), sys.argv)
    assert me is not None
    write(path, me)

    def remove() -> None:
        if read(path) == me:
            path.unlink(missing_ok=True)

    if forget:
        atexit.register(remove)


def stale(root: Path, below: str = "*") -> list[Path]:
    """The records in root's directories (ROOT/BELOW/NAME.pid) whose process is gone: killed, since one that
    ends by itself removes its own (the kiln-oci shim's, kept on purpose, lives under the runtime's root)."""
    found = []
    for path in sorted(root.glob(f"{below}/*{RECORD}")) if root.is_dir() else []:
        record = read(path)
        if record is not None and not record.alive():
            found.append(path)
    return found


class Daemon:
    """One background process: `python -m module *args`, recorded as directory/name.pid."""

    def __init__(self, directory: Path, name: str, module: str, args: Sequence[str] = ()) -> None:
        self.directory, self.name = directory, name
        self.argv = [sys.executable, "-m", module, *args]

    @property
    def record_path(self) -> Path:
        return self.directory / f"{self.name}{RECORD}"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def running(self) -> Record | None:
        """Its record, if its process is alive."""
        record = read(self.record_path)
        return record if record is not None and record.alive() else None

    def start(
        self,
        what: str,
        ready: Callable[[], bool],
        timeout: float,
        stdio: dict[str, int | IO[Any] | None] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> subprocess.Popen[bytes]:
        """Start it detached and wait until `ready()` says so; KilnError naming `what` and the log's last
        line if it ends first or is not ready within `timeout` seconds (it is stopped then).

        `stdio`: Popen's stdin/stdout/stderr (None: none in, both out to NAME.log). `pass_fds`: handed
        to the child, and closed here once it has them."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            if stdio is None:
                out = stack.enter_context(open(self.log, "ab"))
                stdio = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": subprocess.STDOUT}
            try:
                proc = subprocess.Popen(self.argv, start_new_session=True, close_fds=True, pass_fds=pass_fds, **stdio)
            finally:
                for fd in pass_fds:
                    os.close(fd)
        me = record_of(proc.pid, self.argv)
        if me is not None:
            write(self.record_path, me)
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None and not ready():  # what it said before it ended still counts
                raise KilnError(f"{what} did not start: {self._last_line(proc)}")
            if time.monotonic() > deadline:
                self._end(proc)
                raise KilnError(f"{what} did not get ready within {timeout:.0f} s{self._see_log()}")
            time.sleep(POLL)
        return proc

    def _last_line(self, proc: subprocess.Popen[bytes]) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        if not lines:
            return f"it exited with status {proc.returncode}"
        return f"{lines[-1].split('error: ', 1)[-1]}{self._see_log()}"

    def _see_log(self) -> str:
        return f" (log: {self.log})" if self.log.is_file() else ""

    @staticmethod
    def _end(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, grace: float, sig: int = signal.SIGTERM) -> bool:
        """`sig`, then `grace` seconds to end, then SIGKILL; the record goes. False: it was not running."""
        record = self.running()
        if record is None:
            self.record_path.unlink(missing_ok=True)
            return False
        for signum, seconds in ((sig, grace), (signal.SIGKILL, grace + 10)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signum)
            deadline = time.monotonic() + seconds
            while record.alive() and time.monotonic() < deadline:
                time.sleep(POLL)
            if not record.alive():
                break
        self.record_path.unlink(missing_ok=True)
        return True
