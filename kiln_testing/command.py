"""The kiln command line as tests and benchmarks run it, and where the repository's apps are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "apps"
KILN = str(Path(sys.executable).parent / "kiln")


def kiln(
    *args: str, env: dict[str, str], timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `kiln ARGS` with `env` (its KILN_HOME), output captured; `check`: AssertionError on failure."""
    proc = subprocess.run([KILN, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kiln {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
