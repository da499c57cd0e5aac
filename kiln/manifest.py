"""The image manifest: the contract between build, store, run and registry.

One JSON document per image, stored as a blob beside the parts it names. The
image's digest is the digest of this document, so changing anything in it,
or in a part it names, changes the image's identity.

The documents are msgspec Structs, not pydantic models: every `kiln run`, `kiln images` and
`kiln inspect` reads manifests, and pydantic's import and model building cost ~100 ms of a
command that otherwise starts in ~60 (#12). msgspec checks the same things when it decodes
(types, patterns, bounds, no unknown fields); a Struct's constructor checks nothing, so
`to_json` decodes what it writes before anything is stored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, ClassVar, Literal, Self

import msgspec
from msgspec import Meta, field

from kiln.errors import StoreError

SCHEMA_VERSION = 1
Digest = Annotated[str, Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
Count = Annotated[int, Meta(ge=0)]

MEDIA_KERNEL = "application/vnd.kiln.kernel.vmlinux.v1+xz"
MEDIA_ROOTFS = "application/vnd.kiln.rootfs.v1.erofs"
MEDIA_MANIFEST = "application/vnd.kiln.manifest.v1+json"


Hex64 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
Positive = Annotated[int, Meta(gt=0)]


class Verity(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the root is verified: kiln.image.verity builds it, kiln.guest.protocol.dm_table tells the kernel."""

    algorithm: str = "sha256"
    root_hash: Hex64
    salt: Hex64
    block_size: int = 4096
    data_blocks: Positive
    hash_offset: Positive  # bytes: where the hash tree starts in the image


