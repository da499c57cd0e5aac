"""The qemu target: boot an image as a microVM (or restore its snapshot) and relay its console.

The command line comes from kiln.targets.qemu_command; this module checks
the image, picks the accelerator, restores a fitting snapshot (kiln.snapshot)
unless told not to, starts QEMU, streams the console, stops the VM through
QMP on Ctrl-C, and turns QEMU's end into the app's status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from kiln import _proc
from kiln.errors import TargetError, UsageError
from kiln.guest import protocol
from kiln.guest.protocol import dm_table, volume_tag
from kiln.image import unpack
from kiln.manifest import Manifest
from kiln.paths import home_dir, socket_dir
from kiln.store import Image, Store
from kiln.targets import accel as accelerator
from kiln.targets.base import BindMount, Plan, Restore, RunConfig, signal_number
from kiln.targets.console import ConsoleReader, oom_then_panic
from kiln.targets.portmap import PortMap
from kiln.targets.ports import check_free, free_port
from kiln.targets.qemu_command import VmSpec, command, decode_exit
from kiln.targets.relay import PortProxy

STOP_TIMEOUT = 5.0
STOP_GRACE = 10.0  # how long the app has to end after its stop signal (Docker's default too)


@dataclasses.dataclass(frozen=True)
class Vm:
    """A started QEMU: its process, its console and stderr readers, and whether it was restored."""

    proc: subprocess.Popen[bytes]
    console: ConsoleReader
    errors: ConsoleReader
    restored: bool
    relays: tuple[PortProxy, ...] = ()  # the published ports, accepted on the host

    def join(self) -> None:
        for relay in self.relays:
            relay.close()
        self.console.join(5)
        self.errors.join(5)


def bind_shares(binds: tuple[BindMount, ...]) -> tuple[tuple[str, Path, str, bool], ...]:
    """Each bind as a 9p share: a directory as it is, a file through its directory (only that file is bound)."""
    if len(binds) > protocol.MAX_BINDS:
        raise UsageError(f"at most {protocol.MAX_BINDS} binds over the image (got {len(binds)})")
    out = []
    for i, bind in enumerate(binds):
        tag = f"bind{i}"
        if bind.host.is_dir():
            share, name = bind.host, "-"
        elif bind.host.is_file():
            share, name = bind.host.parent, bind.host.name
        else:
            raise UsageError(f"bind {bind.host}:{bind.guest}: {bind.host} is neither a file nor a directory")
        if " " in bind.guest or " " in name:
            raise UsageError(f"bind {bind.host}:{bind.guest}: kiln binds paths without spaces")
        out.append((tag, share, f"{tag} {bind.guest} {name} {int(bind.read_only)}", bind.read_only))
    return tuple(out)


def vm_spec(m: Manifest, name: str, kernel: Path, rootfs: Path, cfg: RunConfig) -> tuple[VmSpec, list[str]]:
    """The cold boot of an image whose parts are these files (checked by the caller), under `cfg`; and notices.
    kiln run's parts come from the store; the OCI runtime's from a bundle (kiln.engine)."""
    hosts = cfg.volume_hosts(m.entry.volumes)
    if (cfg.ports or cfg.lans) and not m.kernel.network:
        raise UsageError(f"image {name} has no network (its app declares no ports and uses no sockets)")
    accel, note = accelerator.choose(cfg.accel, kernel)
    tag = f"qemu-{os.getpid()}-{secrets.token_hex(4)}"
    # init's forwarder gives the app each published port's client address (kiln.guest.protocol.CLIENTS)
    clients = m.entry.client_address and m.kernel.network
    # published ports go through kiln's relay (kiln.targets.relay) to QEMU's forwards on loopback
    forwards = tuple(PortMap(host_ip="127.0.0.1", host=free_port(), guest=p.guest) for p in cfg.ports)
    spec = VmSpec(
        kernel=kernel,
        rootfs=rootfs,
        accel=accel,
        ports=forwards if cfg.relay else cfg.ports,
        network=m.kernel.network,
        qmp_socket=cfg.qmp_socket or socket_dir(home_dir("run")) / f"{tag}.qmp",
        control_socket=cfg.control_socket or socket_dir(home_dir("run")) / f"{tag}.ctl",
        memory_mib=cfg.memory_mib or m.entry.memory_mib,
        cmdline=(f"{protocol.SEED}={secrets.token_hex(32)}",),
        quiet=not cfg.kernel_log,
        verity_table=dm_table(m.rootfs.verity),
        volumes=tuple((volume_tag(i), host) for i, host in enumerate(hosts) if host is not None),
        env=tuple(sorted(cfg.extra_env.items())),
        argv=None if cfg.args is None else m.entry.argv_with(cfg.args),
        lans=cfg.lans,
        isolated=cfg.isolated,
        gdb_port=cfg.gdb_port,
        gdb_wait=cfg.gdb_wait,
        secrets=(cfg.secrets.directory, cfg.secrets.lines()) if cfg.secrets else None,
        binds=bind_shares(cfg.binds),
        tmpfs=cfg.tmpfs,
        clients=clients,
        via_clients=clients and cfg.client_address and bool(cfg.ports),
    )
    return spec, [note] if note else []


def cold_plan(spec: VmSpec, notes: list[str], name: str, cfg: RunConfig, m: Manifest, qemu: str) -> Plan:
    """The plan that boots `spec` cold."""
    assert spec.qmp_socket and spec.control_socket
    return Plan(
        target="qemu",
        image=name,
        argv=command(spec, qemu),
        notes=notes,
        qmp_socket=spec.qmp_socket,
        control_socket=spec.control_socket,
        cleanup=[spec.qmp_socket, spec.control_socket],
        forwards=list(cfg.ports) if cfg.relay else [],
        upstreams=[p.host for p in spec.ports] if cfg.relay else [],
        client_header=spec.via_clients,
        memory_mib=spec.memory_mib,
        stop_signal=signal_number(cfg.stop_signal or m.entry.stop_signal),
    )


def _when_listening(plan: Plan, ports: list[int], proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
    """Set `ready` once every published port listens in the guest (guest init says so): the relay holds
    connections until then. A VM without a control channel, or gone: ready at once, as before."""
    from kiln.guest.protocol import ControlChannel

    try:
        with ControlChannel(plan.control_socket, timeout=60.0) as channel:  # type: ignore[arg-type]
            channel.wait_listening(ports, timeout=600.0, alive=lambda: proc.poll() is None)
    except (TargetError, OSError):
        pass
    finally:
        ready.set()


class QemuRunner:
    """Running a plan: start QEMU (restoring a snapshot, or booting cold), relay its ports, stop it with a
    grace period, and read the app's exit status from its console. Needs no store: the kiln-oci shim runs
    the plan `kiln-oci create` made."""

    name = "qemu"

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], plan: Plan, grace: float = STOP_GRACE) -> None:
        """The app's stop signal through init, `grace` seconds for it to end (and init to power the VM off);
        then quit through QMP, and kill if QEMU does not go within STOP_TIMEOUT."""
        if proc.poll() is not None:
            return
        if grace > 0 and plan.control_socket and plan.control_socket.exists():
            from kiln.guest.protocol import ControlChannel

            with contextlib.suppress(TargetError, OSError):
                with ControlChannel(plan.control_socket, timeout=2.0) as channel:
                    asked = channel.signal(plan.stop_signal, timeout=2.0)
                if asked:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(grace)
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

    def _launch(self, argv: list[str], sink: BinaryIO) -> Vm:
        proc = _proc.spawn(argv, merge_stderr=False)
        assert proc.stdout is not None and proc.stderr is not None
        return Vm(proc, ConsoleReader(proc.stdout, sink), ConsoleReader(proc.stderr, None), restored=False)

    def _restore(self, plan: Plan, sink: BinaryIO) -> Vm:
        """Restore the snapshot; if that fails and a cold boot is allowed, boot cold (with a notice)."""
        from kiln.targets import snapshot_restore as restore

        assert plan.restore and plan.qmp_socket and plan.control_socket
        vm = self._launch(plan.argv, sink)
        try:
            restore.complete(plan.restore, plan.control_socket, plan.qmp_socket, lambda: vm.proc.poll() is None,
                             via_clients=plan.client_header)  # fmt: skip
            return dataclasses.replace(vm, restored=True)
        except BaseException as err:
            vm.proc.kill()
            vm.proc.wait()
            vm.join()
            if plan.cold is None or not isinstance(err, Exception):
                raise
            detail = vm.errors.lines[-1].decode(errors="replace") if vm.errors.lines else str(err)
            print(f"kiln: restoring the snapshot failed ({detail}); booting cold", file=sys.stderr, flush=True)
            for path in (plan.qmp_socket, plan.control_socket):
                path.unlink(missing_ok=True)
            return self._launch(plan.cold, sink)

    def start(self, plan: Plan, sink: BinaryIO) -> Vm:
        """Start the plan: its published ports first (connections held until the app takes them), then
        restore its snapshot (or boot cold), the console going to `sink`."""
        check_free(plan.forwards)
        ready = threading.Event()
        relays = tuple(
            PortProxy(p, up, ready, header=plan.client_header)
            for p, up in zip(plan.forwards, plan.upstreams, strict=True)
        )
        try:
            vm = self._restore(plan, sink) if plan.restore else self._launch(plan.argv, sink)
            if relays:
                guest = sorted({p.guest for p in plan.forwards})
                threading.Thread(target=_when_listening, args=(plan, guest, vm.proc, ready), daemon=True).start()
            return dataclasses.replace(vm, relays=relays)
        except BaseException:
            for relay in relays:
                relay.close()
            self.cleanup(plan)
            raise

    @staticmethod
    def cleanup(plan: Plan) -> None:
        for path in plan.cleanup:
            path.unlink(missing_ok=True)

    def run(self, plan: Plan, sink: BinaryIO, on_start: Callable[[int], None] | None = None) -> int:
        vm = self.start(plan, sink)
        if on_start:
            on_start(vm.proc.pid)
        try:
            vm.proc.wait()
        except BaseException:
            self.stop(vm.proc, plan)
            raise
        finally:
            vm.join()
            self.cleanup(plan)
        return self.status(vm, plan)

    @staticmethod
    def status(vm: Vm, plan: Plan) -> int:
        """The app's exit status, once QEMU has ended; TargetError when the VM itself failed."""
        proc, console, errors = vm.proc, vm.console, vm.errors
        if console.verity:
            then = f"; then: {console.panic}" if console.panic else ""
            raise TargetError(
                f"image {plan.image}: the guest refused a corrupted block of its root file system "
                f"(dm-verity: {console.verity}){then}"
            )
        if console.exit_status is not None:
            return console.exit_status
        if oom_then_panic(console.oom_killed, console.panic):
            return 128 + signal.SIGKILL  # what init reports for an app the OOM killer ended
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


