"""Ship and manage: detached instances, restart policy, the store, and push/pull
through Debian's docker-registry on loopback."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kiln import daemon
from kiln.store import Store
from kiln_testing.command import EXAMPLES, FIXTURES, KILN, kiln
from kiln_testing.ports import free_port, free_port_reading
from kiln_testing.registry import Registry
from kiln_testing.servers import SilentServer, SlowProxy

pytestmark = pytest.mark.vm


def ps(env: dict[str, str]) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(kiln("ps", "-a", "--json", env=env, check=True).stdout)}


def wait_for(predicate, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def answers(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=3).text
    except httpx.HTTPError:
        return None


def process_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def store_env(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fresh store with hello-http built; every instance is removed afterwards."""
    kiln("build", str(EXAMPLES / "hello-http"), env=env, check=True)
    yield env
    for name in ps(env):
        kiln("rm", "-f", name, env=env)


def test_detached_instance_survives_logs_and_stops(store_env: dict[str, str]) -> None:
    env, port = store_env, free_port()
    started = time.monotonic()
    proc = kiln("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:8080", "hello-http", env=env, check=True)
    assert proc.stdout.strip() == "web" and time.monotonic() - started < 60  # the command returned
    wait_for(lambda: answers(port) == "Hello from a kiln unikernel!\n", what="HTTP answer")
    row = ps(env)["web"]
    assert row["state"] == "running" and row["target"] == "qemu" and row["ports"] == [f"127.0.0.1:{port}->8080/tcp"]
    assert row["memory"] > 0 and row["uptime"] is not None
    vm = row["pid"]
    assert "hello-http listening on 0.0.0.0:8080" in kiln("logs", "web", env=env, check=True).stdout
    stats = json.loads(kiln("stats", "--json", env=env, check=True).stdout)
    assert stats[0]["name"] == "web" and stats[0]["rss"] > 0 and stats[0]["cpu_seconds"] > 0
    follow = subprocess.Popen([KILN, "logs", "-f", "web"], env=env, stdout=subprocess.PIPE, text=True)
    kiln("stop", "web", env=env, check=True)
    out, _ = follow.communicate(timeout=30)  # -f ends when the instance stops
    assert "hello-http listening" in out
    assert not process_alive(vm), "stop must leave no QEMU behind"
    assert ps(env)["web"]["state"] == "exited"
    assert "web" not in {r["name"] for r in json.loads(kiln("ps", "--json", env=env, check=True).stdout)}
    kiln("rm", "web", env=env, check=True)
    assert "web" not in ps(env)


def test_on_failure_restarts_until_it_stays_up(env: dict[str, str], tmp_path: Path) -> None:
    kiln("build", str(FIXTURES / "flaky"), env=env, check=True)
    data, port = tmp_path / "data", free_port()
    data.mkdir()
    kiln(
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure",
        "-v",
        f"{data}:/data",
        "-p",
        f"127.0.0.1:{port}:8080",
        "flaky",
        env=env,
        check=True,
    )
    try:
        wait_for(lambda: answers(port) == "up after 3 starts", what="the third start")
        row = ps(env)["flaky"]
        assert row["state"] == "running" and row["restarts"] == 2 and row["restart_policy"] == "on-failure"
        logs = kiln("logs", "flaky", env=env, check=True).stdout
        assert "flaky: start 1" in logs and "flaky: start 2" in logs and "flaky: start 3" in logs
    finally:
        kiln("rm", "-f", "flaky", env=env)


def test_kill9_reads_as_exited_and_always_comes_back(store_env: dict[str, str]) -> None:
    env = store_env
    once, again = free_port(), free_port()
    kiln("run", "-d", "--name", "once", "-p", f"127.0.0.1:{once}:8080", "hello-http", env=env, check=True)
    kiln(
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "always",
        "-p",
        f"127.0.0.1:{again}:8080",
        "hello-http",
        env=env,
        check=True,
    )
    wait_for(lambda: answers(once) and answers(again), what="both instances")
    rows = ps(env)
    os.kill(rows["once"]["pid"], signal.SIGKILL)
    os.kill(rows["again"]["pid"], signal.SIGKILL)
    wait_for(lambda: ps(env)["once"]["state"] == "exited", what="once exited")
    assert ps(env)["once"]["exit_code"] == 137
    wait_for(lambda: answers(again) is not None and ps(env)["again"]["restarts"] == 1, what="again back")
    row = ps(env)["again"]
    assert row["state"] == "running" and row["pid"] != rows["again"]["pid"]


