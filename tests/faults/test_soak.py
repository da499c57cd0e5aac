"""A soak of the summoner: summon (a snapshot restore) -> serve -> idle stop, 100 times in a row (KILN_SOAK_CYCLES;
bench/faults.py runs 1,000). Every client gets its answer, and across it the summoner's resident memory, open
files, threads and instance directories do not grow."""

from __future__ import annotations

import os

import httpx
import pytest

from bench.harness import free_port
from tests.e2e.test_snapshot import clone_snapshot  # noqa: F401 (a fixture)
from tests.e2e.test_summon import Summoner
from tests.faults.load import Resources, resources

CYCLES = int(os.environ.get("KILN_SOAK_CYCLES", "100"))
WARMUP = 5  # cycles before the first measure: imports, the thread pool and the allocator settle
RSS_SLACK_KIB = 8 * 1024  # what the allocator may keep beyond the warm-up, however many cycles


def soak(summoner: Summoner, port: int, cycles: int, kiln_home: str) -> tuple[int, Resources, Resources]:
    """(answered, resources after the warm-up, resources at the end)."""
    answered, start = 0, resources(summoner.proc.pid, kiln_home)
    for i in range(cycles):
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=60)
        answered += r.status_code == 200
        summoner.wait_for("stopped (idle)", timeout=60, count=i + 1)
        if i + 1 == WARMUP:
            start = resources(summoner.proc.pid, kiln_home)
    return answered, start, resources(summoner.proc.pid, kiln_home)


@pytest.mark.vm
def test_the_summoner_holds_over_many_cycles(
    clone_snapshot: str,  # noqa: F811
    session_env: dict[str, str],
) -> None:
    port = free_port()
    s = Summoner(session_env, f"{clone_snapshot}={port}:8080", "--idle", "200ms")
    try:
        answered, start, end = soak(s, port, CYCLES, session_env["KILN_HOME"])
        assert s.log.count("summoned (restore)") == CYCLES
    finally:
        s.stop()
    assert answered == CYCLES
    assert end.files <= start.files, f"{start} -> {end}; opened: {end.opened_since(start)}"
    assert end.threads <= start.threads, f"{start} -> {end}"
    assert end.instance_dirs <= start.instance_dirs, f"{start} -> {end}"
    assert end.rss_kib <= start.rss_kib + RSS_SLACK_KIB, f"{start} -> {end}"
