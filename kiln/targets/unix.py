"""The unix target: the image's root file system as a sandboxed host process.

The root is unpacked once from the image's EROFS blob. `unshare` gives guest
init fresh mount, PID, IPC and UTS namespaces; init (`--sandbox`) bind-mounts
the root read-only, pivots into it with its own /proc, /dev and /tmp, drops
every capability but binding low ports, and runs the app as in the VM. The
network is the host's: the app's ports are host ports, and `-p H:G` with
H != G adds kiln's relay from H to G (kiln.targets.relay).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from kiln import _proc
from kiln.errors import UsageError
from kiln.image import unpack
from kiln.store import Image, Store
from kiln.targets.base import Plan, RunConfig, signal_number
from kiln.targets.console import ConsoleReader
from kiln.targets.portmap import PortMap
from kiln.targets.ports import check_free
from kiln.targets.relay import PortProxy

STOP_TIMEOUT = 5.0
STOP_GRACE = 10.0


def _child(pid: int) -> int | None:
    """unshare's one child: the sandbox's init."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


class UnixTarget:
    name = "unix"

    def __init__(self, store: Store) -> None:
        self.store = store

    def plan(self, image: Image, cfg: RunConfig) -> Plan:
        if cfg.secrets is not None or cfg.binds or cfg.tmpfs:
            raise UsageError("secrets and binds over the image reach a guest on the qemu target only (compose "
                             "runs its services there)")  # fmt: skip
        unshare = _proc.require("unshare")
        hosts = cfg.volume_hosts(image.manifest.entry.volumes)
        root = unpack.tree(self.store, image)
        argv = [unshare, "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        if os.geteuid() != 0:
            argv += ["--user", "--map-root-user"]
        argv += ["--", str(root / "kiln" / "init"), "--sandbox", str(root)]
        for guest, host in zip(image.manifest.entry.volumes, hosts, strict=True):
            if host is not None:
                argv += ["--volume", f"{host}={guest}"]
        for key, value in sorted(cfg.extra_env.items()):
            argv += ["--env", f"{key}={value}"]
        if cfg.args is not None:
            for word in image.manifest.entry.argv_with(cfg.args):
                argv += ["--arg", word]
        notes = []
        if cfg.memory_mib:
            notes.append("--memory is not enforced on the unix target")
        stop = signal_number(cfg.stop_signal or image.manifest.entry.stop_signal)
        forwards = list(cfg.ports)
        return Plan(target=self.name, image=str(image.ref), argv=argv, notes=notes, forwards=forwards, stop_signal=stop)

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], plan: Plan) -> None:
        """The app's stop signal to the sandbox's init (which passes it on), a grace to end, then the group."""
        init = _child(proc.pid)
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, plan.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def run(self, plan: Plan, sink: BinaryIO, on_start: Callable[[int], None] | None = None) -> int:
        proxied = [p for p in plan.forwards if p.host != p.guest]
        # The app binds its own ports on the host; a relay needs the host side too.
        check_free([PortMap(host_ip=p.host_ip, host=p.guest, guest=p.guest) for p in plan.forwards] + proxied)
        forwarders = [PortProxy(p, p.guest, from_client=True) for p in proxied]
        proc = _proc.spawn(plan.argv, merge_stderr=True)
        if on_start:
            on_start(proc.pid)
        assert proc.stdout is not None
        console = ConsoleReader(proc.stdout, sink)
        try:
            proc.wait()
        except BaseException:
            self.stop(proc, plan)
            raise
        finally:
            console.join(5)
            for f in forwarders:
                f.close()
        return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
