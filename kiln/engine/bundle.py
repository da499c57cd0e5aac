"""An OCI bundle as the engine hands it over: its config.json read and checked, the kiln image in its rootfs.

config.json comes from outside (an engine, or whoever wrote the bundle) and is
read as untrusted input: typed (msgspec), every path used only to read files
the bundle names. What kiln honours:

- `process.args` over the image's command, as `docker run IMAGE ARGS` is
  (it must start with the image's own program: a kiln image runs what it was
  built with), and `process.env` over the image's environment (the variables
  an engine adds for itself, PATH, HOSTNAME, TERM and `container`, aside);
- `process.terminal`: the console on a pty (the engine's --console-socket);
- bind mounts onto the volumes the image declares, as 9p volumes; the mounts
  an engine makes for a container's own system (/proc, /dev, /sys, tmpfs on
  /run, binds on /etc/hosts and /etc/resolv.conf, a pod's service-account
  token...) mean nothing to a VM and are left aside; any other bind mount is
  refused in one line;
- `linux.resources.memory.limit` as the guest's memory;
- `linux.namespaces`' network path: the VM joins that namespace, so the
  engine's port publishing and its container network reach it;
- `process.rlimits` and `linux.cgroupsPath`, applied where the host allows;
- `annotations`, kept in the container's state;
- `hooks`: prestart and createRuntime once the container's process is in its
  network namespace (Docker's libnetwork configures it from there), poststart
  after `start`, poststop after `delete`, each with the state on its stdin.

The image is the container form's three files under rootfs/kiln/
(kiln.registry.CONTAINER_PATHS), each checked against the kiln manifest before
anything boots.
"""

from __future__ import annotations

import json
import lzma
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from kiln import atomic
from kiln.errors import KilnError
from kiln.manifest import Manifest
from kiln.registry import CONTAINER_PATHS
from kiln.store import sha256_file
from kiln.targets.base import RunConfig, VolumeMap
from kiln.targets.portmap import PortMap

# what engines set for a container's own process, which a kiln image neither needs nor is changed by
ENGINE_ENV = frozenset({"PATH", "HOSTNAME", "TERM", "container", "HOME"})
# what engines mount for a container's own system: a VM has its own
SYSTEM_MOUNTS = frozenset({
    "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/etc/hosts", "/etc/hostname",
    "/etc/resolv.conf", "/run/.containerenv", "/run/secrets", "/dev/termination-log", "/dev/console",
})  # fmt: skip
SYSTEM_PREFIXES = ("/var/run/secrets/kubernetes.io/", "/run/secrets/kubernetes.io/")


class BundleError(KilnError):
    """The bundle is not one kiln-oci can run."""


