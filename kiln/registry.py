"""Push and pull images through an OCI registry, as OCI artifacts (oras).

An image travels as one OCI manifest with three layers, each with its media
type: the kernel (xz vmlinux), the root file system (EROFS + verity tree) and
the kiln manifest (JSON). The kiln manifest travels byte for byte, so a pulled
image has the same digest as the pushed one. On pull every layer is checked
against its descriptor's digest, and the kernel and root against the kiln
manifest, before anything is added to the store; a pull that fails or is cut
off leaves the store as it was.

`push --as-container` writes the same image as an ordinary OCI image instead
(`container_layer`): one gzipped tar layer holding the kernel, the root file
system and the kiln manifest at CONTAINER_PATHS under /kiln/, and an image config
whose labels say it is a kiln image and which kiln digest it holds (its
Entrypoint, Cmd, Env and ports are the kiln image's, so an engine shows and
overrides them as for any image). podman, docker, ctr and crictl pull it; the
OCI runtime `kiln-oci` (kiln.engine) boots it; `kiln pull` reads it too, with
the same digest checks.

Credentials come from --username/--password-stdin, else from a Docker-style
config file ($DOCKER_CONFIG/config.json or ~/.docker/config.json). Registries on
localhost / 127.0.0.0/8 are spoken to over plain HTTP, as Docker does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import shutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from kiln.errors import KilnError, StoreError, UsageError
from kiln.manifest import MEDIA_KERNEL, MEDIA_MANIFEST, MEDIA_ROOTFS, Manifest
from kiln.store import Ref, Store, sha256_file

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CONTAINER_LABEL = "vnd.kiln.image"  # = CONTAINER_FORM on a kiln image in container form
CONTAINER_FORM = "container-v1"
DIGEST_LABEL = "vnd.kiln.image.digest"
# where the container form's layer holds the parts
CONTAINER_PATHS = {"manifest": "kiln/manifest.json", "kernel": "kiln/kernel.xz", "rootfs": "kiln/rootfs.erofs"}
CONFIG_MEDIA = "application/vnd.kiln.config.v1+json"
ARTIFACT_TYPE = "application/vnd.kiln.image.v1"
TIMEOUT = float(os.environ.get("KILN_REGISTRY_TIMEOUT", "30"))  # seconds a registry may stay silent

Progress = Callable[[str, int, int], None]  # (what, bytes done, bytes total)


class RegistryError(KilnError):
    """The registry refused, failed or could not be reached."""


def split_ref(ref: Ref) -> tuple[str, str]:
    """localhost:5000/demo/hello -> ("localhost:5000", "demo/hello")."""
    host, sep, repo = ref.name.partition("/")
    if not sep or ("." not in host and ":" not in host and host != "localhost"):
        raise UsageError(f"{ref} names no registry (tag it first, e.g. kiln tag {ref.name} localhost:5000/{ref})")
    return host, repo


def insecure(host: str) -> bool:
    """Loopback registries speak plain HTTP, as Docker assumes."""
    name = host.rsplit(":", 1)[0]
    return name == "localhost" or name.startswith("127.") or name == "[::1]"


def docker_credentials(host: str, config: Path | None = None) -> tuple[str, str] | None:
    path = config or Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (host, f"http://{host}", f"https://{host}"):
        if key in auths and auths[key].get("auth"):
            user, _, password = base64.b64decode(auths[key]["auth"]).decode().partition(":")
            return user, password
    return None


class Client:
    """One registry, over oras's provider, with timeouts and kiln's error messages."""

    def __init__(
        self, host: str, username: str | None = None, password: str | None = None, timeout: float = TIMEOUT
    ) -> None:
        import oras.logger
        import oras.provider  # imported here: only pushes and pulls need it

        self.messages: list[str] = []  # what oras would have printed; kiln reports it in one line instead
        oras.logger.logger.handler = lambda record: self.messages.append(str(record.get("msg", "")))
        self.host = host
        self.registry = oras.provider.Registry(hostname=host, insecure=insecure(host), auth_backend="basic")
        # oras retries a failed request five times over about two minutes; kiln reports at once instead.
        unretried = oras.provider.Registry.do_request.__wrapped__  # type: ignore[attr-defined]
        self.registry.do_request = types.MethodType(unretried, self.registry)  # type: ignore[method-assign]
        self.last: requests.Response | None = None  # the last answer, so a failure is judged by its status code
        request = functools.partial(self.registry.session.request, timeout=timeout)

        def remembering(*args: Any, **kwargs: Any) -> requests.Response:
            self.last = request(*args, **kwargs)
            return self.last

        self.registry.session.request = remembering  # type: ignore[method-assign]
        creds = (username, password) if username is not None else docker_credentials(host)
        if creds:
            self.registry.auth.set_basic_auth(creds[0], creds[1] or "")
        else:
            self.registry.auth._logout()  # anonymous: a registry that wants credentials answers 401
        self.timeout = timeout

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.messages.clear()
        self.last = None
        try:
            response = fn(*args, **kwargs)
        except SystemExit:  # oras gives up by exiting
            said = self.messages[-1] if self.messages else "no reason given"
            raise self._failure(what, said) from None
        except requests.exceptions.Timeout:
            raise RegistryError(f"registry {self.host} did not answer within {self.timeout:.0f} s ({what})") from None
        except requests.exceptions.ConnectionError:
            raise RegistryError(f"registry {self.host} is not reachable ({what}): is it running?") from None
        except requests.exceptions.HTTPError as err:
            raise self._http_error(what, err.response) from None
        except ValueError as err:  # oras raises ValueError for error responses
            raise self._failure(what, str(err)) from None
        if isinstance(response, requests.Response) and response.status_code >= 400:
            raise self._http_error(what, response)
        return response

    def _failure(self, what: str, said: str) -> RegistryError:
        """oras gave up: judge by the status code of the registry's last answer, not by oras's words
        (which quote the URL, and a port such as 53401 must not read as HTTP 401)."""
        if self.last is not None and self.last.status_code >= 400:
            return self._http_error(what, self.last)
        return RegistryError(f"registry {self.host}: {what} failed: {said[:200]}")

    def _http_error(self, what: str, response: requests.Response | None) -> RegistryError:
        code = response.status_code if response is not None else 0
        if code == 401:
            return RegistryError(f"registry {self.host} refused the credentials ({what})")
        if code == 404:
            return RegistryError(f"{what}: not found in registry {self.host}")
        return RegistryError(f"registry {self.host}: {what} failed with HTTP {code}")


def upload(
    client: Client,
    reference: str,
    layers: list[tuple[Path, str, str, str]],
    config: tuple[Path, str],
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """Upload blobs (path, media type, digest, title) the registry lacks, then an OCI manifest naming
    them with `config` (path, media type); the manifest's digest. The one place kiln writes to a registry."""
    import oras.container

    container = oras.container.Container(reference)
    descriptors = []
    for path, media, digest, title in [*layers, (config[0], config[1], sha256_file(config[0]), "config")]:
        desc = {
            "mediaType": media,
            "digest": digest,
            "size": path.stat().st_size,
            "annotations": {"org.opencontainers.image.title": title},
        }
        if not client.call(f"checking blob {digest[:19]}", client.registry.blob_exists, desc, container):
            client.call(f"uploading {title}", client.registry.upload_blob, str(path), container, desc)
        descriptors.append(desc)
    oci: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {k: v for k, v in descriptors.pop().items() if k != "annotations"},
        "layers": descriptors,
    }
    if artifact_type:
        oci["artifactType"] = artifact_type
    if annotations:
        oci["annotations"] = annotations
    response = client.call(f"pushing {reference}", client.registry.upload_manifest, oci, container)
    return str(response.headers.get("Docker-Content-Digest", "")) or "(the registry did not say)"


