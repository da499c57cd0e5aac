"""Shared rendering: plain lines, notes and errors, column tables, sizes, JSON, and a progress
display for long work.

Plain output goes through click. rich is imported on first use of `console`, `err_console` or
`progress()`, by the commands that draw with it (build, inspect, kernel...): `kiln --help`,
`kiln ps` and `kiln run` start without it, since importing it costs ~30 ms (#12).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

console: Console
err_console: Console


def __getattr__(name: str) -> Console:
    """`console` and `err_console`, made on first use (rich's import is the cost)."""
    if name not in ("console", "err_console"):
        raise AttributeError(name)
    return _console(name)


def _console(name: str) -> Console:
    if name in globals():
        return globals()[name]  # type: ignore[no-any-return]
    from rich.console import Console

    # Wide enough for tables when the output is a pipe or a file (rich assumes 80 columns there).
    stream = sys.stderr if name == "err_console" else sys.stdout
    made = Console(stderr=stream is sys.stderr, soft_wrap=True, width=None if stream.isatty() else 200)
    globals()[name] = made
    return made


def say(text: str, err: bool = False) -> None:
    """One plain line, as it is (no markup)."""
    click.echo(text, err=err)


def note(text: str) -> None:
    """A one-line notice on stderr: `kiln: TEXT`, in yellow on a terminal."""
    click.secho(f"kiln: {text}", fg="yellow", err=True)


def error(text: str) -> None:
    """The one line a failed command prints: `kiln: error: TEXT`."""
    click.echo(click.style("kiln: error:", fg="red", bold=True) + f" {text}", err=True)


def columns(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[str] = ()) -> None:
    """A table without lines: each column as wide as its widest cell, two spaces between columns,
    headers in bold on a terminal. `right` names the columns aligned to the right (sizes)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if h in right else c.ljust(w) for c, w, h in zip(cells, widths, headers, strict=True)
        ).rstrip()

    click.echo(click.style(line(headers), bold=True))
    for row in rows:
        click.echo(line(row))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def interrupt_on(*signals: int) -> None:
    """Make SIGINT (even if inherited as ignored, as by `cmd &`) and `signals` raise
    KeyboardInterrupt, so a guest is stopped properly on the way out."""
    import signal  # here: commands that never wait (kiln ps, --help) do not pay for it

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in signals:
        signal.signal(signum, _interrupt)


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Progress]:
    """A progress display on stderr (quiet when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns_ = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}", style="dim"),
    ]
    out = _console("err_console")
    with Progress(*columns_, console=out, transient=True, disable=not out.is_terminal) as p:
        p.add_task(description, total=total, detail="")
        yield p
