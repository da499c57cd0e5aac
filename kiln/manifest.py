"""The image manifest: the contract between build, store, run and registry.

One JSON document per image, stored as a blob beside the parts it names. The
image's digest is the digest of this document, so changing anything in it,
or in a part it names, changes the image's identity.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiln.errors import StoreError
from kiln.image.verity import Verity

SCHEMA_VERSION = 1
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]

MEDIA_KERNEL = "application/vnd.kiln.kernel.vmlinux.v1+xz"
MEDIA_ROOTFS = "application/vnd.kiln.rootfs.v1.erofs"
MEDIA_MANIFEST = "application/vnd.kiln.manifest.v1+json"


def volume_tag(index: int) -> str:
    """The 9p mount tag of the index-th declared volume (build and run agree on it)."""
    return f"vol{index}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Part(_Frozen):
    """One blob of the image."""

    digest: Digest
    size: int = Field(ge=0)
    media_type: str


class KernelPart(Part):
    config_hash: str
    features: tuple[str, ...]
    reasons: dict[str, str] = Field(default_factory=dict)  # feature beyond the base -> why
    source_version: str
    options: tuple[str, ...] = ()  # every CONFIG_ option the kernel has on (y)
    options_enabled: int = Field(ge=0)
    uncompressed_size: int = Field(ge=0)

    @property
    def network(self) -> bool:
        return "virtio-net" in self.features


class RootfsPart(Part):
    format: Literal["erofs"] = "erofs"
    compression: str
    files: int = Field(ge=0)
    verity: Verity


class SyscallPolicy(_Frozen):
    """Calls guest init refuses (EPERM, with a console line), and those the config let through."""

    denied: tuple[str, ...]
    relaxed: dict[str, str] = Field(default_factory=dict)


class Entry(_Frozen):
    """How init starts the app."""

    argv: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = "/"
    ports: tuple[int, ...] = ()
    volumes: tuple[str, ...] = ()
    memory_mib: int = Field(ge=16)
    ready: str | None = None  # an HTTP path that answers 200 once the app is ready (snapshots)


class ModuleEntry(_Frozen):
    name: str
    origin: Literal["app", "stdlib", "third-party"]
    kind: Literal["source", "extension", "builtin", "namespace"]
    path: str | None = None  # inside the image
    size: int = 0


class LibraryEntry(_Frozen):
    path: str  # inside the image, as the loader asks for it
    size: int = Field(ge=0)
    needed_by: str


class DistributionEntry(_Frozen):
    name: str
    version: str


class PythonInfo(_Frozen):
    interpreter: str
    version: str
    modules: tuple[ModuleEntry, ...]
    optional_left_out: tuple[str, ...] = ()  # imports not followed: optional, not required, other platforms
    excluded: tuple[str, ...] = ()  # imports `exclude` declared never reached
    dependencies_from: str | None = None  # "requirements.txt", "pyproject.toml + uv.lock"
    distributions: tuple[DistributionEntry, ...] = ()  # third-party distributions whose modules are kept
    data_files: int = 0  # package data and the app's own data files


class BuildInputs(_Frozen):
    source: str
    config_file: str | None
    sources_digest: Digest
    kiln_version: str


class _Document(_Frozen):
    """A JSON document stored as a blob: its digest is taken over its canonical bytes."""

    kind: ClassVar[str]  # for messages: "manifest", "snapshot record"

    def to_json(self) -> bytes:
        """The canonical bytes that the document's digest is taken over."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, what: str | None = None) -> Self:
        try:
            return cls.model_validate_json(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise StoreError(f"{what or cls.kind} is not a valid kiln {cls.kind}: {where}: {first['msg']}") from None


class Manifest(_Document):
    kind: ClassVar[str] = "manifest"

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._:/-]*$")  # the image name it was built as
    created: datetime
    kernel: KernelPart
    rootfs: RootfsPart
    entry: Entry
    policy: SyscallPolicy
    python: PythonInfo | None = None
    libraries: tuple[LibraryEntry, ...] = ()
    build: BuildInputs

    @property
    def size(self) -> int:
        return self.kernel.size + self.rootfs.size


MEDIA_SNAPSHOT_STATE = "application/vnd.kiln.snapshot.state.v1"  # QEMU's migration stream, RAM aside
MEDIA_SNAPSHOT_RAM = "application/vnd.kiln.snapshot.ram.v1"  # the guest's RAM, byte for byte


class MadeWith(_Frozen):
    """Everything a restore must find again: another value in any field means a cold boot."""

    qemu: str  # QEMU's version line
    accel: str
    cpu: str
    memory_mib: int
    devices: str  # qemu_command.device_set
    after: Literal["ready", "kernel"]

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: MadeWith) -> list[str]:
        """What differs, in words: ["memory: snapshot 48 MiB, this run 64 MiB", ...]."""
        out = []
        for field, value in self.model_dump().items():
            theirs = getattr(other, field)
            if value != theirs:
                unit = " MiB" if field == "memory_mib" else ""
                name = field.removesuffix("_mib")
                out.append(f"{name}: snapshot {value}{unit}, this run {theirs}{unit}")
        return out


class SnapshotRecord(_Document):
    """A saved, running VM of one image: the record is a blob, its digest names the snapshot."""

    kind: ClassVar[str] = "snapshot record"

    schema_version: Literal[1] = SCHEMA_VERSION
    image: Digest  # the image's manifest digest
    made_with: MadeWith
    state: Part
    ram: Part
    ports: tuple[int, ...] = ()  # guest ports that listened when it was saved
    created: datetime
    boot_seconds: float  # from QEMU's start to the snapshot point

    @property
    def size(self) -> int:
        return self.state.size + self.ram.size
