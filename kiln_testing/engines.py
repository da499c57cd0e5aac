"""The engines people run, started with the kiln-oci runtime and a storage of their own: podman's command
line, containerd on a socket of its own, dockerd on containerd with the runtime added."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from kiln_testing.command import KILN

RUNTIME = str(Path(KILN).parent / "kiln-oci")


def podman(base: Path, runtime: str | None = RUNTIME) -> list[str]:
    """podman with its storage under `base` (not the host's) and cgroupfs; `runtime` None: podman's own."""
    argv = ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"), "--cgroup-manager", "cgroupfs"]
    return [*argv, "--runtime", runtime] if runtime else argv


class Containerd:
    """containerd with its root, state and socket under `base`."""

    def __init__(self, base: Path, timeout: float = 30) -> None:
        self.base, self.socket = base, base / "containerd.sock"
        (base / "config.toml").write_text(
            f'version = 2\nroot = "{base / "root"}"\nstate = "{base / "state"}"\n[grpc]\n  address = "{self.socket}"\n'
        )
        self.log = open(base / "log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["containerd", "--config", str(base / "config.toml")], stdout=self.log,
                                     stderr=self.log)  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"containerd did not start: {(base / 'log').read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


class Dockerd:
    """dockerd with its data under `base`, on `containerd`, with kiln-oci added as the runtime `kiln`, and
    `registry` (host:port) trusted over plain HTTP. `argv`: the docker client for it."""

    def __init__(self, base: Path, containerd: Path, registry: str, timeout: float = 60) -> None:
        sock = base / "docker.sock"
        self.log_path = base / "log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"), "--pidfile",
             str(base / "pid"), "-H", f"unix://{sock}", "--containerd", str(containerd), "--add-runtime",
             f"kiln={RUNTIME}", "--insecure-registry", registry, "--bridge", "none", "--iptables=false"],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip
        self.argv = ["docker", "-H", f"unix://{sock}"]
        deadline = time.monotonic() + timeout
        while subprocess.run([*self.argv, "version"], capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.log.close()