def test_stale_state_after_supervisor_death_reads_as_exited(store_env: dict[str, str]) -> None:
    env, port = store_env, free_port()
    kiln("run", "-d", "--name", "orphan", "-p", f"127.0.0.1:{port}:8080", "hello-http", env=env, check=True)
    wait_for(lambda: answers(port) is not None, what="HTTP answer")
    directory = Path(env["KILN_HOME"]) / "instances" / "orphan"
    state = json.loads((directory / "state.json").read_text())
    supervisor = daemon.read(directory / "supervisor.pid")
    assert supervisor is not None
    os.kill(supervisor.pid, signal.SIGKILL)  # as if the host lost it: the VM dies with it
    wait_for(lambda: not process_alive(state["vm_pid"]), what="the VM to follow its supervisor")
    row = ps(env)["orphan"]
    assert row["state"] == "exited" and "supervisor is gone" in row["error"]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


def blobs(env: dict[str, str]) -> dict[str, bytes]:
    root = Path(env["KILN_HOME"]) / "store" / "blobs" / "sha256"
    return {p.name: p.read_bytes() for p in root.iterdir()}


def store_files(env: dict[str, str]) -> list[str]:
    root = Path(env["KILN_HOME"]) / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "lock")


def only_in_registry(env: dict[str, str], ref: str) -> None:
    """Push `ref` and remove it, and the local hello-http it was tagged from, from the store."""
    kiln("push", ref, env=env, check=True)
    kiln("rmi", ref, "hello-http", env=env, check=True)
    kiln("prune", env=env, check=True)


def test_push_rmi_pull_gives_the_same_image_and_it_boots(
    store_env: dict[str, str], registry: Registry, instances: list
) -> None:
    env = store_env
    ref = f"{registry.host}/demo/hello:1.0"
    kiln("tag", "hello-http", ref, env=env, check=True)
    digest = json.loads(kiln("inspect", "--json", ref, env=env, check=True).stdout)["digest"]
    before = blobs(env)
    only_in_registry(env, ref)
    assert blobs(env) == {}
    kiln("pull", ref, env=env, check=True)
    assert blobs(env) == before, "byte-identical after the round trip"
    assert json.loads(kiln("inspect", "--json", ref, env=env, check=True).stdout)["digest"] == digest
    port = free_port()
    from kiln_testing.instance import Instance

    inst = Instance(ref, env, "qemu", {port: 8080})
    instances.append(inst)
    assert inst.wait_http(port).text == "Hello from a kiln unikernel!\n"
    inst.stop()


def test_unknown_tag_and_non_kiln_names(store_env: dict[str, str], registry: Registry) -> None:
    env = store_env
    before = store_files(env)
    unknown = kiln("pull", f"{registry.host}/demo/never-pushed:9", env=env)
    assert unknown.returncode == 1 and "not found in registry" in unknown.stderr and "Traceback" not in unknown.stderr
    local = kiln("push", "hello-http", env=env)
    assert local.returncode == 2 and "names no registry" in local.stderr
    assert store_files(env) == before


