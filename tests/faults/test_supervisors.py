"""kill -9 of a supervisor, of the summoner and of QEMU, in each state of an instance: starting (before the app
listens), restoring (a summon in progress), serving, stopping (in the app's grace period). Afterwards no VM is
orphaned, `kiln ps` tells the truth, and the next `kiln start` or `kiln summon` works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kiln import daemon
from kiln_testing.answers import wait_for_answer
from kiln_testing.command import KILN, kiln
from kiln_testing.faults.harness import MARKER, marked
from kiln_testing.ports import free_port


def _until(check: Callable[[], object], what: str, timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return found


def _state(env: dict[str, str], name: str) -> dict[str, object]:
    """The instance's state.json, and its supervisor's pid from its record (kiln.daemon)."""
    directory = Path(env["KILN_HOME"]) / "instances" / name
    try:
        state: dict[str, object] = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    supervisor = daemon.read(directory / "supervisor.pid")
    return {**state, "supervisor_pid": supervisor.pid} if supervisor else state


def _ps(env: dict[str, str]) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in json.loads(kiln("ps", "-a", "--json", env=env, check=True).stdout)}


def _alive(pid: object) -> bool:
    return isinstance(pid, int) and Path(f"/proc/{pid}").exists() and "Z" not in _stat(pid)


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _vms(run_id: str) -> list[int]:
    return [pid for pid, name in marked(run_id) if name.startswith("qemu-system")]


@pytest.fixture
def marked_env(session_env: dict[str, str]) -> dict[str, str]:
    """The session's store, and a marker every process started under it inherits (to find what is left)."""
    return {**session_env, MARKER: uuid.uuid4().hex[:12]}


@pytest.mark.vm
@pytest.mark.parametrize("state", ["starting", "serving", "stopping"])
@pytest.mark.parametrize("victim", ["supervisor", "qemu"])
def test_kill9_of_an_instance(victim: str, state: str, hello_image: str, marked_env: dict[str, str]) -> None:
    env, name, port = marked_env, f"fault-{victim}-{state}", free_port()
    run_id = env[MARKER]
    argv = [KILN, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", hello_image]
    runner = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stopper = None
    try:
        if state == "starting":  # before the app listens: the supervisor as it starts, QEMU as it boots
            key = "supervisor_pid" if victim == "supervisor" else "vm_pid"
            st = _until(lambda: (s := _state(env, name)).get(key) and s, f"{name}'s {key}")
            assert isinstance(st, dict)
            if victim == "supervisor":
                assert st["status"] == "starting"
            os.kill(st[key], signal.SIGKILL)
            runner.wait(120)
        else:
            assert runner.wait(120) == 0, runner.stderr.read() if runner.stderr else ""
            assert wait_for_answer(port, timeout=90, request_timeout=30, poll=0.1).status_code == 200
            if state == "stopping":  # kiln stop gives the app its grace period; kill -9 in it
                stopper = subprocess.Popen([KILN, "stop", name], env=env, stdout=subprocess.DEVNULL)
                _until(lambda: _state(env, name).get("status") == "stopping", f"{name} stopping")
            st = _state(env, name)
            os.kill(st["supervisor_pid" if victim == "supervisor" else "vm_pid"], signal.SIGKILL)  # type: ignore[arg-type]
        if stopper:
            stopper.wait(60)
        # no VM outlives its supervisor; a VM's death ends its run
        _until(lambda: not _vms(run_id), "the VM to be gone", 30)
        row = _until(lambda: (r := _ps(env)[name])["state"] == "exited" and r, f"kiln ps to say {name} exited", 30)
        assert isinstance(row, dict) and not _alive(row["pid"])
        assert kiln("start", name, env=env).returncode == 0
        assert wait_for_answer(port, timeout=90, request_timeout=30, poll=0.1).status_code == 200
        assert _ps(env)[name]["state"] == "running"
    finally:
        kiln("rm", "-f", name, env=env)
        runner.kill()
    _until(lambda: not marked(run_id), "every process of the test to end", 30)


class _Client(threading.Thread):
    """One request made in the background (a first connection held while its instance is summoned)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.result = port, None

    def run(self) -> None:
        try:
            self.result = httpx.get(f"http://127.0.0.1:{self.port}/", timeout=60).status_code
        except httpx.HTTPError as err:
            self.result = type(err).__name__


@pytest.mark.vm
@pytest.mark.parametrize("state", ["restoring", "serving", "stopping"])
@pytest.mark.parametrize("victim", ["summoner", "qemu"])
def test_kill9_under_the_summoner(
    victim: str,
    state: str,
    clone_snapshot: str,
    marked_env: dict[str, str],
) -> None:
    env, port, summoner = marked_env, free_port(), f"fault-{victim}-{state}"
    run_id = env[MARKER]
    name = f"{clone_snapshot}.summoned"
    summon = ["summon", "-d", "--name", summoner, f"{clone_snapshot}={port}:8080", "--idle", "30s"]
    pid_file = Path(env["KILN_HOME"]) / "summon" / summoner / "summoner.pid"
    try:
        assert kiln(*summon, env=env).returncode == 0
        record = daemon.read(pid_file)
        assert record is not None
        summoner_pid = record.pid
        if state == "restoring":
            client = _Client(port)
            client.start()
            vm = _until(lambda: _vms(run_id), "the summoned VM to start")
            assert isinstance(vm, list)
            os.kill(summoner_pid if victim == "summoner" else vm[0], signal.SIGKILL)
            client.join(90)
            assert client.result is not None  # answered, or reset: never left hanging
        else:
            assert wait_for_answer(port, timeout=90, request_timeout=30, poll=0.1).status_code == 200
            vm = _vms(run_id)
            assert len(vm) == 1
            if state == "stopping":  # the summoner stops its instances as it ends: kill -9 meanwhile
                os.kill(vm[0], signal.SIGSTOP)  # a VM slow to quit holds the summoner in its stop
                os.kill(summoner_pid, signal.SIGTERM)
                time.sleep(0.5)
            os.kill(summoner_pid if victim == "summoner" else vm[0], signal.SIGKILL)
        if victim == "summoner" or state == "stopping":  # the summoner is gone (killed, or ended as asked)
            _until(lambda: not _alive(summoner_pid), "the summoner to end", 60)
            _until(lambda: not _vms(run_id), "no VM without its summoner", 30)
            rows = _ps(env)
            assert name not in rows or rows[name]["state"] == "exited", rows
            assert kiln(*summon, env=env).returncode == 0  # the next summoner takes over port and instance
        assert wait_for_answer(port, timeout=90, request_timeout=30, poll=0.1).status_code == 200  # summoned again
        assert _ps(env)[name]["state"] == "running"
    finally:
        kiln("summon", "--stop", "--name", summoner, env=env)
    _until(lambda: not marked(run_id), "every process of the test to end", 30)
    assert name not in _ps(env)
