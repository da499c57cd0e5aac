"""The one way kiln runs host programs (qemu, make, mkfs.erofs, gcc, apt...).

`require` turns a missing program into a ToolMissingError error that says which
Debian package provides it; `run` runs a command, captures its output and turns
a failure into a KilnError that quotes the end of what the program printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kiln.errors import KilnError, NoSpaceError, ToolMissingError

# program -> the Debian package that ships it
PACKAGES: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "mkfs.erofs": "erofs-utils",
    "fsck.erofs": "erofs-utils",
    "gcc": "gcc",
    "make": "make",
    "unshare": "util-linux",
    "tar": "tar",
    "dpkg-query": "dpkg",
    "veritysetup": "cryptsetup-bin",
    "debootstrap": "debootstrap",
    "strace": "strace",
    "mkfs.ext4": "e2fsprogs",
    "bwrap": "bubblewrap",
    "wrk": "wrk",
    "mkfs.fat": "dosfstools",
    "mmd": "mtools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
    "sfdisk": "fdisk",
    "qemu-img": "qemu-utils",
}


FULL_BELOW = 1 << 20  # bytes free under which the disk of $KILN_HOME counts as full


def out_of_space(said: str) -> bool:
    """Did a tool that failed meet a full disk? Its own words or errno 28's say so, or (a tool that only
    says a write was short, as mkfs.erofs) the disk holding $KILN_HOME has next to nothing free."""
    if any(s in said for s in ("No space left on device", "[Errno 28]", "ENOSPC", "Disk quota exceeded")):
        return True
    from kiln.paths import kiln_home

    try:
        st = os.statvfs(kiln_home())
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_BELOW


def require(program: str) -> str:
    """Return the full path of `program`, or raise ToolMissingError naming its package."""
    found = shutil.which(program)
    if found is None:
        package = PACKAGES.get(program, program)
        raise ToolMissingError(f"{program} is not installed (apt-get install {package})")
    return found


_scratch: Path | None = None


def scratch() -> Path:
    """This process's own temporary directory, $KILN_HOME/tmp/tools-<owner>-*: the TMPDIR of every tool it
    runs (gcc, mkfs.erofs, pip, skopeo...) and of its own temporary files. It goes when kiln exits; what a
    kiln killed with SIGKILL left (its tools' files too: a gcc killed with it cannot clean up) is swept by
    the next kiln that needs one."""
    global _scratch
    if _scratch is None or not _scratch.is_dir():
        import atexit
        import tempfile

        from kiln import atomic
        from kiln.paths import home_dir

        top = home_dir("tmp")
        atomic.sweep(top, lambda n: n.startswith("tools-"))
        _scratch = Path(tempfile.mkdtemp(dir=top, prefix=f"tools-{atomic.owner()}-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


def tool_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a tool kiln runs: kiln's own, `env`, and TMPDIR in kiln's scratch()."""
    return {**os.environ, **(env or {}), "TMPDIR": str(scratch())}


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when kiln dies, so no VM outlives a killed `kiln run`, and no tool a
    killed build started (mkfs.erofs, pip, make) goes on writing."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def spawn(argv: Sequence[str], merge_stderr: bool) -> subprocess.Popen[bytes]:
    """Start a guest process (QEMU, or the unix sandbox): no stdin, its own session (Ctrl-C goes to
    kiln, which stops it properly), piped output, and killed if kiln dies."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion; raise KilnError("<what> failed: ...") if it fails."""
    args = [os.fspath(a) for a in argv]
    args[0] = require(args[0]) if os.sep not in args[0] else args[0]
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=tool_env(env),
        input=input,
        capture_output=True,
        check=False,
        preexec_fn=die_with_parent,  # a kiln killed mid-build leaves no mkfs.erofs, pip or gcc running
    )
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).decode(errors="replace")
        if out_of_space(said):
            raise NoSpaceError.at(os.fspath(cwd) if cwd else None, what)
        tail = said.strip().splitlines()[-3:]
        detail = " | ".join(line.strip() for line in tail) or f"exit status {proc.returncode}"
        raise KilnError(f"{what} failed: {detail}")
    return proc


def stream(
    argv: Sequence[str | os.PathLike[str]],
    on_line: Callable[[str], None],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Run a command, handing each line it prints (stdout and stderr together) to `on_line` as it comes;
    returns (exit status, every line). A failure is the caller's to explain."""
    args = [os.fspath(a) for a in argv]
    args[0] = require(args[0]) if os.sep not in args[0] else args[0]
    lines: list[str] = []
    with subprocess.Popen(
        args,
        cwd=cwd,
        env=tool_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        preexec_fn=die_with_parent,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            on_line(lines[-1])
    return proc.returncode, lines
