"""kiln export disk and kiln export firecracker: hello-http as a GPT disk that real firmware boots (OVMF for
UEFI, SeaBIOS for BIOS) on the controllers and network cards clouds give a guest, under QEMU/TCG; its
formats, its cloud packaging, its seal; and Firecracker's config, validated against Firecracker's own
specification (Firecracker itself needs KVM, which this machine lacks)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kiln.targets.portmap import PortMap
from kiln.targets.qemu_command import OVMF_VARS, DiskVmSpec, disk_command
from kiln_testing.answers import wait_for_answer
from kiln_testing.command import kiln
from kiln_testing.ports import free_port

pytestmark = [pytest.mark.vm, pytest.mark.kernel]


@pytest.fixture(scope="module")
def disk(hello_image: str, session_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hello-http on a raw disk for every platform (--platform generic), both firmware kinds."""
    out = tmp_path_factory.mktemp("disk") / "hello.img"
    kiln("export", "disk", hello_image, "-o", str(out), env=session_env, check=True, timeout=1800)
    return out


class Booted:
    """A PC booting a disk through its firmware, its console in a file."""

    def __init__(self, spec: DiskVmSpec, console: Path) -> None:
        self.console = console
        self.proc = subprocess.Popen(
            disk_command(spec), stdin=subprocess.DEVNULL, stdout=console.open("wb"), stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        return self.console.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture()
def boot(tmp_path: Path) -> Iterator:
    booted: list[Booted] = []

    def start(image: Path, firmware: str, machine: str, storage: str, nic: str, fmt: str = "raw") -> tuple[Booted, int]:
        port = free_port()
        vars_ = tmp_path / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_)
        spec = DiskVmSpec(
            disk=image, disk_format=fmt, memory_mib=128, accel="tcg", firmware=firmware, vars=vars_,
            machine=machine, storage=storage, nic=nic, ports=(PortMap(host_ip="127.0.0.1", host=port, guest=8080),),
        )  # fmt: skip
        vm = Booted(spec, tmp_path / f"console-{len(booted)}.log")
        booted.append(vm)
        return vm, port

    yield start
    for vm in booted:
        vm.stop()


def answer(vm: Booted, port: int, timeout: float = 240) -> httpx.Response:
    """The VM's first HTTP answer; its console if it ends first or none comes."""
    return wait_for_answer(port, timeout=timeout, poll=1, alive=lambda: vm.proc.poll() is None, context=vm.text)


@pytest.mark.parametrize(
    ("firmware", "machine", "storage", "nic"),
    [
        ("uefi", "q35", "virtio-blk", "virtio-net"),  # QEMU, libvirt
        ("bios", "pc", "ahci", "e1000"),  # VirtualBox
        ("uefi", "q35", "nvme", "virtio-net"),  # AWS's disks
        ("bios", "pc", "pvscsi", "vmxnet3"),  # VMware (OVMF has no PVSCSI driver; SeaBIOS has)
        ("uefi", "q35", "virtio-scsi", "virtio-net"),  # GCE's disks
    ],
)
def test_firmware_boots_the_disk_and_dhcp_gives_the_address(
    disk: Path, boot, firmware: str, machine: str, storage: str, nic: str
) -> None:
    vm, port = boot(disk, firmware, machine, storage, nic)
    r = answer(vm, port)
    assert r.status_code == 200 and "kiln" in r.text
    console = vm.text()
    assert ("SYSLINUX" in console) == (firmware == "bios"), console[-2000:]
    assert "hello-http listening" in console


