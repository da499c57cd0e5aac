"""Live figures from inside an instance (`kiln top`): asked of guest init over the control channel
on the qemu target (init reads /proc and /proc/APP, kiln/guest/init/stats.c `stats`), read from the
app's own /proc entries on the unix target (the sandbox shares the host's kernel).

The one exception is a Python app's gc figures, which only the interpreter knows: kiln's start-up
hook (kiln/guest/start.py, not the app's code) writes them to /tmp/.kiln-gc on SIGRTMIN+3; init
(qemu) or this module (unix) sends the signal, if the app's SigCgt mask says it is caught, and reads
the file.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from kiln.errors import KilnError
from kiln.guest.protocol import ControlChannel, figures
from kiln.runtime.instance import Instance, children_map, proc_status, process_tree

TCP_STATES = {"0A": "tcp_listen", "01": "tcp_established", "06": "tcp_time_wait"}
GC_FILE = "tmp/.kiln-gc"  # in the app's root (kiln/guest/start.py GC_FILE)
GC_SIGNAL = signal.SIGRTMIN + 3  # kiln/guest/start.py GC_SIGNAL_OFFSET
GC_WAIT = 0.2  # seconds to wait for the hook's new figures before the last ones are read


def _sandbox_gc(app: int) -> dict[str, int]:
    """The Python hook's gc figures for the app `app` (pid on the host), or {} for a native app."""
    try:
        caught = _catches(proc_status(app), GC_SIGNAL)
    except OSError:
        caught = False
    if not caught:
        return {}  # no hook: a native program, or a Python app still starting
    path = Path(f"/proc/{app}/root") / GC_FILE
    try:
        st = path.stat()
        before: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
    except OSError:
        before = None  # nobody asked before
    os.kill(app, GC_SIGNAL)
    deadline = time.monotonic() + GC_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.005)
        try:
            now = path.stat()
        except OSError:
            continue
        if (now.st_ino, now.st_mtime_ns) != before:
            break
    try:
        return figures(path.read_text().split(), "the app's gc figures")
    except OSError:
        return {}


def _catches(status: dict[str, str], signum: int) -> bool:
    """Whether the process whose /proc/PID/status this is has a handler for `signum` (SigCgt)."""
    return bool(int(status.get("SigCgt", "0"), 16) >> (signum - 1) & 1)


def _kib(status: dict[str, str], key: str) -> int:
    return int(status[key].split()[0]) if key in status else 0


def _sandbox_app(pid: int | None) -> int:
    """The app's pid on the host: the child of the sandbox's init (unshare -> init -> app)."""
    children = children_map()
    for p in process_tree(pid, children):
        try:
            comm = Path(f"/proc/{p}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "init" and children.get(p):
            return children[p][0]
    raise KilnError("the sandbox's app is not running")


def _sandbox_sample(inst: Instance) -> dict[str, int]:
    st = inst.state()
    app = _sandbox_app(st.vm_pid)
    fields = Path(f"/proc/{app}/stat").read_text().rsplit(")", 1)[1].split()
    inodes = set()
    for fd in Path(f"/proc/{app}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    counts = {"tcp_listen": 0, "tcp_established": 0, "tcp_time_wait": 0, "tcp_other": 0}
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{app}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[9] in inodes:
                counts[TCP_STATES.get(cols[3], "tcp_other")] += 1
    meminfo = {ln.split(":")[0]: int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()}
    status = proc_status(app)
    return {
        "mem_total_kib": meminfo["MemTotal"],
        "mem_available_kib": meminfo["MemAvailable"],
        "app_rss_kib": _kib(status, "VmRSS"),
        "app_peak_kib": _kib(status, "VmHWM"),
        "app_threads": _kib(status, "Threads"),
        "app_fds": len(list(Path(f"/proc/{app}/fd").iterdir())),
        "app_cpu_ticks": int(fields[11]) + int(fields[12]),
        "hz": os.sysconf("SC_CLK_TCK"),
        "uptime_ms": int(time.monotonic() * 1000),
        **counts,
        **_sandbox_gc(app),
    }


def sample(inst: Instance) -> dict[str, int]:
    """One sample of the figures `kiln top` shows (integers; memory in KiB)."""
    if not inst.running():
        raise KilnError(f"instance {inst.name} is not running")
    if inst.config.target == "unix":
        try:
            return _sandbox_sample(inst)
        except OSError as err:
            raise KilnError(f"instance {inst.name}: its app went away ({err.strerror})") from None
    with ControlChannel(inst.control_socket, timeout=10) as channel:
        answer = channel.request("stats", timeout=10)
    parts = answer.split()
    if parts[:2] != ["ok", "stats"]:
        raise KilnError(f"instance {inst.name}: guest init answered stats with {answer[:80]!r}")
    return figures(parts[2:], f"instance {inst.name}: guest init's stats")


def cpu_percent(before: dict[str, int], after: dict[str, int]) -> float:
    """The app's CPU use between two samples, in percent of one CPU."""
    seconds = (after["uptime_ms"] - before["uptime_ms"]) / 1000
    if seconds <= 0:
        return 0.0
    return round(100 * (after["app_cpu_ticks"] - before["app_cpu_ticks"]) / after["hz"] / seconds, 1)
