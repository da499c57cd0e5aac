"""Isolated $KILN_HOME directories: an empty store of their own, the kernel builds and caches shared."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from kiln.paths import kiln_home

SHARED_HOME = kiln_home()  # the developer's: holds the kernel build cache


def isolated_home(base: Path, shared: Path | None = None) -> dict[str, str]:
    """An environment whose KILN_HOME is an empty store under `base` that shares the kernel builds and
    caches of `shared` (default: the developer's $KILN_HOME)."""
    shared = shared or SHARED_HOME
    base.mkdir(parents=True, exist_ok=True)
    for d in ("kernel", "cache"):
        (shared / d).mkdir(parents=True, exist_ok=True)
        link = base / d
        if not link.exists():
            link.symlink_to(shared / d)
    return {**os.environ, "KILN_HOME": str(base)}


@contextlib.contextmanager
def kiln_home_of(env: dict[str, str]) -> Iterator[None]:
    """Point this process's own kiln modules (instances, store, caches) at env's KILN_HOME for a while."""
    saved = os.environ.get("KILN_HOME")
    os.environ["KILN_HOME"] = env["KILN_HOME"]
    try:
        yield
    finally:
        if saved is None:
            del os.environ["KILN_HOME"]
        else:
            os.environ["KILN_HOME"] = saved
