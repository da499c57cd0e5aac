"""The guest protocol: everything kiln and its guest init (kiln/guest/init/*.c) say to each other.

Four channels, each written here and read by the C beside this module:

- **/kiln/config** (`config_lines`), in the image: one `KEY VALUE` line each (main.c, load_config):
  `arg`, `env`, `workdir`, `hostname`, `volume TAG PATH` (tags from `volume_tag`), `user UID GID
  GROUPS...`, `caps`, `tmpfs|owner PATH UID GID MODE` and `seccomp ACTION NR NAME` (kiln.policy).
- **The kernel command line** (`kernel_cmdline`), per run: `kiln.memory`, `kiln.ip`/`kiln.gw`,
  `kiln.ip1` and `kiln.hosts` (a compose network), `kiln.env` and `kiln.argv` (hex, one item a line:
  `hex_lines`), `kiln.seed`, `kiln.wait-seed`, `kiln.probe`, `kiln.poweroff`, and the dm-verity
  table of the root (`dm_table`). Every target and export builds its line here.
- **The control channel** (`ControlChannel`), to a running VM: a second UART (ttyS1 in the guest,
  raw mode) that QEMU serves on a UNIX socket of the host. A UART, not a virtio-serial port: it has
  no receive rings in guest memory (virtio-serial's cost hello-http ~1 MiB, its lowest memory 37 ->
  44 MiB). The host connects, asks, and init answers, one text line each way (control.c):

    @N ping                            @N ok ping STATE UPTIME_MS
    @N listening PORT...               @N ok listening | @N no listening PORT
    @N seed HEX64 SECONDS NANOSECONDS  @N ok seed
    @N meminfo                         @N ok meminfo MemTotal=KIB ... VmRSS=KIB ...
    @N stats                           @N ok stats mem_total_kib=N ... [gc_gen0=N ...]  (kiln top)
    @N stack | threads                 @N ok stack | @N ok threads TID:STATE:NAME ...  (kiln stack)
    @N http PORT /PATH                 @N ok http STATUS | @N no http REASON
    @N probe KIND PORT                 @N ok probe | @N no probe REASON  (postgres, mysql, redis)
    @N signal N                        @N ok signal

  Only the host starts a conversation, and only one host process talks at a time (QEMU's socket
  takes one client). Snapshots and every restore use it; later tools add requests to the same
  channel rather than opening another one.
- **Published ports' connections** (`CLIENTS`, `proxy_line`): kiln's relay opens each with a PROXY
  protocol v1 line (HAProxy's) to init's forwarder on eth0's CLIENTS_PORT, which connects to the app from
  the client's own address (clients.c), so that the app sees its clients and not QEMU's gateway.
- **Init's own lines on the console** (`INIT_SAY`, `INIT_OOM`, `out_of_memory`, `KILLED_BY_SIGNAL`):
  why the app ended (stats.c, explain_end), which kiln.runtime.failure reads back.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import TargetError, UsageError

if TYPE_CHECKING:
    from kiln.manifest import Entry, Verity

# ---- the image: /kiln/config ------------------------------------------------------------------

INIT_PATH = "/kiln/init"
START_PATH = "/kiln/start.py"  # kiln/guest/start.py: faulthandler for `kiln stack`, then the app
CONFIG_PATH = "/kiln/config"
CONFIG_KEYS = ("arg", "env", "workdir", "hostname", "volume", "user", "caps", "tmpfs", "owner", "seccomp", "setup-step",
               "setup-arg", "setup-input", "setup-file", "setup-append", "exec")  # fmt: skip
SETUP_STEPS_MAX = 12  # set-up steps init runs (init.h's MAX_STEPS)
SETUP_INPUT_MAX = 4095  # bytes of a setup's input (init's setup_input_hex holds 8192 hex digits)


def volume_tag(index: int) -> str:
    """The 9p mount tag of the index-th declared volume (build and run agree on it)."""
    return f"vol{index}"


def config_lines(entry: Entry, hostname: str, seccomp: list[str]) -> bytes:
    """/kiln/config as guest init reads it (main.c, load_config); `seccomp`: kiln.policy's lines."""
    lines = [f"arg {a}" for a in entry.argv]
    lines += [f"env {k}={v}" for k, v in entry.env.items()]
    lines += [f"workdir {entry.workdir}", f"hostname {hostname}"]
    lines += [f"volume {volume_tag(i)} {path}" for i, path in enumerate(entry.volumes)]
    if entry.user is not None:
        lines.append(" ".join(map(str, ("user", entry.user.uid, entry.user.gid, *entry.user.groups))))
    if entry.keep_caps:
        lines.append("caps " + " ".join(entry.keep_caps))
    for w in entry.writable:
        lines.append(
            f"tmpfs {w.path} {w.uid} {w.gid} {w.mode:o}"
            if w.kind == "tmpfs"
            else f"owner {w.path} {w.uid} {w.gid} {w.mode:o}"
        )
    lines += [f"exec {path}" for path in entry.helpers]
    steps = entry.setup.steps if entry.setup else ()
    assert len(steps) <= SETUP_STEPS_MAX, f"at most {SETUP_STEPS_MAX} set-up steps"
    for step in steps:
        lines.append(f"setup-step {step.when}")
        lines += [f"setup-arg {a}" for a in step.argv]
        if step.input:
            assert len(step.input.encode()) <= SETUP_INPUT_MAX, "a setup's input is at most 4 KiB: use input_file"
            lines.append(f"setup-input {step.input.encode().hex()}")
        if step.input_file:
            lines.append(f"setup-file {step.input_file}")
        if step.append_to:
            lines.append(f"setup-append {step.append_to}")
    lines += seccomp
    return ("\n".join(lines) + "\n").encode()


