"""Atomic file and directory writes: write to a temporary path, fsync, rename.

Everything kiln leaves on disk for later (store blobs, tags, cached kernels,
unpacked roots) goes through here, so an interrupted command never leaves a
half-written file where a reader would find it.

A temporary path names its owner (`owner()`: the pid and its start time), so
what a command killed with SIGKILL left (it never ran its cleanup) is known
for what it is: `sweep` removes the temporary paths whose owner is gone, and
the next writer to the same place runs it first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

_OWNER = re.compile(r"\.(\d+)_(\d+)\.|-(\d+)_(\d+)-")
_owner: str | None = None


def _start_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def owner() -> str:
    """This process, as temporary names carry it: PID_STARTTICKS."""
    global _owner
    if _owner is None:
        _owner = f"{os.getpid()}_{_start_ticks(os.getpid()) or 0}"
    return _owner


def left_by_the_dead(name: str) -> bool:
    """Is `name` a temporary path whose owner process is gone (killed before it cleaned up)?"""
    m = _OWNER.search(name)
    if m is None:
        return False
    pid, start = (int(g) for g in (m.group(1, 2) if m.group(1) else m.group(3, 4)))
    return _start_ticks(pid) != start


def sweep(directory: Path, match: Callable[[str], bool] = lambda _n: True) -> list[Path]:
    """Remove what processes that are gone left in `directory` (names matching `match`); what went."""
    gone: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return gone
    for entry in entries:
        if match(entry.name) and left_by_the_dead(entry.name):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            gone.append(path)
    return gone


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically."""
    import tempfile  # here: shutil and tempfile cost commands that only read (kiln ps) ~3 ms

    path.parent.mkdir(parents=True, exist_ok=True)
    sweep(path.parent, lambda n: n.startswith(".") and n.endswith(".tmp"))  # what killed writers left here
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def install_file(src: Path, dest: Path) -> None:
    """Move a finished file into place atomically (same file system), fsynced."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f:
        os.fsync(f.fileno())
    os.replace(src, dest)
    fsync_dir(dest.parent)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `final` only if the block succeeds.

    If `final` appeared meanwhile (another process won the race) the new copy
    is discarded; the two are built from the same inputs.
    """
    import shutil
    import tempfile

    final.parent.mkdir(parents=True, exist_ok=True)
    sweep(final.parent, lambda n: n.startswith(f".{final.name}.") and n.endswith(".tmp"))
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{owner()}.", suffix=".tmp"))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
        else:
            fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock(2) on `path` (created if needed) for the block: one writer at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
