"""The kiln command line as tests and benchmarks run it, where the repository's apps are, and stopping what
they started as Ctrl-C would."""

from __future__ import annotations

import contextlib
import os
import signal
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


def interrupt(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 30.0, group: bool = False) -> None:
    """SIGINT (what Ctrl-C sends), then SIGKILL if it lingers past `grace` seconds (to its whole session with
    `group`: a process started with start_new_session)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
            proc.wait()