def read_config(data: bytes) -> list[tuple[str, str]]:
    """/kiln/config back as (key, value) pairs, as init splits each line (at its first space)."""
    pairs = []
    for line in data.decode().splitlines():
        key, sep, value = line.partition(" ")
        if sep and key in CONFIG_KEYS:
            pairs.append((key, value))
    return pairs


# ---- each run: the kernel command line ----------------------------------------------------------

CMDLINE_MAX = 2048  # COMMAND_LINE_SIZE on x86
GUEST_IP = "10.0.2.15/24"  # eth0 on QEMU's user network, and its gateway (KubeVirt's pod network differs)
GATEWAY = "10.0.2.2"
SEED = "kiln.seed"  # 64 hex digits: the guest's first entropy (entropy.c)
WAIT_SEED = "kiln.wait-seed"  # a snapshot's guest waits for a fresh seed before the app starts
PROBE = "kiln.probe"  # run the import probe instead of the app (build --check)
POWEROFF = "kiln.poweroff"  # power off, not reboot, when the app ends (firmware-booted disks)
BINDS = "kiln.binds"  # hex lines "TAG GUEST NAME RO": host files over the image's (init's binds.c)
MAX_BINDS = 8
TMPFS = "kiln.tmpfs"  # hex lines, one directory of the image each: a tmpfs over it (compose's tmpfs:)
MAX_LANS = 4  # kiln.ip1 .. kiln.ip4: eth1 .. eth4 (init's net.c)
SECRETS = "kiln.secrets"  # hex lines "FILE TARGET UID GID MODE": the secrets init copies to /run/secrets
SECRETS_TAG = "kiln-secrets"  # the read-only 9p share holding their files
CLIENTS = "kiln.clients"  # init starts its forwarder of published ports' connections (clients.c)
CLIENTS_PORT = 61000  # where it listens on eth0: above Linux's ephemeral ports (32768-60999), clear of the app's


def proxy_line(client: tuple[str, int], server: tuple[str, int], guest_port: int) -> bytes:
    """The PROXY protocol v1 line that opens a published port's connection to init's forwarder: the client's
    address and port, the host's, and the app's port in the guest (where the forwarder connects)."""
    host, port = client[0], client[1]
    if host.startswith("::ffff:") and "." in host:  # an IPv4 client of a dual-stack listener
        host = host[len("::ffff:") :]
    family = "TCP6" if ":" in host else "TCP4"
    server_host = server[0] if (":" in server[0]) == (family == "TCP6") else ("::" if family == "TCP6" else "0.0.0.0")
    return f"PROXY {family} {host} {server_host} {port} {guest_port}\r\n".encode()


