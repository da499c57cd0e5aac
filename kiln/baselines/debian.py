"""A Debian bookworm root file system made with debootstrap, cached.

    $KILN_HOME/cache/baselines/debian-<variant>/root   the tree
    $KILN_HOME/cache/baselines/debian-<variant>/done   written last: the tree is complete

The mirror is the one apt already uses on this host (from its sources), so the
baseline comes from the same place as every other package kiln installs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from kiln import _proc, atomic
from kiln.errors import KilnError
from kiln.paths import home_dir

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian archive URI in apt's sources (deb822 or one-line format)."""
    files = sorted(sources.glob("sources.list.d/*.sources")) + sorted(sources.glob("sources.list.d/*.list"))
    files.insert(0, sources / "sources.list")
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE) + re.findall(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.MULTILINE
        ):
            if not uri.rstrip("/").endswith(("-security", "debian-security")):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def rootfs(variant: str = "minbase", include: tuple[str, ...] = ()) -> Path:
    """The debootstrapped tree (built on first use: minutes, needs the Debian mirror)."""
    name = f"debian-{variant}" + (f"-{'-'.join(include)}" if include else "")
    final = home_dir("cache", "baselines") / name
    if (final / "done").is_file():
        return final / "root"
    if final.exists():
        shutil.rmtree(final)  # an interrupted earlier attempt
    debootstrap = _proc.require("debootstrap")
    with atomic.staging_dir(final) as tmp:
        argv = [debootstrap, f"--variant={variant}"]
        if include:
            argv.append("--include=" + ",".join(include))
        try:
            _proc.run([*argv, SUITE, tmp / "root", apt_mirror()], what=f"debootstrap of Debian {SUITE} ({variant})")
        except KilnError as err:
            raise KilnError(f"{err} (is the Debian mirror reachable?)") from None
        (tmp / "done").write_text("ok\n")
    return final / "root"
