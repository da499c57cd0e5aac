"""Container images for the tests and benchmarks: buildah with a storage of its own (a debootstrap tree
imported as a base image, Dockerfiles built FROM it), and OCI layouts written by hand for images no
builder would make."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path


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
