"""Snapshots under TCG: restore on another port, clones that differ, a fresh clock, and every way a
snapshot can fail to fit (damaged, other memory, other QEMU) ending in a cold boot with a notice."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from kiln_testing.answers import wait_for_answer
from kiln_testing.command import FIXTURES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port

CLONE_APP = FIXTURES / "clone-http"


def _store_files(env: dict[str, str]) -> dict[str, str]:
    """Every file of the store (but its scratch tmp/) and the digest of its content."""
    root = Path(env["KILN_HOME"]) / "store"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "tmp" and p.name != "lock"
    }


def _first_answer(port: int, timeout: float = 60) -> dict[str, object]:
    return wait_for_answer(port, timeout=timeout, poll=0.05).json()  # type: ignore[no-any-return]


@pytest.mark.vm
def test_snapshot_is_listed_and_restored_on_another_port(
    clone_snapshot: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    listed = kiln("images", "--json", env=session_env, check=True).stdout
    assert '"after": "ready"' in listed and '"memory_mib": 48' in listed
    assert "after ready, 48 MiB" in kiln("inspect", clone_snapshot, env=session_env, check=True).stdout
    dry = kiln("run", "--dry-run", "-p", "8080:8080", clone_snapshot, env=session_env, check=True).stdout
    assert "-incoming defer" in dry and "share=off" in dry
    assert "-incoming" not in kiln("run", "--dry-run", "--cold", clone_snapshot, env=session_env, check=True).stdout
    port = free_port()  # the snapshot was made with no port published at all
    inst = Instance(clone_snapshot, session_env, "qemu", {port: 8080}, extra=("--snapshot=require",))
    instances.append(inst)
    answer = _first_answer(port)
    assert abs(float(answer["time"]) - time.time()) < 2, answer  # type: ignore[arg-type]
    # the restored guest's forwarder gives the app the client's own address
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30) as client:
        assert client.get(f"http://127.0.0.1:{port}/from-a-second-address").status_code == 200
    assert inst.stop() == 130
    assert "booting cold" not in inst.output
    assert "127.0.0.2 - - [" in inst.output and "GET /from-a-second-address" in inst.output, inst.output


@pytest.mark.vm
def test_clones_of_one_snapshot_differ_and_keep_the_hosts_time(
    clone_snapshot: str, session_env: dict[str, str]
) -> None:
    ports = [free_port(), free_port()]
    names = [f"clone-{i}" for i in range(2)]
    try:
        for name, port in zip(names, ports, strict=True):
            kiln(
                "run",
                "-d",
                "--name",
                name,
                "--snapshot=require",
                "-p",
                f"127.0.0.1:{port}:8080",
                clone_snapshot,
                env=session_env,
                check=True,
            )
        first = [_first_answer(port) for port in ports]
    finally:
        for name in names:
            kiln("rm", "-f", name, env=session_env)
    assert first[0]["random"] != first[1]["random"], first
    for answer in first:
        assert abs(float(answer["time"]) - time.time()) < 2, answer  # type: ignore[arg-type]
    # after = "ready": both run the one app process that was saved (what docs/security.md warns of)
    assert first[0]["started"] == first[1]["started"]


@pytest.mark.vm
def test_after_kernel_clones_start_their_own_app(env: dict[str, str]) -> None:
    kiln("build", str(CLONE_APP), env=env, check=True)
    made = kiln("snapshot", "--after", "kernel", "clone-http", env=env, check=True, timeout=600).stdout
    assert "(kernel, " in made
    ports = [free_port(), free_port()]
    try:
        for i, port in enumerate(ports):
            kiln(
                "run",
                "-d",
                "--name",
                f"k{i}",
                "--snapshot=require",
                "-p",
                f"127.0.0.1:{port}:8080",
                "clone-http",
                env=env,
                check=True,
            )
        first = [_first_answer(port) for port in ports]
    finally:
        for i in range(2):
            kiln("rm", "-f", f"k{i}", env=env)
    assert first[0]["random"] != first[1]["random"]
    assert first[0]["started"] != first[1]["started"]  # each clone started its own app after its seed
    for answer in first:
        assert abs(float(answer["started"]) - time.time()) < 60  # type: ignore[arg-type]


@pytest.mark.vm
def test_damaged_snapshot_is_refused_and_the_vm_boots_cold(env: dict[str, str], instances: list[Instance]) -> None:
    kiln("build", str(CLONE_APP), env=env, check=True)
    record = kiln("snapshot", "--json", "clone-http", env=env, check=True, timeout=600).stdout
    ram = Path(env["KILN_HOME"]) / "store" / "blobs" / "sha256" / record.split('"ram"')[1].split("sha256:")[1][:64]
    with open(ram, "r+b") as f:  # one flipped byte in the saved RAM
        f.seek(1 << 20)
        byte = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([byte[0] ^ 0xFF]))
    before = _store_files(env)
    required = kiln("run", "--snapshot=require", "clone-http", env=env)
    assert required.returncode != 0 and "Traceback" not in required.stderr
    assert "damaged" in required.stderr and len(required.stderr.strip().splitlines()) == 1, required.stderr
    port = free_port()
    inst = Instance("clone-http", env, "qemu", {port: 8080})
    instances.append(inst)
    assert _first_answer(port)["random"]
    inst.stop()
    assert "refusing to restore" in inst.output and "booting cold" in inst.output, inst.output
    assert _store_files(env) == before  # nothing repaired, removed or added behind the user's back


@pytest.mark.vm
def test_other_memory_boots_cold_with_a_notice(
    clone_snapshot: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(clone_snapshot, session_env, "qemu", {port: 8080}, extra=("-m", "64M"))
    instances.append(inst)
    assert _first_answer(port)["random"]
    inst.stop()
    assert "does not fit this run (memory: snapshot 48 MiB, this run 64 MiB): booting cold" in inst.output


@pytest.mark.vm
def test_other_qemu_boots_cold_with_a_notice(
    clone_snapshot: str, session_env: dict[str, str], instances: list[Instance], tmp_path: Path
) -> None:
    wrapper = tmp_path / "bin" / "qemu-system-x86_64"
    wrapper.parent.mkdir()
    wrapper.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "QEMU emulator version 99.0.0"; exit 0; fi\n'
        'exec /usr/bin/qemu-system-x86_64 "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**session_env, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    port = free_port()
    inst = Instance(clone_snapshot, env, "qemu", {port: 8080}, extra=("--accel", "tcg"))
    instances.append(inst)
    assert _first_answer(port)["random"]
    inst.stop()
    assert "this run QEMU emulator version 99.0.0): booting cold" in inst.output, inst.output


def test_snapshot_without_ports_asks_for_after_kernel(session_env: dict[str, str]) -> None:
    kiln("build", str(FIXTURES / "exit3"), env=session_env, check=True)
    proc = kiln("snapshot", "exit3", env=session_env)
    assert proc.returncode != 0 and "--after kernel" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.vm
def test_the_supervisor_restores_again_after_a_crash(clone_snapshot: str, session_env: dict[str, str]) -> None:
    port = free_port()
    kiln("run", "-d", "--name", "phoenix", "--restart", "always", "--snapshot=require", "-p",
         f"127.0.0.1:{port}:8080", clone_snapshot, env=session_env, check=True)  # fmt: skip
    try:
        saved_start = _first_answer(port)["started"]
        state = json.loads(kiln("ps", "--json", env=session_env, check=True).stdout)[0]
        os.kill(int(state["pid"]), 9)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = json.loads(kiln("ps", "--json", env=session_env, check=True).stdout)[0]
            if state["restarts"] == 1 and state["state"] == "running":
                break
            time.sleep(0.2)
        assert state["restarts"] == 1, state
        assert _first_answer(port)["started"] == saved_start  # the same saved app, restored again
    finally:
        kiln("rm", "-f", "phoenix", env=session_env)