def test_the_disk_is_laid_out_as_the_spec_says(disk: Path, session_env: dict[str, str], hello_image: str) -> None:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert [p["name"] for p in parts] == ["esp", "root", "root-verity"]
    assert parts[0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" and "LegacyBIOSBootable" in parts[0]["attrs"]
    manifest = json.loads(kiln("inspect", "--json", hello_image, env=session_env, check=True).stdout)["manifest"]
    root_hash = manifest["rootfs"]["verity"]["root_hash"]
    # the Discoverable Partitions Specification's UUIDs: the root hash's halves
    assert parts[1]["uuid"].replace("-", "").lower() == root_hash[:32]
    assert parts[2]["uuid"].replace("-", "").lower() == root_hash[32:]
    assert all("GUID:60" in p["attrs"] for p in parts[1:])  # read-only
    assert disk.stat().st_size % (1 << 20) == 0
    # the ESP holds the loaders, one kernel and the command line that names the root by partition UUID
    listing = subprocess.run(
        ["mdir", "-/", "-b", "-i", f"{disk}@@{parts[0]['start'] * 512}", "::/"],
        capture_output=True, text=True, check=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    for path in ("EFI/BOOT/BOOTX64.EFI", "loader/entries/kiln.conf", "syslinux/syslinux.cfg", "kiln/vmlinuz"):
        assert f"::/{path}" in listing, listing
    entry = subprocess.run(
        ["mtype", "-i", f"{disk}@@{parts[0]['start'] * 512}", "::/loader/entries/kiln.conf"],
        capture_output=True, text=True, check=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    assert f"partuuid={parts[1]['uuid'].lower()}" in entry.lower() and "ip=dhcp" in entry
    assert "kiln.ip=" not in entry  # no address of QEMU's on the command line: it comes from DHCP


def test_two_exports_are_the_same_file(
    disk: Path, hello_image: str, session_env: dict[str, str], tmp_path: Path
) -> None:
    again = tmp_path / "again.img"
    kiln("export", "disk", hello_image, "-o", str(again), env=session_env, check=True, timeout=600)
    assert again.read_bytes() == disk.read_bytes()


def test_formats_pass_qemu_img_and_the_qcow2_boots(
    hello_image: str, session_env: dict[str, str], tmp_path: Path, boot
) -> None:
    made = {}
    for fmt, qemu_fmt in (("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vhd", "vpc")):
        out = tmp_path / f"hello.{fmt}"
        kiln("export", "disk", hello_image, "-o", str(out), "--format", fmt, env=session_env, check=True, timeout=600)
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", qemu_fmt, str(out)],
                                         capture_output=True, check=True).stdout)  # fmt: skip
        assert info["format"] == qemu_fmt and info["virtual-size"] % (1 << 20) == 0
        if fmt != "vhd":  # qemu-img check knows qcow2 and vmdk (and not vpc)
            subprocess.run(["qemu-img", "check", "-f", qemu_fmt, str(out)], check=True, capture_output=True)
        made[fmt] = out
    vm, port = boot(made["qcow2"], "uefi", "q35", "virtio-blk", "virtio-net", fmt="qcow2")
    assert answer(vm, port).status_code == 200


def test_cloud_packaging(disk: Path, hello_image: str, session_env: dict[str, str], tmp_path: Path) -> None:
    gce = tmp_path / "hello.tar.gz"
    kiln("export", "disk", hello_image, "-o", str(gce), "--cloud", "gce", env=session_env, check=True, timeout=600)
    with tarfile.open(gce) as tar:
        assert tar.getnames() == ["disk.raw"]
        member = tar.extractfile("disk.raw")
        assert member is not None and member.read() == disk.read_bytes()
    azure = tmp_path / "hello.vhd"
    kiln("export", "disk", hello_image, "-o", str(azure), "--cloud", "azure", env=session_env, check=True, timeout=600)
    size = azure.stat().st_size
    assert (size - 512) % (1 << 20) == 0  # fixed: the data, a whole number of MiB, then the footer
    footer = azure.read_bytes()[-512:]
    assert footer[:8] == b"conectix" and int.from_bytes(footer[60:64], "big") == 2  # disk type 2: fixed
    aws = tmp_path / "hello.vmdk"
    kiln("export", "disk", hello_image, "-o", str(aws), "--cloud", "aws", "--format", "vmdk",
         env=session_env, check=True, timeout=600)  # fmt: skip
    assert b'createType="streamOptimized"' in aws.read_bytes()[:4096]
    refused = kiln("export", "disk", hello_image, "-o", str(tmp_path / "x.qcow2"), "--cloud", "azure",
                   "--format", "qcow2", env=session_env)  # fmt: skip
    assert refused.returncode != 0 and "--cloud azure takes --format vhd" in refused.stderr


def test_a_flipped_byte_in_the_root_stops_the_boot(disk: Path, boot, tmp_path: Path) -> None:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout)
    root = table["partitiontable"]["partitions"][1]
    damaged = tmp_path / "damaged.img"
    shutil.copyfile(disk, damaged)
    data = bytearray(damaged.read_bytes())
    size = root["size"] * 512
    # a byte in every 64 KiB of the root: whatever the kernel reads first is damaged
    for off in range(root["start"] * 512 + 4096, root["start"] * 512 + size, 64 * 1024):
        data[off] ^= 0xFF
    damaged.write_bytes(bytes(data))
    vm, _port = boot(damaged, "uefi", "q35", "virtio-blk", "virtio-net")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and vm.proc.poll() is None and "verity" not in vm.text():
        time.sleep(1)
    time.sleep(3)
    console = vm.text()
    assert "verity" in console and ("corrupted" in console or "failed" in console), console[-3000:]
    assert "hello-http listening" not in console


