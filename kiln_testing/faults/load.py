"""Load for the fault tests and bench/faults.py: a burst of simultaneous first connections, each one a real
HTTP client's request (httpx), timed from the moment they all start."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Burst:
    size: int
    answered: int  # HTTP 200 within the deadline
    p95: float | None  # seconds, over the answered ones
    statuses: dict[str, int]  # what the others got ("200", "timeout", "ConnectError"...)

    def __str__(self) -> str:
        p95 = f", p95 {self.p95:.2f} s" if self.p95 is not None else ""
        return f"{self.answered}/{self.size} answered{p95} ({self.statuses})"


def burst(port: int, size: int = 100, deadline: float = 30.0, host: str = "127.0.0.1") -> Burst:
    """`size` connections opened at once to host:port, each sending GET /; which got 200 within `deadline`."""
    return asyncio.run(_burst(host, port, size, deadline))


async def _burst(host: str, port: int, size: int, deadline: float) -> Burst:
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=0)
    timeout = httpx.Timeout(deadline)
    began = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one() -> tuple[str, float]:
            try:
                r = await client.get(f"http://{host}:{port}/", headers={"Connection": "close"})
            except httpx.TimeoutException:
                return "timeout", 0.0
            except httpx.HTTPError as err:
                return type(err).__name__, 0.0
            return str(r.status_code), time.monotonic() - began

        results = await asyncio.gather(*(one() for _ in range(size)))
    times = sorted(t for status, t in results if status == "200" and t <= deadline)
    statuses: dict[str, int] = {}
    for status, t in results:
        key = status if status != "200" or t <= deadline else "late"
        statuses[key] = statuses.get(key, 0) + 1
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else (times[0] if times else None)
    return Burst(size, len(times), p95, statuses)


@dataclass(frozen=True)
class Resources:
    """What a long-running process holds: resident memory, open files, threads; and the instance
    directories of its KILN_HOME."""

    rss_kib: int
    files: int
    threads: int
    instance_dirs: int
    fds: tuple[str, ...] = field(default=(), compare=False)  # what each open file is, to name a leak

    def opened_since(self, before: Resources) -> list[str]:
        """The files open now that were not open `before` (by what they point at)."""
        left = list(before.fds)
        new = []
        for fd in self.fds:
            if fd in left:
                left.remove(fd)
            else:
                new.append(fd)
        return new

    def __str__(self) -> str:
        return (f"RSS {self.rss_kib / 1024:.1f} MiB, {self.files} open files, {self.threads} threads, "
                f"{self.instance_dirs} instance directories")  # fmt: skip


def resources(pid: int, kiln_home: str) -> Resources:
    from pathlib import Path

    fds = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            fds.append(os.readlink(fd))
        except OSError:
            continue
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    instances = Path(kiln_home) / "instances"
    return Resources(
        rss_kib=int(status["VmRSS"].split()[0]),
        files=len(fds),
        threads=int(status["Threads"]),
        instance_dirs=len(list(instances.iterdir())) if instances.is_dir() else 0,
        fds=tuple(sorted(fds)),
    )
