"""kiln unikernels under the engines people run, through the kiln-oci runtime: podman (with conmon),
containerd (ctr, with its runc shim) and Docker (dockerd with the runtime added), each started here on
loopback against Debian's docker-registry; and the runtime alone, driven as runc is, with bundles made here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.registry import CONTAINER_PATHS
from kiln.runtime.instance import proc_start_time
from kiln_testing import engines
from kiln_testing.answers import wait_for_answer
from kiln_testing.command import EXAMPLES, FIXTURES, kiln
from kiln_testing.images import oci_layout, tar_entry
from kiln_testing.ports import free_port
from kiln_testing.registry import Registry


@pytest.fixture(scope="session")
def container_images(registry: Registry, session_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """hello-http, exit3, and hello-http on a port of its own (for host networking), in container form;
    and a plain container image that is not a kiln image."""
    base = tmp_path_factory.mktemp("engine-images")
    hello_port = free_port()
    own = shutil.copytree(EXAMPLES / "hello-http", base / "hello-port")
    (own / "kiln.toml").write_text(
        f'name = "hello-port"\nentry = "app.py"\nargs = ["--port", "{hello_port}"]\nports = [{hello_port}]\n'
    )
    refs = {}
    for name, app in (("hello", EXAMPLES / "hello-http"), ("exit3", FIXTURES / "exit3"), ("hello-port", own)):
        local = f"engine-{name}"
        kiln("build", "-t", local, str(app), env=session_env, check=True, timeout=1800)
        ref = f"{registry.host}/engines/{name}:1"
        kiln("tag", local, ref, env=session_env, check=True)
        kiln("push", "--as-container", ref, env=session_env, check=True, timeout=600)
        refs[name] = ref
    plain = oci_layout(base / "plain", [[tar_entry("hello.txt", data=b"not a unikernel\n")]], {"Cmd": ["/hello.txt"]})
    del plain
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{base / 'plain'}:latest",
                    f"docker://{registry.host}/engines/plain:1"], check=True)  # fmt: skip
    refs["plain"] = f"{registry.host}/engines/plain:1"
    refs["hello_port"] = str(hello_port)
    return refs


# -- podman -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return engines.podman(tmp_path_factory.mktemp("podman"))


def run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.mark.vm
def test_podman_runs_a_kiln_image(podman: list[str], container_images: dict) -> None:
    ref = container_images["hello"]
    assert run([*podman, "pull", "--tls-verify=false", ref]).returncode == 0
    port = free_port()
    name = "kiln-podman"
    started = run([*podman, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", ref])
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip().splitlines()[-1]
    try:
        answer = wait_for_answer(port, timeout=180)
        assert answer.text.startswith("Hello from a kiln unikernel!")  # podman's -p reached the VM
        logs = run([*podman, "logs", name])
        assert "hello-http listening on 0.0.0.0:8080" in logs.stdout + logs.stderr  # the console is its log
        assert run([*podman, "stop", name]).returncode == 0
        code = run([*podman, "inspect", name, "--format", "{{.State.ExitCode}}"]).stdout.strip()
        assert code == "143"  # SIGTERM reached the app through init: its own status
    finally:
        run([*podman, "rm", "-f", name])
    assert not (Path("/run/kiln-oci") / cid).exists()  # nothing left under the runtime's root


@pytest.mark.vm
def test_podman_run_returns_the_apps_status(podman: list[str], container_images: dict) -> None:
    ref = container_images["exit3"]
    proc = run([*podman, "run", "--rm", "--tls-verify=false", ref])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "kiln-init: exit status 3" in proc.stdout + proc.stderr


def test_podman_refuses_a_plain_container_with_this_runtime(podman: list[str], container_images: dict) -> None:
    proc = run([*podman, "run", "--rm", "--tls-verify=false", container_images["plain"]])
    assert proc.returncode != 0
    assert "is not a kiln image" in proc.stderr and "never an ordinary container" in proc.stderr, proc.stderr


# -- containerd ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    daemon = engines.Containerd(tmp_path_factory.mktemp("containerd"))
    yield daemon.socket
    daemon.stop()


@pytest.mark.vm
def test_containerd_runs_a_kiln_image(containerd: Path, container_images: dict) -> None:
    ctr = ["ctr", "--address", str(containerd)]
    ref, port = container_images["hello-port"], int(container_images["hello_port"])
    assert run([*ctr, "images", "pull", "--plain-http", ref]).returncode == 0
    argv = [*ctr, "run", "--runtime", "io.containerd.runc.v2", "--runc-binary", engines.RUNTIME, "--net-host", ref,
            "kiln-ctr"]  # fmt: skip
    task = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for_answer(port, timeout=180).text.startswith("Hello from a kiln unikernel!")
        assert "RUNNING" in run([*ctr, "task", "ls"]).stdout
        assert run([*ctr, "task", "kill", "kiln-ctr"]).returncode == 0
        assert task.wait(60) == 143
    finally:
        if task.poll() is None:
            task.kill()
        run([*ctr, "task", "rm", "-f", "kiln-ctr"])
        run([*ctr, "containers", "rm", "kiln-ctr"])


# -- Docker -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory, containerd: Path, registry: Registry) -> Iterator[list[str]]:
    try:
        daemon = engines.Dockerd(tmp_path_factory.mktemp("dockerd"), containerd, registry.host)
    except RuntimeError as err:
        pytest.fail(str(err))
    yield daemon.argv
    daemon.stop()


@pytest.mark.vm
def test_docker_runs_a_kiln_image(dockerd: list[str], container_images: dict) -> None:
    ref, port = container_images["hello-port"], int(container_images["hello_port"])
    assert run([*dockerd, "pull", ref]).returncode == 0
    started = run([*dockerd, "run", "-d", "--runtime", "kiln", "--network", "host", "--name", "kiln-docker", ref])
    assert started.returncode == 0, started.stderr
    try:
        assert wait_for_answer(port, timeout=180).text.startswith("Hello from a kiln unikernel!")
        assert "listening" in run([*dockerd, "logs", "kiln-docker"]).stdout
        assert run([*dockerd, "stop", "kiln-docker"]).returncode == 0
        assert run([*dockerd, "inspect", "kiln-docker", "--format", "{{.State.ExitCode}}"]).stdout.strip() == "143"
    finally:
        run([*dockerd, "rm", "-f", "kiln-docker"])


# -- the runtime alone ----------------------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path, session_env: dict[str, str], container_images: dict) -> Path:
    """A bundle as an engine makes one: the container form's files in rootfs/kiln/, and a config.json (the
    runtime's own network namespace: the image's port is a free one of this host)."""
    from kiln.store import Store

    store = Store(Path(session_env["KILN_HOME"]) / "store")
    img = store.image("engine-hello-port")
    rootfs = tmp_path / "bundle" / "rootfs"
    (rootfs / "kiln").mkdir(parents=True)
    for key, digest in (("manifest", img.digest), ("kernel", img.manifest.kernel.digest),
                        ("rootfs", img.manifest.rootfs.digest)):  # fmt: skip
        shutil.copyfile(store.blob_path(digest), rootfs / CONTAINER_PATHS[key])
    port = int(container_images["hello_port"])
    config = {
        "ociVersion": "1.0.2",
        "process": {"args": list(img.manifest.entry.argv), "env": ["PATH=/bin", "EXTRA=1"],
                    "cwd": "/app", "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}]},
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}],
        "linux": {"namespaces": [{"type": "pid"}], "resources": {"memory": {"limit": 96 << 20}}},
        "annotations": {"kiln.test": "yes"},
    }  # fmt: skip
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(config))
    (tmp_path / "bundle" / "port").write_text(str(port))
    return tmp_path / "bundle"


def oci(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """kiln-oci as an engine calls it: its output to files (the container's process inherits them, as runc's
    does: a pipe would stay open for as long as the container runs)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([engines.RUNTIME, "--root", str(root), *args], stdout=out, stderr=err, timeout=120)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read().decode(), err.read().decode())


