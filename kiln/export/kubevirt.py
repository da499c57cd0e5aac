"""`kiln export kubevirt`: an image as KubeVirt runs VMs, from container images and a manifest.

Two OCI *container* images go to the registry (config, one gzip tar layer each, as `docker` or
`podman` would pull them):
  NAME-disk:TAG    a containerDisk: the image's root file system at /disk/root.img (uid/gid 107,
                   the qemu user of KubeVirt's virt-launcher), which KubeVirt attaches as vda
  NAME-kernel:TAG  a kernel-boot container: the PCI kernel (kiln.export.machine) at /boot/vmlinux
and a `VirtualMachine` (kubevirt.io/v1) that boots them with `firmware.kernelBoot`, the image's
kernel command line (eth0 as KubeVirt's masquerade binding sets it: 10.0.2.2/24 via 10.0.2.1),
and the app's ports on the pod network. The manifest is validated against KubeVirt's OpenAPI
definitions (schema/kubevirt-openapi.json), unknown fields refused, before it is written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kiln.errors import UsageError
from kiln.export import openapi
from kiln.export.machine import Machine

SCHEMA = Path(__file__).parent / "schema" / "kubevirt-openapi.json"
POD_IP, POD_GATEWAY = "10.0.2.2/24", "10.0.2.1"  # what KubeVirt's masquerade binding gives the VM
QEMU_UID = 107
DISK_PATH = "disk/root.img"
KERNEL_PATH = "boot/vmlinux"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Layer:
    path: Path  # the gzip'd tar
    digest: str  # of the gzip'd tar (the blob)
    diff_id: str  # of the tar (the image config names it)


def layer(scratch: Path, name: str, files: list[tuple[str, Path, int, int]]) -> Layer:
    """A reproducible layer: (path in the image, source, mode, uid/gid) for each file, with its
    directories; times zero, owner as given, gzip without a name or time."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p, _, _, _ in files} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path, source, mode, owner in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime, info.uid, info.gid = source.stat().st_size, mode, 0, owner, owner
            with open(source, "rb") as f:
                tar.addfile(info, f)
    data = raw.getvalue()
    out = scratch / f"{name}.tar.gz"
    with open(out, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(data)
    return Layer(
        out, "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest(), "sha256:" + hashlib.sha256(data).hexdigest()
    )


def image_config(scratch: Path, name: str, lay: Layer, label: str) -> Path:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.description": label}},
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id]},
        "history": [{"created_by": "kiln export kubevirt", "created": "1970-01-01T00:00:00Z"}],
    }
    path = scratch / f"{name}.config.json"
    path.write_text(json.dumps(config, sort_keys=True))
    return path


def virtual_machine(machine: Machine, name: str, disk_image: str, kernel_image: str) -> dict[str, Any]:
    memory = f"{machine.memory_mib}Mi"
    interfaces: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    if machine.image.manifest.kernel.network:
        ports = [{"name": f"p{p}", "port": p, "protocol": "TCP"} for p in machine.ports]
        interfaces = [{"name": "default", "masquerade": {}, "model": "virtio", **({"ports": ports} if ports else {})}]
        networks = [{"name": "default", "pod": {}}]
    domain: dict[str, Any] = {
        "cpu": {"cores": 1},
        "memory": {"guest": memory},
        "resources": {"requests": {"memory": memory}},
        "firmware": {
            "kernelBoot": {
                "container": {
                    "image": kernel_image,
                    "kernelPath": "/" + KERNEL_PATH,
                    "imagePullPolicy": "IfNotPresent",
                },
                "kernelArgs": machine.cmdline,
            }
        },
        "devices": {
            "disks": [{"name": "root", "disk": {"bus": "virtio", "readonly": True}}],
            "interfaces": interfaces,
            "rng": {},
            "autoattachGraphicsDevice": False,
            "autoattachMemBalloon": False,
            "autoattachSerialConsole": True,
        },
    }
    if not interfaces:
        domain["devices"]["autoattachPodInterface"] = False
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kiln"}},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"kubevirt.io/domain": name}},
                "spec": {
                    "domain": domain,
                    "networks": networks,
                    "volumes": [{"name": "root", "containerDisk": {"image": disk_image, "path": "/" + DISK_PATH}}],
                    "terminationGracePeriodSeconds": 5,
                },
            },
        },
    }


@cache
def _validator() -> Any:
    return openapi.strict_validator(json.loads(SCHEMA.read_text())["definitions"], "v1.VirtualMachine")


def validate(manifest: dict[str, Any]) -> None:
    openapi.validate(_validator(), manifest, "the VirtualMachine is not valid for KubeVirt")


def export(machine: Machine, registry: str, tag: str, out: Path, scratch: Path, name: str) -> dict[str, str]:
    """Push both container images to `registry` (HOST/REPO) and write the VirtualMachine to `out`;
    {"disk": reference@digest, "kernel": ..., "manifest": path}."""
    import yaml

    from kiln import atomic
    from kiln import registry as reg

    host = registry.split("/", 1)[0]
    if "." not in host and ":" not in host and host != "localhost":
        raise UsageError(f"--registry {registry}: expected HOST[:PORT][/REPOSITORY], e.g. localhost:5000/demo")
    base = registry.rstrip("/")
    client = reg.Client(host)
    pushed = {}
    for what, path, source, mode, label in (
        ("disk", DISK_PATH, machine.rootfs, 0o440, f"containerDisk of kiln image {machine.image.ref}"),
        ("kernel", KERNEL_PATH, machine.kernel, 0o444, f"kernel of kiln image {machine.image.ref}"),
    ):
        lay = layer(scratch, what, [(path, source, mode, QEMU_UID)])
        config = image_config(scratch, what, lay, label)
        reference = f"{base}/{name}-{what}:{tag}"
        digest = reg.upload(
            client, reference, [(lay.path, MEDIA_LAYER, lay.digest, Path(path).name)], (config, MEDIA_CONFIG)
        )
        # pinned by digest (a reference with both tag and digest is not understood by every client)
        pushed[what] = f"{base}/{name}-{what}@{digest}" if digest.startswith("sha256:") else reference
    manifest = virtual_machine(machine, name, pushed["disk"], pushed["kernel"])
    validate(manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(out, yaml.safe_dump(manifest, sort_keys=False).encode())
    return {**pushed, "manifest": str(out)}
