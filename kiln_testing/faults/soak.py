"""A soak of the summoner: summon (a snapshot restore) -> serve -> idle stop, many times in a row, with the
summoner's resources measured after a warm-up and at the end."""

from __future__ import annotations

import httpx

from kiln_testing.faults.load import Resources, resources
from kiln_testing.summoner import Summoner

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