def test_bad_input_gets_one_line(hello_image: str, session_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "x.img"
    for args, said in (
        (["--platform", "openstack"], "unknown platform 'openstack'"),
        (["--format", "vdi"], "unknown format 'vdi'"),
        (["--firmware", "coreboot"], "unknown firmware 'coreboot'"),
        (["--cloud", "oracle"], "unknown cloud 'oracle'"),
    ):
        proc = kiln("export", "disk", hello_image, "-o", str(out), *args, env=session_env)
        assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0 and said in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not out.exists()
    out.write_bytes(b"mine")
    proc = kiln("export", "disk", hello_image, "-o", str(out), env=session_env)
    assert proc.returncode != 0 and "exists (--force replaces it)" in proc.stderr and out.read_bytes() == b"mine"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_firecracker_config_validates_against_firecrackers_spec(
    hello_image: str, session_env: dict[str, str], tmp_path: Path
) -> None:
    from kiln.errors import UsageError
    from kiln.export import firecracker

    out = tmp_path / "fc"
    cfg = json.loads(kiln("export", "firecracker", hello_image, "-o", str(out), "--json",
                          env=session_env, check=True).stdout)  # fmt: skip
    assert json.loads((out / "config.json").read_text()) == cfg
    firecracker.validate(cfg)  # what was written is valid; and the validator does refuse what is not
    with pytest.raises(UsageError, match="not valid for Firecracker"):
        firecracker.validate({**cfg, "machine-config": {"vcpu_count": 1}})
    with pytest.raises(UsageError, match="not valid for Firecracker"):
        firecracker.validate({**cfg, "serial-console": {}})
    assert Path(cfg["boot-source"]["kernel_image_path"]).read_bytes()[:4] == b"\x7fELF"  # uncompressed vmlinux
    drive = cfg["drives"][0]
    assert drive["is_read_only"] and not drive["is_root_device"]
    # the boot arguments are the microvm target's (kiln run): the same parameters but the run's own
    argv = shlex.split(kiln("run", "--dry-run", hello_image, env=session_env, check=True).stdout)
    run_args = set(argv[argv.index("-append") + 1].split())
    fc_args = set(cfg["boot-source"]["boot_args"].split())
    differ = {a.split("=", 1)[0] for a in run_args ^ fc_args}
    # kiln.clients: kiln run's relay hands connections to init's forwarder; Firecracker's tap reaches the app itself
    assert differ <= {"kiln.seed", "kiln.ip", "kiln.gw", "kiln.clients"}, differ
    assert "kiln.clients" not in fc_args
    assert "kiln.ip=172.16.0.2/30" in fc_args and cfg["network-interfaces"][0]["host_dev_name"] == "tap0"


def test_declared_volumes_become_writable_partitions(
    sealed_image: str,
    session_env: dict[str, str],
    tmp_path: Path,
    boot,
) -> None:
    out = tmp_path / "sealed.img"
    done = json.loads(kiln("export", "disk", sealed_image, "-o", str(out), "--volume-size", "/data=32M", "--json",
                           env=session_env, check=True, timeout=1800).stdout)  # fmt: skip
    assert "ext4" in done["kernel"]["drivers"]
    parts = json.loads(subprocess.run(["sfdisk", "--json", str(out)], capture_output=True, check=True).stdout)
    volume = parts["partitiontable"]["partitions"][3]
    assert volume["name"] == "kiln-vol0" and volume["size"] * 512 == 32 << 20 and "attrs" not in volume
    vm, port = boot(out, "uefi", "q35", "virtio-blk", "virtio-net")
    answer(vm, port)
    get = lambda path: httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30).text  # noqa: E731
    assert get("/write?path=/data/note") == "done"  # the volume's partition
    assert get("/read?path=/data/note") == "written by the guest\n"
    assert get("/write?path=/app/note") == "EROFS"  # the root stays sealed
    # the name servers came from DHCP too: /etc/resolv.conf is the kernel's /proc/net/pnp (QEMU's DNS is .3)
    assert "nameserver 10.0.2.3" in get("/read?path=/etc/resolv.conf")
    assert "no host directory given" not in vm.text()
    # sizes that do not fit, and volumes the image does not declare: one line each
    small = kiln("export", "disk", sealed_image, "-o", str(tmp_path / "s.img"), "--size", "16M", env=session_env)
    assert small.returncode != 0 and "--size 16 MiB is too small for this disk" in small.stderr
    other = kiln("export", "disk", sealed_image, "-o", str(tmp_path / "o.img"), "--volume-size", "/logs=8M",
                 env=session_env)  # fmt: skip
    assert other.returncode != 0 and "declares no such volume" in other.stderr and "/data" in other.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
