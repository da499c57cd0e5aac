"""Build-time programs run inside a tree that is not the host's, with bubblewrap.

Some builds must run a program from their input: a Debian package's daemon
asked to print its flattened config (`lighttpd -p`), an image's Python
interpreter asked where its modules live. Those programs come from
packages and images, not from the host, so they never run as host
processes: `run` starts them under bwrap with the tree read-only as `/`
(each top-level entry bound on an empty tmpfs root, so /proc, /dev and /tmp
can be mounted), fresh /proc, /dev, /tmp and /run, every namespace unshared
(no network), no host path but what `binds` names read-only, a cleared
environment, no capabilities, and killed with kiln.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from kiln import _proc
from kiln.errors import KilnError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 120.0


class SandboxError(KilnError):
    """A build-time program in the sandbox failed."""


def command(
    tree: Path,
    argv: list[str],
    binds: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    workdir: str = "/",
    writable: Mapping[str, Path] | None = None,
    user: tuple[int, int] | None = None,
) -> list[str]:
    """The bwrap command line that runs argv inside tree (binds: guest path -> host file or directory, read-only;
    writable: the same, read-write: where a build-time run writes its output; user: the uid and gid it runs as
    inside its user namespace, for a program that refuses to run as root, such as initdb)."""
    bwrap = _proc.require("bwrap")
    args = [bwrap, "--tmpfs", "/"]
    for entry in sorted(os.listdir(tree)):
        host = tree / entry
        if entry in ("proc", "dev", "tmp", "run", "sys"):
            continue
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{entry}"]
        elif host.is_dir() or host.is_file():
            args += ["--ro-bind", str(host), f"/{entry}"]
    for guest, host in sorted((binds or {}).items()):
        args += ["--ro-bind", str(host), guest]
    for guest, host in sorted((writable or {}).items()):
        args += ["--bind", str(host), guest]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    if user is not None:
        args += ["--unshare-user", "--uid", str(user[0]), "--gid", str(user[1])]
    args += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    for key, value in {"PATH": DEFAULT_PATH, **(env or {})}.items():
        args += ["--setenv", key, value]
    args += ["--chdir", workdir, "--", *argv]
    return args


def run(
    tree: Path,
    argv: list[str],
    what: str,
    binds: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    workdir: str = "/",
    input: bytes | None = None,
    writable: Mapping[str, Path] | None = None,
    user: tuple[int, int] | None = None,
) -> bytes:
    """Run argv in the sandbox; its stdout, or SandboxError with the last line it wrote on stderr."""
    try:
        proc = subprocess.run(
            command(tree, argv, binds, env, workdir, writable, user),
            input=input,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
            preexec_fn=_proc.die_with_parent,
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(f"{what}: did not finish within {TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise SandboxError(f"{what} failed: {last}")
    return proc.stdout


@contextlib.contextmanager
def made_directory(
    tree: Path, argv: list[str], what: str, user: tuple[int, int], binds: Mapping[str, Path] | None = None
) -> Iterator[Path]:
    """Run an initializer that makes a directory (initdb, mariadb-install-db) as `user`, with {data} in argv for
    the directory it makes; the directory, on the host, until the context ends."""
    with tempfile.TemporaryDirectory(prefix="kiln-initialize-", dir=_proc.scratch()) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        out.chmod(0o777)  # the account the run maps to writes it
        run(tree, [a.replace("{data}", "/out/data") for a in argv], what, binds=binds, writable={"/out": out},
            user=user)  # fmt: skip
        yield out / "data"
