"""`kiln export disk`: an image as a GPT disk that firmware boots, UEFI or BIOS, for clouds and hypervisors.

    partition 1  EFI system partition (FAT16): systemd-boot and SYSLINUX, one kernel (kiln.export.esp);
                 LegacyBIOSBootable, so SYSLINUX's gptmbr.bin in sector 0 boots it under BIOS
    partition 2  the image's EROFS root, byte for byte (type: Linux root x86-64)
    partition 3  its dm-verity hash tree (type: Linux root verity x86-64)

The root and verity partitions are read-only (GPT attribute 60) and named as the Discoverable Partitions
Specification names them: their UUIDs are the first and last 128 bits of the root hash, and the kernel
finds them by those UUIDs (dm-mod.create with PARTUUID=), on whatever controller the platform gives.
The kernel is the image's own feature set, plus PCI, firmware boot and DHCP, plus the drivers of the
`--platform` (kiln.export.platforms), built and cached like any kiln kernel. The guest takes its address
and name servers by DHCP, powers off when its app ends, and writes its console to the first serial port.

Everything on the disk is derived from the image (GUIDs, timestamps, volume ids), so one image gives one
disk, byte for byte. Nothing on it is writable but the volumes the image declares: each is an ext4
partition of its own after the root (`--volume-size PATH=SIZE`, 64 MiB unless said), named kiln-volN,
which guest init mounts at the volume's path (every disk's kernel carries ext4, and none 9p).

    kiln export disk hello-http -o hello.qcow2 --format qcow2
    kiln export disk hello-http -o hello.tar.gz --cloud gce
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from kiln import _proc, atomic
from kiln.errors import KernelError, UsageError
from kiln.export import esp, platforms
from kiln.guest import protocol
from kiln.image import unpack
from kiln.image.build import kernel_for
from kiln.image.options import QUIET, BuildOptions, Progress
from kiln.store import Image, Store

FORMATS = ("raw", "qcow2", "vmdk", "vhd")
FIRMWARE = ("uefi", "bios", "both")
CLOUDS = ("gce", "aws", "azure")
MIB = 1 << 20
SECTOR = 512
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # Linux root (x86-64)
VERITY_TYPE = "2C7357ED-EBD2-46D9-AEC8-6A67AD2AA0E4"  # Linux root verity (x86-64)
READ_ONLY = "GUID:60"
DATA_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"  # Linux filesystem data: a volume
VOLUME_SIZE = 64 * MIB  # a volume's partition unless --volume-size says


@dataclass(frozen=True)
class Partition:
    name: str
    type: str
    uuid: str
    start: int  # bytes
    size: int  # bytes
    attrs: str = ""


def _uuid(hex32: str) -> str:
    return str(uuid.UUID(hex32[:32]))


def _derived(digest: str, what: str) -> str:
    return _uuid(hashlib.sha256(f"{digest}\n{what}".encode()).hexdigest())


def layout(
    esp_size: int, root_size: int, tree_size: int, root_hash: str, digest: str, bios: bool,
    volumes: tuple[tuple[str, int], ...] = (),
) -> list[Partition]:  # fmt: skip
    """Partitions from 1 MiB, each starting on a MiB; then one per volume (tag, size), named kiln-TAG
    (guest init mounts it by that name)."""
    parts, at = [], MIB
    for name, kind, ident, size, attrs in (
        ("esp", ESP_TYPE, _derived(digest, "esp"), esp_size, "LegacyBIOSBootable" if bios else ""),
        ("root", ROOT_TYPE, _uuid(root_hash[:32]), root_size, READ_ONLY),
        ("root-verity", VERITY_TYPE, _uuid(root_hash[32:]), tree_size, READ_ONLY),
        *((f"kiln-{tag}", DATA_TYPE, _derived(digest, tag), size, "") for tag, size in volumes),
    ):
        parts.append(Partition(name, kind, ident, at, size, attrs))
        at += -(-size // MIB) * MIB
    return parts


def disk_size(parts: list[Partition]) -> int:
    """The last partition's end, rounded up to a MiB, and a MiB for the backup GPT (a whole number of MiB,
    as Azure requires)."""
    end = parts[-1].start + parts[-1].size
    return -(-end // MIB) * MIB + MIB


def sfdisk_script(parts: list[Partition], disk_guid: str) -> str:
    lines = ["label: gpt", f"label-id: {disk_guid}", "unit: sectors", "first-lba: 2048"]
    for p in parts:
        attrs = f', attrs="{p.attrs}"' if p.attrs else ""
        lines.append(
            f"start={p.start // SECTOR}, size={-(-p.size // SECTOR)}, type={p.type}, uuid={p.uuid}, "
            f'name="{p.name}"{attrs}'
        )
    return "\n".join(lines) + "\n"


def _copy_range(src: Path, offset: int, length: int, dest_fd: int, at: int) -> None:
    """Copy `length` bytes of src from `offset` to dest at `at`, leaving blocks of zeros as holes."""
    with open(src, "rb") as f:
        f.seek(offset)
        done = 0
        while done < length:
            chunk = f.read(min(64 * 1024, length - done))
            if not chunk:
                break
            if chunk.count(0) != len(chunk):  # (64 KiB at a time: the holes stay holes)
                os.pwrite(dest_fd, chunk, at + done)
            done += len(chunk)


def kernel_features(image: Image, platform: str) -> tuple[tuple[str, ...], dict[str, str]]:
    return platforms.features(image.manifest.kernel.features, platform)


def volume_sizes(image: Image, sizes: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """(tag, bytes) of each volume the image declares: `sizes` by path, else VOLUME_SIZE."""
    declared = image.manifest.entry.volumes
    unknown = sorted(set(sizes) - set(declared))
    if unknown:
        raise UsageError(f"--volume-size {unknown[0]}: image {image.ref} declares no such volume "
                         f"(it declares: {', '.join(declared) or 'none'})")  # fmt: skip
    return tuple(
        (protocol.volume_tag(i), -(-sizes.get(path, VOLUME_SIZE) // MIB) * MIB) for i, path in enumerate(declared)
    )


def make_volume(out: Path, size: int, ident: str, label: str) -> None:
    """An empty ext4 file system of `size` bytes, the same bytes every time (fixed UUID, hash seed, time)."""
    _proc.run(
        ["mkfs.ext4", "-q", "-F", "-U", ident, "-L", label[:16], "-E", f"hash_seed={ident},lazy_itable_init=0,"
         "lazy_journal_init=0,root_owner=0:0", "-O", "^metadata_csum_seed", out, f"{size // 1024}k"],
        what="making a volume's file system", env={"E2FSPROGS_FAKE_TIME": str(esp.EPOCH)},
    )  # fmt: skip


def cmdline(image: Image, parts: list[Partition]) -> str:
    """The disk's kernel command line: the one `kiln run` proves, with the root found by partition UUID,
    eth0 by DHCP, and a power-off when the app ends."""
    m = image.manifest
    root, tree = (f"PARTUUID={p.uuid}" for p in parts[1:3])  # (volumes follow: init finds them by name)
    boot = protocol.Boot(
        memory_mib=m.entry.memory_mib,
        network=m.kernel.network,
        verity_table=protocol.dm_table(m.rootfs.verity, root, tree),
        root_devices=(root, tree),
        dhcp=True,
        extra=(protocol.POWEROFF,),
    )
    return protocol.kernel_cmdline(boot)


def write_raw(
    store: Store, image: Image, out: Path, platform: str, firmware: str, progress: Progress,
    scratch: Path, sizes: dict[str, int] | None = None, total: int | None = None,
) -> dict[str, object]:  # fmt: skip
    """The raw disk at `out` (a temporary path; the caller renames it); what it holds."""
    m = image.manifest
    volumes = volume_sizes(image, sizes or {})
    feats, why = kernel_features(image, platform)
    try:
        kernel = kernel_for(feats, BuildOptions(), progress)
    except KernelError as err:
        raise KernelError(f"image {image.ref}'s kernel cannot be rebuilt for a disk ({err}): rebuild the image "
                          "with this kiln (kiln build)") from None  # fmt: skip
    if not kernel.bzimage.is_file():
        raise KernelError(f"kernel {kernel.config_hash} has no bzImage: remove {kernel.directory} and export again")
    v = m.rootfs.verity
    rootfs = unpack.rootfs(store, image)
    tree_size = rootfs.stat().st_size - v.hash_offset
    bios, uefi = firmware in ("bios", "both"), firmware in ("uefi", "both")
    record: dict[str, object] = {
        "image": str(image.ref),
        "digest": image.digest,
        "platform": platform,
        "firmware": firmware,
        "kernel": {"config_hash": kernel.config_hash, "features": list(feats), "drivers": why},
    }
    # the ESP's size depends only on its files, and the command line only on the UUIDs: lay out twice
    probe = layout(8 * MIB, v.hash_offset, tree_size, v.root_hash, image.digest, bios, volumes)
    line = cmdline(image, probe)
    record["kernel_cmdline"] = line
    esp_img = scratch / "esp.img"
    listing = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
    esp_size = esp.build(esp_img, kernel.bzimage, line, f"kiln {image.ref}", listing, scratch, uefi, bios)
    parts = layout(esp_size, v.hash_offset, tree_size, v.root_hash, image.digest, bios, volumes)
    assert cmdline(image, parts) == line  # UUIDs do not move with sizes
    size = disk_size(parts)
    if total is not None:
        if total < size:
            need = ", ".join(f"{p.name} {p.size // MIB} MiB" for p in parts)
            raise UsageError(f"--size {total // MIB} MiB is too small for this disk: it needs {-(-size // MIB)} MiB "
                             f"({need})")  # fmt: skip
        size = total
    for p in parts[3:]:
        make_volume(scratch / f"{p.name}.img", p.size, p.uuid, p.name)
    with open(out, "wb") as f:
        f.truncate(size)
    _proc.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", out],
              input=sfdisk_script(parts, _derived(image.digest, "disk")).encode(), what="writing the GPT")  # fmt: skip
    fd = os.open(out, os.O_WRONLY)
    try:
        if bios:
            os.pwrite(fd, esp.gpt_mbr(), 0)
        _copy_range(esp_img, 0, esp_size, fd, parts[0].start)
        _copy_range(rootfs, 0, v.hash_offset, fd, parts[1].start)
        _copy_range(rootfs, v.hash_offset, tree_size, fd, parts[2].start)
        for p in parts[3:]:
            _copy_range(scratch / f"{p.name}.img", 0, p.size, fd, p.start)
        os.fsync(fd)
    finally:
        os.close(fd)
    record["partitions"] = [
        {"name": p.name, "uuid": p.uuid, "type": p.type, "start": p.start, "size": p.size} for p in parts
    ]
    record["size"] = size
    return record


def convert(raw: Path, out: Path, fmt: str, cloud: str | None) -> None:
    """raw -> the format (or the cloud's packaging) at `out` (a temporary path)."""
    if cloud == "gce":  # GCE imports a gzipped tar holding disk.raw (GNU format, sparse)
        with tarfile.open(out, "w:gz", format=tarfile.GNU_FORMAT, compresslevel=9) as tar:
            info = tar.gettarinfo(raw, arcname="disk.raw")
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = esp.EPOCH, 0, 0, "", "", 0o644
            with open(raw, "rb") as f:
                tar.addfile(info, f)
        _fix_gzip_time(out)
        return
    if fmt == "raw":
        os.replace(raw, out)  # sparse as written
        return
    options: list[str] = []
    qemu_fmt = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc"}[fmt]
    if fmt == "vmdk" and cloud == "aws":
        options = ["-o", "subformat=streamOptimized"]
    if fmt == "vhd":
        options = ["-o", "subformat=fixed,force_size=on"]  # Azure: fixed, the size as given (a whole MiB)
    _proc.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", qemu_fmt, *options, raw, out],
              what=f"converting the disk to {fmt}")  # fmt: skip
    if fmt == "vhd":
        _fix_vhd(out, raw)
    elif fmt == "vmdk":
        _fix_vmdk(out, raw)


