"""Fixtures of the fault tests: the operations to kill, and their prepared homes (built once a session)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln_testing.faults.harness import Home, Operation
from kiln_testing.faults.operations import operations, template
from kiln_testing.homes import SHARED_HOME
from kiln_testing.registry import Registry

# Which kill points a run tries: a seed of its own each run (printed with every failure), or the one given.
SEED = int(os.environ.get("KILN_FAULTS_SEED") or random.SystemRandom().randrange(1 << 31))


@pytest.fixture(scope="session")
def fault_ops(registry: Registry, kernel_built: None) -> dict[str, Operation]:
    return {op.name: op for op in operations(registry.host, SHARED_HOME / "kernel")}


@pytest.fixture(scope="session")
def fault_template(
    tmp_path_factory: pytest.TempPathFactory, registry: Registry, kernel_built: None
) -> Callable[[str], Home]:
    """The prepared home of a kind ("empty", "image", "kernel", "pushed"), made on first use."""
    made: dict[str, Home] = {}
    base = tmp_path_factory.mktemp("fault-templates")

    def get(kind: str) -> Home:
        if kind not in made:
            made[kind] = template(kind, base / kind, SHARED_HOME / "kernel", registry.host)
        return made[kind]

    return get


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source for one test: the run's seed and the test's name (so each test samples its own)."""
    return random.Random(f"{SEED}:{request.node.name}")


def pytest_report_header() -> str:
    return f"fault harness seed: KILN_FAULTS_SEED={SEED}"


@pytest.fixture(scope="session")
def shared_kernel() -> Path:
    return SHARED_HOME / "kernel"