def push(store: Store, text: str, username: str | None = None, password: str | None = None) -> str:
    """Push a local image to the registry its name starts with; return the OCI manifest digest."""
    ref = Ref.parse(text)
    img = store.image(str(ref))
    host, repo = split_ref(ref)
    client = Client(host, username, password)
    m = img.manifest
    manifest_blob = store.verify_blob(img.digest, f"the manifest of {ref}")
    parts = [
        (store.verify_blob(m.kernel.digest, f"the kernel of {ref}"), MEDIA_KERNEL, m.kernel.digest, "kernel.xz"),
        (
            store.verify_blob(m.rootfs.digest, f"the root file system of {ref}"),
            MEDIA_ROOTFS,
            m.rootfs.digest,
            "root.erofs",
        ),
        (manifest_blob, MEDIA_MANIFEST, img.digest, "kiln-manifest.json"),
    ]
    with store.staging() as scratch:
        config = scratch / "config.json"
        config.write_bytes(b"{}")
        return upload(
            client,
            f"{host}/{repo}:{ref.tag}",
            parts,
            (config, CONFIG_MEDIA),
            ARTIFACT_TYPE,
            {"org.opencontainers.image.ref.name": ref.tag, "vnd.kiln.image.digest": img.digest},
        )


def container_layer(out: Path, parts: dict[str, Path]) -> tuple[str, str]:
    """Write the container form's layer (a gzipped tar of `parts` at CONTAINER_PATHS, byte for byte the same
    for the same parts); (its digest, the digest of its uncompressed tar: the config's diff_id)."""
    import gzip
    import hashlib
    import tarfile

    class _Digesting:
        def __init__(self, raw: Any) -> None:
            self.raw, self.hash = raw, hashlib.sha256()

        def write(self, data: bytes) -> int:
            self.hash.update(data)
            return int(self.raw.write(data))

    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=1) as gz:
        plain = _Digesting(gz)
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            directory = tarfile.TarInfo("kiln")
            directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(directory)
            for key in ("manifest", "kernel", "rootfs"):
                info = tarfile.TarInfo(CONTAINER_PATHS[key])
                info.size, info.mode, info.mtime = parts[key].stat().st_size, 0o444, 0
                with open(parts[key], "rb") as src:
                    tar.addfile(info, src)
    return sha256_file(out), "sha256:" + plain.hash.hexdigest()


