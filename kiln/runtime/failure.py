"""Why a run ended, in one line, and the evidence kept: the crash report of an instance.

Guest init says why the app ended when it knows (kiln/guest/init/stats.c, explain_end): "kiln-init: the
app ran out of memory: 48 MiB guest, the app used 41 MiB at its peak; try --memory 96M", or "...
killed by signal N". The kernel says when it panics; a panic right after the OOM killer killed the
app (kiln.targets.console.OOM_PANIC) is the app's out-of-memory end, told in init's words from the
kernel's kill record. explain() finds those lines at the end of a console; the supervisor keeps the
last report in the instance's directory:

    $KILN_HOME/instances/<name>/crash.json   {"time", "kind", "reason", "exit_code", "console": [last 50 lines]}
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from kiln import atomic
from kiln.guest.protocol import INIT_OOM, INIT_SAY, KILLED_BY_SIGNAL, out_of_memory
from kiln.targets.console import OOM_KILL_RECORD, oom_then_panic

REPORT = "crash.json"
_OOM_KILL = re.compile(OOM_KILL_RECORD)
CONSOLE_LINES = 50


@dataclass(frozen=True)
class Failure:
    kind: str  # "oom", "panic", "signal", "hang", "exit"
    reason: str  # one line, for people


def explain(console: str, exit_code: int | None = None, memory_mib: int | None = None) -> Failure | None:
    """The reason the run whose console ends with `console` ended, if it was not a clean exit
    (`memory_mib`: the guest's RAM, for an out-of-memory end that init could not report)."""
    lines = console.splitlines()[-200:]
    for i in range(len(lines) - 1, -1, -1):
        text = lines[i].strip()
        if INIT_OOM in text:
            return Failure("oom", text.split(INIT_SAY, 1)[1])
        if "Kernel panic - not syncing" in text:
            panic = text.split("Kernel panic - not syncing", 1)[1].lstrip(": ")
            killed = [m for line in lines[:i] if (m := _OOM_KILL.search(line))]
            if oom_then_panic(bool(killed), panic):
                peak_kib = sum(int(killed[-1].group(g)) for g in ("anon", "file", "shmem"))
                return Failure("oom", out_of_memory(memory_mib, -(-peak_kib // 1024)))
            return Failure("panic", "the guest kernel panicked: " + panic)
        if KILLED_BY_SIGNAL in text:
            return Failure("signal", text.split(INIT_SAY, 1)[1])
    if exit_code not in (None, 0):
        return Failure("exit", f"the app exited with status {exit_code}")
    return None


def tail(path: Path, start: int = 0, limit: int = 256 * 1024) -> str:
    """The console written since byte `start` (its last `limit` bytes at most)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(start, size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def write_report(directory: Path, failure: Failure, exit_code: int | None, console: str) -> None:
    report = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **asdict(failure),
        "exit_code": exit_code,
        "console": console.splitlines()[-CONSOLE_LINES:],
    }
    atomic.write_bytes(directory / REPORT, json.dumps(report, indent=2).encode())


def read_report(directory: Path) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads((directory / REPORT).read_text())
        return data
    except (OSError, ValueError):
        return None
