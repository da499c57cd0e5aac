"""An image's root file system, its layers applied by umoci, cached by the image's digest.

    $KILN_HOME/cache/oci/<digest>/rootfs        the tree
    $KILN_HOME/cache/oci/<digest>/config.json   the image's config document

`umoci raw unpack --rootless` applies the layers in order with their
whiteouts and opaque directories, hard links and symbolic links, resolving
every path inside the tree (filepath-securejoin): an entry named `../x` or
`/x`, or one under a symbolic link to `/etc`, lands inside the tree, and a
hard link can only name a file of the tree. Rootless, it never makes a device
node (a regular file stands in) and never changes an owner. kiln then clears
every setuid and setgid bit in the tree. A layer umoci cannot apply fails the
build in one line; the tree is made in a scratch directory and renamed into
place only when complete (kiln.atomic.staging_dir).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from kiln import _proc, atomic
from kiln.oci.source import TAG, ImageSourceError
from kiln.paths import home_dir


def unpacked(layout: Path, digest: str, config: dict[str, object]) -> Path:
    """The image's root file system (unpacked on first use)."""
    final = home_dir("cache", "oci") / digest.replace(":", "-")
    if (final / "config.json").is_file():
        return final / "rootfs"
    umoci = _proc.require("umoci")
    with atomic.staging_dir(final) as tmp:
        proc = subprocess.run(
            [umoci, "raw", "unpack", "--rootless", "--image", f"{layout}:{TAG}", str(tmp / "rootfs")],
            capture_output=True,
            text=True,
            check=False,
            env=_proc.tool_env(),
            preexec_fn=_proc.die_with_parent,
        )
        if proc.returncode != 0:
            said = [ln for ln in proc.stderr.splitlines() if "⨯" in ln or "error" in ln.lower()]
            reason = said[-1] if said else proc.stderr.strip().splitlines()[-1:] or ["unknown"]
            raise ImageSourceError(f"the image's layers cannot be applied: {str(reason).strip(' ⨯[]').strip()}")
        clear_special_bits(tmp / "rootfs")
        (tmp / "config.json").write_text(json.dumps(config, sort_keys=True))
    return final / "rootfs"


def clear_special_bits(tree: Path) -> None:
    """No setuid, setgid or sticky-on-files bit survives in the tree."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
