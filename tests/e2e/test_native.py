"""Native programs as unikernels: memcached from the host's Debian package, driven
by a real client (pymemcache), and the errors of --exe."""

from __future__ import annotations

import json
import time

import pytest
from pymemcache.client.base import Client

from tests.conftest import EXAMPLES, Instance, free_port, kiln


@pytest.mark.vm
def test_memcached_serves_a_thousand_keys(env: dict[str, str], instances: list[Instance]) -> None:
    kiln("build", str(EXAMPLES / "memcached"), env=env, check=True)
    m = json.loads(kiln("inspect", "--json", "memcached", env=env, check=True).stdout)["manifest"]
    assert m["python"] is None and m["entry"]["argv"][0] == "/usr/bin/memcached"
    assert {"virtio-net", "epoll"} <= set(m["kernel"]["features"])
    assert any(lib["path"].endswith("libevent-2.1.so.7") for lib in m["libraries"])
    assert m["rootfs"]["files"] < 40
    port = free_port()
    inst = Instance("memcached", env, "qemu", {port: 11211})
    instances.append(inst)
    client = Client(("127.0.0.1", port), connect_timeout=5, timeout=10)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.set("probe", b"1")
            break
        except (OSError, ConnectionError, Exception):
            if time.monotonic() > deadline or inst.proc.poll() is not None:
                raise AssertionError(inst.output) from None
            time.sleep(0.3)
    for i in range(1000):
        assert client.set(f"key-{i}", f"value-{i}".encode())
    assert all(client.get(f"key-{i}") == f"value-{i}".encode() for i in range(1000))
    client.close()
    assert inst.stop() == 130


def test_generated_etc_has_no_shell(env: dict[str, str]) -> None:
    kiln(
        "build",
        "--exe",
        "/usr/bin/memcached",
        "--name",
        "mc-etc",
        "--user",
        "memcache",
        "--",
        "-u",
        "memcache",
        env=env,
        check=True,
    )
    data = json.loads(kiln("inspect", "--surface", "--json", "mc-etc", env=env, check=True, timeout=600).stdout)
    assert data["image"]["shells"] == [] and data["image"]["executables"] == ["/kiln/init", "/usr/bin/memcached"]


@pytest.mark.parametrize(
    ("exe", "message"),
    [
        pytest.param(
            "/etc/hostname",
            "/etc/hostname: not an ELF executable (kiln builds native programs from ELF binaries)",
            id="not-elf",
        ),
        pytest.param("/usr/bin/no-such-program-kiln", "no such program: /usr/bin/no-such-program-kiln", id="missing"),
        pytest.param("no-such-program-kiln", "no such program: no-such-program-kiln", id="missing-on-path"),
    ],
)
def test_exe_errors(exe: str, message: str, env: dict[str, str]) -> None:
    proc = kiln("build", "--exe", exe, env=env)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"kiln: error: {message}"


@pytest.mark.vm
def test_program_that_exits_at_start(env: dict[str, str]) -> None:
    kiln("build", "--exe", "/usr/bin/memcached", "--name", "mc-bad", "--", "--no-such-flag", env=env, check=True)
    proc = kiln("run", "mc-bad", env=env, timeout=120)
    assert proc.returncode not in (0, 130) and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"kiln: mc-bad:latest exited with status {proc.returncode}"
    assert "no-such-flag" in proc.stdout  # memcached's own complaint, on the console
