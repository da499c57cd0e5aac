"""The one place that builds a QEMU command line.

microvm with PVH boot of an uncompressed vmlinux, no firmware, no PCI: the
root file system on virtio-blk (read-only), user-mode networking on
virtio-net with host port forwards, virtio-rng for entropy, the 8250 console
on stdio, isa-debug-exit for the app's exit status, and a QMP socket.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from kiln.targets.ports import PortMap

GUEST_IP = "10.0.2.15/24"
GATEWAY = "10.0.2.2"
DEBUG_EXIT = "isa-debug-exit,iobase=0xf4,iosize=0x04"


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def cpu_model(accel: str, vendor: str | None = None) -> str:
    """-cpu: the host's CPU under KVM (QEMU 7.2 on AMD needs -arch-capabilities), max under TCG."""
    if accel == "kvm":
        return "host,-arch-capabilities" if (vendor or cpu_vendor()) == "AuthenticAMD" else "host"
    return "max"


@dataclass(frozen=True)
class VmSpec:
    kernel: Path
    rootfs: Path
    memory_mib: int
    accel: str  # "kvm" or "tcg"
    ports: tuple[PortMap, ...] = ()
    network: bool = True
    qmp_socket: Path | None = None
    cmdline: tuple[str, ...] = field(default_factory=tuple)  # extra kernel parameters
    quiet: bool = True
    verity_table: str | None = None  # dm-verity table for the root device (see kiln.image.verity)
    volumes: tuple[tuple[str, Path], ...] = ()  # (9p mount tag, host directory)


def kernel_cmdline(spec: VmSpec) -> str:
    if spec.verity_table:
        root = ["root=/dev/dm-0", f'dm-mod.create="{spec.verity_table}"', "dm-mod.waitfor=/dev/vda"]
    else:
        root = ["root=/dev/vda"]
    params = [
        "console=ttyS0",
        *root,
        "rootfstype=erofs",
        "ro",
        "init=/kiln/init",
        "panic=-1",
        "reboot=t",
        "tsc=reliable",
        "no_timer_check",
    ]
    if spec.quiet:
        params.append("quiet")
    if spec.network:
        params += [f"kiln.ip={GUEST_IP}", f"kiln.gw={GATEWAY}"]
    return " ".join(params + list(spec.cmdline))


def command(spec: VmSpec, qemu: str = "qemu-system-x86_64") -> list[str]:
    argv = [
        qemu,
        "-machine",
        "microvm,acpi=off,x-option-roms=off",
        "-accel",
        spec.accel,
        "-cpu",
        cpu_model(spec.accel),
        "-m",
        f"{spec.memory_mib}M",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
        "-device",
        DEBUG_EXIT,
        "-kernel",
        str(spec.kernel),
        "-append",
        kernel_cmdline(spec),
        "-drive",
        f"id=root,file={spec.rootfs},format=raw,if=none,readonly=on",
        "-device",
        "virtio-blk-device,drive=root",
        "-device",
        "virtio-rng-device",
    ]
    if spec.network:
        forwards = "".join(f",hostfwd=tcp:{p.host_ip}:{p.host}-:{p.guest}" for p in spec.ports)
        argv += ["-netdev", f"user,id=net0{forwards}", "-device", "virtio-net-device,netdev=net0"]
    for tag, host in spec.volumes:
        argv += [
            "-fsdev",
            f"local,id={tag},path={host},security_model=none",
            "-device",
            f"virtio-9p-device,fsdev={tag},mount_tag={tag}",
        ]
    if spec.qmp_socket:
        argv += ["-qmp", f"unix:{spec.qmp_socket},server=on,wait=off"]
    return argv


def decode_exit(returncode: int) -> int | None:
    """QEMU's exit code after isa-debug-exit -> the value the guest wrote, if it wrote one."""
    if returncode > 0 and returncode % 2 == 1:
        return returncode >> 1
    return None
