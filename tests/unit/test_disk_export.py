"""kiln export disk's parts that need no VM: platforms and their kernel fragments, the GPT layout and
the sfdisk script, the command line, the loaders' configs, the VHD footer and VMDK descriptor fixes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kiln.errors import UsageError
from kiln.export import disk, esp, platforms
from kiln.kernel.config import available_features, merge
from kiln.targets.qemu_command import DISK_NICS, DISK_STORAGE, DiskVmSpec, VmSpec, disk_command, kernel_cmdline

ROOT_HASH = "ab" * 16 + "cd" * 16
DIGEST = "sha256:" + "0" * 64
MIB = 1 << 20


def test_every_platform_has_fragments_that_say_why() -> None:
    for name, p in platforms.PLATFORMS.items():
        feats, why = platforms.features(("base", "virtio-net"), name)
        assert set(platforms.DISK_FEATURES) <= set(feats) and set(p.fragments) <= set(feats)
        assert set(why) == set(platforms.DISK_FEATURES) | set(p.fragments) and all(why.values())
        assert all(f in available_features() for f in feats)
    generic = platforms.PLATFORMS["generic"].fragments
    assert set(generic) == {f for p in platforms.PLATFORMS.values() if p.name != "generic" for f in p.fragments}


def test_the_generic_fragments_turn_on_each_platforms_drivers() -> None:
    options = merge(platforms.features(("base",), "generic")[0], "6.1").options
    for driver in ("CONFIG_BLK_DEV_NVME", "CONFIG_ENA_ETHERNET", "CONFIG_SCSI_VIRTIO", "CONFIG_VMWARE_PVSCSI",
                   "CONFIG_VMXNET3", "CONFIG_SATA_AHCI", "CONFIG_E1000", "CONFIG_HYPERV_STORAGE", "CONFIG_HYPERV_NET",
                   "CONFIG_EFI_STUB", "CONFIG_IP_PNP_DHCP", "CONFIG_EFI_PARTITION"):  # fmt: skip
        assert options.get(driver) == "y", driver


def test_unknown_platform_is_one_line() -> None:
    with pytest.raises(UsageError, match="unknown platform 'openstack' \\(one of: qemu, gce"):
        platforms.platform("openstack")


def test_layout_aligns_partitions_and_names_them_by_the_root_hash() -> None:
    parts = disk.layout(3 * MIB, 6 * MIB + 4096, 57344, ROOT_HASH, DIGEST, bios=True)
    assert [p.name for p in parts] == ["esp", "root", "root-verity"]
    assert all(p.start % MIB == 0 for p in parts)
    assert parts[1].start == parts[0].start + 3 * MIB and parts[2].start == parts[1].start + 7 * MIB
    assert parts[1].uuid.replace("-", "") == ROOT_HASH[:32] and parts[2].uuid.replace("-", "") == ROOT_HASH[32:]
    assert parts[0].attrs == "LegacyBIOSBootable" and parts[1].attrs == parts[2].attrs == "GUID:60"
    assert disk.layout(3 * MIB, MIB, 4096, ROOT_HASH, DIGEST, bios=False)[0].attrs == ""
    size = disk.disk_size(parts)
    assert size % MIB == 0 and size >= parts[-1].start + parts[-1].size + 33 * 512  # room for the backup GPT


def test_sfdisk_takes_the_script(tmp_path: Path) -> None:
    parts = disk.layout(3 * MIB, 2 * MIB, 16384, ROOT_HASH, DIGEST, bios=True)
    image = tmp_path / "d.img"
    with open(image, "wb") as f:
        f.truncate(disk.disk_size(parts))
    script = disk.sfdisk_script(parts, "11111111-2222-3333-4444-555555555555")
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)], input=script.encode(), check=True)
    dump = subprocess.run(["sfdisk", "-d", str(image)], capture_output=True, text=True, check=True).stdout
    assert "label-id: 11111111-2222-3333-4444-555555555555" in dump
    assert dump.count("GUID:60") == 2 and "LegacyBIOSBootable" in dump


def test_the_disk_command_line_finds_the_root_by_partuuid_and_asks_dhcp() -> None:
    spec = VmSpec(kernel=Path("k"), rootfs=Path("r"), memory_mib=48, accel="tcg", verity_table="root,,,ro,0 8 verity",
                  root_devices=("PARTUUID=a", "PARTUUID=b"), dhcp=True, cmdline=("kiln.poweroff",))  # fmt: skip
    line = kernel_cmdline(spec)
    assert "dm-mod.waitfor=PARTUUID=a,PARTUUID=b" in line and "ip=dhcp" in line and "kiln.poweroff" in line
    assert "kiln.ip=" not in line and "kiln.gw=" not in line
    microvm = kernel_cmdline(VmSpec(kernel=Path("k"), rootfs=Path("r"), memory_mib=48, accel="tcg",
                                    verity_table="t"))  # fmt: skip
    assert "dm-mod.waitfor=/dev/vda" in microvm and "kiln.ip=10.0.2.15/24" in microvm and "ip=dhcp" not in microvm


def test_loader_configs_boot_at_once_and_cannot_be_edited() -> None:
    assert "timeout 0" in esp.loader_conf() and "editor no" in esp.loader_conf()
    assert esp.entry_conf("kiln x", "console=ttyS0 ro").endswith("options console=ttyS0 ro\n")
    cfg = esp.syslinux_cfg("console=ttyS0 ro")
    assert "SERIAL 0 115200" in cfg and "APPEND console=ttyS0 ro" in cfg and "TIMEOUT 0" in cfg


@pytest.mark.parametrize("storage", sorted(DISK_STORAGE))
def test_disk_command_per_controller(storage: str) -> None:
    argv = disk_command(DiskVmSpec(Path("d.img"), "raw", 128, "tcg", "bios", None, "pc", storage, "e1000"))
    assert "pflash" not in " ".join(argv) and "file=d.img,format=raw,if=none,id=disk0,snapshot=on" in argv
    assert argv[argv.index("-machine") + 1] == "pc"
    uefi = disk_command(DiskVmSpec(Path("d.img"), "qcow2", 128, "tcg", "uefi", Path("v.fd"), "q35", storage))
    assert (
        any("OVMF_CODE" in a and "readonly=on" in a for a in uefi) and "if=pflash,format=raw,unit=1,file=v.fd" in uefi
    )
    assert set(DISK_NICS) == {"virtio-net", "e1000", "vmxnet3"}
    with pytest.raises(UsageError):
        disk_command(DiskVmSpec(Path("d.img"), "raw", 128, "tcg", "bios", None, "pc", "floppy"))


def test_vhd_footer_is_fixed_and_its_checksum_holds(tmp_path: Path) -> None:
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"\1" * MIB)
    outs = []
    for i in range(2):
        out = tmp_path / f"d{i}.vhd"
        disk.convert(raw, out, "vhd", None)
        outs.append(out.read_bytes())
        footer = outs[-1][-512:]
        assert footer[:8] == b"conectix"
        stored = int.from_bytes(footer[64:68], "big")
        zeroed = footer[:64] + b"\0\0\0\0" + footer[68:]
        assert stored == (~sum(zeroed)) & 0xFFFFFFFF
    assert outs[0] == outs[1]
    info = subprocess.run(["qemu-img", "info", "-f", "vpc", str(tmp_path / "d0.vhd")], capture_output=True, text=True)
    assert info.returncode == 0 and "virtual size: 1 MiB" in info.stdout


def test_vmdk_content_id_is_derived(tmp_path: Path) -> None:
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"\2" * MIB)
    got = []
    for i in range(3):
        (tmp_path / str(i)).mkdir()
        out = tmp_path / str(i) / "d.vmdk"
        disk.convert(raw, out, "vmdk", None)
        got.append(out.read_bytes())
    assert got[0] == got[1] == got[2]
    subprocess.run(["qemu-img", "check", "-f", "vmdk", str(tmp_path / "0" / "d.vmdk")], check=True, capture_output=True)
