"""The one place that builds a QEMU command line.

kiln's guests: microvm with PVH boot of an uncompressed vmlinux, no firmware,
no PCI: the root file system on virtio-blk (read-only), user-mode networking
on virtio-net with host port forwards, virtio-rng for entropy, the 8250
console on stdio, isa-debug-exit for the app's exit status, a QMP socket, and
the control channel to guest init (a second UART, ttyS1; kiln.guest.protocol).

Snapshots (kiln.summon.snapshot): the guest's RAM can live in a file
(memory-backend-file): shared while a snapshot is made, so the file *is* the
RAM, and private (copy-on-write) in every clone restored from it; the
migration stream then carries only device state (x-ignore-shared), and a
restore is the same command line plus -incoming.

The benchmarks' traditional VM (`pc_command`): a q35 PC with firmware, a
compressed distribution kernel and its initramfs, a writable virtio-pci disk
(snapshot: the image on disk never changes) and virtio-net-pci (and a second
one on a private segment, for the compose baseline). Both share the
accelerator, CPU model, memory, console and port-forward settings.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import UsageError
from kiln.guest import protocol
from kiln.targets.base import Lan
from kiln.targets.portmap import PortMap

GUEST_IP = protocol.GUEST_IP
GATEWAY = protocol.GATEWAY
DEBUG_EXIT = "isa-debug-exit,iobase=0xf4,iosize=0x04"
CONTROL_UART = "isa-serial,chardev=control,iobase=0x2f8,irq=3"  # ttyS1 in the guest
# TCG's translation cache for kiln's guests, in MiB. QEMU's default lets it grow to
# 1 GiB; a unikernel's code is small, and 32 MiB cut a hello-http VM's host RSS from
# 151 to 129 MiB with the same boot time (16 MiB: 110 MiB but 40% slower to boot).
TCG_TB_MIB = 32
# A VM restored from a snapshot translates only what it runs from then on (no boot): 16 MiB served
# hello-http as fast (first answer 223-325 ms, then 5.6-8.5 ms a request) with 11 MiB less PSS per
# clone; 8 MiB thrashed (150 ms a request).
TCG_TB_MIB_RESTORED = 16


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
    control_socket: Path | None = None  # the host end of the control channel (kiln.guest.protocol)
    ram_file: Path | None = None  # guest RAM in this file (snapshots), instead of anonymous memory
    ram_shared: bool = False  # True: writes go to ram_file (making a snapshot); False: copy-on-write
    incoming: bool = False  # restore: wait for the saved state (QMP migrate-incoming, see kiln.snapshot)
    env: tuple[tuple[str, str], ...] = ()  # KEY=VALUE for the app, over the image's (kiln.env)
    argv: tuple[str, ...] | None = None  # the app's argv instead of the image's (kiln.argv)
    guest_ip: str = GUEST_IP  # eth0's address and gateway: QEMU's user network (KubeVirt's pod network differs)
    gateway: str = GATEWAY
    lans: tuple[Lan, ...] = ()  # NICs on private segments (compose's networks): eth1, eth2, ...
    isolated: bool = False  # the user network reaches nothing but the published ports (restrict=on)
    gdb_port: int | None = None  # QEMU's gdbstub on loopback
    gdb_wait: bool = False  # start paused (-S) until the debugger continues
    root_devices: tuple[str, ...] = ("/dev/vda",)  # what the dm table names, waited for before it is set up
    dhcp: bool = False  # eth0 by the kernel's DHCP client (a firmware-booted disk), not kiln.ip/kiln.gw
    secrets: tuple[Path, tuple[str, ...]] | None = None  # (host directory, kiln.secrets lines): compose's secrets
    binds: tuple[tuple[str, Path, str, bool], ...] = ()  # (9p tag, host directory, kiln.binds line, read-only)
    tmpfs: tuple[str, ...] = ()  # directories of the image under a fresh tmpfs (kiln.tmpfs)
    clients: bool = False  # the guest runs init's forwarder of published ports' connections (protocol.CLIENTS)
    via_clients: bool = False  # the port forwards go to it, each connection opened by kiln's PROXY line

    def boot(self) -> protocol.Boot:
        """What this VM's kernel and init are told on the command line."""
        return protocol.Boot(
            memory_mib=self.memory_mib,
            verity_table=self.verity_table,
            root_devices=self.root_devices,
            quiet=self.quiet,
            network=self.network,
            dhcp=self.dhcp,
            guest_ip=self.guest_ip,
            gateway=self.gateway,
            lan_addresses=tuple(lan.address for lan in self.lans),
            hosts=tuple(dict.fromkeys(h for lan in self.lans for h in lan.hosts)),
            env=self.env,
            argv=self.argv,
            secrets=self.secrets[1] if self.secrets else (),
            binds=tuple(line for _, _, line, _ in self.binds),
            tmpfs=self.tmpfs,
            clients=self.clients,
            extra=self.cmdline,
        )


