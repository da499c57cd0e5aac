"""Port publishing on the host: check host ports are free, and proxy TCP (the unix target's forwards).
What a published port is (`-p`) lives in kiln.targets.portmap."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading

from kiln.errors import TargetError
from kiln.targets.portmap import PortMap


def free_port(host_ip: str = "127.0.0.1") -> int:
    """A TCP port the kernel says is free now (for forwards nobody publishes, e.g. the summoner's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host_ip, 0))
        return int(s.getsockname()[1])


def check_free(ports: tuple[PortMap, ...] | list[PortMap]) -> None:
    """Raise TargetError if a host port is already taken."""
    for p in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As servers do: connections lingering in TIME_WAIT do not make a port busy.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host_ip, p.host))
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    raise TargetError(f"host port {p.host} is already in use ({p.host_ip}:{p.host})") from None
                raise TargetError(f"cannot publish port {p.host} on {p.host_ip}: {err.strerror}") from None


class Forwarder:
    """Accept TCP on host_ip:host and relay each connection to 127.0.0.1:guest."""

    def __init__(self, port: PortMap) -> None:
        self.port = port
        self.listener = socket.create_server((port.host_ip, port.host), reuse_port=False)
        self.listener.settimeout(0.5)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"forward-{port.host}")
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.port.guest), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        t = threading.Thread(target=self._copy, args=(upstream, client, True), daemon=True)
        t.start()
        self._copy(client, upstream, False)
        t.join()
        client.close()
        upstream.close()

    def _copy(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:  # noqa: ARG002 (for subclasses)
        """Relay one direction until its end, then pass the end on."""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(timeout=2)
