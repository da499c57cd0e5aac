"""Debian packages' services with no arguments, as their own systemd units run them (mosquitto answers
an MQTT CONNECT with its CONNACK, lighttpd and nginx serve their placeholder pages, redis-server keeps what
redis-cli's SET wrote), and runtimes taken from Debian with their data files (a Node.js script, an Express
app whose dependencies npm installed)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis

from kiln_testing.answers import wait_for_answer
from kiln_testing.checks import assert_one_line_error, store_state
from kiln_testing.command import EXAMPLES, FIXTURES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port

TARGETS = ["qemu", "unix"]


@pytest.fixture(scope="session")
def mosquitto_image(session_env: dict[str, str]) -> str:
    proc = kiln("build", "--deb", "mosquitto", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf (from mosquitto.service ExecStart)" in (
        proc.stderr
    )
    return "mosquitto"


@pytest.fixture(scope="session")
def lighttpd_image(session_env: dict[str, str]) -> str:
    proc = kiln("build", "--deb", "lighttpd", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf (from lighttpd.service ExecStart)" in (
        proc.stderr
    )
    return "lighttpd"


def _connect_once(port: int) -> int | None:
    """One MQTT CONNECT with paho-mqtt: the CONNACK's reason code, or None if nothing answered."""
    got = threading.Event()
    codes: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kiln-test")
    client.on_connect = lambda _c, _u, _f, reason, _p: (codes.append(reason.value), got.set())
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return None
    client.loop_start()
    got.wait(10)
    client.loop_stop()
    client.disconnect()
    return codes[0] if codes else None


