"""Real servers the tests start and stop themselves: Debian's docker-registry on
loopback (with or without basic auth), and a TCP proxy that slows a transfer
down so a test can cut it off part-way."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import bcrypt
import httpx

from bench.harness import free_port
from kiln.targets.portmap import PortMap
from kiln.targets.ports import Forwarder


class Registry:
    def __init__(self, root: Path, users: dict[str, str] | None = None, port: int | None = None) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
        self.root = root
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if users:
            htpasswd = root / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for u, p in users.items()
                )
            )
            auth = f"auth:\n  htpasswd:\n    realm: kiln-tests\n    path: {htpasswd}\n"
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n{auth}"
        )
        self.log = open(root / "registry.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code in (200, 401):
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("docker-registry did not start")

    def blob(self, digest: str) -> Path:
        hexa = digest.split(":", 1)[1]
        return self.root / "data" / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def free_port_reading(digits: str) -> int:
    """A free loopback port whose number contains `digits` (e.g. "401"), for tests of messages that quote it."""
    for port in (p for p in range(1024, 65536) if digits in str(p)):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port contains {digits}")


class SlowProxy(Forwarder):
    """kiln's own port forwarder, listening on a free loopback port, relaying towards the client at most
    `rate` bytes a second, and cutting every transfer short once closed."""

    def __init__(self, upstream: int, rate: int = 256 * 1024) -> None:
        self.rate, self.sent = rate, 0
        super().__init__(PortMap(host_ip="127.0.0.1", host=free_port(), guest=upstream))

    def _copy(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        with contextlib.suppress(OSError):
            while not self.stopped.is_set() and (data := src.recv(16384)):
                dst.sendall(data)
                if to_client:
                    self.sent += len(data)
                    time.sleep(len(data) / self.rate)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class SilentServer:
    """Accepts connections and never answers: a registry that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.conns.append(conn)

    def stop(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()
