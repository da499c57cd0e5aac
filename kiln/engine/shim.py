"""The container's process: the one whose pid the engine watches, and whose exit status is the container's.

`kiln-oci create` starts it (`python -m kiln.engine.shim ROOT ID`) with the
engine's stdio (or the pty it handed over its console socket). It then:

1. applies what the bundle asks of a process and the host allows: its rlimits
   and its cgroup (v2, or each v1 controller's hierarchy); what it cannot, it
   says in one line on stderr, and goes on;
2. joins the network namespace the engine made (setns), or makes a new one
   (which the engine's prestart hook then configures, as Docker's does), so
   the engine's port publishing and its network reach the VM: QEMU's user
   networking runs inside that namespace and forwards the image's ports from
   it, as a container's own ports would be; and says so to `create`;
3. waits for `kiln-oci start` (a byte on the container's FIFO);
4. boots the VM as `kiln run` does (kiln.targets.qemu: KVM when it works, TCG
   otherwise, with the same notice), its console on stdout;
5. passes the signals it gets to the app through guest init (SIGTERM reaches
   the app; SIGKILL of this process ends QEMU with it, PR_SET_PDEATHSIG);
6. writes the app's exit status to the state directory and exits with it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from kiln import daemon
from kiln.engine.state import SHIM, Container
from kiln.errors import KilnError
from kiln.targets.base import Plan

CLONE_NEWNET = 0x40000000
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH)  # fmt: skip


def say(text: str) -> None:
    sys.stderr.write(f"kiln-oci: {text}\n")
    sys.stderr.flush()


def apply_rlimits(limits: Sequence[tuple[str, int, int]]) -> None:
    refused = []
    for name, soft, hard in limits:
        number = getattr(resource, str(name), None)
        if number is None:
            refused.append(f"{name} (unknown here)")
            continue
        try:
            resource.setrlimit(number, (soft, hard))
        except (ValueError, OSError) as err:
            refused.append(f"{name}={soft}:{hard} ({err.strerror if isinstance(err, OSError) else err})")
    if refused:
        say(f"rlimits not applied: {', '.join(refused)}; the VM runs with the runtime's own")


def join_cgroup(path: str | None, pid: int) -> None:
    """Put `pid` in the container's cgroup: the unified hierarchy, or each v1 controller's."""
    if not path or ":" in path:  # systemd's slice:prefix:name needs systemd to make the scope
        if path:
            say(f"cgroup {path}: a systemd cgroup, and kiln-oci makes none (no systemd here to ask); not joined")
        return
    base = Path("/sys/fs/cgroup")
    targets = [base] if (base / "cgroup.controllers").is_file() else [
        d for d in sorted(base.iterdir()) if d.is_dir() and not d.is_symlink() and (d / "cgroup.procs").is_file()
    ]  # fmt: skip
    failed = []
    for hierarchy in targets:
        directory = hierarchy / path.lstrip("/")
        try:
            _make(hierarchy, directory)
            (directory / "cgroup.procs").write_text(str(pid))
        except OSError as err:
            failed.append(f"{hierarchy.name or 'unified'} ({err.strerror})")
    if failed:
        say(f"cgroup {path}: not joined in {', '.join(failed)}")


def _make(hierarchy: Path, directory: Path) -> None:
    """mkdir -p in a cgroup hierarchy; a v1 cpuset takes no process before it has cpus and mems, so each new
    level gets its parent's."""
    for level in [*reversed(directory.relative_to(hierarchy).parents), directory.relative_to(hierarchy)]:
        here = hierarchy / level
        if str(level) in ("", ".") or here.is_dir():
            continue
        here.mkdir()
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (here / knob).is_file() and not (here / knob).read_text().strip():
                (here / knob).write_text((here.parent / knob).read_text())


def join_netns(netns: str | None) -> None:
    if netns is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if netns == "new":
        if libc.unshare(CLONE_NEWNET) != 0:
            raise KilnError(f"cannot make a network namespace: {os.strerror(ctypes.get_errno())}")
        return
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise KilnError(f"cannot join the network namespace {netns}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def main(root: Path, cid: str, ready: int) -> int:
    """`ready`: a pipe to `kiln-oci create`, which runs the prestart hooks once this process is in its
    network namespace (Docker's libnetwork configures the namespace of the pid it is given)."""
    container = Container(root, cid)
    daemon.announce(container.dir, SHIM, forget=False)
    decided = container.load_plan()
    apply_rlimits(decided.rlimits)
    join_cgroup(decided.cgroup, os.getpid())
    try:
        join_netns(decided.netns)
    except KilnError as err:
        os.write(ready, f"no {err}".encode())
        return 125
    os.write(ready, b"ok")
    os.close(ready)
    with open(container.fifo, "rb") as fifo:  # blocks until `kiln-oci start`
        if not fifo.read(1):
            return 0  # the runtime closed it without starting (delete of a created container)
    from kiln.targets.qemu import QemuRunner

    plan = decided.plan
    vm_pid: list[int] = []

    def forward(sig: int, _frame: object) -> None:
        threading.Thread(target=_ask_app, args=(plan, sig), daemon=True).start()

    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        status = QemuRunner().run(plan, sys.stdout.buffer, on_start=vm_pid.append)
    except KilnError as err:
        say(str(err))
        status = 125
    (container.exit_file).write_text(str(status))
    return status


def _ask_app(plan: Plan, sig: int) -> None:
    """The signal to the app, through init's control channel (a SIGKILL is the engine's to send to us)."""
    from kiln.errors import TargetError
    from kiln.guest.protocol import ControlChannel

    if plan.control_socket is None:
        return
    try:
        with ControlChannel(plan.control_socket, timeout=5.0) as channel:
            channel.signal(sig)
    except (TargetError, OSError) as err:
        say(f"signal {sig} did not reach the app ({err})")


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