@pytest.mark.vm
def test_the_runc_contract(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "state"
    port = int((bundle / "port").read_text())
    created = oci(root, "create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), "c1")
    assert created.returncode == 0, created.stderr
    state = json.loads(oci(root, "state", "c1").stdout)
    assert state["status"] == "created" and state["pid"] == int((tmp_path / "pid").read_text())
    assert state["annotations"] == {"kiln.test": "yes"}
    assert oci(root, "start", "c1").returncode == 0
    assert json.loads(oci(root, "state", "c1").stdout)["status"] == "running"
    assert wait_for_answer(port, timeout=180).text.startswith("Hello from a kiln unikernel!")
    assert len(json.loads(oci(root, "ps", "--format", "json", "c1").stdout)) == 2  # its process and QEMU
    assert oci(root, "exec", "c1", "sh").returncode != 0
    assert oci(root, "delete", "c1").returncode != 0  # running: not without --force
    assert oci(root, "kill", "c1", "TERM").returncode == 0
    deadline = time.monotonic() + 60
    while json.loads(oci(root, "state", "c1").stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (root / "c1" / "exit").read_text() == "143"
    assert oci(root, "delete", "c1").returncode == 0
    assert not (root / "c1").exists()


@pytest.mark.vm
def test_state_is_truthful_after_qemu_is_killed(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "state"
    assert oci(root, "create", "--bundle", str(bundle), "c2").returncode == 0
    assert oci(root, "start", "c2").returncode == 0
    pids = []
    deadline = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:
        pids = json.loads(oci(root, "ps", "--format", "json", "c2").stdout)
        time.sleep(0.2)
    os.kill(pids[1], signal.SIGKILL)  # QEMU, under the container's process
    deadline = time.monotonic() + 60
    while json.loads(oci(root, "state", "c2").stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert oci(root, "delete", "--force", "c2").returncode == 0
    assert not any(proc_start_time(p) for p in pids)  # gone (a zombie awaiting its reaper has ended)
    assert not (root / "c2").exists()


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        pytest.param("malformed", "is not a valid OCI runtime config", id="malformed-config"),
        pytest.param("no-rootfs", "its root rootfs is not a directory", id="missing-rootfs"),
        pytest.param("plain", "is not a kiln image", id="not-a-kiln-image"),
        pytest.param("tampered", "is not the one its kiln manifest names: refusing", id="tampered-rootfs"),
        pytest.param("bad-mount", "a kiln image takes host directories only on the volumes it declares", id="mount"),
        pytest.param("other-program", "must start with the image's own program", id="other-program"),
    ],
)
def test_bundles_the_runtime_refuses(case: str, fragment: str, bundle: Path, tmp_path: Path) -> None:
    config = json.loads((bundle / "config.json").read_text())
    if case == "malformed":
        (bundle / "config.json").write_text('{"ociVersion": 1, "root": {}}')
    elif case == "no-rootfs":
        shutil.rmtree(bundle / "rootfs")
    elif case == "plain":
        shutil.rmtree(bundle / "rootfs" / "kiln")
    elif case == "tampered":
        with open(bundle / "rootfs" / CONTAINER_PATHS["rootfs"], "r+b") as f:
            f.seek(4096)
            f.write(b"\xff")
    elif case == "bad-mount":
        config["mounts"].append({"destination": "/data", "type": "bind", "source": str(tmp_path)})
    else:
        config["process"]["args"] = ["/bin/sh", "-c", "id"]
    if case in ("bad-mount", "other-program"):
        (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    proc = oci(root, "--log", str(tmp_path / "log.json"), "--log-format", "json", "create", "--bundle", str(bundle),
               "c3")  # fmt: skip
    assert proc.returncode == 1 and fragment in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    logged = json.loads((tmp_path / "log.json").read_text().splitlines()[-1])
    assert logged["level"] == "error" and fragment in logged["msg"]
    assert not (root / "c3").exists()  # nothing left of a create that failed