def _fix_gzip_time(path: Path) -> None:
    """tarfile's gzip header carries the time of writing: zero it (and so one image gives one file)."""
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(b"\0\0\0\0")


def _fix_vhd(path: Path, raw: Path) -> None:
    """qemu-img stamps a VHD's footer with the time and a random UUID: derive both from the disk, so the
    same disk gives the same file, and recompute the footer's checksum (VHD specification, "Hard Disk
    Footer Format")."""
    ident = hashlib.sha256(raw.read_bytes()[: 64 * 1024]).digest()[:16]
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size - SECTOR)
        footer = bytearray(f.read(SECTOR))
        footer[24:28] = b"\0\0\0\0"  # seconds since 2000-01-01
        footer[68:84] = ident
        footer[64:68] = b"\0\0\0\0"
        footer[64:68] = ((~sum(footer)) & 0xFFFFFFFF).to_bytes(4, "big")
        f.seek(size - SECTOR)
        f.write(footer)


def _fix_vmdk(path: Path, raw: Path) -> None:
    """qemu-img gives a VMDK's descriptor a random content id (CID, in hex of any length): derive it from
    the disk instead. The descriptor is text in a NUL-padded area of its own (sector 1 on)."""
    import re

    cid = hashlib.sha256(raw.read_bytes()[: 64 * 1024]).hexdigest()[:8]
    with open(path, "r+b") as f:
        f.seek(SECTOR)
        area = f.read(64 * 1024)
        text = area.split(b"\0", 1)[0]
        fixed = re.sub(rb"(?m)^CID=[0-9a-f]+$", b"CID=" + cid.encode(), text, count=1)
        if len(fixed) < len(area):
            f.seek(SECTOR)
            f.write(fixed + b"\0" * (len(text) - len(fixed) + 1))