def hex_lines(lines: list[str]) -> str:
    """Lines as one hex word: a kernel parameter holds no spaces or quotes (init decodes it)."""
    return "".join(f"{line}\n" for line in lines).encode().hex()


def unhex_lines(word: str) -> list[str]:
    """`hex_lines` undone, as init's unhex and its line split do."""
    return bytes.fromhex(word).decode().splitlines()


def dm_table(v: Verity, device: str = "/dev/vda", hash_device: str | None = None) -> str:
    """The dm-mod.create= value that maps `device` to a verified /dev/dm-0: its hash tree after the data
    on the same device, or at the start of `hash_device` (a disk's verity partition, kiln.export.disk)."""
    sectors = v.data_blocks * v.block_size // 512
    start = 0 if hash_device else v.hash_offset // v.block_size
    return (
        f"root,,,ro,0 {sectors} verity 1 {device} {hash_device or device} {v.block_size} {v.block_size} "
        f"{v.data_blocks} {start} {v.algorithm} {v.root_hash} {v.salt}"
    )


@dataclass(frozen=True)
class Boot:
    """What one boot tells the guest's kernel and init: every target and export fills one in."""

    memory_mib: int
    verity_table: str | None = None
    root_devices: tuple[str, ...] = ("/dev/vda",)  # what the dm table names, waited for before it is set up
    quiet: bool = True
    network: bool = True
    dhcp: bool = False  # eth0 by the kernel's DHCP client (a firmware-booted disk), not kiln.ip/kiln.gw
    guest_ip: str = GUEST_IP
    gateway: str = GATEWAY
    lan_addresses: tuple[str, ...] = ()  # NICs on private segments (compose's networks): eth1, eth2, ...
    hosts: tuple[tuple[str, str], ...] = ()  # (name, address) on that segment
    env: tuple[tuple[str, str], ...] = ()
    argv: tuple[str, ...] | None = None
    secrets: tuple[str, ...] = ()  # SecretShare.lines(): names, targets, owners; never a secret's content
    binds: tuple[str, ...] = ()  # "TAG GUEST NAME RO": share TAG's NAME ("-": all of it) over GUEST
    tmpfs: tuple[str, ...] = ()  # directories of the image a fresh tmpfs covers
    clients: bool = False  # init's forwarder takes the published ports' connections (CLIENTS)
    extra: tuple[str, ...] = ()  # other kernel parameters (kiln.seed, kiln.probe...)


def kernel_cmdline(boot: Boot) -> str:
    """The guest's kernel command line; UsageError when Linux would cut it."""
    if boot.verity_table:
        root = [
            "root=/dev/dm-0",
            f'dm-mod.create="{boot.verity_table}"',
            "dm-mod.waitfor=" + ",".join(boot.root_devices),
        ]
    else:
        root = [f"root={boot.root_devices[0]}"]
    params = [
        "console=ttyS0",
        *root,
        "rootfstype=erofs",
        # EROFS keeps no second, compressed copy of what it decompressed: in a guest of ~32 MiB the
        # cached compressed clusters crowd out the app's pages.
        "rootflags=cache_strategy=disabled",
        "ro",
        f"init={INIT_PATH}",
        "panic=-1",
        "reboot=t",
        "tsc=reliable",
        "no_timer_check",
    ]
    params.append(f"kiln.memory={boot.memory_mib}")  # init names it when the app runs out of memory
    if boot.quiet:
        params.append("quiet")
    if boot.network and boot.dhcp:
        params.append("ip=dhcp")  # the kernel's DHCP client configures eth0 before init runs
    elif boot.network:
        params += [f"kiln.ip={boot.guest_ip}", f"kiln.gw={boot.gateway}"]
    if len(boot.lan_addresses) > MAX_LANS:
        raise UsageError(f"a guest has at most {MAX_LANS} networks beside its own (got {len(boot.lan_addresses)})")
    params += [f"kiln.ip{i}={address}" for i, address in enumerate(boot.lan_addresses, 1)]
    if boot.network and not boot.dhcp and boot.clients:
        params.append(CLIENTS)
    if boot.lan_addresses and boot.hosts:
        params.append("kiln.hosts=" + hex_lines([f"{ip}\t{name}" for name, ip in boot.hosts]))
    if boot.env:
        params.append("kiln.env=" + hex_lines([f"{key}={value}" for key, value in boot.env]))
    if boot.argv is not None:
        params.append("kiln.argv=" + hex_lines(list(boot.argv)))
    if boot.secrets:
        params.append(f"{SECRETS}=" + hex_lines(list(boot.secrets)))
    if boot.binds:
        params.append(f"{BINDS}=" + hex_lines(list(boot.binds)))
    if boot.tmpfs:
        params.append(f"{TMPFS}=" + hex_lines(list(boot.tmpfs)))
    line = " ".join(params + list(boot.extra))
    if len(line) >= CMDLINE_MAX:
        raise UsageError(
            f"the guest's kernel command line would be {len(line)} bytes, over Linux's {CMDLINE_MAX - 1}: "
            "fewer or shorter -e variables or arguments"
        )
    return line


