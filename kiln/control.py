"""The host side of the control channel between kiln and a VM's guest init.

Every kiln VM has a second UART (ttyS1 in the guest, raw mode) for it; QEMU
serves it on a UNIX socket of the host (qemu_command.VmSpec.control_socket).
A UART, not a virtio-serial port: it has no receive rings in guest memory
(virtio-serial's cost hello-http ~1 MiB, its lowest memory 37 -> 44 MiB).
The host connects, asks, and init answers, one text line each way (the
requests are listed at the top of kiln/guest/init/control.c):

    @N ping                            @N ok ping STATE UPTIME_MS
    @N listening PORT...               @N ok listening | @N no listening PORT
    @N seed HEX64 SECONDS NANOSECONDS  @N ok seed
    @N meminfo                         @N ok meminfo MemTotal=KIB ... VmRSS=KIB ...
    @N stats                           @N ok stats mem_total_kib=N ... [gc_gen0=N ...]  (kiln top)
    @N stack | threads                 @N ok stack | @N ok threads TID:STATE:NAME ...  (kiln stack)
    @N http PORT /PATH                 @N ok http STATUS | @N no http REASON

Only the host starts a conversation, and only one host process talks at a time
(QEMU's socket takes one client). Snapshots (kiln.snapshot) and every
restore use it; later tools (stacks, guest stats) add requests to the same
channel rather than opening another one.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

from kiln.errors import TargetError

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
