"""100 simultaneous first connections to a published port all get HTTP 200 within 30 s, under TCG: a qemu
instance (`kiln run -d -p`, connected to while it boots), the summoner (nothing running when they arrive),
and compose. The relay (kiln.targets.relay) accepts them on the host, holds them until the guest listens and
hands them over as the guest takes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln_testing.command import kiln
from kiln_testing.faults.load import burst
from kiln_testing.ports import free_port

SIZE, DEADLINE = 100, 30.0


@pytest.mark.vm
def test_a_burst_at_a_qemu_instance_as_it_boots(hello_image: str, session_env: dict[str, str]) -> None:
    port = free_port()
    kiln("run", "-d", "--name", "burst-run", "-p", f"127.0.0.1:{port}:8080", hello_image, env=session_env, check=True)
    try:
        got = burst(port, SIZE, DEADLINE)
    finally:
        kiln("rm", "-f", "burst-run", env=session_env)
    assert got.answered == SIZE, str(got)


@pytest.mark.vm
def test_a_burst_through_the_summoner_from_zero(
    clone_snapshot: str,
    session_env: dict[str, str],
) -> None:
    port = free_port()
    kiln("summon", "-d", "--name", "burst", f"{clone_snapshot}={port}:8080", env=session_env, check=True)
    try:
        got = burst(port, SIZE, DEADLINE)
    finally:
        kiln("summon", "--stop", "--name", "burst", env=session_env)
    assert got.answered == SIZE, str(got)


@pytest.mark.vm
def test_a_burst_through_compose(hello_image: str, session_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  web:\n    image: {hello_image}\n    ports: ['127.0.0.1:{port}:8080']\n")
    kiln("compose", "-f", str(compose), "-p", "burst", "up", "-d", env=session_env, check=True)
    try:
        got = burst(port, SIZE, DEADLINE)
    finally:
        kiln("compose", "-f", str(compose), "-p", "burst", "down", env=session_env)
    assert got.answered == SIZE, str(got)
