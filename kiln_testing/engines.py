"""The engines people run, started with the kiln-oci runtime and a storage of their own: podman's command
line, containerd on a socket of its own, dockerd on containerd with the runtime added."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kiln_testing.command import KILN

RUNTIME = str(Path(KILN).parent / "kiln-oci")


def podman(base: Path, runtime: str | None = RUNTIME) -> list[str]:
    """podman with its storage under `base` (not the host's) and cgroupfs; `runtime` None: podman's own."""
    argv = ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"), "--cgroup-manager", "cgroupfs"]
    return [*argv, "--runtime", runtime] if runtime else argv


class _Server:
    """A server process started here, its output in a log file, waited for until `ready()`, stopped with SIGTERM."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float, poll: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{what} did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(poll)

    def stop(self, grace: float = 60) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(grace)
        self.log.close()


class Containerd(_Server):
    """containerd with its root, state and socket under `base`."""

    def __init__(self, base: Path, timeout: float = 30) -> None:
        self.socket = base / "containerd.sock"
        (base / "config.toml").write_text(
            f'version = 2\nroot = "{base / "root"}"\nstate = "{base / "state"}"\n[grpc]\n  address = "{self.socket}"\n'
        )
        super().__init__(["containerd", "--config", str(base / "config.toml")], base / "log")
        self.wait_until(self.socket.exists, "containerd", timeout, poll=0.1)


class Dockerd(_Server):
    """dockerd with its data under `base`, on `containerd`, with kiln-oci added as the runtime `kiln`, and
    `registry` (host:port) trusted over plain HTTP. `argv`: the docker client for it."""

    def __init__(self, base: Path, containerd: Path, registry: str, timeout: float = 60) -> None:
        sock = base / "docker.sock"
        super().__init__(
            ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"), "--pidfile",
             str(base / "pid"), "-H", f"unix://{sock}", "--containerd", str(containerd), "--add-runtime",
             f"kiln={RUNTIME}", "--insecure-registry", registry, "--bridge", "none", "--iptables=false"],
            base / "log",
        )  # fmt: skip
        self.argv = ["docker", "-H", f"unix://{sock}"]

        def answers() -> bool:
            return subprocess.run([*self.argv, "version"], capture_output=True).returncode == 0

        self.wait_until(answers, "dockerd", timeout, poll=0.5)
