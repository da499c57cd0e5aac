"""What a refused command must look like, and the store it must leave as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path


def assert_one_line_error(proc: subprocess.CompletedProcess[str], fragment: str, code: int = 1) -> None:
    """Exit `code`, one `kiln: error: ...` line holding `fragment` (the last line), no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    # progress ("==> ...") and notices may come first; the error is one line, and the last
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("kiln: error: "), proc.stderr
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def store_state(env: dict[str, str]) -> list[str]:
    """Every file of the store of env's KILN_HOME (its lock aside)."""
    store = Path(env["KILN_HOME"]) / "store"
    return (
        sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file() and p.name != "lock")
        if store.exists()
        else []
    )
