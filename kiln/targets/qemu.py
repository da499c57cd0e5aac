"""The qemu target: boot an image as a microVM and relay its console.

The command line comes from kiln.targets.qemu_command; this module checks
the image, picks the accelerator, starts QEMU, streams the console, stops
the VM through QMP on Ctrl-C, and turns QEMU's end into the app's status.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Callable
from typing import BinaryIO

from kiln import _proc
from kiln.errors import TargetError, UsageError
from kiln.image import unpack
from kiln.image.verity import dm_table
from kiln.manifest import volume_tag
from kiln.paths import home_dir
from kiln.store import Image, Store
from kiln.targets import accel as accelerator
from kiln.targets.base import Plan, RunConfig
from kiln.targets.console import ConsoleReader
from kiln.targets.ports import check_free
from kiln.targets.qemu_command import VmSpec, command, decode_exit

STOP_TIMEOUT = 5.0


class QemuTarget:
    name = "qemu"

    def __init__(self, store: Store) -> None:
        self.store = store

    def plan(self, image: Image, cfg: RunConfig) -> Plan:
        qemu = _proc.require("qemu-system-x86_64")
        m = image.manifest
        hosts = cfg.volume_hosts(m.entry.volumes)
        check = not cfg.skip_digest_check
        kernel = unpack.kernel(self.store, image, check)
        rootfs = unpack.rootfs(self.store, image, check)
        if cfg.extra_env:
            raise UsageError("an extra environment for the app is for the unix target only (kiln build --check)")
        if cfg.ports and not m.kernel.network:
            raise UsageError(f"image {image.ref} has no network (its app declares no ports and uses no sockets)")
        accel, note = accelerator.choose(cfg.accel, kernel)
        qmp = cfg.qmp_socket or home_dir("run") / f"qemu-{os.getpid()}-{secrets.token_hex(4)}.qmp"
        spec = VmSpec(
            kernel=kernel,
            rootfs=rootfs,
            accel=accel,
            ports=cfg.ports,
            network=m.kernel.network,
            qmp_socket=qmp,
            memory_mib=cfg.memory_mib or m.entry.memory_mib,
            cmdline=(f"kiln.seed={secrets.token_hex(32)}",),
            quiet=not cfg.kernel_log,
            verity_table=dm_table(m.rootfs.verity),
            volumes=tuple((volume_tag(i), host) for i, host in enumerate(hosts) if host is not None),
        )
        return Plan(
            self.name,
            str(image.ref),
            command(spec, qemu),
            notes=[note] if note else [],
            qmp_socket=qmp,
            cleanup=[qmp],
            forwards=list(cfg.ports),
        )

    def _stop(self, proc: subprocess.Popen[bytes], plan: Plan) -> None:
        """Quit through QMP; kill if QEMU does not go within STOP_TIMEOUT."""
        if proc.poll() is not None:
            return
        if plan.qmp_socket and plan.qmp_socket.exists():
            from qemu.qmp.legacy import QEMUMonitorProtocol  # only needed to stop a VM

            with contextlib.suppress(Exception):
                qmp = QEMUMonitorProtocol(str(plan.qmp_socket))
                qmp.connect()
                qmp.cmd("quit")
                qmp.close()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(self, plan: Plan, sink: BinaryIO, on_start: Callable[[int], None] | None = None) -> int:
        check_free(plan.forwards)
        proc = _proc.spawn(plan.argv, merge_stderr=False)
        if on_start:
            on_start(proc.pid)
        assert proc.stdout is not None and proc.stderr is not None
        console = ConsoleReader(proc.stdout, sink)
        errors = ConsoleReader(proc.stderr, None)
        try:
            proc.wait()
        except BaseException:
            self._stop(proc, plan)
            raise
        finally:
            console.join(5)
            errors.join(5)
            for path in plan.cleanup:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        if console.verity:
            then = f"; then: {console.panic}" if console.panic else ""
            raise TargetError(
                f"image {plan.image}: the guest refused a corrupted block of its root file system "
                f"(dm-verity: {console.verity}){then}"
            )
        if console.exit_status is not None:
            return console.exit_status
        if console.panic:
            raise TargetError(f"the guest kernel panicked: {console.panic}")
        if proc.returncode < 0:  # QEMU itself was killed: report it as a shell would
            return 128 - proc.returncode
        written = decode_exit(proc.returncode)
        if written is not None and written < 127 and not errors.lines:
            return written
        detail = (
            errors.lines[-1].decode(errors="replace").removeprefix("qemu-system-x86_64: ")
            if errors.lines
            else f"QEMU exited with status {proc.returncode} before the app ended"
        )
        raise TargetError(f"the VM failed: {detail}")