def device_set(spec: VmSpec) -> str:
    """The guest's hardware, as a snapshot must find it again to be restored (paths and ports aside)."""
    devices = ["microvm", "debug-exit", "virtio-blk", "virtio-rng"]
    if spec.network:
        devices.append("virtio-net")
    devices += [f"9p:{tag}" for tag, _ in spec.volumes]
    if spec.secrets:
        devices.append(f"9p:{protocol.SECRETS_TAG}")
    devices += [f"9p:{tag}" for tag, _, _, _ in spec.binds]
    devices += [f"virtio-net:lan{i}" for i in range(len(spec.lans))]
    if spec.control_socket:
        devices.append("uart:control")
    return ",".join(devices)


def kernel_cmdline(spec: VmSpec) -> str:
    """The spec's kernel command line (kiln.guest.protocol writes it)."""
    return protocol.kernel_cmdline(spec.boot())


def accel_option(accel: str, restored: bool = False) -> str:
    """-accel for kiln's guests: KVM as it is; TCG with a translation cache sized for a unikernel."""
    if accel != "tcg":
        return accel
    return f"tcg,tb-size={TCG_TB_MIB_RESTORED if restored else TCG_TB_MIB}"


def _common(qemu: str, machine: str, accel: str, memory_mib: int, accel_opt: str | None = None) -> list[str]:
    """What every guest gets: machine, accelerator, CPU, RAM, one vCPU, no defaults, console on stdio."""
    return [
        qemu,
        "-machine",
        machine,
        "-accel",
        accel_opt or accel,
        "-cpu",
        cpu_model(accel),
        "-m",
        f"{memory_mib}M",
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
    ]


def forward_rule(port: PortMap, via_clients: bool) -> str:
    """QEMU's hostfwd rule for a published port: to the app's port, or to init's forwarder (which the
    relay's PROXY line tells the app's port)."""
    return f"tcp:{port.host_ip}:{port.host}-:{protocol.CLIENTS_PORT if via_clients else port.guest}"


def _user_net(ports: tuple[PortMap, ...], device: str, isolated: bool = False, via_clients: bool = False) -> list[str]:
    """QEMU's user network: the published ports forwarded in; `isolated`: nothing else in or out (restrict=on)."""
    forwards = "".join(f",hostfwd={forward_rule(p, via_clients)}" for p in ports)
    restrict = ",restrict=on" if isolated else ""
    return ["-netdev", f"user,id=net0{restrict}{forwards}", "-device", f"{device},netdev=net0"]


def _lan_net(lan: Lan, device: str, index: int = 0) -> list[str]:
    """A NIC on a private segment: QEMU's stream netdev to the segment's switch (kiln.compose.switch)."""
    return [
        "-netdev",
        f"stream,id=lan{index},server=off,addr.type=unix,addr.path={lan.socket}",
        "-device",
        f"{device},netdev=lan{index},mac={lan.mac}",
    ]


def command(spec: VmSpec, qemu: str = "qemu-system-x86_64") -> list[str]:
    machine = "microvm,acpi=off,x-option-roms=off"
    if spec.ram_file:
        machine += ",memory-backend=ram"
    argv = [
        *_common(qemu, machine, spec.accel, spec.memory_mib, accel_option(spec.accel, spec.incoming)),
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
        argv += _user_net(spec.ports, "virtio-net-device", spec.isolated, spec.via_clients)
    for i, lan in enumerate(spec.lans):  # after the user network, in order: the guest names them eth1, eth2, ...
        argv += _lan_net(lan, "virtio-net-device", i)
    for tag, host in spec.volumes:
        argv += [
            "-fsdev",
            f"local,id={tag},path={host},security_model=none",
            "-device",
            f"virtio-9p-device,fsdev={tag},mount_tag={tag}",
        ]
    for tag, host, _, read_only in spec.binds:
        argv += [
            "-fsdev",
            f"local,id={tag},path={host},security_model=none" + (",readonly=on" if read_only else ""),
            "-device",
            f"virtio-9p-device,fsdev={tag},mount_tag={tag}",
        ]
    if spec.secrets:  # read-only: the guest copies them out, and can write nothing back
        argv += [
            "-fsdev",
            f"local,id={protocol.SECRETS_TAG},path={spec.secrets[0]},security_model=none,readonly=on",
            "-device",
            f"virtio-9p-device,fsdev={protocol.SECRETS_TAG},mount_tag={protocol.SECRETS_TAG}",
        ]
    if spec.control_socket:
        argv += [
            "-chardev",
            f"socket,id=control,path={spec.control_socket},server=on,wait=off",
            "-device",
            CONTROL_UART,
        ]
    if spec.qmp_socket:
        argv += ["-qmp", f"unix:{spec.qmp_socket},server=on,wait=off"]
    if spec.ram_file:
        share = "on" if spec.ram_shared else "off"
        argv += [
            "-object",
            f"memory-backend-file,id=ram,size={spec.memory_mib}M,mem-path={spec.ram_file},share={share}",
        ]
    if spec.incoming:
        argv += ["-incoming", "defer"]
    if spec.gdb_port:
        argv += ["-gdb", f"tcp:127.0.0.1:{spec.gdb_port}"]
        if spec.gdb_wait:
            argv.append("-S")
    return argv


@dataclass(frozen=True)
class PcVmSpec:
    """A traditional VM: distribution kernel + initramfs, a writable disk with a full system."""

    kernel: Path
    initrd: Path
    disk: Path
    memory_mib: int
    accel: str
    ports: tuple[PortMap, ...] = ()
    cmdline: tuple[str, ...] = ("root=/dev/vda", "rw", "quiet")
    lan: Lan | None = None  # a second NIC on a private segment (the compose baseline); the guest configures it
    uefi_vars: Path | None = None  # set: OVMF (UEFI) loads the kernel, this its variable store; else SeaBIOS


def _ovmf(vars_: Path) -> list[str]:
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_}"]  # fmt: skip