def container_config(m: Manifest, digest: str, diff_id: str) -> bytes:
    """The container form's image config: the kiln image's command, environment and ports, and its labels."""
    entry = m.entry
    fixed = entry.args_from if entry.args_from is not None else len(entry.argv)
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": list(entry.argv[:fixed]),
            "Cmd": list(entry.argv[fixed:]),
            "Env": [f"{k}={v}" for k, v in sorted(entry.env.items())],
            "WorkingDir": entry.workdir,
            "ExposedPorts": {f"{p}/tcp": {} for p in entry.ports},
            "Volumes": {v: {} for v in entry.volumes},
            "Labels": {CONTAINER_LABEL: CONTAINER_FORM, DIGEST_LABEL: digest},
            **({"StopSignal": entry.stop_signal} if entry.stop_signal else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"kiln push --as-container ({m.name})"}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def push_container(store: Store, text: str, username: str | None = None, password: str | None = None) -> str:
    """Push a local image as an ordinary OCI image (the container form); the OCI manifest's digest."""
    ref = Ref.parse(text)
    img = store.image(str(ref))
    host, repo = split_ref(ref)
    client = Client(host, username, password)
    m = img.manifest
    parts = {
        "manifest": store.verify_blob(img.digest, f"the manifest of {ref}"),
        "kernel": store.verify_blob(m.kernel.digest, f"the kernel of {ref}"),
        "rootfs": store.verify_blob(m.rootfs.digest, f"the root file system of {ref}"),
    }
    with store.staging() as scratch:
        layer = scratch / "layer.tar.gz"
        digest, diff_id = container_layer(layer, parts)
        config = scratch / "config.json"
        config.write_bytes(container_config(m, img.digest, diff_id))
        return upload(client, f"{host}/{repo}:{ref.tag}", [(layer, OCI_LAYER_GZIP, digest, "kiln")],
                      (config, OCI_CONFIG))  # fmt: skip