def test_a_port_that_reads_as_a_status_code_does_not_change_the_error(env: dict[str, str], tmp_path: Path) -> None:
    """oras's messages quote the URL: on a registry at port X401 a missing tag is still "not found"."""
    reg = Registry(tmp_path / "registry-401", port=free_port_reading("401"))
    try:
        proc = kiln("pull", f"{reg.host}/demo/never-pushed:1", env=env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr == f"kiln: error: {reg.host}/demo/never-pushed:1: not found in registry {reg.host}\n"
    finally:
        reg.stop()


def test_tampered_registry_blob_is_refused(store_env: dict[str, str], registry: Registry) -> None:
    env = store_env
    ref = f"{registry.host}/demo/hello:tampered"
    kiln("tag", "hello-http", ref, env=env, check=True)
    rootfs = json.loads(kiln("inspect", "--json", ref, env=env, check=True).stdout)["manifest"]["rootfs"]["digest"]
    only_in_registry(env, ref)
    blob = registry.blob(rootfs)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    before = store_files(env)
    proc = kiln("pull", ref, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"refusing {ref}: the application/vnd.kiln.rootfs.v1.erofs blob" in proc.stderr
    assert store_files(env) == before


def test_basic_auth(store_env: dict[str, str], tmp_path: Path) -> None:
    env = store_env
    reg = Registry(tmp_path / "auth-registry", users={"kiln": "s3cret"})
    try:
        ref = f"{reg.host}/demo/hello:auth"
        kiln("tag", "hello-http", ref, env=env, check=True)
        denied = kiln("push", ref, env=env)
        assert denied.returncode == 1 and f"registry {reg.host} refused the credentials" in denied.stderr
        pushed = subprocess.run(
            [KILN, "push", "-u", "kiln", "--password-stdin", ref],
            env=env,
            input="s3cret\n",
            capture_output=True,
            text=True,
        )
        assert pushed.returncode == 0, pushed.stderr
        kiln("rmi", ref, env=env, check=True)
        wrong = subprocess.run(
            [KILN, "pull", "-u", "kiln", "--password-stdin", ref],
            env=env,
            input="nope\n",
            capture_output=True,
            text=True,
        )
        assert wrong.returncode == 1 and "refused the credentials" in wrong.stderr
        docker = tmp_path / "docker"
        docker.mkdir()
        (docker / "config.json").write_text(
            json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"kiln:s3cret").decode()}}})
        )
        kiln("pull", ref, env={**env, "DOCKER_CONFIG": str(docker)}, check=True)
    finally:
        reg.stop()


def test_registry_down_or_silent(store_env: dict[str, str]) -> None:
    env = {**store_env, "KILN_REGISTRY_TIMEOUT": "2"}
    before = store_files(env)
    down = kiln("pull", f"127.0.0.1:{free_port()}/demo/hello:1", env=env)
    assert down.returncode == 1 and "is not reachable" in down.stderr
    silent = SilentServer()
    try:
        slow = kiln("pull", f"127.0.0.1:{silent.port}/demo/hello:1", env=env, timeout=60)
    finally:
        silent.stop()
    assert slow.returncode == 1 and "did not answer within 2 s" in slow.stderr
    unknown = kiln("push", "127.0.0.1:5999/demo/never-built:1", env=env)
    assert unknown.returncode == 1 and "no such image" in unknown.stderr
    assert store_files(env) == before


def test_interrupted_pull_leaves_the_store_unchanged(store_env: dict[str, str], registry: Registry) -> None:
    env = store_env
    ref = f"{registry.host}/demo/hello:slow"
    kiln("tag", "hello-http", ref, env=env, check=True)
    only_in_registry(env, ref)
    before = store_files(env)
    proxy = SlowProxy(registry.port, rate=512 * 1024)
    try:
        via_proxy = f"127.0.0.1:{proxy.port.host}/demo/hello:slow"
        proc = subprocess.Popen(
            [KILN, "pull", via_proxy], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: proxy.sent > 1_000_000, timeout=60, what="part of the download")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proxy.close()
    assert proc.returncode == 130 and "Traceback" not in err
    assert store_files(env) == before
    kiln("pull", ref, env=env, check=True)  # the retry, straight to the registry
    assert Store(Path(env["KILN_HOME"]) / "store").check() == []


def test_concurrent_builds_and_a_build_during_a_run(env: dict[str, str]) -> None:
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def build(app: str) -> None:
        results[app] = kiln("build", str(FIXTURES / app), env=env, timeout=300)

    kiln("build", str(FIXTURES / "facts"), env=env, check=True)
    runner = subprocess.Popen([KILN, "run", "facts"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    threads = [threading.Thread(target=build, args=(app,)) for app in ("exit3", "raises")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runner.wait(120) == 0
    assert all(r.returncode == 0 for r in results.values()), {k: v.stderr for k, v in results.items()}
    store = Store(Path(env["KILN_HOME"]) / "store")
    assert store.check() == []
    assert {i.ref.name for i in store.images()} == {"facts", "exit3", "raises"}
    assert list((Path(env["KILN_HOME"]) / "store" / "tmp").iterdir()) == []
