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
from kiln.targets.portmap import PortMap
from kiln.targets.qemu_command import cpu_vendor

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
NET_SLOT = "0x10"  # the network card's slot on q35's root bus, clear of what libvirt assigns


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def domain_xml(
    machine: Machine, name: str, kernel: Path, disk: Path, console: Path, ports: list[PortMap], accel: str
) -> str:
    ET.register_namespace("qemu", QEMU_NS)
    domain = ET.Element("domain", {"type": "kvm" if accel == "kvm" else "qemu"})
    _sub(domain, "name", name)
    _sub(domain, "memory", str(machine.memory_mib), unit="MiB")
    _sub(domain, "vcpu", "1")
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_, "kernel", str(kernel))
    _sub(os_, "cmdline", machine.cmdline)
    if accel == "kvm":
        cpu = _sub(domain, "cpu", mode="host-passthrough")
        if cpu_vendor() == "AuthenticAMD":  # QEMU 7.2 with KVM on AMD (see kiln.targets.qemu_command)
            _sub(cpu, "feature", policy="disable", name="arch-capabilities")
    else:
        _sub(domain, "cpu", mode="maximum")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "destroy")
    _sub(domain, "on_crash", "destroy")
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
    if machine.image.manifest.kernel.network:
        guest = machine.guest_ip.split("/", 1)[0]
        forwards = "".join(f",hostfwd=tcp:{p.host_ip}:{p.host}-{guest}:{p.guest}" for p in ports)
        # the user network's own address is the gateway the kernel command line names
        net = f"user,id=kilnnet,net={machine.gateway.rsplit('.', 1)[0]}.0/24,host={machine.gateway}{forwards}"
        args = _sub(domain, f"{{{QEMU_NS}}}commandline")
        # an address of its own on the root bus: libvirt gives slots from 1 up to its root ports
        for value in ("-netdev", net, "-device", f"virtio-net-pci,netdev=kilnnet,bus=pcie.0,addr={NET_SLOT}"):
            _sub(args, f"{{{QEMU_NS}}}arg", value=value)
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
