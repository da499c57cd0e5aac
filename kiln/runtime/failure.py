"""Why a run ended, in one line, and the evidence kept: the crash report of an instance.

Guest init says why the app ended when it knows (kiln/guest/init.c, explain_end): "kiln-init: the
app ran out of memory: 48 MiB guest, the app used 41 MiB at its peak; try --memory 96M", or "...
killed by signal N". The kernel says when it panics. explain() finds those lines at the end of a
console; the supervisor keeps the last report in the instance's directory:

    $KILN_HOME/instances/<name>/crash.json   {"time", "kind", "reason", "exit_code", "console": [last 50 lines]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from kiln import atomic

REPORT = "crash.json"
CONSOLE_LINES = 50
_INIT = "kiln-init: "


@dataclass(frozen=True)
class Failure:
    kind: str  # "oom", "panic", "signal", "hang", "exit"
    reason: str  # one line, for people


def explain(console: str, exit_code: int | None = None) -> Failure | None:
    """The reason the run whose console ends with `console` ended, if it was not a clean exit."""
    lines = console.splitlines()
    for line in reversed(lines[-200:]):
        text = line.strip()
        if _INIT + "the app ran out of memory" in text:
            return Failure("oom", text.split(_INIT, 1)[1])
        if "Kernel panic - not syncing" in text:
            return Failure(
                "panic", "the guest kernel panicked: " + text.split("Kernel panic - not syncing", 1)[1].lstrip(": ")
            )
        if _INIT + "the app was killed by signal" in text:
            return Failure("signal", text.split(_INIT, 1)[1])
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
