"""Pack a directory into an EROFS image (mkfs.erofs) and unpack one (fsck.erofs).

EROFS is read-only by design, compresses with LZ4 and is mounted by the
guest kernel straight from the virtio block device. Images are reproducible:
fixed timestamps, root ownership and a UUID derived from the content.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from kiln import _proc

COMPRESSION = "lz4hc"
# LZ4HC's highest level: slower to pack, no slower to read (hello-http's root: -12 KB).
LEVEL = 12
# Physical cluster size: larger clusters compress machine code much better (8.3 -> 7.0 MB here).
# 1 MiB clusters save 70 KB more but make every cold read decompress up to 1 MiB.
PCLUSTER = 131072
# Pack each file's compressed tail inline with its inode instead of in a block of its own
# (kernel >= 5.17): -140 KB on hello-http's 127 files. Debian's mkfs.erofs 1.5 has LZ4 only (no LZMA).
EXTENDED = "ztailpacking"


def tree_uuid(root: Path) -> str:
    """A UUID derived from the file names and contents, for reproducible images."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file() and not path.is_symlink():
            h.update(path.read_bytes())
    return str(uuid.UUID(bytes=h.digest()[:16]))


def pack(root: Path, out: Path, level: int = LEVEL, pcluster: int = PCLUSTER, tailpacking: bool = True) -> None:
    """(The keyword arguments are for bench/gaps.py, which measures the alternatives.)"""
    _proc.run(
        [
            "mkfs.erofs",
            f"-z{COMPRESSION},{level}",
            f"-C{pcluster}",
            *([f"-E{EXTENDED}"] if tailpacking else []),
            "-T0",
            "--all-root",
            f"-U{tree_uuid(root)}",
            "--quiet",
            out,
            root,
        ],
        what="packing the root file system",
    )


def unpack(image: Path, dest: Path) -> None:
    """Extract every file of `image` into the empty directory `dest`, checking each."""
    _proc.run(["fsck.erofs", f"--extract={dest}", "--preserve", image], what=f"unpacking {image.name}")
