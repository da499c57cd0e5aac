"""The comparison benchmark's smoke test: `--quick` against kiln and the plain
process, for real (QEMU, wrk, a density step of two), and every column there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import COLUMNS
from kiln_testing.command import EXAMPLES, ROOT, kiln
from kiln_testing.homes import SHARED_HOME


def test_quick_bench_reports_every_column_for_kiln_and_the_plain_process(tmp_path: Path, kernel_built: None) -> None:
    out = tmp_path / "benchmarks.md"
    argv = [sys.executable, str(ROOT / "bench" / "hello_http.py"), "--quick", "--stacks", "kiln-qemu,plain"]
    proc = subprocess.run(
        [*argv, "--max-n", "2", "--output", str(out)],
        env={**os.environ, "KILN_HOME": str(SHARED_HOME)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = out.read_text()
    assert "<!-- bench:hello-http:start -->" in md and "**Accelerator: " in md
    rows = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in md.splitlines() if ln.startswith("| ")]
    assert rows[0] == list(COLUMNS)
    by_stack = {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in rows[1:3]}
    assert set(by_stack) == {"kiln (qemu)", "plain process"}
    kiln = by_stack["kiln (qemu)"]
    # Every figure that applies to a unikernel is measured, none is left blank.
    assert all(v != "—" for k, v in kiln.items() if k not in ("image ×",)), kiln
    assert kiln["shell"] == "no" and kiln["min guest memory"].endswith("MiB (default 48)")
    assert by_stack["plain process"]["boot ×"] == "1.00×"
    assert "**error" not in md
    assert "Largest N that answered: **2**" in md

    data = json.loads((tmp_path / "bench" / "hello-http.json").read_text())
    kiln_data = next(s for s in data["stacks"] if s["key"] == "kiln-qemu")
    assert len(kiln_data["boot"]) == 3 and kiln_data["served"] == 100 and kiln_data["wrk"]["requests"] > 0
    assert [s["n"] for s in data["density"]["steps"]] == [1, 2]
    for png in ("boot-time.png", "density-memory.png"):
        assert (tmp_path / "bench" / png).read_bytes()[:4] == b"\x89PNG"
    # The density step removed every instance it started.
    listed = subprocess.run(["pgrep", "-f", "density-2-"], capture_output=True, text=True, check=False)
    assert listed.stdout.strip() == ""


def test_a_density_step_that_times_out_still_removes_every_instance(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import density

    monkeypatch.setenv("KILN_HOME", env["KILN_HOME"])  # the step reads instance state in-process
    kiln("build", str(EXAMPLES / "hello-http"), env=env, check=True)
    # No unikernel boots in half a second under TCG (nor under KVM, with kiln's start-up): the step fails...
    step = density.step(env, 2, "tcg", None, timeout=0.5)
    assert not step.ok and step.seconds is None and "did not answer within 0 s" in step.error
    # ...and leaves nothing behind: no instance, no QEMU, no supervisor.
    assert json.loads(kiln("ps", "-a", "--json", env=env, check=True).stdout) == []
    stray = subprocess.run(["pgrep", "-f", env["KILN_HOME"]], capture_output=True, text=True, check=False)
    assert stray.stdout.strip() == ""
