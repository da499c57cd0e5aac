"""A published port: `-p [ip:]host:guest` as Docker spells it. The default host address is 0.0.0.0
(all interfaces), as with Docker.

Kept apart from kiln.targets.ports (sockets, threads, the forwarder) because every `kiln ps`
reads port maps from instance files and needs none of that.
"""

from __future__ import annotations

import msgspec

from kiln.errors import UsageError


class PortMap(msgspec.Struct, frozen=True, kw_only=True):
    """One published port: a run record (kiln.records), which `kiln ps` reads on every call."""

    host_ip: str = "0.0.0.0"
    host: int
    guest: int

    def __post_init__(self) -> None:
        for port in (self.host, self.guest):
            if type(port) is not int or not 1 <= port <= 65535:
                raise ValueError(f"invalid port {port!r} (1 to 65535)")

    @classmethod
    def parse(cls, spec: str) -> PortMap:
        parts = spec.rsplit(":", 2)
        try:
            if len(parts) == 1:
                return cls(host=int(parts[0]), guest=int(parts[0]))
            if len(parts) == 2:
                return cls(host=int(parts[0]), guest=int(parts[1]))
            import ipaddress  # here: `kiln ps` reads port maps and never parses one (~2 ms)

            ipaddress.IPv4Address(parts[0])
            return cls(host_ip=parts[0], host=int(parts[1]), guest=int(parts[2]))
        except ValueError:
            raise UsageError(
                f"invalid port mapping {spec!r} (expected [ip:]hostport:guestport, e.g. 8080:8080)"
            ) from None

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host}->{self.guest}/tcp"