class _Loose(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Fields kiln reads; the rest of the spec is the engine's business."""


class Rlimit(_Loose, kw_only=True):
    type: str
    hard: int
    soft: int


class Process(_Loose, kw_only=True):
    args: list[str] = msgspec.field(default_factory=list)
    env: list[str] = msgspec.field(default_factory=list)
    terminal: bool = False
    cwd: str = "/"
    rlimits: list[Rlimit] = msgspec.field(default_factory=list)


class Root(_Loose, kw_only=True):
    path: str
    readonly: bool = False


class Mount(_Loose, kw_only=True):
    destination: str
    type: str | None = None
    source: str | None = None
    options: list[str] = msgspec.field(default_factory=list)


class Namespace(_Loose, kw_only=True):
    type: str
    path: str | None = None


class Memory(_Loose, kw_only=True):
    limit: int | None = None


class Resources(_Loose, kw_only=True):
    memory: Memory | None = None


class Linux(_Loose, kw_only=True):
    namespaces: list[Namespace] = msgspec.field(default_factory=list)
    resources: Resources | None = None
    cgroupsPath: str | None = None  # noqa: N815 (the spec's name)


class Hook(_Loose, kw_only=True):
    path: str
    args: list[str] = msgspec.field(default_factory=list)
    env: list[str] = msgspec.field(default_factory=list)
    timeout: int | None = None


class Spec(_Loose, kw_only=True):
    ociVersion: str  # noqa: N815
    process: Process | None = None
    hooks: dict[str, list[Hook]] = msgspec.field(default_factory=dict)
    root: Root
    hostname: str | None = None
    mounts: list[Mount] = msgspec.field(default_factory=list)
    linux: Linux | None = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class Bundle:
    path: Path
    spec: Spec
    manifest: Manifest
    kernel_xz: Path
    rootfs: Path
    terminal: bool
    netns: str | None  # the network namespace to join (None: the runtime's own; "new": a new, empty one)
    rlimits: tuple[tuple[str, int, int], ...] = ()
    cgroup: str | None = None
    run: RunConfig = field(default_factory=RunConfig)


def read_spec(bundle: Path) -> Spec:
    config = bundle / "config.json"
    try:
        return msgspec.json.decode(config.read_bytes(), type=Spec)
    except OSError as err:
        raise BundleError(f"{config}: cannot read: {err.strerror}") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as err:
        message, _, where = str(err).partition(" - at `$")
        at = where.rstrip("`").lstrip(".") or "(top level)"
        raise BundleError(f"{config} is not a valid OCI runtime config: {at}: {message}") from None


def read(bundle: Path) -> Bundle:
    config = bundle / "config.json"
    spec = read_spec(bundle)
    rootfs = Path(spec.root.path) if Path(spec.root.path).is_absolute() else bundle / spec.root.path
    if not rootfs.is_dir():
        raise BundleError(f"{config}: its root {spec.root.path} is not a directory")
    files = {key: rootfs / path for key, path in CONTAINER_PATHS.items()}
    if not files["manifest"].is_file():
        raise BundleError(
            f"the bundle's rootfs is not a kiln image (no /{CONTAINER_PATHS['manifest']}): kiln-oci runs kiln images "
            "only (kiln push --as-container), never an ordinary container"
        )
    manifest = Manifest.from_json(files["manifest"].read_bytes(), "the bundle's kiln manifest")
    for key, want in (("kernel", manifest.kernel.digest), ("rootfs", manifest.rootfs.digest)):
        if not files[key].is_file() or sha256_file(files[key]) != want:
            raise BundleError(f"the bundle's {CONTAINER_PATHS[key]} is not the one its kiln manifest names: refusing")
    process = spec.process or Process()
    linux = spec.linux or Linux()
    netns = None
    for ns in linux.namespaces:
        if ns.type == "network":
            netns = ns.path or "new"
    return Bundle(
        path=bundle,
        spec=spec,
        manifest=manifest,
        kernel_xz=files["kernel"],
        rootfs=files["rootfs"],
        terminal=process.terminal,
        netns=netns,
        rlimits=tuple((r.type, r.soft, r.hard) for r in process.rlimits),
        cgroup=linux.cgroupsPath,
        run=run_config(spec, manifest),
    )


def run_config(spec: Spec, manifest: Manifest) -> RunConfig:
    entry = manifest.entry
    process = spec.process or Process()
    args = None
    if process.args and tuple(process.args) != entry.argv:
        fixed = entry.argv[: entry.args_from or len(entry.argv)]
        if tuple(process.args[: len(fixed)]) != fixed:
            raise BundleError(
                f"process.args {process.args[:3]}... must start with the image's own program ({' '.join(fixed)}): "
                "a kiln image runs the program it was built with"
            )
        args = tuple(process.args[len(fixed) :])
    env = {}
    for item in process.env:
        key, sep, value = item.partition("=")
        if sep and key not in ENGINE_ENV and entry.env.get(key) != value:
            env[key] = value
    volumes = []
    for m in spec.mounts:
        bind = m.type in (None, "bind") or "bind" in m.options or "rbind" in m.options
        if not bind or m.destination in SYSTEM_MOUNTS or m.destination.startswith(SYSTEM_PREFIXES):
            continue  # the container's own /proc, /dev, /run tmpfs...: a VM has its own
        if m.destination in entry.volumes and m.source:
            source = Path(m.source)
            if not source.is_dir():
                raise BundleError(f"mount on {m.destination}: {m.source} is not a directory")
            volumes.append(VolumeMap(host=source, guest=m.destination))
            continue
        declared = ", ".join(entry.volumes) or "none"
        raise BundleError(
            f"mount on {m.destination} ({m.type or 'bind'}): a kiln image takes host directories only on the volumes "
            f"it declares ({declared})"
        )
    limit = ((spec.linux or Linux()).resources or Resources()).memory
    memory = None
    if limit is not None and limit.limit is not None and limit.limit > 0:
        memory = max(16, limit.limit // (1 << 20))
    ports = tuple(PortMap(host_ip="0.0.0.0", host=p, guest=p) for p in entry.ports)
    return RunConfig(ports=ports, volumes=tuple(volumes), memory_mib=memory, extra_env=env, args=args,
                     snapshot="never")  # fmt: skip


def run_hooks(spec: Spec, stage: str, state: dict[str, object]) -> None:
    """The config's hooks of one stage (prestart, createRuntime, poststart, poststop), in order; a failure is
    an error for the creating stages (and the container goes), a note for the later ones."""
    import subprocess

    for hook in spec.hooks.get(stage, []):
        env = dict(item.partition("=")[::2] for item in hook.env)
        try:
            proc = subprocess.run(
                hook.args or [hook.path],  # args[0] is the hook's argv[0], as execv's
                executable=hook.path,
                input=json.dumps(state).encode(),
                env=env or None,
                capture_output=True,
                timeout=hook.timeout or 60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise BundleError(f"{stage} hook {hook.path}: {err}") from None
        if proc.returncode != 0:
            said = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise BundleError(f"{stage} hook {hook.path} failed: {said[0]}")


def kernel_file(bundle: Bundle, cache: Path) -> Path:
    """The image's uncompressed vmlinux, once per kernel digest (its .xz was checked against the manifest)."""
    digest = bundle.manifest.kernel.digest.split(":", 1)[1]
    final = cache / "kernels" / digest
    if (final / "vmlinux").is_file():
        return final / "vmlinux"
    with atomic.staging_dir(final) as tmp, lzma.open(bundle.kernel_xz) as src, open(tmp / "vmlinux", "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return final / "vmlinux"
