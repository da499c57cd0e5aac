"""Port publishing on the host: check host ports are free. What a published port is (`-p`) lives in
kiln.targets.portmap; the relay that accepts its connections, in kiln.targets.relay."""

from __future__ import annotations

import errno
import socket

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