class _Frozen(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Immutable; unknown fields are an error. (msgspec does not inherit kw_only: each class says it.)"""


class Part(_Frozen, kw_only=True):
    """One blob of the image."""

    digest: Digest
    size: Count
    media_type: str


class KernelPart(Part, kw_only=True):
    config_hash: str
    features: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)  # feature beyond the base -> why
    source_version: str
    options: tuple[str, ...] = ()  # every CONFIG_ option the kernel has on (y)
    options_enabled: Count
    uncompressed_size: Count

    @property
    def network(self) -> bool:
        return "virtio-net" in self.features


class RootfsPart(Part, kw_only=True):
    format: Literal["erofs"] = "erofs"
    compression: str
    files: Count
    verity: Verity


class SyscallPolicy(_Frozen, kw_only=True):
    """Calls guest init refuses (EPERM, with a console line), and those the config let through."""

    denied: tuple[str, ...]
    relaxed: dict[str, str] = field(default_factory=dict)


class Account(_Frozen, kw_only=True):
    """The account the app runs as (an image's USER, a unit's User= and Group=): in the generated /etc/passwd."""

    name: str
    uid: Annotated[int, Meta(ge=0)]
    gid: Annotated[int, Meta(ge=0)]
    groups: tuple[int, ...] = ()  # supplementary groups


class Writable(_Frozen, kw_only=True):
    """A directory the app writes to besides /tmp and its volumes: a tmpfs owned by its account (a unit's
    RuntimeDirectory, LogsDirectory, CacheDirectory; /run), or a declared volume given to that account."""

    path: str
    uid: Annotated[int, Meta(ge=0)] = 0
    gid: Annotated[int, Meta(ge=0)] = 0
    mode: Annotated[int, Meta(ge=0, le=0o7777)] = 0o755
    kind: Literal["tmpfs", "volume"] = "tmpfs"
    why: str = ""


class SetupStep(_Frozen, kw_only=True):
    """One step of a server's first start: the image's own server program in its single-user mode, reading
    `input` (SQL; ${NAME} is the run's NAME, quoted for the SQL string or name it sits in) and then the image's
    file `input_file` on its standard input; run when `when` holds ("-": always; NAME: set; NAME!=VALUE; several
    joined by "," must all hold)."""

    argv: tuple[str, ...] = ()  # empty only for an append step
    input: str = ""
    input_file: str | None = None
    when: str = "-"
    # no program: `input` (each ${NAME} one word) is appended to this file of the filled data volume
    append_to: str | None = None

    def __post_init__(self) -> None:
        if not self.argv and not self.append_to:
            raise ValueError("a set-up step runs a program (argv) or appends to a file (append_to)")
        if self.append_to is not None and ("/" in self.append_to or self.append_to in ("", ".", "..")):
            raise ValueError(f"append_to {self.append_to!r} is not a file name of the data volume")


class Setup(_Frozen, kw_only=True):
    """What a server's first start runs, in order, once its data volume has been filled from the image (guest
    init's firststart.c), each step started as the app is."""

    steps: Annotated[tuple[SetupStep, ...], Meta(min_length=1)]
    needs: tuple[str, ...] = ()  # the run-time variables it reads
    why: str = ""


class Entry(_Frozen, kw_only=True):
    """How init starts the app."""

    argv: Annotated[tuple[str, ...], Meta(min_length=1)]
    # argv[args_from:] are the app's arguments, which `kiln run IMAGE ARGS` replaces (Docker's CMD after
    # its ENTRYPOINT); None: an image built before kiln could
    args_from: Annotated[int, Meta(ge=1)] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    ports: tuple[int, ...] = ()
    volumes: tuple[str, ...] = ()
    memory_mib: Annotated[int, Meta(ge=16)]
    ready: str | None = None  # an HTTP path that answers 200 once the app is ready (snapshots)
    user: Account | None = None  # None: root (a native service may switch to its own account itself)
    writable: tuple[Writable, ...] = ()
    keep_caps: tuple[Literal["setuid", "setgid", "chown"], ...] = ()  # kept in the unix sandbox
    stop_signal: str | None = None  # what `kiln stop` sends the app (None: SIGTERM)
    setup: Setup | None = None  # a server's first-start set-up, run once its data volume is filled
    # programs of the image the server executes itself (Erlang's erl_child_setup): the one execve init lets
    # through besides the app's own start, by exact path; writable mounts are then noexec
    helpers: tuple[str, ...] = ()
    # init forwards published ports' connections from the client's own address (kiln.guest.protocol.CLIENTS);
    # False: an image built before its init could, whose forwards go straight to the app
    client_address: bool = False

    def argv_with(self, args: tuple[str, ...] | None) -> tuple[str, ...]:
        """The argv with the app's arguments replaced by `args` (None: as built)."""
        if args is None:
            return self.argv
        if self.args_from is None:
            raise StoreError("this image was built before kiln could replace its arguments: rebuild it")
        return (*self.argv[: self.args_from], *args)


class ModuleEntry(_Frozen, kw_only=True):
    name: str
    origin: Literal["app", "stdlib", "third-party"]
    kind: Literal["source", "extension", "builtin", "namespace"]
    path: str | None = None  # inside the image
    size: int = 0


class LibraryEntry(_Frozen, kw_only=True):
    path: str  # inside the image, as the loader asks for it
    size: Count
    needed_by: str


class DistributionEntry(_Frozen, kw_only=True):
    name: str
    version: str


class PythonInfo(_Frozen, kw_only=True):
    interpreter: str
    version: str
    modules: tuple[ModuleEntry, ...]
    optional_left_out: tuple[str, ...] = ()  # imports not followed: optional, not required, other platforms
    excluded: tuple[str, ...] = ()  # imports `exclude` declared never reached
    dependencies_from: str | None = None  # "requirements.txt", "pyproject.toml + uv.lock"
    distributions: tuple[DistributionEntry, ...] = ()  # third-party distributions whose modules are kept
    data_files: int = 0  # package data and the app's own data files


class SourceImage(_Frozen, kw_only=True):
    """The container image a kiln image was built from (kiln.oci), and what it held."""

    reference: str | None  # a registry's HOST/REPO:TAG; None for a local layout or archive (no host path)
    digest: Digest  # its image manifest's (differs between a registry's compressed layers and an archive's)
    id: Digest  # its config's: the image's identity whatever carried it (docker's "image ID")
    files: Count
    executables: Count
    shells: tuple[str, ...] = ()
    size: Count  # bytes of its files
    python: str | None = None  # the image's interpreter the analysis ran with, if it was a Python app


class BuildInputs(_Frozen, kw_only=True):
    source: str
    config_file: str | None
    sources_digest: Digest
    kiln_version: str
    image: SourceImage | None = None  # built from a container image


class _Document(_Frozen, kw_only=True):
    """A JSON document stored as a blob: its digest is taken over its canonical bytes."""

    kind: ClassVar[str]  # for messages: "manifest", "snapshot record"

    def to_json(self) -> bytes:
        """The canonical bytes that the document's digest is taken over (checked as a reader would)."""
        data = json.dumps(self.to_dict(), sort_keys=True, indent=2).encode() + b"\n"
        type(self).from_json(data, f"the {self.kind} being written")
        return data

    def to_dict(self) -> dict[str, object]:
        """As JSON values (datetimes as RFC 3339 text, tuples as lists), for --json output."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: bytes, what: str | None = None) -> Self:
        try:
            return msgspec.json.decode(data, type=cls)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            # msgspec says "Expected `int`, got `str` - at `$.kernel.size`"; say "kernel.size: ..."
            message, _, where = str(err).partition(" - at `$")
            where = where.rstrip("`").lstrip(".") or "(top level)"
            raise StoreError(f"{what or cls.kind} is not a valid kiln {cls.kind}: {where}: {message}") from None


class Manifest(_Document, kw_only=True):
    kind: ClassVar[str] = "manifest"

    schema_version: Literal[1] = SCHEMA_VERSION
    name: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._:/-]*$")]  # the image name it was built as
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


class MadeWith(_Frozen, kw_only=True):
    """Everything a restore must find again: another value in any field means a cold boot."""

    qemu: str  # QEMU's version line
    accel: str
    cpu: str
    memory_mib: int
    devices: str  # qemu_command.device_set
    after: Literal["ready", "kernel"]

    def key(self) -> str:
        return hashlib.sha256(json.dumps(msgspec.structs.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: MadeWith) -> list[str]:
        """What differs, in words: ["memory: snapshot 48 MiB, this run 64 MiB", ...]."""
        out = []
        for key, value in msgspec.structs.asdict(self).items():
            theirs = getattr(other, key)
            if value != theirs:
                unit = " MiB" if key == "memory_mib" else ""
                name = key.removesuffix("_mib")
                out.append(f"{name}: snapshot {value}{unit}, this run {theirs}{unit}")
        return out


class SnapshotRecord(_Document, kw_only=True):
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
