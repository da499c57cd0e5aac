"""The attack-surface block of docs/security.md: hello-http beside a Debian minbase
system with Debian's cloud kernel, counted from the real artefacts. The rest of the
page is written by hand and left as it is.

    python bench/surface.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import replace_section
from kiln.surface import Surface, markdown
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home


def main(argv: list[str] | None = None) -> int:  # noqa: ARG001 (no options; one signature for python -m bench)
    with tempfile.TemporaryDirectory(prefix="kiln-surface-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        subprocess.run([KILN, "build", str(ROOT / "examples" / "hello-http")], env=env, check=True, capture_output=True)
        data = json.loads(
            subprocess.run(
                [KILN, "inspect", "--surface", "--json", "hello-http"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    table = markdown([Surface(**data["image"]), Surface(**data["debian"])])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"## Attack surface (measured {stamp})\n\n{table}\n"
    replace_section(ROOT / "docs" / "security.md", "surface", block)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