def connack(port: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = _connect_once(port)
        if code is not None:
            return code
        time.sleep(1)
    raise AssertionError(f"no CONNACK on port {port} within {timeout} s")


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_mosquitto_with_no_arguments(
    target: str, mosquitto_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(mosquitto_image, session_env, target, {port: 1883})
    instances.append(inst)
    assert connack(port) == 0, inst.output
    assert "Error setting groups" not in inst.output and "Unable to drop privileges" not in inst.output
    inst.stop()


def test_mosquittos_account_and_directories_come_from_its_package(
    mosquitto_image: str, session_env: dict[str, str]
) -> None:
    entry = json.loads(kiln("inspect", "--json", mosquitto_image, env=session_env, check=True).stdout)["manifest"][
        "entry"
    ]
    assert entry["user"] is None and entry["keep_caps"] == ["setuid", "setgid"]  # it drops to its account itself
    writable = {w["path"]: w for w in entry["writable"]}
    assert {"/run", "/run/mosquitto", "/var/log/mosquitto", "/var/lib/mosquitto"} <= set(writable)
    assert writable["/var/lib/mosquitto"]["kind"] == "volume" and entry["volumes"] == ["/var/lib/mosquitto"]
    assert writable["/var/log/mosquitto"]["gid"] != 0  # the account its postinst makes may write there


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_lighttpd_with_no_arguments(
    target: str, lighttpd_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(lighttpd_image, session_env, target, {port: 80})
    instances.append(inst)
    page = inst.wait_http(port, "/")
    assert page.status_code == 200 and "<title>Welcome page</title>" in page.text, inst.output
    inst.stop()


@pytest.fixture(scope="session")
def nginx_image(session_env: dict[str, str]) -> str:
    """nginx, whose unit and configuration are in nginx-common and whose default site its postinst enables."""
    proc = kiln("build", "--deb", "nginx", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/nginx -g 'daemon off;' (from nginx.service ExecStart, in the foreground)" in proc.stderr
    return "nginx"


@pytest.fixture(scope="session")
def apache2_image(session_env: dict[str, str]) -> str:
    """apache2, whose unit starts it through apachectl and whose modules and site its postinst enables."""
    proc = kiln("build", "--deb", "apache2", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/apache2 -D FOREGROUND (from apache2.service ExecStart (apachectl, resolved by " \
        "kiln.debs.hints))" in proc.stderr  # fmt: skip
    return "apache2"


def test_apache2_has_no_shell_and_its_modules_enabled(apache2_image: str, session_env: dict[str, str]) -> None:
    manifest = json.loads(kiln("inspect", "--json", apache2_image, env=session_env, check=True).stdout)["manifest"]
    entry = manifest["entry"]
    assert entry["argv"] == ["/usr/sbin/apache2", "-D", "FOREGROUND"]
    assert entry["env"]["APACHE_RUN_USER"] == "www-data" and entry["env"]["APACHE_RUN_DIR"] == "/var/run/apache2"
    assert "/run/lock/apache2" in {w["path"] for w in entry["writable"]}
    assert set(manifest["policy"]["relaxed"]) == {"clone"} and "execve" in manifest["policy"]["denied"]


@pytest.fixture(scope="session")
def redis_server_image(session_env: dict[str, str]) -> str:
    """redis-server, whose account and directories redis-tools' postinst and its unit's ReadWritePaths= make."""
    kiln("build", "--deb", "redis-server", env=session_env, check=True, timeout=1800)
    return "redis-server"


# server -> (its placeholder page says, its workers' command line ends with)
FORKING = {
    "nginx": ("<title>Welcome to nginx!</title>", "nginx: worker process"),
    "apache2": ("Apache2 Debian Default Page", "/usr/sbin/apache2 -D FOREGROUND"),  # the event MPM's children
}


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("server", FORKING)
def test_forking_servers_with_no_arguments(
    server: str, target: str, request: pytest.FixtureRequest, session_env: dict[str, str], instances: list[Instance]
) -> None:
    page_says, worker = FORKING[server]
    port = free_port()
    inst = Instance(request.getfixturevalue(f"{server}_image"), session_env, target, {port: 80})
    instances.append(inst)
    page = inst.wait_http(port, "/")
    assert page.status_code == 200 and page_says in page.text, inst.output
    with ThreadPoolExecutor(50) as pool:  # its workers, forked without exec, answer them all
        codes = list(pool.map(lambda _: httpx.get(f"http://127.0.0.1:{port}/", timeout=60).status_code, range(50)))
    assert codes == [200] * 50
    if target == "unix":  # the processes are the host's to see: workers, switched to www-data
        workers = [line for line in _processes() if line.endswith(worker)]
        assert any(line.startswith("www-data ") for line in workers), _processes()
    inst.stop()


def _processes() -> list[str]:
    return subprocess.run(["ps", "-eo", "user:20,args"], capture_output=True, text=True, check=True).stdout.splitlines()


def test_nginx_is_laid_out_as_its_family_says(nginx_image: str, session_env: dict[str, str]) -> None:
    manifest = json.loads(kiln("inspect", "--json", nginx_image, env=session_env, check=True).stdout)["manifest"]
    assert "ipv6" in manifest["kernel"]["features"]  # its default site listens on [::]:80 too
    assert set(manifest["policy"]["relaxed"]) == {"clone"}  # fork without exec: its workers
    assert {"execve", "execveat", "fork", "vfork"} <= set(manifest["policy"]["denied"])
    writable = {w["path"]: w["kind"] for w in manifest["entry"]["writable"]}
    assert writable["/var/lib/nginx"] == "volume" and writable["/var/log/nginx"] == "tmpfs"  # nginx-common's


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_redis_server_with_no_arguments(
    target: str, redis_server_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(redis_server_image, session_env, target, {port: 6379})
    instances.append(inst)
    wait_for_answer(port, "redis", timeout=120, alive=lambda: inst.proc.poll() is None, context=lambda: inst.output)
    client = redis.Redis(port=port, socket_timeout=10)
    assert client.set("kiln", "unikernel") and client.get("kiln") == b"unikernel"
    assert client.config_get("dir") == {"dir": "/var/lib/redis"}  # its state directory, writable
    inst.stop()
    assert "DB saved on disk" in inst.output, inst.output  # and it saved there on the way out


def test_a_unit_that_runs_a_script_is_refused_in_one_line(env: dict[str, str]) -> None:
    before = store_state(env)
    proc = kiln("build", "--deb", "memcached", env=env, timeout=600)
    assert_one_line_error(
        proc, "memcached.service: ExecStart runs /usr/share/memcached/scripts/systemd-memcached-wrapper"
    )
    assert "a script (#!/usr/bin/perl" in proc.stderr
    assert "name the program with --exe /usr/bin/memcached (and its arguments after --)" in proc.stderr
    assert store_state(env) == before


@pytest.fixture(scope="session")
def node_image(session_env: dict[str, str]) -> str:
    script = FIXTURES / "node-hello" / "server.js"
    kiln("build", "--deb", "nodejs", "--name", "node-hello", "--file", f"{script}:/app/server.js", "-p", "8080",
         "--", "/app/server.js", env=session_env, check=True, timeout=1800)  # fmt: skip
    return "node-hello"


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_a_node_script_on_debians_node(
    target: str, node_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(node_image, session_env, target, {port: 8080})
    instances.append(inst)
    answer = inst.wait_http(port, "/", timeout=240)
    assert answer.text.startswith("hello from node v18."), inst.output  # Debian's own node, with its data files
    inst.stop()


@pytest.mark.vm
def test_an_express_app_with_npm_dependencies(session_env: dict[str, str], instances: list[Instance]) -> None:
    proc = kiln("build", str(FIXTURES / "express-app"), env=session_env, check=True, timeout=1800)
    assert "npm ci --omit=dev" in proc.stderr or "node_modules:" in proc.stderr
    port = free_port()
    inst = Instance("express-app", session_env, "qemu", {port: 3000})
    instances.append(inst)
    assert inst.wait_http(port, "/", timeout=240).text == "Hello World!"
    versions = httpx.get(f"http://127.0.0.1:{port}/json", timeout=30).json()
    assert versions["express"].startswith("4.") and versions["node"].startswith("v18.")
    inst.stop()
    files = json.loads(kiln("inspect", "--json", "express-app", env=session_env, check=True).stdout)["manifest"]
    assert files["entry"]["workdir"] == "/app"


def test_the_mosquitto_example_is_the_package_with_no_arguments(session_env: dict[str, str]) -> None:
    proc = kiln("build", str(EXAMPLES / "mosquitto"), env=session_env, check=True, timeout=1800)
    assert "(from mosquitto.service ExecStart)" in proc.stderr
