"""Every error a user can cause: one readable line, a non-zero exit, no traceback, nothing lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kiln_testing.checks import assert_one_line_error, store_state
from kiln_testing.command import FIXTURES, KILN, kiln


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        pytest.param("does-not-exist", "no such app: ", id="missing-app"),
        pytest.param("syntax-error", "syntax-error/app.py:4: syntax error: invalid syntax", id="syntax-error"),
        pytest.param(
            "unresolvable",
            "1 import cannot be resolved: not_a_real_module_kiln (imported at ",
            id="unresolvable-import",
        ),
    ],
)
def test_build_errors(app: str, fragment: str, env: dict[str, str]) -> None:
    before = store_state(env)
    assert_one_line_error(kiln("build", str(FIXTURES / app), env=env), fragment)
    assert store_state(env) == before


def test_unresolvable_import_names_file_and_line(env: dict[str, str]) -> None:
    proc = kiln("build", str(FIXTURES / "unresolvable"), env=env)
    assert f"{FIXTURES / 'unresolvable' / 'app.py'}:3)" in proc.stderr


def test_debug_shows_the_traceback(env: dict[str, str]) -> None:
    proc = kiln("--debug", "build", str(FIXTURES / "syntax-error"), env=env)
    assert proc.returncode != 0 and "Traceback (most recent call last)" in proc.stderr


@pytest.mark.parametrize("target", ["qemu", "unix"])
def test_host_port_in_use(target: str, hello_image: str, session_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = kiln(
            "run", "--target", target, "-p", f"127.0.0.1:{port}:8080", hello_image, env=session_env, timeout=120
        )
    assert_one_line_error(proc, f"host port {port} is already in use")


def test_missing_kernel_says_how_to_build_it(tmp_path: Path) -> None:
    env = {**os.environ, "KILN_HOME": str(tmp_path / "empty-home")}
    proc = kiln("build", "--no-kernel-build", str(FIXTURES / "exit3"), env=env)
    assert_one_line_error(proc, "no kernel is built for config ")
    assert "run `kiln kernel build --features base,control,dm-verity,epoll,erofs," in proc.stderr
    assert store_state(env) == []


def test_qemu_not_installed(hello_image: str, session_env: dict[str, str], tmp_path: Path) -> None:
    env = {**session_env, "PATH": str(tmp_path)}  # nothing on PATH: no qemu-system-x86_64
    proc = kiln("run", hello_image, env=env)
    assert_one_line_error(proc, "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")


def test_unknown_image(session_env: dict[str, str]) -> None:
    assert_one_line_error(kiln("run", "no-such-image", env=session_env), "no such image: no-such-image:latest")


@pytest.mark.parametrize("spec", ["80:80:80:80", "http", "0:8080", "127.0.0.1:99999:80"])
def test_bad_port_spec(spec: str, hello_image: str, session_env: dict[str, str]) -> None:
    assert_one_line_error(kiln("run", "-p", spec, hello_image, env=session_env), "invalid port mapping", code=2)


def _fake_packer(bin_dir: Path, body: str) -> dict[str, str]:
    bin_dir.mkdir()
    fake = bin_dir / "mkfs.erofs"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_interrupted_build_leaves_the_store_unchanged(env: dict[str, str], tmp_path: Path) -> None:
    kiln("build", str(FIXTURES / "exit3"), env=env, check=True)
    before = store_state(env)
    marker = tmp_path / "packing"
    path = _fake_packer(tmp_path / "bin", f"touch {marker}; sleep 60")
    proc = subprocess.Popen(
        [KILN, "build", "-t", "exit3:next", str(FIXTURES / "exit3")],
        env={**env, **path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    assert store_state(env) == before
    assert "exit3:next" not in kiln("images", env=env).stdout


def test_failed_pack_leaves_the_store_unchanged(env: dict[str, str], tmp_path: Path) -> None:
    before = store_state(env)
    path = _fake_packer(tmp_path / "bin", "echo 'mkfs.erofs: disk full' >&2; exit 1")
    proc = kiln("build", str(FIXTURES / "exit3"), env={**env, **path})
    assert_one_line_error(proc, "packing the root file system failed: mkfs.erofs: disk full")
    assert store_state(env) == before
