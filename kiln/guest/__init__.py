"""The guest side: init (kiln/guest/init/, C split by concern), the PID 1 of every kiln VM (and of
the unix sandbox), and start.py, the start-up hook of Python apps (faulthandler for `kiln stack`,
then the app).

`init_binary()` compiles init with the host's gcc once per source and compiler,
and caches the result under $KILN_HOME/cache/init/.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from kiln import _proc, atomic
from kiln.errors import ToolMissingError
from kiln.paths import home_dir

INIT_DIR = Path(__file__).parent / "init"
START_SOURCE = Path(__file__).parent / "start.py"
CFLAGS = ("-Os", "-Wall", "-Wextra", "-Werror", "-s")


def init_binary() -> Path:
    """The compiled guest init, built on first use."""
    gcc = _proc.require("gcc")
    try:
        version = subprocess.run([gcc, "--version"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise ToolMissingError(f"gcc does not run ({err}): apt-get install gcc libc6-dev") from None
    sources = sorted(INIT_DIR.glob("*.[ch]"))
    digest = hashlib.sha256(version + " ".join(CFLAGS).encode())
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    key = digest.hexdigest()[:16]
    final = home_dir("cache", "init") / key
    if (final / "init").is_file():
        return final / "init"
    with atomic.staging_dir(final) as tmp:
        _proc.run(
            [gcc, *CFLAGS, "-o", tmp / "init", *(s for s in sources if s.suffix == ".c")],
            what="compiling the guest init",
        )
    return final / "init"
