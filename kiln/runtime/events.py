"""An instance's events: what happened to it and when, as JSON lines in its directory.

    $KILN_HOME/instances/<name>/events.jsonl     newest last; at 1 MiB it becomes events.jsonl.1

Each line is {"time": RFC 3339, "instance": NAME, "event": KIND, ...details}. The supervisor writes
start (how: boot, or restore of a snapshot), exit, restart, stop, oom, panic and hang; the summoner
writes summon (how: restore or cold) and idle-stop.
`kiln events` reads them (kiln/cli/events.py).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE = "events.jsonl"
ROTATE_AT = 1 << 20  # bytes


def record(directory: Path, event: str, **details: Any) -> None:
    """Append one event (one write of one line: readers never see half of it)."""
    path = directory / FILE
    line = json.dumps(
        {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "instance": directory.name,
         "event": event, **details}, sort_keys=False,
    )  # fmt: skip
    try:
        if path.stat().st_size > ROTATE_AT:
            os.replace(path, directory / f"{FILE}.1")
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read(directory: Path) -> list[dict[str, Any]]:
    """Every event kept for the instance, oldest first (the rotated file, then the current one)."""
    out = []
    for path in (directory / f"{FILE}.1", directory / FILE):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash of the host
    return out
