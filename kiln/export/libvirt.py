"""`kiln export libvirt`: a libvirt domain that boots an image by direct kernel boot.

libvirt has no notion of QEMU's microvm machine, so the domain is a q35 PC with virtio-pci
devices (kiln.export.machine): the kernel with `pci`, the image's root file system as a read-only
virtio disk (vda, so the image's dm-verity table holds), virtio-rng, the console on the first
serial port, written to a file. No ACPI and no firmware tables are needed by the guest.

Published ports: libvirt's own `<interface type='user'>` forwards ports only with the passt
backend, which Debian 12's libvirt does not pair with QEMU 7.2. The domain therefore passes
QEMU the same user-mode network `kiln run` uses (`-netdev user,hostfwd=...` and a virtio-net-pci
device) through libvirt's QEMU namespace (`<qemu:commandline>`); libvirt marks such a domain as
"tainted: custom-argv", and says so in its log.

    kiln export libvirt hello-http -o out/ -p 127.0.0.1:8080:8080
    virsh define out/domain.xml && virsh start hello-http
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from kiln import atomic
from kiln.errors import KilnError, UsageError
from kiln.export.machine import Machine
from kiln.guest.protocol import GATEWAY
from kiln.image.options import QUIET, Progress
from kiln.store import Image, Store
from kiln.targets.portmap import PortMap
from kiln.targets.qemu_command import cpu_vendor

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
NET_SLOT = "0x10"  # the network card's slot on q35's root bus, clear of what libvirt assigns
FIRMWARE_MEMORY_MIB = 128  # the firmware itself (OVMF's) needs more than a unikernel's few tens of MiB


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _cpu_and_lifecycle(domain: ET.Element, accel: str) -> None:
    if accel == "kvm":
        cpu = _sub(domain, "cpu", mode="host-passthrough")
        if cpu_vendor() == "AuthenticAMD":  # QEMU 7.2 with KVM on AMD (see kiln.targets.qemu_command)
            _sub(cpu, "feature", policy="disable", name="arch-capabilities")
    else:
        _sub(domain, "cpu", mode="maximum")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "destroy")
    _sub(domain, "on_crash", "destroy")


def _disk_console_rng(domain: ET.Element, disk: Path, console: Path) -> ET.Element:
    devices = _sub(domain, "devices")
    d = _sub(devices, "disk", type="file", device="disk")
    _sub(d, "driver", name="qemu", type="raw")
    _sub(d, "source", file=str(disk))
    _sub(d, "target", dev="vda", bus="virtio")
    _sub(d, "readonly")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(console))
    _sub(serial, "target", port="0")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="none")
    return devices


def _user_net(domain: ET.Element, ports: list[PortMap], guest: str, gateway: str) -> None:
    """QEMU's user network through libvirt's QEMU namespace (see above); `guest` empty: the address the
    user network's DHCP server gives first."""
    forwards = "".join(f",hostfwd=tcp:{p.host_ip}:{p.host}-{guest}:{p.guest}" for p in ports)
    # the user network's own address is the gateway the guest is told
    net = f"user,id=kilnnet,net={gateway.rsplit('.', 1)[0]}.0/24,host={gateway}{forwards}"
    args = _sub(domain, f"{{{QEMU_NS}}}commandline")
    # an address of its own on the root bus: libvirt gives slots from 1 up to its root ports
    for value in ("-netdev", net, "-device", f"virtio-net-pci,netdev=kilnnet,bus=pcie.0,addr={NET_SLOT}"):
        _sub(args, f"{{{QEMU_NS}}}arg", value=value)


def _domain(name: str, memory_mib: int, accel: str) -> ET.Element:
    ET.register_namespace("qemu", QEMU_NS)
    domain = ET.Element("domain", {"type": "kvm" if accel == "kvm" else "qemu"})
    _sub(domain, "name", name)
    _sub(domain, "memory", str(memory_mib), unit="MiB")
    _sub(domain, "vcpu", "1")
    return domain


