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

from kiln import _proc
from kiln.errors import KilnError
from kiln.manifest import Verity
from kiln.store import sha256_file

BLOCK = 4096  # kiln.manifest.Verity.block_size
_ROOT_HASH = re.compile(r"^Root hash:\s*([0-9a-f]{64})\s*$", re.MULTILINE)


def protect(image: Path) -> Verity:
    """Append the hash tree to `image` (in place); return what the kernel needs to check it."""
    size = image.stat().st_size
    if size % BLOCK:
        with open(image, "ab") as f:
            f.write(b"\0" * (BLOCK - size % BLOCK))
        size = image.stat().st_size
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
