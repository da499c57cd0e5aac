"""Native programs as unikernels: memcached from the host's Debian package, driven
by a real client (pymemcache), and the errors of --exe."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from kiln_testing.command import EXAMPLES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port


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


@pytest.mark.vm
def test_redis_from_its_debian_package(env: dict[str, str], instances: list[Instance]) -> None:
    import redis

    kiln("build", str(EXAMPLES / "redis"), env=env, check=True)
    m = json.loads(kiln("inspect", "--json", "redis", env=env, check=True).stdout)["manifest"]
    assert m["build"]["source"].startswith("Debian package redis-server ")
    assert m["entry"]["argv"][0] == "/usr/bin/redis-server"
    assert not shutil.which("redis-server"), "the build host must not get redis-server installed"
    port = free_port()
    inst = Instance("redis", env, "qemu", {port: 6379})
    instances.append(inst)
    client = redis.Redis(port=port, socket_timeout=10, socket_connect_timeout=5)
    deadline = time.monotonic() + 120
    while True:
        try:
            if client.ping():
                break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or inst.proc.poll() is not None:
                raise AssertionError(inst.output) from None
            time.sleep(0.3)
    client.set("kiln", b"\x00\x01binary\xff" * 100)
    assert client.get("kiln") == b"\x00\x01binary\xff" * 100
    bench = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", "500", "-c", "5", "-t", "set,get", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bench.returncode == 0, bench.stderr
    assert "SET:" in bench.stdout and "GET:" in bench.stdout and "requests per second" in bench.stdout
    assert client.dbsize() >= 2
    assert inst.stop() == 130


@pytest.mark.vm
def test_nginx_serves_a_static_site_byte_for_byte(env: dict[str, str], instances: list[Instance]) -> None:
    import httpx

    kiln("build", str(EXAMPLES / "nginx-static"), env=env, check=True)
    port = free_port()
    inst = Instance("nginx-static", env, "qemu", {port: 8080})
    instances.append(inst)
    inst.wait_http(port, "/")
    site = EXAMPLES / "nginx-static" / "site"
    for name in ("index.html", "style.css", "logo.png"):
        with_curl = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/{name}"], capture_output=True, timeout=30)
        assert with_curl.returncode == 0 and with_curl.stdout == (site / name).read_bytes(), name
        reply = httpx.get(f"http://127.0.0.1:{port}/{name}", timeout=10)
        assert reply.status_code == 200 and reply.content == (site / name).read_bytes(), name
    assert httpx.get(f"http://127.0.0.1:{port}/logo.png", timeout=10).headers["content-type"] == "image/png"
    assert httpx.get(f"http://127.0.0.1:{port}/missing", timeout=10).status_code == 404
    assert inst.stop() == 130


def test_unknown_debian_package(env: dict[str, str]) -> None:
    proc = kiln("build", "--deb", "no-such-package-kiln", env=env)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(
        "kiln: error: no such Debian package: no-such-package-kiln"
    )


def test_trace_suggests_what_the_program_missed(env: dict[str, str], tmp_path: Path) -> None:
    app = tmp_path / "nginx-bare"
    shutil.copytree(EXAMPLES / "nginx-static", app)
    toml = (app / "kiln.toml").read_text().replace(', "/etc/nginx/mime.types"', "")
    (app / "kiln.toml").write_text(toml.replace('name = "nginx-static"', 'name = "nginx-bare"'))
    # a file of a dependency from another source (debconf's), which kiln keeps only when asked
    missing = "/usr/share/debconf/confmodule"
    conf = (app / "nginx.conf").read_text()
    (app / "nginx.conf").write_text(conf.replace("    include /etc/nginx/mime.types;\n", f"    include {missing};\n"))
    kiln("build", str(app), env=env, check=True)
    report = json.loads(kiln("trace", "-t", "30", "--json", "nginx-bare", env=env, timeout=120, check=True).stdout)
    assert report["suggest"]["files"] == [missing]  # nginx failed to open it
    assert report["files"][missing] == "ENOENT"
    assert report["files"]["/etc/kiln/nginx.conf"] == "ok"
    assert {"execve", "openat", "epoll_create"} <= set(report["syscalls"])
    assert "mount" not in report["syscalls"], "init's own calls are not the app's"


def test_library_that_cannot_be_found(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "lib.c").write_text("int kiln_answer(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int kiln_answer(void);\nint main(void) { return kiln_answer(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", tmp_path / "libkilnmissing.so", tmp_path / "lib.c"], check=True)
    subprocess.run(
        ["gcc", "-o", tmp_path / "answer", tmp_path / "main.c", f"-L{tmp_path}", "-lkilnmissing"], check=True
    )
    (tmp_path / "libkilnmissing.so").unlink()
    proc = kiln("build", "--exe", str(tmp_path / "answer"), env=env)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last.startswith(f"kiln: error: {tmp_path / 'answer'}: needs libkilnmissing.so, which was not found")


def test_a_native_program_executes_only_what_its_config_names(env: dict[str, str], tmp_path: Path) -> None:
    """[seccomp] exec names a program of the image the app executes itself: env runs it; an image without that
    line has it too (in files), and init refuses the execve. Both on the unix target."""
    for name, allowed in (("exec-named", True), ("exec-unnamed", False)):
        app = tmp_path / name
        app.mkdir()
        line = '[seccomp]\nexec = { "/usr/bin/printf" = "env runs it" }\n' if allowed else ""
        (app / "kiln.toml").write_text(
            f'name = "{name}"\nexe = "/usr/bin/env"\nargs = ["/usr/bin/printf", "ran"]\n'
            f'files = ["/usr/bin/printf"]\n{line}'
        )
        kiln("build", str(app), env=env, check=True)
        run = kiln("run", "--target", "unix", name, env=env, timeout=120)
        if allowed:
            assert run.returncode == 0 and "ran" in run.stdout, run.stdout + run.stderr
        else:
            assert run.returncode != 0 and "refused execve by pid" in run.stderr + run.stdout, run.stderr
