"""Free loopback ports: kiln's own `free_port`, n distinct ones at once, and one whose number reads a certain way."""

from __future__ import annotations

import contextlib
import socket

from kiln.targets.ports import free_port

__all__ = ["free_port", "free_port_reading", "free_ports"]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open while choosing, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def free_port_reading(digits: str) -> int:
    """A free loopback port whose number contains `digits` (e.g. "401"), for tests of messages that quote it."""
    for port in (p for p in range(1024, 65536) if digits in str(p)):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port contains {digits}")
