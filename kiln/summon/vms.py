"""One summoned VM: started (restored from its snapshot, or booted cold) until its ports listen,
registered as an instance so `kiln ps` and `kiln logs` see it, and stopped again.

Everything here blocks; the server calls it from worker threads. The VM's
ports are forwarded to free loopback ports, which only the summoner's proxy
uses; the published ports belong to the summoner.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kiln import daemon
from kiln.errors import KilnError
from kiln.guest.protocol import ControlChannel
from kiln.paths import forget_socket_dir
from kiln.runtime import events
from kiln.runtime import instance as instances
from kiln.store import Image, Store
from kiln.summon.config import Service
from kiln.targets.base import Plan, RunConfig
from kiln.targets.portmap import PortMap
from kiln.targets.ports import free_port
from kiln.targets.qemu import QemuTarget, Vm
from kiln.targets.relay import Upstream


@dataclass
class SummonedVm:
    service: Service
    plan: Plan
    vm: Vm
    instance: instances.Instance
    console: BinaryIO
    forwards: dict[int, int]  # guest port -> loopback port of the VM's forward
    how: str  # "restore" or "cold"
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    active: int = 0  # open proxied connections
    # connections the VM has not answered yet (the gate of kiln.summon.server)
    upstreams: dict[int, Upstream] = field(default_factory=dict)  # guest port -> the relay's way to it

    @property
    def exited(self) -> bool:
        return self.vm.proc.poll() is not None

    @property
    def idle_for(self) -> float:
        return 0.0 if self.active else time.monotonic() - self.last_activity


def instance_name(service: Service) -> str:
    return f"{service.name}.summoned"


def _clear(directory: Path) -> None:
    """Remove what a summoned instance left, but its events (`kiln events NAME.summoned`)."""
    for entry in directory.iterdir():
        if entry.name.startswith(events.FILE):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _fresh_instance(service: Service, image: Image) -> instances.Instance:
    directory = instances.instances_dir() / instance_name(service)
    if directory.exists():  # left by a summoner that was killed
        old = instances.Instance(directory)
        if old.running():
            raise KilnError(f"instance {old.name} is already running (another summoner?)")
        _clear(directory)
    return instances.create(
        instances.InstanceConfig(
            name=instance_name(service),
            image=str(image.ref),
            digest=image.digest,
            target="qemu",
            run=RunConfig(ports=service.ports, memory_mib=service.memory),
            created=instances.now(),
            summoned_by=os.getpid(),
        )
    )


def start(store: Store, image: Image, service: Service, ready_timeout: float) -> SummonedVm:
    """Summon one VM of `service` and wait until every guest port listens."""
    began = time.monotonic()
    inst = _fresh_instance(service, image)
    guest_ports = sorted({p.guest for p in service.ports})
    forwards = {g: free_port() for g in guest_ports}
    cfg = RunConfig(
        ports=tuple(PortMap(host_ip="127.0.0.1", host=h, guest=g) for g, h in forwards.items()),
        memory_mib=service.memory,
        qmp_socket=inst.qmp_socket,
        control_socket=inst.control_socket,
        relay=False,  # the summoner is the relay (kiln.targets.relay), in front of these loopback forwards
    )
    target = QemuTarget(store)
    console = open(inst.console_log, "ab")  # noqa: SIM115 (open for the VM's life, closed by stop())
    try:
        plan = target.plan(image, cfg)
        vm = target.start(plan, console)
    except BaseException:
        console.close()
        shutil.rmtree(inst.dir, ignore_errors=True)
        raise
    svm = SummonedVm(service, plan, vm, inst, console, forwards, "restore" if vm.restored else "cold")

    def active() -> None:
        svm.last_activity = time.monotonic()

    svm.upstreams = {
        g: Upstream("127.0.0.1", h, activity=active, guest_port=g if plan.client_header else None)
        for g, h in forwards.items()
    }
    try:
        assert plan.control_socket
        saved_listening = vm.restored and plan.restore is not None and set(guest_ports) <= set(plan.restore.listening)
        if not saved_listening:  # a cold boot, a snapshot made "after kernel", or a port it did not listen on
            with ControlChannel(plan.control_socket, timeout=ready_timeout, alive=lambda: not svm.exited) as ctl:
                ctl.wait_listening(guest_ports, ready_timeout, alive=lambda: not svm.exited)
    except BaseException:
        stop(svm)
        raise
    me = daemon.record_of(os.getpid(), sys.argv)  # the summoner is the instance's supervisor
    assert me is not None
    daemon.write(inst.supervisor_daemon().record_path, me)
    state = instances.InstanceState(
        status="running",
        vm_pid=vm.proc.pid,
        vm_start=daemon.proc_start_time(vm.proc.pid),
        started_at=instances.now(),
    )
    inst.write_state(state)
    events.record(inst.dir, "summon", how=svm.how, seconds=round(time.monotonic() - began, 3))
    return svm


def stop(svm: SummonedVm, reason: str = "stop") -> None:
    """Stop the VM (QMP quit, a kill if it lingers) and forget its instance."""
    with contextlib.suppress(Exception):
        QemuTarget.stop(svm.vm.proc, svm.plan)
    if svm.vm.proc.poll() is None:
        svm.vm.proc.kill()
        svm.vm.proc.wait()
    svm.vm.join()
    QemuTarget.cleanup(svm.plan)
    svm.console.close()
    events.record(svm.instance.dir, "idle-stop" if reason == "idle" else "stop", reason=reason)
    _clear(svm.instance.dir)
    forget_socket_dir(svm.instance.dir)
