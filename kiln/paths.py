"""Where kiln keeps its state: $KILN_HOME, by default ~/.local/share/kiln.

$KILN_HOME/store/     images: content-addressed blobs and tags (kiln.store)
$KILN_HOME/kernel/    kernel source and builds cached by config hash (kiln.kernel)
$KILN_HOME/cache/     derived data that can always be rebuilt (init binary,
                      unpacked roots for the unix target, KVM probe result)
$KILN_HOME/run/       per-run scratch (QMP sockets)
$KILN_HOME/tmp/       each kiln process's own temporary files, and its tools' (kiln._proc.scratch)

A socket whose path would not fit in a UNIX socket address (a deep $KILN_HOME, an engine's
state directory) lives in a short directory of its own instead (socket_dir).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


SOCKET_ROOM = 96  # bytes a directory may take in a UNIX socket's address (108 with the name and its NUL)


def socket_dir(natural: Path) -> Path:
    """Where the UNIX sockets of `natural` (an instance's or a container's directory) go: `natural` itself
    when their addresses fit (a socket's path is at most 107 bytes), else a short directory of its own,
    named by a hash of `natural`: under $XDG_RUNTIME_DIR, /run/kiln for root, or the temporary directory,
    private to this user (0700, checked). `forget_socket_dir` removes it."""
    if len(os.fsencode(natural)) <= SOCKET_ROOM:
        return natural
    import hashlib
    import stat
    import tempfile

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "kiln" if runtime else Path("/run/kiln") if os.geteuid() == 0 else None
    if base is None:
        base = Path(tempfile.gettempdir()) / f"kiln-{os.getuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        from kiln.errors import KilnError

        raise KilnError(f"{base} is not a private directory of this user: cannot keep sockets there")
    short = base / hashlib.sha256(os.fsencode(natural)).hexdigest()[:16]
    short.mkdir(mode=0o700, exist_ok=True)
    return short


def forget_socket_dir(natural: Path) -> None:
    """Remove the short socket directory of `natural`, if it has one (see socket_dir)."""
    if len(os.fsencode(natural)) <= SOCKET_ROOM:
        return
    import shutil

    from kiln.errors import KilnError

    with contextlib.suppress(OSError, KilnError):
        shutil.rmtree(socket_dir(natural))


@contextlib.contextmanager
def sockets_for(natural: Path) -> Iterator[Path]:
    """socket_dir(natural) for a block, forgotten afterwards (a snapshot's staging VM)."""
    try:
        yield socket_dir(natural)
    finally:
        forget_socket_dir(natural)