def pc_command(spec: PcVmSpec, qemu: str = "qemu-system-x86_64") -> list[str]:
    """QEMU's own accelerator defaults, as a traditional VM is usually run."""
    return [
        *_common(qemu, "q35", spec.accel, spec.memory_mib),
        *(_ovmf(spec.uefi_vars) if spec.uefi_vars else []),
        "-kernel",
        str(spec.kernel),
        "-initrd",
        str(spec.initrd),
        "-append",
        " ".join(("console=ttyS0", *spec.cmdline)),
        "-drive",
        f"file={spec.disk},format=raw,if=virtio,snapshot=on",
        "-device",
        "virtio-rng-pci",
        *_user_net(spec.ports, "virtio-net-pci"),
        *(_lan_net(spec.lan, "virtio-net-pci") if spec.lan else []),
    ]


# Firmware-booted disks (kiln.export.disk), on the controllers and network cards clouds give a guest.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
DISK_STORAGE = {
    "virtio-blk": ["-device", "virtio-blk-pci,drive=disk0"],
    "virtio-scsi": ["-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0"],
    "nvme": ["-device", "nvme,drive=disk0,serial=kiln0"],
    "ahci": ["-device", "ahci,id=ahci0", "-device", "ide-hd,drive=disk0,bus=ahci0.0"],
    "pvscsi": ["-device", "pvscsi,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0"],
}
DISK_NICS = {"virtio-net": "virtio-net-pci", "e1000": "e1000", "vmxnet3": "vmxnet3"}


@dataclass(frozen=True)
class DiskVmSpec:
    """A PC that boots a disk through its firmware, as a cloud or a hypervisor would."""

    disk: Path
    disk_format: str  # raw, qcow2, vmdk, vpc
    memory_mib: int
    accel: str
    firmware: str = "uefi"  # uefi (OVMF; `vars` is its writable copy of the variable store) or bios (SeaBIOS)
    vars: Path | None = None
    machine: str = "q35"
    storage: str = "virtio-blk"
    nic: str = "virtio-net"
    ports: tuple[PortMap, ...] = ()


def disk_command(spec: DiskVmSpec, qemu: str = "qemu-system-x86_64") -> list[str]:
    """The disk never changes: the guest's writes (there should be none) go to a throwaway overlay."""
    if spec.storage not in DISK_STORAGE or spec.nic not in DISK_NICS:
        raise UsageError(f"unknown disk controller {spec.storage!r} or network card {spec.nic!r}")
    argv = _common(qemu, spec.machine, spec.accel, spec.memory_mib)
    if spec.firmware == "uefi":
        assert spec.vars is not None, "OVMF needs a writable copy of its variable store"
        argv += _ovmf(spec.vars)
    return [
        *argv,
        "-drive",
        f"file={spec.disk},format={spec.disk_format},if=none,id=disk0,snapshot=on",
        *DISK_STORAGE[spec.storage],
        *_user_net(spec.ports, DISK_NICS[spec.nic]),
    ]


def decode_exit(returncode: int) -> int | None:
    """QEMU's exit code after isa-debug-exit -> the value the guest wrote, if it wrote one."""
    if returncode > 0 and returncode % 2 == 1:
        return returncode >> 1
    return None
