"""Real servers the tests start and stop themselves: Debian's docker-registry on
loopback (with or without basic auth), and a TCP proxy that slows a transfer
down so a test can cut it off part-way."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import bcrypt
import httpx

from bench.harness import free_port
from kiln.targets.portmap import PortMap


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


class SlowProxy:
    """A TCP relay on a free loopback port towards `upstream`, sending towards the client at most `rate` bytes a
    second, and cutting every transfer short once closed: a registry on a slow link, to interrupt a pull."""

    def __init__(self, upstream: int, rate: int = 256 * 1024) -> None:
        self.rate, self.sent, self.upstream = rate, 0, upstream
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.5)
        self.port = PortMap(host_ip="127.0.0.1", host=self.listener.getsockname()[1], guest=upstream)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client, socket.create_connection(("127.0.0.1", self.upstream)) as up:
            t = threading.Thread(target=self._copy, args=(up, client, True), daemon=True)
            t.start()
            self._copy(client, up, False)
            t.join()

    def _copy(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        with contextlib.suppress(OSError):
            while not self.stopped.is_set() and (data := src.recv(16384)):
                dst.sendall(data)
                if to_client:
                    self.sent += len(data)
                    time.sleep(len(data) / self.rate)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


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


class Buildah:
    """buildah with a storage of the tests' own (not the host's, not kiln's): it makes the test images."""

    def __init__(self, base: Path) -> None:
        self.argv = ["buildah", "--root", str(base / "root"), "--runroot", str(base / "runroot")]

    def __call__(self, *args: str, timeout: float = 900) -> str:
        proc = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"buildah {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout.strip()

    def import_tree(self, tree: Path, name: str) -> None:
        """An image made of a root file system tree (a debootstrap tree), with the host's CA certificates
        (so that apt and pip in a Dockerfile's RUN reach their archives through this machine's proxy)."""
        ctr = self("from", "scratch")
        self("copy", ctr, str(tree), "/")
        certs = Path("/usr/local/share/ca-certificates")
        if certs.is_dir() and any(certs.iterdir()):
            self("copy", ctr, str(certs), "/usr/local/share/ca-certificates/")
        self("copy", ctr, "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt")
        path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self("config", "--cmd", "/bin/bash", "--env", path,
             ctr)  # fmt: skip
        self("commit", "--rm", ctr, name)

    def build(self, context: Path, name: str, base: str) -> None:
        self("bud", "--isolation", "chroot", "--tls-verify=false", "--build-arg", f"BASE={base}", "-t", name,
             str(context))  # fmt: skip

    def push(self, name: str, destination: str) -> None:
        self("push", "--tls-verify=false", name, destination)


def oci_layout(
    out: Path, layers: list[list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]], config: dict[str, object],
    architecture: str = "amd64", as_index: bool = False,
) -> str:  # fmt: skip
    """Write an OCI image layout by hand (for images no builder would make: hostile layers, another
    platform only, a damaged blob); tag `latest`. Returns the image manifest's digest."""
    import gzip
    import hashlib
    import io
    import json

    (out / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (out / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    descriptors, diff_ids = [], []
    for members in layers:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for member in members:
                info, data = member if isinstance(member, tuple) else (member, b"")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data) if data else None)
        diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            **blob(gzip.compress(raw.getvalue(), mtime=0))})  # fmt: skip
    doc = {"architecture": architecture, "os": "linux", "config": config,
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}  # fmt: skip
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(json.dumps(doc).encode())},
        "layers": descriptors,
    }
    m = blob(json.dumps(manifest).encode())
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **m}
    if as_index:  # a multi-platform index naming only this platform's image
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [{**entry, "platform": {"architecture": architecture, "os": "linux"}}]}  # fmt: skip
        entry = {"mediaType": "application/vnd.oci.image.index.v1+json", **blob(json.dumps(index).encode())}
    top = {"schemaVersion": 2, "manifests": [{**entry, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    (out / "index.json").write_text(json.dumps(top))
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return str(m["digest"])


def tar_entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644, link: str = "",
              major: int = 0, minor: int = 0) -> tuple[tarfile.TarInfo, bytes]:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.devmajor, info.devminor = kind, mode, link, major, minor
    return info, data