def cmdline_param(line: str, key: str) -> str | None:
    """The value of `key` on a kernel command line, as init's cmdline_param finds it."""
    for word in line.split():
        name, sep, value = word.partition("=")
        if name == key:
            return value if sep else ""
    return None


# ---- init's own lines -------------------------------------------------------------------------

INIT_SAY = "kiln-init: "  # how every line of init's begins (main.c, say)
INIT_OOM = INIT_SAY + "the app ran out of memory"  # stats.c, explain_end
KILLED_BY_SIGNAL = INIT_SAY + "the app was killed by signal"


def out_of_memory(memory_mib: int | None, peak_mib: int) -> str:
    """The out-of-memory sentence, as init words it (stats.c, explain_end)."""
    if memory_mib:
        return (
            f"the app ran out of memory: {memory_mib} MiB guest, the app used {peak_mib} MiB at its peak; "
            f"try --memory {memory_mib * 2}M"
        )
    return f"the app ran out of memory: the app used {peak_mib} MiB at its peak"


# ---- a running VM: the control channel ----------------------------------------------------------

REQUESTS = ("ping", "listening", "seed", "meminfo", "stats", "stack", "threads", "http", "probe", "signal")
RESEND = 0.5  # seconds before a request unanswered is sent again (a UART may have dropped it)
ANSWERS = ("ok", "no", "err")  # how init's answers begin, after the tag


def figures(words: list[str], what: str) -> dict[str, int]:
    """Init's KEY=N words (meminfo, stats) -> {KEY: N}; TargetError naming `what` for anything else."""
    try:
        return {key: int(value) for key, value in (w.split("=", 1) for w in words)}
    except ValueError:
        raise TargetError(f"{what}: {' '.join(words)[:80]!r} is not KEY=N figures") from None