def _pull_container(
    client: Client, ref: Ref, container: Any, oci: dict[str, Any], store: Store, progress: Progress | None
) -> str:
    """kiln pull of the container form: the config's labels, the one layer, every digest checked."""
    import tarfile

    config_desc = oci.get("config", {})
    layers = oci.get("layers", [])
    with store.staging() as scratch:
        config_file = scratch / "config.json"
        client.call("downloading the image config", client.registry.download_blob, container,
                    config_desc["digest"], str(config_file))  # fmt: skip
        if sha256_file(config_file) != config_desc.get("digest"):
            raise RegistryError(f"refusing {ref}: its image config does not match its digest")
        labels = (json.loads(config_file.read_text()).get("config") or {}).get("Labels") or {}
        if labels.get(CONTAINER_LABEL) != CONTAINER_FORM or len(layers) != 1:
            raise RegistryError(f"{ref} is a container image, not a kiln image (no {CONTAINER_LABEL} label)")
        layer = scratch / "layer.tar.gz"
        if progress:
            progress("kiln layer", 0, int(layers[0].get("size", 0)))
        client.call(f"downloading {layers[0]['digest'][:19]}", client.registry.download_blob, container,
                    layers[0]["digest"], str(layer))  # fmt: skip
        if sha256_file(layer) != layers[0]["digest"]:
            raise RegistryError(f"refusing {ref}: its layer does not match its digest {layers[0]['digest']}")
        files: dict[str, Path] = {}
        with tarfile.open(layer, "r:gz") as tar:
            for key, path in CONTAINER_PATHS.items():
                try:
                    member = tar.getmember(path)
                except KeyError:
                    raise RegistryError(f"refusing {ref}: its layer has no {path}") from None
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise RegistryError(f"refusing {ref}: {path} in its layer is not a file")
                files[key] = scratch / key
                with open(files[key], "wb") as out:
                    shutil.copyfileobj(source, out)
        manifest_bytes = files["manifest"].read_bytes()
        manifest = Manifest.from_json(manifest_bytes, f"the kiln manifest of {ref}")
        if "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() != labels.get(DIGEST_LABEL):
            raise RegistryError(f"refusing {ref}: its kiln manifest is not the one its label names")
        for key, want in (("kernel", manifest.kernel.digest), ("rootfs", manifest.rootfs.digest)):
            if sha256_file(files[key]) != want:
                raise RegistryError(f"refusing {ref}: its {key} is not the one its kiln manifest names")
        if progress:
            progress("kiln layer", layer.stat().st_size, int(layers[0].get("size", 0)))
        return store.add_image(ref, [files["kernel"], files["rootfs"]], lambda _stored: manifest_bytes)


def pull(
    store: Store, text: str, username: str | None = None, password: str | None = None, progress: Progress | None = None
) -> str:
    """Pull an image into the store, checking every digest; return the kiln manifest digest."""
    import oras.container

    ref = Ref.parse(text)
    host, repo = split_ref(ref)
    client = Client(host, username, password)
    container = oras.container.Container(f"{host}/{repo}:{ref.tag}")
    oci = client.call(f"{ref}", client.registry.get_manifest, container)
    if oci.get("config", {}).get("mediaType") == OCI_CONFIG:
        return _pull_container(client, ref, container, oci, store, progress)
    layers = {layer.get("mediaType"): layer for layer in oci.get("layers", [])}
    missing = [m for m in (MEDIA_KERNEL, MEDIA_ROOTFS, MEDIA_MANIFEST) if m not in layers]
    if missing:
        raise RegistryError(f"{ref} is not a kiln image (no {', '.join(missing)} layer)")
    with store.staging() as scratch:
        files: dict[str, Path] = {}
        for media in (MEDIA_MANIFEST, MEDIA_KERNEL, MEDIA_ROOTFS):
            layer = layers[media]
            out = scratch / media.rsplit(".", 1)[-1].replace("+", "_")
            if progress:
                progress(media, 0, int(layer.get("size", 0)))
            client.call(
                f"downloading {layer['digest'][:19]}",
                client.registry.download_blob,
                container,
                layer["digest"],
                str(out),
            )
            actual = sha256_file(out)
            if actual != layer["digest"]:
                raise RegistryError(
                    f"refusing {ref}: the {media} blob from {host} has digest {actual}, not {layer['digest']}"
                )
            if progress:
                progress(media, out.stat().st_size, int(layer.get("size", 0)))
            files[media] = out
        manifest = Manifest.from_json(files[MEDIA_MANIFEST].read_bytes(), f"the kiln manifest of {ref}")
        for media, want in ((MEDIA_KERNEL, manifest.kernel.digest), (MEDIA_ROOTFS, manifest.rootfs.digest)):
            if layers[media]["digest"] != want:
                raise RegistryError(f"refusing {ref}: its {media} layer is not the one its kiln manifest names")
        manifest_bytes = files[MEDIA_MANIFEST].read_bytes()
        digest = store.add_image(ref, [files[MEDIA_KERNEL], files[MEDIA_ROOTFS]], lambda _stored: manifest_bytes)
    if digest != layers[MEDIA_MANIFEST]["digest"]:
        raise StoreError(f"internal: stored manifest digest {digest} differs from the layer's")
    return digest