class QemuTarget(QemuRunner):
    """Planning a boot of an image in the store (then running it as QemuRunner does)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def spec(self, image: Image, cfg: RunConfig) -> tuple[VmSpec, list[str]]:
        """The cold boot of `image` under `cfg`, checked; and one-line notices for the user."""
        cfg.volume_hosts(image.manifest.entry.volumes)  # an unknown volume is an error before any unpacking
        check = not cfg.skip_digest_check
        kernel = unpack.kernel(self.store, image, check)
        rootfs = unpack.rootfs(self.store, image, check)
        return vm_spec(image.manifest, str(image.ref), kernel, rootfs, cfg)

    def plan(self, image: Image, cfg: RunConfig) -> Plan:
        qemu = _proc.require("qemu-system-x86_64")
        spec, notes = self.spec(image, cfg)
        plan = cold_plan(spec, notes, str(image.ref), cfg, image.manifest, qemu)
        cold = (cfg.extra_env or cfg.lans or cfg.isolated or cfg.secrets or cfg.binds or cfg.tmpfs or cfg.gdb_port
                or cfg.args is not None)  # fmt: skip
        if cold and cfg.snapshot == "require":
            raise UsageError(
                "-e, arguments, --gdb and compose networks boot cold: a snapshot's app started without them"
            )
        if cfg.snapshot == "never" or cold:
            return plan
        from kiln.targets import snapshot_match as match  # only a run that may restore needs it

        found, why_not = match.find(self.store, image, spec, qemu)
        if found is None:
            if cfg.snapshot == "require":
                raise UsageError(why_not or f"image {image.ref} has no snapshot (make one: kiln snapshot {image.ref})")
            if why_not:
                plan.notes.append(why_not)
            return plan
        restored = dataclasses.replace(spec, ports=(), ram_file=found.ram, ram_shared=False, incoming=True)
        plan.cold = None if cfg.snapshot == "require" else plan.argv
        plan.argv = command(restored, qemu)
        plan.restore = Restore(
            snapshot=found.digest,
            after=found.record.made_with.after,
            ports=spec.ports,
            state=found.state,
            listening=found.record.ports,
        )
        return plan
