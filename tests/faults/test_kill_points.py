"""kiln killed with SIGKILL at sampled steps of each long operation, and run on a disk that fills up part way
(tests.faults.harness). `make faults` tries every point (bench/faults.py); KILN_FAULTS_SEED=N repeats a run's
sample, KILN_FAULTS_SAMPLE=N tries N more points of each operation."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln_testing.faults.harness import Discovery, Home, KillPoint, Operation, discover, disk_trial, kill_trial
from tests.faults.conftest import SEED

OPERATIONS = ["build", "kernel build", "pull", "push", "snapshot", "compose up", "export", "export disk"]
SAMPLE = int(os.environ.get("KILN_FAULTS_SAMPLE", "1"))


def sample(points: list[KillPoint], rng: random.Random, n: int) -> list[KillPoint]:
    """The last commit (the rename that makes the result: a tag, an index entry, an output), a timed point,
    and `n` more at random."""
    renames = [p for p in points if p.syscall.startswith("rename")]
    timed = [p for p in points if not p.syscall]
    chosen = [renames[-1]] if renames else []
    if timed:
        chosen.append(rng.choice(timed))
    rest = [p for p in points if p not in chosen]
    return chosen + rng.sample(rest, min(n, len(rest)))


_found: dict[str, Discovery] = {}


def found(op: Operation, template: Home, root: Path) -> Discovery:
    if op.name not in _found:
        _found[op.name] = discover(op, template, root)
    return _found[op.name]


@pytest.mark.vm
@pytest.mark.parametrize("name", OPERATIONS)
def test_killed_at_sampled_steps(
    name: str, fault_ops: dict[str, Operation], fault_template: Callable[[str], Home], rng: random.Random,
    tmp_path: Path,
) -> None:  # fmt: skip
    op = fault_ops[name]
    template = fault_template(op.template)
    d = found(op, template, tmp_path / "discover")
    if name not in ("push",):  # a push writes nothing of its own: only timed points
        assert any(p.syscall for p in d.points), f"{name}: no write of kiln's own was seen"
    reached = []
    for i, point in enumerate(sample(d.points, rng, 0 if name == "kernel build" else SAMPLE)):
        trial = kill_trial(op, point, template, tmp_path / f"trial-{i}")
        assert trial.outcome != "failed", f"{name}, killed at {point.what} (KILN_FAULTS_SEED={SEED}): {trial.problems}"
        reached.append(trial.outcome == "held")
    assert any(reached), f"{name}: no kill point was reached (KILN_FAULTS_SEED={SEED})"


@pytest.mark.vm
@pytest.mark.parametrize("name", [n for n in OPERATIONS if n != "push"])  # a push writes nothing to the store
def test_a_full_disk_fails_in_one_line_and_leaves_the_store_as_it_was(
    name: str, fault_ops: dict[str, Operation], fault_template: Callable[[str], Home], rng: random.Random,
    tmp_path: Path,
) -> None:  # fmt: skip
    if os.geteuid() != 0:
        pytest.skip("a tmpfs of a given size needs root (mount -t tmpfs)")
    op = fault_ops[name]
    template = fault_template(op.template)
    d = found(op, template, tmp_path / "discover")
    assert d.peak_bytes > 0, f"{name}: it wrote nothing to KILN_HOME"
    fraction = round(rng.uniform(0.05, 0.9), 2)
    trial = disk_trial(op, template, tmp_path / "disk", fraction, d.peak_bytes)
    assert trial.outcome == "held", f"{name}, {trial.point} (KILN_FAULTS_SEED={SEED}): {trial.problems} {trial.detail}"
    assert "no space left on device" in trial.detail, trial.detail
