"""Where kiln keeps its state: $KILN_HOME, by default ~/.local/share/kiln.

$KILN_HOME/store/     images: content-addressed blobs and tags (kiln.store)
$KILN_HOME/kernel/    kernel source and builds cached by config hash (kiln.kernel)
$KILN_HOME/cache/     derived data that can always be rebuilt (init binary,
                      unpacked roots for the unix target, KVM probe result)
$KILN_HOME/run/       per-run scratch (QMP sockets)
"""

from __future__ import annotations

import os
from pathlib import Path


def kiln_home() -> Path:
    env = os.environ.get("KILN_HOME")
    if env:
        return Path(env).expanduser().resolve()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "kiln"


def home_dir(*parts: str) -> Path:
    """A directory under $KILN_HOME, created if needed."""
    path = kiln_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
