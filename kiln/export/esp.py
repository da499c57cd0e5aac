"""The EFI system partition of a firmware-booted disk (kiln.export.disk): one FAT file system that both
firmware kinds boot from, with one copy of the kernel.

    /EFI/BOOT/BOOTX64.EFI       systemd-boot, at the path UEFI firmware falls back to (no NVRAM entry)
    /loader/loader.conf         timeout 0, editor no: the entry boots at once and cannot be edited
    /loader/entries/kiln.conf   the kernel and its command line (the dm-verity root hash with it)
    /syslinux/                  SYSLINUX for BIOS (its MBR, gptmbr.bin, chains to this partition)
    /syslinux/syslinux.cfg      the same kernel, the same command line, the console on the first serial port
    /kiln/vmlinuz               the kernel: a bzImage with Linux's EFI stub
    /kiln/export.json           what the disk was made from and for (platform, drivers and why)

The command line lives in the loaders' configs, not in a unified kernel image: one kernel serves UEFI
and BIOS, and nothing in it changes per image. It is sealed only as far as the ESP is: whoever can write
the ESP can change the root hash it names (and then the root too). Secure Boot would need a UKI, signed.

Made with the tools for it (mkfs.fat, mtools, syslinux), with fixed volume ids and timestamps
(SOURCE_DATE_EPOCH), so one image gives the same partition byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

from kiln import _proc
from kiln.errors import ToolMissingError

SYSTEMD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
GPT_MBR = Path("/usr/lib/syslinux/mbr/gptmbr.bin")
EPOCH = 315532800  # 1980-01-01, FAT's first day: every timestamp on the partition
VOLUME_ID = "4b494c4e"  # "KILN"
MIB = 1 << 20


def _need(path: Path, package: str) -> Path:
    if not path.is_file():
        raise ToolMissingError(f"{path} is missing: apt-get install {package}")
    return path


def loader_conf() -> str:
    return "timeout 0\neditor no\nauto-entries no\nauto-firmware no\ndefault kiln.conf\n"


def entry_conf(title: str, cmdline: str) -> str:
    return f"title {title}\nlinux /kiln/vmlinuz\noptions {cmdline}\n"


def syslinux_cfg(cmdline: str) -> str:
    return (
        f"SERIAL 0 115200\nDEFAULT kiln\nPROMPT 0\nTIMEOUT 0\nLABEL kiln\n  LINUX /kiln/vmlinuz\n  APPEND {cmdline}\n"
    )


def build(
    out: Path, bzimage: Path, cmdline: str, title: str, record: bytes, scratch: Path, uefi: bool, bios: bool
) -> int:
    """Write the ESP as a file system image at `out`, with the loaders of the firmware asked for; its size
    in bytes (whole MiB)."""
    files = {"kiln/vmlinuz": bzimage.read_bytes(), "kiln/export.json": record}
    if uefi:
        files["EFI/BOOT/BOOTX64.EFI"] = _need(SYSTEMD_BOOT, "systemd-boot-efi").read_bytes()
        files["loader/loader.conf"] = loader_conf().encode()
        files["loader/entries/kiln.conf"] = entry_conf(title, cmdline).encode()
    if bios:
        _need(GPT_MBR, "syslinux-common")
        files["syslinux/syslinux.cfg"] = syslinux_cfg(cmdline).encode()
    # room for the files, SYSLINUX (~180 KiB), the FATs and directories; FAT16 with 512-byte clusters
    size = -(-(sum(len(d) for d in files.values()) + 2 * MIB) // MIB) * MIB
    env = {"SOURCE_DATE_EPOCH": str(EPOCH), "MTOOLS_SKIP_CHECK": "1"}
    out.unlink(missing_ok=True)
    _proc.run(
        ["mkfs.fat", "--invariant", "-F", "16", "-s", "1", "-i", VOLUME_ID, "-n", "KILN-ESP", "-C", out,
         str(size // 1024)],
        what="making the EFI system partition", env=env,
    )  # fmt: skip
    dirs = sorted({str(Path(p).parent) for p in files})
    every = sorted({"/".join(d.split("/")[: i + 1]) for d in dirs for i in range(len(d.split("/")))})
    _proc.run(["mmd", "-i", out, *(f"::/{d}" for d in every)], what="making the ESP's directories", env=env)
    staged = scratch / "esp-files"
    for rel, data in files.items():
        path = staged / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (EPOCH, EPOCH))
        _proc.run(["mcopy", "-m", "-i", out, path, f"::/{rel}"], what=f"copying {rel} to the ESP", env=env)
    if bios:
        _proc.run(["syslinux", "--install", "--directory", "/syslinux", out], what="installing SYSLINUX", env=env)
    return size


def gpt_mbr() -> bytes:
    """SYSLINUX's MBR for GPT disks: the first 440 bytes of sector 0, before the protective MBR's table.
    It boots the partition marked LegacyBIOSBootable (the ESP)."""
    return _need(GPT_MBR, "syslinux-common").read_bytes()[:440]