class ControlChannel:
    """One connection to a VM's guest init."""

    def __init__(self, path: Path, timeout: float = 30.0, alive: Callable[[], bool] | None = None) -> None:
        """Connect, waiting up to `timeout` for QEMU to create the socket (and no longer than `alive()`)."""
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._buf = b""
        # tags start anywhere: init may still be answering an earlier client's resent requests, and
        # those answers reach whoever is connected next; a fresh range keeps them from matching ours
        self._seq = 1000 + secrets.randbelow(10**9)
        deadline = time.monotonic() + timeout
        while True:  # QEMU creates the socket a few milliseconds after it starts
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if alive is not None and not alive():
                    self.sock.close()
                    raise TargetError("the VM stopped before its control channel opened") from None
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise TargetError(f"the VM's control channel {path} did not appear in {timeout:.0f} s") from None
                time.sleep(0.002)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ControlChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, line: str, timeout: float = 30.0) -> str:
        """Send one request; return init's answer (without its tag and newline).

        A UART drops what arrives before guest init opens it, so the request goes again every
        RESEND seconds until its answer comes; answers to earlier tags are ignored."""
        self._seq += 1
        tag = f"@{self._seq}"
        deadline = time.monotonic() + timeout
        try:
            while True:
                # the leading newline ends whatever part of an earlier line the UART dropped
                self.sock.sendall(f"\n{tag} {line}\n".encode())
                resend = min(deadline, time.monotonic() + RESEND)
                while time.monotonic() < resend:
                    while b"\n" in self._buf:
                        answer, self._buf = self._buf.split(b"\n", 1)
                        text = answer.decode(errors="replace").strip()
                        rest = text[len(tag) + 1 :] if text.startswith(tag + " ") else ""
                        if rest.split(" ", 1)[0] in ANSWERS:  # not the tty echoing a request before raw mode
                            if rest.startswith("err ") and rest.endswith(" unknown request"):
                                verb = line.split()[0]
                                raise TargetError(
                                    f"this image's guest init does not know {verb!r}: it was built by "
                                    "an older kiln (rebuild the image)"
                                )
                            return rest
                    self.sock.settimeout(max(0.001, resend - time.monotonic()))
                    try:
                        chunk = self.sock.recv(4096)
                    except TimeoutError:
                        break
                    if not chunk:
                        raise TargetError("the VM closed its control channel (did it stop?)")
                    self._buf += chunk
                if time.monotonic() >= deadline:
                    raise TargetError(f"guest init did not answer {line.split()[0]!r} within {timeout:.0f} s")
        except OSError as err:
            raise TargetError(f"the VM's control channel failed: {err.strerror or err}") from None

    def ping(self, timeout: float = 30.0) -> str:
        """The guest's state: "running" or "waiting-seed"."""
        answer = self.request("ping", timeout)
        parts = answer.split()
        if parts[:2] != ["ok", "ping"] or len(parts) < 3:
            raise TargetError(f"guest init answered ping with {answer!r}")
        return parts[2]

    def listening(self, ports: list[int], timeout: float = 30.0) -> bool:
        """Whether a TCP socket in the guest listens on every one of `ports`."""
        answer = self.request("listening " + " ".join(str(p) for p in ports), timeout)
        return answer == "ok listening"

    def wait_listening(self, ports: list[int], timeout: float, alive: Callable[[], bool] | None = None) -> None:
        """Ask until every port listens; TargetError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not self.listening(ports, timeout=max(1.0, deadline - time.monotonic())):
            if alive is not None and not alive():
                raise TargetError("the VM stopped before its app listened")
            if time.monotonic() > deadline:
                listed = ", ".join(map(str, ports))
                raise TargetError(f"the app did not listen on port(s) {listed} within {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def http_status(self, port: int, path: str, timeout: float = 10.0) -> int | None:
        """GET http://127.0.0.1:PORT/PATH inside the guest (its private ports too): the status, or None."""
        answer = self.request(f"http {port} {path}", timeout)
        parts = answer.split()
        if parts[:2] == ["ok", "http"] and len(parts) == 3 and parts[2].isdigit():
            return int(parts[2])
        if parts[:2] == ["no", "http"]:
            return None
        raise TargetError(f"guest init answered http with {answer!r}")

    def probe(self, kind: str, port: int, timeout: float = 10.0) -> str | None:
        """Ask the server on 127.0.0.1:PORT inside the guest in its own protocol (kind: postgres, mysql, redis;
        init's probes.c) whether it is ready: None if it is, else why not."""
        answer = self.request(f"probe {kind} {port}", timeout)
        if answer == "ok probe":
            return None
        if answer.startswith("no probe"):
            return answer.removeprefix("no probe").strip() or "not ready"
        raise TargetError(f"guest init answered probe with {answer!r}")

    def meminfo(self, timeout: float = 30.0) -> dict[str, int]:
        """The guest's own memory figures in KiB: /proc/meminfo's MemTotal, MemFree, MemAvailable,
        Cached, Shmem, AnonPages, Slab, KernelStack, PageTables, and the app's VmRSS, RssAnon, RssFile."""
        answer = self.request("meminfo", timeout)
        parts = answer.split()
        if parts[:2] != ["ok", "meminfo"]:
            raise TargetError(f"guest init answered meminfo with {answer!r}")
        return figures(parts[2:], "guest init's meminfo")

    def reseed(self, timeout: float = 30.0) -> None:
        """Give the guest a fresh 256-bit seed and the host's time (after every restore)."""
        now = time.time_ns()
        answer = self.request(f"seed {secrets.token_hex(32)} {now // 10**9} {now % 10**9}", timeout)
        if answer != "ok seed":
            raise TargetError(f"guest init refused the new seed: {answer}")

    def signal(self, number: int, timeout: float = 5.0) -> bool:
        """Ask init to send signal `number` to the app (its stop signal): whether init did."""
        return self.request(f"signal {number}", timeout).startswith("ok signal")
