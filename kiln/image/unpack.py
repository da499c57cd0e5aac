"""Turn stored image parts into what a target runs, verifying them first.

    kernel(...)  -> an uncompressed vmlinux, in $KILN_HOME/cache/vmlinux/<digest>/
    rootfs(...)  -> the root file system blob itself (QEMU opens it read-only)
    tree(...)    -> the root file system unpacked, in $KILN_HOME/cache/roots/<digest>/

Every part is checked against the digest in the manifest before it is used;
a mismatch is refused, naming the image and the part.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kiln import atomic
from kiln.errors import StoreError
from kiln.image import erofs
from kiln.paths import home_dir
from kiln.store import Image, Store


def _verified(store: Store, image: Image, part: str, digest: str, check: bool = True) -> Path:
    if not check:
        return store.blob_path(digest)
    try:
        return store.verify_blob(digest, f"the {part} of image {image.ref}")
    except StoreError as err:
        raise StoreError(f"refusing to run: {err}") from None


def kernel(store: Store, image: Image, check: bool = True) -> Path:
    digest = image.manifest.kernel.digest
    blob = _verified(store, image, "kernel", digest, check)
    final = home_dir("cache", "vmlinux") / digest.split(":", 1)[1]
    if (final / "vmlinux").is_file():
        return final / "vmlinux"
    import lzma  # here: the unix target never decompresses a kernel

    with atomic.staging_dir(final) as tmp:
        try:
            with lzma.open(blob) as src, open(tmp / "vmlinux", "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except lzma.LZMAError as err:
            raise StoreError(f"the kernel of image {image.ref} cannot be decompressed: {err}") from None
    return final / "vmlinux"


def rootfs(store: Store, image: Image, check: bool = True) -> Path:
    return _verified(store, image, "root file system", image.manifest.rootfs.digest, check)


def tree(store: Store, image: Image) -> Path:
    blob = rootfs(store, image)
    final = home_dir("cache", "roots") / image.manifest.rootfs.digest.split(":", 1)[1]
    if (final / "kiln" / "init").is_file():
        return final
    with atomic.staging_dir(final) as tmp:
        erofs.unpack(blob, tmp)
        (tmp).chmod(0o755)
    return final
