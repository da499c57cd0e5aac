"""What a summoner serves: summon.toml, or the same given on the command line.

# summon.toml
idle = "30s"              # stop an instance after this long with no connection and no bytes
max_running = 8           # at most this many instances; beyond, the least recently used idle one stops
ready_timeout = "60s"     # a held connection is reset if its instance is not ready by then
metrics = "127.0.0.1:9464"  # Prometheus metrics at http://HOST:PORT/metrics (optional)

[dns]                     # optional, as Jitsu: an A query for NAME.DOMAIN summons NAME
listen = "127.0.0.1:5353"
domain = "kiln.test"
address = "127.0.0.1"     # the address the A records give (where the summoner listens)

[[service]]
name = "hello"            # default: the image's name
image = "hello-http"
ports = ["8080:8080"]     # [IP:]HOST:GUEST, as kiln run -p
memory = "48M"            # default: the image's
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from kiln.errors import UsageError
from kiln.targets.portmap import PortMap
from kiln.units import parse_duration, parse_memory

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Service(_Model):
    model_config = ConfigDict(arbitrary_types_allowed=True)  # PortMap: a run record (msgspec), checked by its parse

    name: str = ""
    image: str
    ports: tuple[PortMap, ...] = Field(min_length=1)
    memory: Annotated[int, BeforeValidator(parse_memory)] | None = None

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, v: object) -> object:
        if isinstance(v, list | tuple):
            return tuple(PortMap.parse(p) if isinstance(p, str) else p for p in v)
        return v

    @field_serializer("ports")
    def _port_specs(self, ports: tuple[PortMap, ...]) -> list[str]:
        """As `-p` spells them (the detached summoner reads its config back from JSON)."""
        return [f"{p.host_ip}:{p.host}:{p.guest}" for p in ports]

    @model_validator(mode="after")
    def _name(self) -> Service:
        if not self.name:
            object.__setattr__(self, "name", self.image.rsplit("/", 1)[-1].split(":", 1)[0])
        if not re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", self.name):
            raise ValueError(f"service name {self.name!r} must be a DNS label (a-z, 0-9, -)")
        return self


class Dns(_Model):
    listen: str = "127.0.0.1:5353"
    domain: str = "kiln.test"
    address: str = "127.0.0.1"
    ttl: int = Field(default=0, ge=0)


class SummonConfig(_Model):
    idle: Seconds = 30.0
    max_running: int = Field(default=8, ge=1)
    ready_timeout: Seconds = 60.0
    metrics: str | None = None
    dns: Dns | None = None
    service: tuple[Service, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SummonConfig:
        names = [s.name for s in self.service]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"two services are named {', '.join(dup)} (give one a name)")
        ports = [(p.host_ip, p.host) for s in self.service for p in s.ports]
        if dup_ports := sorted({p for p in ports if ports.count(p) > 1}):
            raise ValueError(f"host port {dup_ports[0][1]} is given to two services")
        return self


def split_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{what}: expected HOST:PORT, e.g. 127.0.0.1:5353 (got {text!r})")
    return host or "127.0.0.1", int(port)


def _error(err: ValidationError, where: str) -> UsageError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return UsageError(f"{where}: {loc}: {first['msg'].removeprefix('Value error, ')}")


def load(path: Path | None, services: list[str], **overrides: object) -> SummonConfig:
    """summon.toml (if given), plus IMAGE=PORT[,PORT] services from the command line, plus options."""
    data: dict[str, object] = {}
    where = "the command line"
    if path is not None:
        where = str(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"no such file: {path}") from None
        except tomllib.TOMLDecodeError as err:
            raise UsageError(f"{path}: {err}") from None
    listed = list(data.get("service", []))  # type: ignore[call-overload]
    for spec in services:
        image, sep, ports = spec.partition("=")
        if not sep or not ports:
            raise UsageError(f"service {spec!r}: expected IMAGE=[IP:]HOST:GUEST[,...], e.g. hello-http=8080:8080")
        listed.append({"image": image, "ports": ports.split(",")})
    data["service"] = listed
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SummonConfig.model_validate(data)
    except ValidationError as err:
        raise _error(err, where) from None
