"""Boot real images under real QEMU (TCG here) and on the unix target."""

from __future__ import annotations

import http.client
import json
import re
import socket

import pytest

from kiln.guest.protocol import CLIENTS_PORT
from kiln_testing.command import EXAMPLES, FIXTURES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port

TARGETS = ["qemu", "unix"]
GREETING = "Hello from a kiln unikernel!\n"


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_hello_http_serves_and_stops_cleanly(
    target: str, hello_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port, outside_port = free_port(), free_port()
    outside = _host_address() if target == "qemu" else None
    # published on loopback; and on the host's own address, whose clients the guest reaches through a route
    extra = ("-p", f"{outside}:{outside_port}:8080") if outside else ()
    inst = Instance(hello_image, session_env, target, {port: 8080}, extra=extra)
    instances.append(inst)
    root = inst.wait_http(port, "/")
    assert (root.status_code, root.text) == (200, GREETING)
    health = inst.wait_http(port, "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    # the client's own address reaches the app behind the published port: not QEMU's gateway, nor the relay's
    clients = {"127.0.0.2": ("127.0.0.1", port)}  # a second loopback address
    if outside:
        clients[outside] = (outside, outside_port)
    for client, (address, to_port) in clients.items():
        asked = http.client.HTTPConnection(address, to_port, timeout=30, source_address=(client, 0))
        asked.request("GET", f"/from-{client}")
        assert asked.getresponse().status == 404  # the path names the client in the app's log
        asked.close()
    assert inst.stop() == 130
    assert "hello-http listening on 0.0.0.0:8080" in inst.output
    assert '"GET /health HTTP/1.1" 200' in inst.output
    for client in clients:
        assert f"{client} - - [" in inst.output and f"GET /from-{client} HTTP/1.1" in inst.output, inst.output
    assert "10.0.2.2 - -" not in inst.output
    assert inst.leftovers("/app/app.pyc") == []


def _host_address() -> str | None:
    """This host's address on its own network (the source of its default route), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # TEST-NET-2: no packet is sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_app_exit_status_is_kilns_exit_status(
    target: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    kiln("build", str(FIXTURES / "exit3"), env=session_env, check=True)
    inst = Instance("exit3", session_env, target)
    instances.append(inst)
    assert inst.wait() == 3, inst.output
    assert "exit3: leaving with status 3" in inst.output
    assert "kiln-init: exit status 3" in inst.output
    assert "Kernel panic" not in inst.output


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_guest_traceback_appears_in_full(target: str, session_env: dict[str, str], instances: list[Instance]) -> None:
    kiln("build", str(FIXTURES / "raises"), env=session_env, check=True)
    inst = Instance("raises", session_env, target)
    instances.append(inst)
    assert inst.wait() == 1, inst.output
    out = inst.output
    assert "Traceback (most recent call last):" in out
    frames = [line.strip() for line in out.splitlines() if line.strip().startswith('File "/app/app.py"')]
    assert frames == [
        'File "/app/app.py", line 12, in <module>',
        'File "/app/app.py", line 9, in outer',
        'File "/app/app.py", line 5, in inner',
    ], out
    assert "RuntimeError: boom from the guest" in out


@pytest.mark.vm
def test_memory_flag_reaches_qemu(hello_image: str, session_env: dict[str, str]) -> None:
    proc = kiln("run", "--dry-run", "-m", "96M", "-p", "127.0.0.1:18080:8080", hello_image, env=session_env, check=True)
    argv = proc.stdout.split()
    assert argv[argv.index("-m") + 1] == "96M"
    # the published port is kiln's relay on the host; QEMU forwards a loopback port of its own to the guest's
    # forwarder of the client's address (kiln.clients), which the relay's PROXY line tells the app's port
    up = re.search(rf"hostfwd=tcp:127\.0\.0\.1:(\d+)-:{CLIENTS_PORT}", proc.stdout)
    assert up and " kiln.clients " in proc.stdout, proc.stdout
    assert f"kiln relays 127.0.0.1:18080 to QEMU's forward 127.0.0.1:{up.group(1)} (guest port 8080)" in proc.stderr
    default = kiln("run", "--dry-run", hello_image, env=session_env, check=True).stdout.split()
    assert default[default.index("-m") + 1] == "48M"


def test_images_and_inspect(hello_image: str, session_env: dict[str, str]) -> None:
    listed = json.loads(kiln("images", "--json", env=session_env, check=True).stdout)
    row = next(r for r in listed if r["name"] == hello_image)
    assert row["tag"] == "latest" and row["digest"].startswith("sha256:") and row["size"] > 0
    data = json.loads(kiln("inspect", "--json", hello_image, env=session_env, check=True).stdout)
    m = data["manifest"]
    assert data["digest"] == row["digest"]
    assert m["entry"]["ports"] == [8080] and m["entry"]["argv"][-2:] == ["--port", "8080"]
    names = {mod["name"] for mod in m["python"]["modules"]}
    assert {"http.server", "json", "socket", "encodings.idna"} <= names
    assert not names & {"tkinter", "unittest", "asyncio", "doctest"}
    paths = [mod["path"] for mod in m["python"]["modules"] if mod["path"]]
    assert paths and not any(p.endswith(".py") for p in paths), "no sources unless asked"
    assert m["rootfs"]["files"] <= 200
    assert any(lib["path"].endswith("libc.so.6") for lib in m["libraries"])
    text = kiln("inspect", hello_image, env=session_env, check=True).stdout
    assert "http.server" not in text and "modules" in text and "built from  hello-http (sources sha256:" in text
    assert str(EXAMPLES) not in text  # no host path


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_sealed_root(target: str, session_env: dict[str, str], instances: list[Instance]) -> None:
    kiln("build", str(FIXTURES / "facts"), env=session_env, check=True)
    inst = Instance("facts", session_env, target)
    instances.append(inst)
    assert inst.wait() == 0, inst.output
    line = next(ln for ln in inst.output.splitlines() if ln.startswith("FACTS "))
    facts = json.loads(line.removeprefix("FACTS "))
    assert facts["ppid"] == 1, "the app is the only child of guest init (PID 1)"
    assert facts["cwd"] == "/app"
    assert facts["root_write"] == facts["app_write"] == "Read-only file system"
    assert facts["tmp_write"] == "ok"
    assert facts["shell"] is False and facts["random"] == 16
    assert facts["top"] == ["app", "dev", "etc", "kiln", "lib", "lib64", "proc", "run", "sys", "tmp", "usr"]
