"""Debian's kernel source: find the linux-source tarball and unpack it once.

The unpacked tree under $KILN_HOME/kernel/src is shared by every config;
builds happen out of tree (make O=...), so the source stays pristine.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kiln import _proc, atomic
from kiln.errors import KernelError
from kiln.paths import home_dir

SOURCE_PACKAGE = "linux-source-6.1"
SRC_ROOT = Path("/usr/src")


@dataclass(frozen=True)
class KernelSource:
    tarball: Path
    version: str  # the Debian package version, e.g. 6.1.192-2

    @property
    def name(self) -> str:
        return self.tarball.name.removesuffix(".tar.xz")


def find_source(src_root: Path = SRC_ROOT) -> KernelSource:
    tarball = src_root / f"{SOURCE_PACKAGE}.tar.xz"
    if not tarball.is_file():
        raise KernelError(
            f"Debian's kernel source is not installed ({tarball} is missing): apt-get install {SOURCE_PACKAGE}"
        )
    try:
        version = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        stat = tarball.stat()
        version = f"{tarball.name}-{stat.st_size}-{int(stat.st_mtime)}"
    return KernelSource(tarball, version)


def unpacked(source: KernelSource) -> Path:
    """The source tree, unpacked on first use (atomically: a cut-off unpack is redone)."""
    final = home_dir("kernel", "src") / f"{source.name}_{source.version}"
    if (final / "Makefile").is_file():
        return final
    with atomic.staging_dir(final) as tmp:
        _proc.run(["tar", "-xf", source.tarball, "-C", tmp, "--strip-components=1"], what=f"unpacking {source.tarball}")
    return final