def domain_xml(
    machine: Machine, name: str, kernel: Path, disk: Path, console: Path, ports: list[PortMap], accel: str
) -> str:
    domain = _domain(name, machine.memory_mib, accel)
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_, "kernel", str(kernel))
    _sub(os_, "cmdline", machine.cmdline)
    _cpu_and_lifecycle(domain, accel)
    _disk_console_rng(domain, disk, console)
    if machine.image.manifest.kernel.network:
        _user_net(domain, ports, machine.guest_ip.split("/", 1)[0], machine.gateway)
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode") + "\n"


def firmware_domain_xml(
    name: str, memory_mib: int, network: bool, disk: Path, console: Path, ports: list[PortMap], accel: str,
    firmware: str, nvram: Path,
) -> str:  # fmt: skip
    """A q35 domain that boots a disk of `kiln export disk` through its firmware: OVMF (UEFI, its variable
    store in `nvram`) or SeaBIOS; no kernel of libvirt's. The guest takes its address by DHCP."""
    from kiln.targets.qemu_command import OVMF_CODE, OVMF_VARS

    domain = _domain(name, memory_mib, accel)
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    if firmware == "uefi":
        _sub(os_, "loader", str(OVMF_CODE), readonly="yes", type="pflash")
        _sub(os_, "nvram", str(nvram), template=str(OVMF_VARS))
    _sub(os_, "boot", dev="hd")
    _sub(domain, "features").append(ET.Element("acpi"))
    _cpu_and_lifecycle(domain, accel)
    _disk_console_rng(domain, disk, console)
    if network:
        _user_net(domain, ports, "", GATEWAY)
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode") + "\n"


def export(machine: Machine, out: Path, name: str, ports: list[PortMap], accel: str) -> Path:
    """Write out/vmlinux, out/root.img and out/domain.xml (paths absolute: libvirt needs them so)."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    kernel, disk, console = out / "vmlinux", out / "root.img", out / "console.log"
    for source, target in ((machine.kernel, kernel), (machine.rootfs, disk)):
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    xml = domain_xml(machine, name, kernel, disk, console, ports, accel)
    atomic.write_bytes(out / "domain.xml", xml.encode())
    return out / "domain.xml"


def export_firmware(
    store: Store, image: Image, out: Path, name: str, ports: list[PortMap], accel: str, firmware: str,
    progress: Progress = QUIET,
) -> Path:  # fmt: skip
    """Write out/disk.img (kiln export disk, every platform's drivers) and out/domain.xml that boots it
    through `firmware` (uefi or bios)."""
    from kiln.export import disk as disks

    if firmware not in ("uefi", "bios"):
        raise UsageError(f"unknown firmware {firmware!r} (uefi or bios)")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    disk = out / "disk.img"
    disks.export(store, image, disk, firmware=firmware, force=True, progress=progress)
    (out / "OVMF_VARS.fd").unlink(missing_ok=True)  # libvirt copies its template there
    m = image.manifest
    memory = max(m.entry.memory_mib, FIRMWARE_MEMORY_MIB)
    xml = firmware_domain_xml(name, memory, m.kernel.network, disk, out / "console.log", ports,
                              accel, firmware, out / "OVMF_VARS.fd")  # fmt: skip
    atomic.write_bytes(out / "domain.xml", xml.encode())
    return out / "domain.xml"


def define(xml: Path, uri: str, start: bool) -> str:
    """Define the domain through libvirt (and start it); its name. One line if libvirtd is not there."""
    try:
        import libvirt
    except ImportError:
        raise UsageError("--define needs libvirt-python (pip install libvirt-python)") from None
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come back as exceptions, not prints
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise KilnError(f"libvirtd is not running or not reachable at {uri}: {err.get_error_message()}") from None
    try:
        domain = conn.defineXML(xml.read_text())
        if start:
            domain.create()
        return str(domain.name())
    except libvirt.libvirtError as err:
        raise KilnError(f"libvirt refused the domain ({uri}): {err.get_error_message()}") from None
    finally:
        conn.close()
