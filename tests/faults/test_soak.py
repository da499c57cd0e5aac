"""A soak of the summoner: summon (a snapshot restore) -> serve -> idle stop, 100 times in a row (KILN_SOAK_CYCLES;
bench/faults.py runs 1,000). Every client gets its answer, and across it the summoner's resident memory, open
files, threads and instance directories do not grow."""

from __future__ import annotations

import os

import pytest

from kiln_testing.faults.soak import RSS_SLACK_KIB, soak
from kiln_testing.ports import free_port
from kiln_testing.summoner import Summoner

CYCLES = int(os.environ.get("KILN_SOAK_CYCLES", "100"))


@pytest.mark.vm
def test_the_summoner_holds_over_many_cycles(
    clone_snapshot: str,
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
