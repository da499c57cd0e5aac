"""The kernel build: cached by config hash, and safe to interrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from kiln_testing.command import KILN, kiln
from kiln_testing.homes import SHARED_HOME

SMALL = "base,serial-console,virtio-mmio,virtio-blk,erofs"


def test_cached_kernel_is_not_rebuilt(kernel_built: None) -> None:
    env = {**os.environ, "KILN_HOME": str(SHARED_HOME)}
    started = time.monotonic()
    data = json.loads(kiln("kernel", "build", "--json", env=env, check=True).stdout)
    assert data["state"] == "cached" and Path(data["path"]).is_file()
    assert time.monotonic() - started < 30  # no make run at all
    show = json.loads(kiln("kernel", "show", "--json", env=env, check=True).stdout)
    assert show["built"] and show["config_hash"] == data["config_hash"]


def test_interrupted_build_installs_nothing(kernel_built: None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "kernel").mkdir(parents=True)
    (home / "kernel" / "src").symlink_to(SHARED_HOME / "kernel" / "src")  # reuse the unpacked source
    env = {**os.environ, "KILN_HOME": str(home)}
    shown = json.loads(kiln("kernel", "show", "--features", SMALL, "--json", env=env, check=True).stdout)
    config_hash = shown["config_hash"]
    proc = subprocess.Popen(
        [KILN, "kernel", "build", "--features", SMALL],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = home / "kernel" / "work" / shown["source_version"] / "build.log"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and "  CC  " in log.read_text(errors="replace"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not (home / "kernel" / "builds" / config_hash).exists()
    show = json.loads(kiln("kernel", "show", "--features", SMALL, "--json", env=env, check=True).stdout)
    assert show["built"] is False
    leftover = subprocess.run(["pgrep", "-f", f"O={home}"], capture_output=True, text=True).stdout
    assert leftover == "", "make must stop with kiln"


def test_a_kernel_records_no_build_host_or_time(kernel_built: None) -> None:
    """Kernels are reproducible (a config gives the same vmlinux on any machine): the build's user, host,
    time and number that Linux records in its version string are fixed, not this machine's."""
    import socket

    env = {**os.environ, "KILN_HOME": str(SHARED_HOME)}
    built = json.loads(kiln("kernel", "build", "--json", env=env, check=True).stdout)
    data = Path(built["path"]).read_bytes()
    start = data.index(b"Linux version ")
    version = data[start : data.index(b"\n", start)].decode()
    assert "(kiln@kiln)" in version and version.endswith("#1 1970-01-01"), version
    assert socket.gethostname() not in version
