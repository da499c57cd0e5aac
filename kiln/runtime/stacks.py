"""`kiln stack`: every thread's Python stack, as py-spy dump shows it, asked of guest init.

A Python image starts through kiln's hook (kiln/guest/start.py), which registers faulthandler on
SIGUSR2: the app's stacks go to its stderr, the console. On the qemu target the host asks init
over the control channel (`stack`), on the unix target it signals the sandbox's init, which
passes the signal on to the app; either way the dump is read back from the console. A native
program has no such hook: init lists its threads and their states (`threads`), and that is all
that can be known without a debugger inside a sealed guest.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from kiln.errors import KilnError
from kiln.runtime.instance import Instance, children_map, process_tree

DUMP_STARTS = ("Thread 0x", "Current thread 0x")
QUIET = 0.5  # seconds without new console output that end a dump
TIMEOUT = 10.0


def _sandbox_init(inst: Instance) -> int:
    children = children_map()
    for p in process_tree(inst.state().vm_pid, children):
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == "init":
                return p
        except OSError:
            continue
    raise KilnError(f"instance {inst.name}: its sandbox's init is not running")


def _ask(inst: Instance, request: str) -> str:
    from kiln.guest.protocol import ControlChannel

    with ControlChannel(inst.control_socket, timeout=10) as channel:
        return channel.request(request, timeout=10)


def python_stacks(inst: Instance) -> str:
    """Signal the app through init, then read its dump from the console."""
    log = inst.console_log
    start = log.stat().st_size if log.exists() else 0
    if inst.config.target == "unix":
        os.kill(_sandbox_init(inst), signal.SIGUSR2)
    else:
        answer = _ask(inst, "stack")
        if answer != "ok stack":
            raise KilnError(f"instance {inst.name}: {answer.removeprefix('no stack ')}")
    deadline, size, last_change = time.monotonic() + TIMEOUT, start, time.monotonic()
    while time.monotonic() < deadline:
        now = log.stat().st_size
        if now != size:
            size, last_change = now, time.monotonic()
        elif size > start and time.monotonic() - last_change > QUIET:
            break
        time.sleep(0.05)
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(DUMP_STARTS)), None)
    if first is None:
        raise KilnError(f"instance {inst.name}: the app printed no stack within {TIMEOUT:.0f} s")
    dump = [line for line in lines[first:] if line.startswith(DUMP_STARTS) or line.startswith("  File ") or not line]
    return "\n".join(dump).strip() + "\n"


def native_threads(inst: Instance) -> list[tuple[str, str, str]]:
    """(tid, state, name) of each of the app's threads."""
    if inst.config.target == "unix":
        init = _sandbox_init(inst)
        app = children_map().get(init, [None])[0]
        if app is None:
            raise KilnError(f"instance {inst.name}: its app is not running")
        out = []
        for task in sorted(Path(f"/proc/{app}/task").iterdir(), key=lambda p: int(p.name)):
            stat = (task / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            out.append((task.name, stat[stat.rindex(")") + 2], name))
        return out
    answer = _ask(inst, "threads")
    parts = answer.split()
    if parts[:2] != ["ok", "threads"]:
        raise KilnError(f"instance {inst.name}: {answer.removeprefix('no threads ')}")
    return [tuple(p.split(":", 2)) for p in parts[2:]]  # type: ignore[misc]
