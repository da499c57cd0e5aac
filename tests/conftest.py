"""Shared fixtures: an isolated $KILN_HOME that reuses the built kernel, the `kiln`
command, and `Instance`, the one harness every end-to-end test boots images with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness import isolated_home
from kiln.paths import kiln_home
from tests.support import Registry

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "apps"
EXAMPLES = ROOT / "examples"
KILN = str(Path(sys.executable).parent / "kiln")
SHARED_HOME = kiln_home()  # the developer's: holds the kernel build cache
BOOT_TIMEOUT = 120.0

# A suite started in the background by a non-interactive shell (`.ci/run &`) inherits SIGINT
# ignored and passes that on to every kiln it starts, where Python then never raises
# KeyboardInterrupt. The tests interrupt kiln on purpose (Ctrl-C during a build, a pull, a run),
# so the suite takes SIGINT back: the programs it starts get the default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def kiln(
    *args: str, env: dict[str, str], timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([KILN, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kiln {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# The apps whose specialized kernels the tests boot (`make kernels` builds the same ones, in the
# same order: each after the config it differs least from, in the shared object tree).
KERNEL_APPS = (
    EXAMPLES / "hello-http",
    FIXTURES / "sealed",
    FIXTURES / "exit3",
    EXAMPLES / "memcached",
    EXAMPLES / "nginx-static",
    EXAMPLES / "redis",
    EXAMPLES / "mosquitto",
)


@pytest.fixture(scope="session")
def kernel_built() -> None:
    """Build the kernels the tests boot, once (no-ops when cached, as after `make kernel`)."""
    env = {**os.environ, "KILN_HOME": str(SHARED_HOME)}
    for app in KERNEL_APPS:
        kiln("kernel", "build", "--for", str(app), env=env, timeout=1800, check=True)


@pytest.fixture(scope="session")
def session_env(tmp_path_factory: pytest.TempPathFactory, kernel_built: None) -> dict[str, str]:
    """A store shared by the tests of a session (images built once), with the shared kernel."""
    return isolated_home(tmp_path_factory.mktemp("kiln-home"), SHARED_HOME)


@pytest.fixture
def env(tmp_path: Path, kernel_built: None) -> dict[str, str]:
    """A fresh, empty store for one test, with the shared kernel."""
    return isolated_home(tmp_path / "kiln-home", SHARED_HOME)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on loopback, for the session (container images in and out)."""
    reg = Registry(tmp_path_factory.mktemp("container-registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def hello_image(session_env: dict[str, str]) -> str:
    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    return "hello-http"


class Instance:
    """A running `kiln run`: its console, its ports, its exit status."""

    def __init__(
        self,
        image: str,
        env: dict[str, str],
        target: str = "qemu",
        ports: dict[int, int] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.ports = ports or {}
        self.env = env
        argv = [KILN, "run", "--target", target, *extra]
        for host, guest in self.ports.items():
            argv += ["-p", f"127.0.0.1:{host}:{guest}"]
        self.proc = subprocess.Popen([*argv, image], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self._chunks.append(line)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_http(self, host_port: int, path: str = "/", timeout: float = BOOT_TIMEOUT) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"instance exited with {self.proc.returncode}:\n{self.output}")
            try:
                return httpx.get(f"http://127.0.0.1:{host_port}{path}", timeout=3)
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"no HTTP answer on port {host_port} within {timeout} s:\n{self.output}")

    def wait(self, timeout: float = BOOT_TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait(30)

    def leftovers(self, *patterns: str) -> list[str]:
        """Processes still running whose command line mentions this test's KILN_HOME (or a pattern)."""
        needles = [self.env["KILN_HOME"], *patterns]
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(n in cmdline for n in needles) and int(pid) != os.getpid():
                found.append(f"{pid}: {cmdline}")
        return found


@pytest.fixture
def instances() -> Iterator[list[Instance]]:
    """Instances started by a test; any still running at the end are stopped."""
    started: list[Instance] = []
    yield started
    for inst in started:
        if inst.proc.poll() is None:
            inst.proc.send_signal(signal.SIGINT)
            try:
                inst.proc.wait(20)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait(10)
