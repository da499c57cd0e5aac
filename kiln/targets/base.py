"""What every target shares: the run config, the plan, the Target protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kiln.store import Image, Store
from kiln.targets.ports import PortMap

Accel = Literal["auto", "kvm", "tcg"]


class RunConfig(BaseModel):
    """Everything `kiln run` may say about one run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ports: tuple[PortMap, ...] = ()
    memory_mib: int | None = Field(default=None, ge=16)
    accel: Accel = "auto"
    kernel_log: bool = False


@dataclass
class Plan:
    """A run, decided but not started: the exact command, and what it needs."""

    target: str
    argv: list[str]
    notes: list[str] = field(default_factory=list)  # one-line notices for the user
    forwards: list[PortMap] = field(default_factory=list)  # host-side proxies to start
    qmp_socket: Path | None = None
    cleanup: list[Path] = field(default_factory=list)


class Target(Protocol):
    name: str

    def __init__(self, store: Store) -> None: ...

    def plan(self, image: Image, cfg: RunConfig) -> Plan:
        """Check the image's parts and decide the command line; start nothing."""
        ...

    def run(self, plan: Plan, sink: BinaryIO) -> int:
        """Start the plan, stream the console to `sink`, return the app's exit status."""
        ...
