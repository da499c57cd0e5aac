"""dm-verity for the root file system: the guest kernel refuses any block whose
hash does not lead to the root hash on its command line.

The hash tree is appended to the EROFS image (no superblock) by veritysetup at
build time; the root hash and salt go into the manifest, and the qemu target
puts the dm table on the kernel command line (dm-mod.create=), so no initramfs
is needed. The salt is derived from the image, so builds stay reproducible.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import msgspec

from kiln import _proc
from kiln.errors import KilnError

BLOCK = 4096
_ROOT_HASH = re.compile(r"^Root hash:\s*([0-9a-f]{64})\s*$", re.MULTILINE)


Hex64 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Positive = Annotated[int, msgspec.Meta(gt=0)]


class Verity(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Part of the manifest (kiln.manifest says why it is a msgspec Struct)."""

    algorithm: str = "sha256"
    root_hash: Hex64
    salt: Hex64
    block_size: int = BLOCK
    data_blocks: Positive
    hash_offset: Positive  # bytes: where the hash tree starts in the image


def protect(image: Path) -> Verity:
    """Append the hash tree to `image` (in place); return what the kernel needs to check it."""
    size = image.stat().st_size
    if size % BLOCK:
        with open(image, "ab") as f:
            f.write(b"\0" * (BLOCK - size % BLOCK))
        size = image.stat().st_size
    from kiln.store import sha256_file

    salt = sha256_file(image).split(":", 1)[1]
    out = _proc.run(
        [
            "veritysetup",
            "format",
            "--no-superblock",
            f"--hash-offset={size}",
            f"--data-blocks={size // BLOCK}",
            f"--salt={salt}",
            image,
            image,
        ],
        what="building the dm-verity hash tree",
    ).stdout.decode()
    m = _ROOT_HASH.search(out)
    if not m:
        raise KilnError(f"veritysetup printed no root hash: {out.strip()[:200]}")
    return Verity(root_hash=m.group(1), salt=salt, data_blocks=size // BLOCK, hash_offset=size)


def dm_table(v: Verity, device: str = "/dev/vda", hash_device: str | None = None) -> str:
    """The dm-mod.create= value that maps `device` to a verified /dev/dm-0: its hash tree after the data
    on the same device, or at the start of `hash_device` (a disk's verity partition, kiln.export.disk)."""
    sectors = v.data_blocks * v.block_size // 512
    start = 0 if hash_device else v.hash_offset // v.block_size
    return (
        f"root,,,ro,0 {sectors} verity 1 {device} {hash_device or device} {v.block_size} {v.block_size} "
        f"{v.data_blocks} {start} {v.algorithm} {v.root_hash} {v.salt}"
    )
