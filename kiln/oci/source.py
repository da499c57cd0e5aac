"""Where a container image comes from, fetched into a private OCI layout by skopeo.

    docker://HOST/REPO:TAG     a registry (credentials as `kiln push` reads them; loopback over plain HTTP)
    oci:DIR[:TAG]              an OCI image layout
    docker-archive:FILE        what `docker save` / `podman save` write
    oci-archive:FILE           an OCI layout in a tar

Every source goes through `skopeo copy` into a fresh layout under the store's
scratch directory, so the rest of kiln reads one shape: one image, for this
host's platform (a multi-arch index is resolved by skopeo, as a pull is), its
layers checked against their digests on the way. `image_digest` is the
digest of that image's manifest: it names the image in the build inputs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kiln import _proc
from kiln.errors import KilnError, UsageError
from kiln.registry import RegistryError, docker_credentials, insecure

TRANSPORTS = ("docker://", "oci:", "docker-archive:", "oci-archive:")
TAG = "image"  # the one tag in kiln's private layout
TIMEOUT = 600.0


class ImageSourceError(KilnError):
    """The image could not be fetched."""


def is_reference(text: str) -> bool:
    return text.startswith(TRANSPORTS)


@dataclass(frozen=True)
class Source:
    reference: str  # as the user wrote it
    transport: str
    host: str | None = None  # a registry's host

    @classmethod
    def parse(cls, text: str) -> Source:
        for t in TRANSPORTS:
            if text.startswith(t):
                rest = text[len(t) :]
                if not rest:
                    raise UsageError(f"{text}: names no image")
                host = registry_host(rest) if t == "docker://" else None
                if t in ("docker-archive:", "oci-archive:") and not Path(rest).is_file():
                    raise UsageError(f"{text}: no such file: {rest}")
                if t == "oci:" and not Path(rest).is_dir() and not Path(rest.rsplit(":", 1)[0]).is_dir():
                    raise UsageError(f"{text}: no such OCI layout: {rest.rsplit(':', 1)[0]}")
                return cls(text, t, host)
        raise UsageError(f"{text}: not an image reference ({', '.join(TRANSPORTS)})")


def registry_host(name: str) -> str:
    """The registry a docker:// name is on, as Docker reads it: its first part when that is a host (a dot, a
    port or localhost), else Docker Hub (`redis:7`, `library/redis`). A mirror registries.conf gives for it is
    skopeo's to try first."""
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _explain(source: Source, stderr: str) -> str:
    """skopeo's error, as one line that says what went wrong."""
    text = " ".join(stderr.split())
    where = source.reference
    if source.host and re.search(r"connection refused|no such host|dial tcp|i/o timeout", text):
        return f"registry {source.host} is not reachable ({where}): is it running?"
    if re.search(r"manifest unknown|not found|name unknown", text, re.I):
        return f"{where}: no such image or tag in the registry"
    if re.search(r"no image found in (manifest list|image index) for architecture", text, re.I):
        return f"{where}: no image for linux/{_arch()} in its index"
    if re.search(r"unauthorized|authentication required|denied", text, re.I):
        return f"{where}: the registry refused the credentials (-u/--password-stdin, or ~/.docker/config.json)"
    if re.search(r"digest did not match|digest mismatch|does not match", text, re.I):
        return f"{where}: a layer fails its digest: the image is damaged or was tampered with"
    last = text.rsplit("level=fatal msg=", 1)[-1].strip('" ')
    return f"{where}: cannot fetch the image: {last[-300:]}"


def copy(source: Source, layout: Path, username: str | None = None, password: str | None = None) -> None:
    """Fetch `source` into the OCI layout `layout` (a new directory) as tag TAG."""
    skopeo = _proc.require("skopeo")
    argv = [skopeo, "--override-os", "linux", "--override-arch", _arch()]
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if conf:  # podman's and buildah's variable for it; Debian 12's skopeo 1.9 reads only its own flag
        argv += ["--registries-conf", conf]
    argv += ["copy", "--quiet"]
    if source.host:
        if insecure(source.host):
            argv.append("--src-tls-verify=false")
        creds = (username, password) if username is not None else docker_credentials(source.host)
        if creds:
            argv += ["--src-creds", f"{creds[0]}:{creds[1] or ''}"]
    argv += [source.reference, f"oci:{layout}:{TAG}"]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=_proc.tool_env(),
            preexec_fn=_proc.die_with_parent,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ImageSourceError(f"{source.reference}: not fetched within {TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        message = _explain(source, proc.stderr)
        raise (RegistryError if source.host else ImageSourceError)(message)


def image_digest(layout: Path) -> str:
    """The digest of the one image manifest in kiln's layout."""
    index = json.loads((layout / "index.json").read_text())
    for m in index.get("manifests", []):
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == TAG:
            return str(m["digest"])
    raise ImageSourceError(f"{layout}: the copied layout names no image")


def blob(layout: Path, digest: str) -> bytes:
    algo, _, hexa = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexa):
        raise ImageSourceError(f"{digest}: not a sha256 digest")
    return (layout / "blobs" / "sha256" / hexa).read_bytes()


def image_config(layout: Path) -> tuple[str, str, dict[str, object]]:
    """(the image manifest's digest, its config's digest, the config: {"config": {Entrypoint, Cmd, ...}, ...})."""
    digest = image_digest(layout)
    manifest = json.loads(blob(layout, digest))
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    return digest, str(manifest["config"]["digest"]), config
