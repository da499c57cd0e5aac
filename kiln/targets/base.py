"""What every target shares: the run config, the plan, and the two halves of a target: planning (with
the store) and running (without)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol, get_args

import msgspec

from kiln.errors import UsageError
from kiln.targets.portmap import PortMap

if TYPE_CHECKING:
    from kiln.store import Image, Store

Accel = Literal["auto", "kvm", "tcg"]
SnapshotUse = Literal["auto", "never", "require"]


class VolumeMap(msgspec.Struct, frozen=True, kw_only=True):
    """-v HOST:GUEST: a host directory on one of the image's declared volumes."""

    host: Path
    guest: str

    @classmethod
    def parse(cls, spec: str) -> VolumeMap:
        host, sep, guest = spec.rpartition(":")
        if not sep or not host or not guest.startswith("/"):
            raise UsageError(f"invalid volume {spec!r} (expected HOSTDIR:/guest/path, e.g. ./data:/data)")
        path = Path(host).expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"volume {spec!r}: {path} is not a directory")
        return cls(host=path, guest=guest)


class Lan(msgspec.Struct, frozen=True, kw_only=True):
    """A NIC beside eth0 (eth1, eth2, ... in order) on a private L2 segment: one of a compose project's
    networks (kiln.compose.switch), with the names of the services the guest reaches there."""

    socket: Path  # the segment's switch on the host, a UNIX socket
    address: str  # this guest's IP/PREFIX on it
    mac: str
    hosts: tuple[tuple[str, str], ...] = ()  # (name, IP): lines the guest's /etc/hosts gets


class BindMount(msgspec.Struct, frozen=True, kw_only=True):
    """A host file or directory bound over one the image holds (compose's binds: ./nginx.conf:/etc/nginx/...):
    what the guest sees there at run time, the sealed root and its digest unchanged."""

    host: Path
    guest: str
    read_only: bool = False


class SecretFile(msgspec.Struct, frozen=True, kw_only=True):
    """One secret of a run: `file` in the share's directory, at /run/secrets/`target` in the guest, for uid:gid
    (-1: the app's account) with `mode`. Its content is never in a record, only in that file."""

    file: str
    target: str
    uid: int = -1
    gid: int = -1
    mode: int = 0o400


class SecretShare(msgspec.Struct, frozen=True, kw_only=True):
    """A compose service's secrets: a private host directory of their files (kiln.compose.secrets), shared
    read-only with the guest, whose init copies them to /run/secrets (init's secrets.c)."""

    directory: Path
    files: tuple[SecretFile, ...]

    def lines(self) -> tuple[str, ...]:
        """As init reads them from kiln.secrets: "FILE TARGET UID GID MODE"."""
        return tuple(f"{f.file} {f.target} {f.uid} {f.gid} {f.mode:o}" for f in self.files)


class RunConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `kiln run` may say about one run: a run record (kiln.records), kept in an instance's
    config.json and read back by its supervisor."""

    ports: tuple[PortMap, ...] = ()
    volumes: tuple[VolumeMap, ...] = ()
    memory_mib: int | None = None
    accel: Accel = "auto"
    kernel_log: bool = False
    skip_digest_check: bool = False  # for testing dm-verity only: boot parts the store cannot vouch for
    qmp_socket: Path | None = None  # where QEMU's control socket goes (default: under $KILN_HOME/run)
    control_socket: Path | None = None  # where the guest init's channel goes (default: under $KILN_HOME/run)
    # qemu target: restore from a matching snapshot (auto), never (--cold), or fail without one
    snapshot: SnapshotUse = "auto"
    # added to the app's environment by init (kiln run -e, compose's environment, kiln build --check)
    extra_env: dict[str, str] = {}
    # the app's arguments instead of the image's (kiln run IMAGE ARGS; Entry.argv_with)
    args: tuple[str, ...] | None = None
    stop_signal: str | None = None  # what stopping sends the app first (default: the image's, else SIGTERM)
    relay: bool = True  # published ports accepted by kiln's relay (False: the summoner, itself the relay)
    # qemu target: the forwards carry the client's address to the app (the relay's PROXY line to init's
    # forwarder, kiln.guest.protocol.CLIENTS); False: straight to the app (a snapshot's own readiness check)
    client_address: bool = True
    lans: tuple[Lan, ...] = ()  # qemu target: a NIC on each of a compose service's networks
    isolated: bool = False  # qemu target: no way out (compose's internal networks): only the published ports
    gdb_port: int | None = None  # qemu target: QEMU's gdbstub on 127.0.0.1:PORT (kiln debug)
    gdb_wait: bool = False  # and the guest paused until the debugger says continue
    secrets: SecretShare | None = None  # qemu target: a compose service's secrets at /run/secrets
    binds: tuple[BindMount, ...] = ()  # qemu target: host files and directories over the image's
    tmpfs: tuple[str, ...] = ()  # qemu target: a fresh tmpfs over each of these directories of the image

    def __post_init__(self) -> None:
        if self.memory_mib is not None and (type(self.memory_mib) is not int or self.memory_mib < 16):
            raise UsageError(f"guest memory must be at least 16 MiB (got {self.memory_mib})")
        if self.accel not in get_args(Accel):
            raise ValueError(f"invalid accelerator {self.accel!r}")
        if self.snapshot not in get_args(SnapshotUse):
            raise ValueError(f"invalid snapshot use {self.snapshot!r}")

    def volume_hosts(self, declared: tuple[str, ...]) -> list[Path | None]:
        """For each volume the image declares, the host directory given for it (None: a fresh tmpfs)."""
        given = {v.guest: v.host for v in self.volumes}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            have = ", ".join(declared) or "none"
            raise UsageError(f"the image declares no volume at {', '.join(unknown)} (it declares: {have})")
        return [given.get(path) for path in declared]


class Plan(msgspec.Struct, kw_only=True):
    """A run, decided but not started: the exact command, and what it needs. A run record: `kiln-oci
    create` decides it and the container's shim runs it, with no store."""

    target: str
    image: str  # the reference, for messages
    argv: list[str]
    notes: list[str] = []  # one-line notices for the user
    forwards: list[PortMap] = []  # published ports: host-side relays to start
    upstreams: list[int] = []  # each forward's loopback port to relay to (kiln.targets.relay)
    client_header: bool = False  # the relays open each connection with the client's address (a PROXY line)
    qmp_socket: Path | None = None
    cleanup: list[Path] = []
    control_socket: Path | None = None
    restore: Restore | None = None  # set: argv restores a snapshot, and `cold` is the fallback
    cold: list[str] | None = None  # the cold boot's command, if the restore fails (None: --snapshot=require)
    memory_mib: int | None = None  # the guest's RAM (None: no guest, the unix target)
    stop_signal: int = 15  # what a stop sends the app first, through init; then, after a grace, the end


def signal_number(name: str | None, where: str = "the stop signal") -> int:
    """SIGTERM, TERM or 15 -> 15."""
    import signal as signals

    if name is None:
        return int(signals.SIGTERM)
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signals.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise UsageError(f"{where}: {name!r} is not a signal") from None


class Restore(msgspec.Struct, frozen=True, kw_only=True):
    """What a restored VM still needs once QEMU runs: a new seed and clock, then its port forwards."""

    snapshot: str  # the snapshot record's digest
    after: str  # "ready" or "kernel"
    ports: tuple[PortMap, ...]
    state: Path  # the saved device state (QEMU's migration stream)
    listening: tuple[int, ...] = ()  # guest ports that listened when it was saved (after "ready")


class Runner(Protocol):
    """Running a plan: needs no store (the kiln-oci shim runs the plan `kiln-oci create` made)."""

    name: str

    def run(self, plan: Plan, sink: BinaryIO, on_start: Callable[[int], None] | None = None) -> int:
        """Start the plan, stream the console to `sink`, return the app's exit status.

        `on_start` gets the pid of the VM (or sandbox) process once it is running."""
        ...


class Target(Runner, Protocol):
    """Planning a run from an image in the store, then running it: configuring, then running, as
    MirageOS splits them."""

    def __init__(self, store: Store) -> None: ...

    def plan(self, image: Image, cfg: RunConfig) -> Plan:
        """Check the image's parts and decide the command line; start nothing."""
        ...
