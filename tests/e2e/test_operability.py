"""Seeing inside a sealed unikernel: an out-of-memory end explained in one line with its evidence
kept (events, crash report), and live figures from inside the guest (`kiln top`)."""

from __future__ import annotations

import json
import re
import time

import pytest

from kiln_testing.answers import wait_for_answer
from kiln_testing.command import EXAMPLES, FIXTURES, kiln
from kiln_testing.ports import free_port

pytestmark = [pytest.mark.vm, pytest.mark.kernel]


def wait_exited(env: dict[str, str], name: str, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = json.loads(kiln("ps", "-a", "--json", env=env, check=True).stdout)
        row = next(r for r in rows if r["name"] == name)
        if row["state"] == "exited":
            return row
        time.sleep(0.5)
    raise AssertionError(f"{name} did not exit")


def test_out_of_memory_is_one_line_with_the_numbers(session_env: dict[str, str]) -> None:
    kiln("build", str(FIXTURES / "hog"), env=session_env, check=True)
    run = kiln("run", "hog", env=session_env, timeout=300)
    assert run.returncode == 137
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("kiln: the app ran out of memory: 32 MiB guest, the app used ")
    assert last.endswith("MiB at its peak; try --memory 64M")
    peak = int(last.split("the app used ")[1].split(" MiB")[0])
    assert 4 <= peak <= 32

    kiln("run", "-d", "--name", "hog-d", "hog", env=session_env, check=True)
    try:
        assert wait_exited(session_env, "hog-d")["exit_code"] == 137
        logs = kiln("logs", "hog-d", env=session_env, check=True).stdout
        # said by init, or by kiln when the guest kernel deadlocked on memory after killing the app
        assert re.search(r"^(kiln-init|kiln): the app ran out of memory: 32 MiB guest", logs, re.MULTILINE), logs
        kinds = [
            e["event"] for e in map(json.loads, kiln("events", "hog-d", "--json", env=session_env).stdout.splitlines())
        ]
        assert kinds[:1] == ["start"] and "exit" in kinds and "oom" in kinds
        report = json.loads(kiln("crash", "hog-d", "--json", env=session_env, check=True).stdout)
        assert report["kind"] == "oom" and report["exit_code"] == 137
        assert str(report["reason"]).startswith("the app ran out of memory: 32 MiB guest")
        assert any("hog: allocating" in line for line in report["console"])  # type: ignore[union-attr]
    finally:
        kiln("rm", "-f", "hog-d", env=session_env)
    no_report = kiln("crash", "no-such-instance", env=session_env)
    assert no_report.returncode != 0 and "Traceback" not in no_report.stderr


@pytest.mark.parametrize("target", ["qemu", "unix"])
def test_top_reports_from_inside(session_env: dict[str, str], target: str) -> None:
    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    port, name = free_port(), f"top-{target}"
    memory = ["-m", "48M"] if target == "qemu" else []
    kiln(
        "run",
        "-d",
        "--cold",
        "--name",
        name,
        "--target",
        target,
        *memory,
        "-p",
        f"127.0.0.1:{port}:8080",
        "hello-http",
        env=session_env,
        check=True,
    )
    try:
        wait_for_answer(port, timeout=120, status=200)
        sample = json.loads(kiln("top", name, "--json", env=session_env, check=True).stdout)
        assert sample["app_rss_kib"] > 0 and sample["app_peak_kib"] >= sample["app_rss_kib"]
        assert sample["tcp_listen"] >= 1 and sample["app_fds"] >= 3 and sample["app_threads"] >= 1
        assert sample["restarts"] == 0 and sample["cpu_percent"] >= 0
        if target == "qemu":
            # MemTotal is the guest's RAM less what its kernel keeps: within 48 MiB, and most of it
            assert 24 * 1024 < sample["mem_total_kib"] <= 48 * 1024
            assert sample["mem_available_kib"] < sample["mem_total_kib"]
        # Python's gc, from kiln's start-up hook: the app's objects, not the few the hook saw at start-up
        assert sample["gc_tracked"] > 8_000 and sample["gc_collections"] > 0
        screen = kiln("top", name, "-n", "1", "-d", "0.2", env=session_env, check=True).stdout
        assert "tcp sockets   listen" in screen and "app           rss" in screen and "python gc     tracked" in screen
        same = json.loads(kiln("stats", "--guest", name, "--json", env=session_env, check=True).stdout)
        assert same["instance"] == name and same["app_rss_kib"] > 0 and "gc_tracked" in same
        refused = kiln("stats", name, env=session_env)
        assert refused.returncode == 2 and "needs --guest" in refused.stderr
    finally:
        kiln("rm", "-f", name, env=session_env)


def test_gdb_breakpoint_on_a_syscall_entry(session_env: dict[str, str]) -> None:
    import threading

    import httpx

    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    port = free_port()
    kiln(
        "run",
        "-d",
        "--cold",
        "--gdb",
        "--name",
        "gdb-web",
        "-p",
        f"127.0.0.1:{port}:8080",
        "hello-http",
        env=session_env,
        check=True,
    )
    try:
        wait_for_answer(port, timeout=120, status=200)
        answered: list[int] = []

        def request() -> None:
            time.sleep(3)  # once gdb has set the breakpoint and let the guest run on
            answered.append(httpx.get(f"http://127.0.0.1:{port}/", timeout=60).status_code)

        client = threading.Thread(target=request)
        client.start()
        out = kiln(
            "debug",
            "gdb-web",
            "--ex",
            "break __x64_sys_accept4",
            "--ex",
            "continue",
            "--ex",
            "bt 3",
            "--batch",
            env=session_env,
            timeout=120,
        )
        client.join(60)
        assert "Breakpoint 1, " in out.stdout and "in __x64_sys_accept4 ()" in out.stdout, out.stdout + out.stderr
        assert "do_syscall_64" in out.stdout
        assert answered == [200]  # detached: the guest went on and answered
    finally:
        kiln("rm", "-f", "gdb-web", env=session_env)
    plain = kiln("debug", "no-such", env=session_env)
    assert plain.returncode != 0 and "Traceback" not in plain.stderr


@pytest.mark.parametrize("target", ["qemu", "unix"])
def test_stack_shows_the_stuck_function_and_its_caller(session_env: dict[str, str], target: str) -> None:
    kiln("build", str(FIXTURES / "stuck"), env=session_env, check=True)
    name = f"stuck-{target}"
    kiln("run", "-d", "--name", name, "--target", target, "stuck", env=session_env, check=True)
    try:
        deadline = time.monotonic() + 120
        while "stuck: waiting" not in kiln("logs", name, env=session_env).stdout:
            assert time.monotonic() < deadline, "the fixture never started"
            time.sleep(0.5)
        out = kiln("stack", name, env=session_env, check=True).stdout
        lines = out.splitlines()
        stuck = next(i for i, line in enumerate(lines) if line.endswith("in wait_for_ever"))
        assert lines[stuck].startswith('  File "/app/app.py", line 8') and lines[stuck + 1].endswith("in serve")
        assert "Current thread 0x" in out and 'File "/app/app.py", line 19 in main' in out
    finally:
        kiln("rm", "-f", name, env=session_env)


def test_stack_of_a_native_program_lists_its_threads(session_env: dict[str, str]) -> None:
    kiln("build", str(EXAMPLES / "redis"), env=session_env, check=True)
    kiln("run", "-d", "--name", "native-stack", "redis", env=session_env, check=True)
    try:
        deadline = time.monotonic() + 120
        while "Ready to accept connections" not in kiln("logs", "native-stack", env=session_env).stdout:
            assert time.monotonic() < deadline, "redis never became ready"
            time.sleep(0.5)
        out = kiln("stack", "native-stack", env=session_env, check=True).stdout
        assert out.splitlines()[0].split() == ["TID", "STATE", "NAME"] and "redis-server" in out
        assert "no stack for native-stack: it runs a native program" in out
    finally:
        kiln("rm", "-f", "native-stack", env=session_env)


def test_control_channel_survives_malformed_and_oversized_requests(session_env: dict[str, str]) -> None:
    from pathlib import Path

    from kiln.guest.protocol import ControlChannel

    kiln("build", str(FIXTURES / "stuck"), env=session_env, check=True)
    kiln("run", "-d", "--name", "garbage", "stuck", env=session_env, check=True)
    try:
        sock = Path(session_env["KILN_HOME"]) / "instances" / "garbage" / "control.sock"
        with ControlChannel(sock, timeout=60) as channel:
            assert channel.ping(timeout=60) in ("running", "waiting-seed")
            channel.sock.sendall(b"\n@900 " + b"x" * 10000 + b"\n")  # longer than any request: dropped
            channel.sock.sendall(b"\n\x00\xff\xfe garbage \x1b[2J\n@901\n@902 seed zz 1 2\n@903 http 80 nopath\n")
            assert channel.request("seed 00 1 2").startswith("err seed")
            assert channel.request("http 80 nopath").startswith("err http")
            assert channel.ping() == "running"  # init is still there, and still answers
            assert channel.meminfo()["MemTotal"] > 0
    finally:
        kiln("rm", "-f", "garbage", env=session_env)
