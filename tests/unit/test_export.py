"""What `kiln export` writes, checked without a daemon: the libvirt domain, the KubeVirt
VirtualMachine (against KubeVirt's OpenAPI definitions) and the reproducible container layers."""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kiln.errors import UsageError
from kiln.export import kubevirt
from kiln.export.libvirt import QEMU_NS, domain_xml
from kiln.export.machine import Machine
from kiln.targets.portmap import PortMap


def machine(network: bool = True, gateway: str = "10.0.2.2") -> Machine:
    image: Any = SimpleNamespace(
        ref="hello-http:latest", manifest=SimpleNamespace(kernel=SimpleNamespace(network=network))
    )
    return Machine(image, Path("/k/vmlinux"), Path("/s/root"), "console=ttyS0 root=/dev/dm-0", 48, (8080,), gateway)


def test_libvirt_domain() -> None:
    xml = domain_xml(
        machine(),
        "hello",
        Path("/o/vmlinux"),
        Path("/o/root.img"),
        Path("/o/console.log"),
        [PortMap(host_ip="127.0.0.1", host=9000, guest=8080)],
        "tcg",
    )
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu" and root.findtext("name") == "hello"
    assert root.find("os/type").get("machine") == "q35"  # type: ignore[union-attr]
    assert root.findtext("os/kernel") == "/o/vmlinux" and root.findtext("os/cmdline") == "console=ttyS0 root=/dev/dm-0"
    disk = root.find("devices/disk")
    assert disk is not None and disk.find("readonly") is not None and disk.find("target").get("dev") == "vda"  # type: ignore[union-attr]
    args = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
    assert args == [
        "-netdev",
        "user,id=kilnnet,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:9000-10.0.2.15:8080",
        "-device",
        "virtio-net-pci,netdev=kilnnet,bus=pcie.0,addr=0x10",
    ]
    quiet = ET.fromstring(domain_xml(machine(network=False), "h", Path("/k"), Path("/d"), Path("/c"), [], "kvm"))
    assert quiet.get("type") == "kvm" and not list(quiet.iter(f"{{{QEMU_NS}}}arg"))


def test_kubevirt_manifest_validates() -> None:
    vm = kubevirt.virtual_machine(machine(gateway=kubevirt.POD_GATEWAY), "hello", "r/d@sha256:1", "r/k@sha256:2")
    kubevirt.validate(vm)
    boot = vm["spec"]["template"]["spec"]["domain"]["firmware"]["kernelBoot"]
    assert boot["kernelArgs"] == "console=ttyS0 root=/dev/dm-0" and boot["container"]["kernelPath"] == "/boot/vmlinux"
    vm["spec"]["template"]["spec"]["domain"]["firmware"]["kernelBoot"]["kernelArg"] = "typo"
    with pytest.raises(UsageError, match=r"not valid for KubeVirt: spec\.template\.spec\.domain\.firmware\.kernelBoot"):
        kubevirt.validate(vm)


def test_layers_are_reproducible(tmp_path: Path) -> None:
    src = tmp_path / "root.img"
    src.write_bytes(b"\0" * 5000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = kubevirt.layer(tmp_path / "a", "disk", [("disk/root.img", src, 0o440, 107)])
    b = kubevirt.layer(tmp_path / "b", "disk", [("disk/root.img", src, 0o440, 107)])
    assert a.digest == b.digest and a.diff_id != a.digest
    with tarfile.open(a.path) as tar:
        member = tar.getmember("disk/root.img")
        assert (member.uid, member.gid, member.mode, member.mtime) == (107, 107, 0o440, 0)
        assert tar.getmember("disk").isdir()
