"""Shared rendering helpers: consoles, sizes, and a progress context for long work."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Wide enough for tables when the output is a pipe or a file (rich assumes 80 columns there).
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def print_json(data: Any) -> None:
    console.file.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def interrupt_on(*signals: int) -> None:
    """Make SIGINT (even if inherited as ignored, as by `cmd &`) and `signals` raise
    KeyboardInterrupt, so a guest is stopped properly on the way out."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in signals:
        signal.signal(signum, _interrupt)


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Progress]:
    """A progress display on stderr (quiet when stderr is not a terminal)."""
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}", style="dim"),
    ]
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as p:
        p.add_task(description, total=total, detail="")
        yield p