def export(
    store: Store,
    image: Image,
    out: Path,
    *,
    platform: str = "generic",
    firmware: str = "both",
    fmt: str = "raw",
    cloud: str | None = None,
    force: bool = False,
    progress: Progress = QUIET,
    sizes: dict[str, int] | None = None,
    size: int | None = None,
) -> dict[str, object]:
    """Write the disk to `out` (through a temporary file beside it, renamed when whole); what it holds."""
    platforms.platform(platform)
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    if firmware not in FIRMWARE:
        raise UsageError(f"unknown firmware {firmware!r} (one of: {', '.join(FIRMWARE)})")
    if cloud is not None:
        if cloud not in CLOUDS:
            raise UsageError(f"unknown cloud {cloud!r} (one of: {', '.join(CLOUDS)})")
        allowed = {"gce": ("raw",), "aws": ("raw", "vmdk"), "azure": ("vhd",)}[cloud]
        if fmt == "raw" and cloud == "azure":
            fmt = "vhd"
        if fmt not in allowed:
            raise UsageError(f"--cloud {cloud} takes --format {' or '.join(allowed)}, not {fmt}")
    if out.exists() and not force:
        raise UsageError(f"{out} exists (--force replaces it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.sweep(out.parent, lambda n: n.startswith(f".{out.name}.") and n.endswith(".tmp"))
    # a directory of its own beside the output: the file is made under its final name (a VMDK names
    # itself in its descriptor), then moved into place whole
    work = out.parent / f".{out.name}.{atomic.owner()}.tmp"
    work.mkdir()
    try:
        raw, made = work / "disk.raw", work / out.name
        with store.staging() as scratch:
            record = write_raw(store, image, raw, platform, firmware, progress, scratch, sizes, size)
        convert(raw, made, fmt, cloud)
        atomic.install_file(made, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record.update({"output": str(out), "format": fmt, "cloud": cloud, "allocated": out.stat().st_blocks * 512,
                   "apparent": out.stat().st_size})  # fmt: skip
    return record
