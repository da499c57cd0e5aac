"""Density: how many hello-http unikernels this machine holds at once.

Each step starts N detached instances (`kiln run -d`, each with its own
forwarded port), waits until every one of them answers a request, records the
host memory they take (QEMU processes, kiln's supervisors, and the drop of the
host's MemAvailable) and the time until all answered, then removes them all.
The ramp stops at the first step that does not fully answer, at `max_n`, or
before a step the measured memory per instance says would not fit.
Every loop is bounded and every instance is removed, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import httpx

from bench.harness import meminfo
from bench.stacks import GUEST_PORT, IMAGE
from kiln.runtime import instance
from kiln_testing.command import KILN
from kiln_testing.ports import free_ports

STEPS = (1, 10, 25, 50, 75, 100, 125, 150, 200, 250, 300)
LAUNCHERS = 8  # `kiln run -d` commands in flight at once
CHECKERS = 16  # requests in flight at once while waiting for the answers
ANSWER_TIMEOUT = 10.0
SECONDS_PER_INSTANCE = 15.0  # a step of N must fully answer within 60 s + this × N (TCG, 2 cores: ~10 s at 100)
MEMORY_HEADROOM = 0.8  # never plan to use more than this share of the memory available at the start


@dataclass
class Step:
    n: int
    answered: int
    seconds: float | None  # from the first start command until all answered (None: not all did)
    vm_rss: int  # bytes, all QEMU processes
    supervisor_rss: int  # bytes, all of kiln's supervisors
    host_used: int  # bytes, the drop of MemAvailable
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.answered == self.n

    @property
    def per_instance(self) -> float:
        """Summed RSS per instance (counts the pages the QEMUs share once per QEMU)."""
        return (self.vm_rss + self.supervisor_rss) / self.n

    @property
    def cost(self) -> float:
        """What one more instance takes from the host: the larger of the MemAvailable drop and the RSS
        of its QEMU alone, per instance (the drop is exact but noisy; QEMU's RSS is a floor)."""
        return max(self.host_used, self.vm_rss) / self.n

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def plan_steps(max_n: int, steps: tuple[int, ...] = STEPS) -> list[int]:
    return [n for n in steps if n < max_n] + [max_n]


def fits(next_n: int, per_instance: float, available: int, headroom: float = MEMORY_HEADROOM) -> bool:
    """Would next_n instances of per_instance bytes stay within headroom of the memory available?"""
    return next_n * per_instance <= headroom * available


def _answered_at(port: int) -> float | None:
    """When (perf_counter) the instance on `port` answered its health check, or None."""
    try:
        ok = httpx.get(f"http://127.0.0.1:{port}/health", timeout=ANSWER_TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return None
    return time.perf_counter() if ok else None


def wait_all(ports: list[int], deadline: float) -> dict[int, float]:
    """Poll every port until it answers or the deadline (perf_counter) passes; {index: when it answered}
    for those that answered by the deadline (an answer that comes later does not count).
    The checks run side by side with a generous timeout: on a saturated host a QEMU can take seconds
    to forward a connection, and one slow check must not starve the others."""
    answered: dict[int, float] = {}
    with ThreadPoolExecutor(CHECKERS) as pool:
        while len(answered) < len(ports) and time.perf_counter() < deadline:
            order = [i for i in range(len(ports)) if i not in answered]
            for i, when in zip(order, pool.map(lambda i: _answered_at(ports[i]), order), strict=True):
                if when is not None and when <= deadline:
                    answered[i] = when
            if len(answered) < len(ports):
                time.sleep(0.5)
    return answered


@contextlib.contextmanager
def instances(env: dict[str, str], names: list[str]) -> Iterator[None]:
    """Remove the named instances afterwards, and kill any process of theirs that outlives `kiln rm -f`."""
    try:
        yield
    finally:
        pids: list[int] = []
        for inst in instance.all_instances():
            if inst.name in names:
                st, supervisor = inst.read_state(), inst.supervisor()
                pids += [p for p in (supervisor.pid if supervisor else None, st.vm_pid) if p]
        for chunk in range(0, len(names), 50):
            subprocess.run(
                [KILN, "rm", "-f", *names[chunk : chunk + 50]], env=env, capture_output=True, timeout=600, check=False
            )
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def step(env: dict[str, str], n: int, accel: str, memory_mib: int | None, timeout: float) -> Step:
    names = [f"density-{n}-{i}" for i in range(n)]
    ports = free_ports(n)
    mem = ["-m", f"{memory_mib}M"] if memory_mib else []
    before = meminfo()
    start = time.perf_counter()
    deadline = start + timeout
    errors: list[str] = []

    def launch(i: int) -> None:
        argv = [KILN, "run", "-d", "--cold", "--name", names[i], "--accel", accel, *mem]
        argv += ["-p", f"127.0.0.1:{ports[i]}:{GUEST_PORT}", IMAGE]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            errors.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")

    with instances(env, names):
        with ThreadPoolExecutor(LAUNCHERS) as pool:
            list(pool.map(launch, range(n)))
        answered = wait_all(ports, deadline)
        pending = n - len(answered)
        seconds = max(answered.values()) - start if not pending else None
        vm, sup = 0, 0
        for inst in instance.all_instances():
            if inst.name in names:
                st, supervisor = inst.read_state(), inst.supervisor()
                vm += instance.rss_of([st.vm_pid] if st.vm_pid else []) or 0
                sup += instance.rss_of([supervisor.pid] if supervisor else []) or 0
        used = before - meminfo()
    error = errors[0] if errors else ("" if not pending else f"{pending} did not answer within {timeout:.0f} s")
    return Step(n, n - pending, seconds, vm, sup, used, error)


def ramp(
    env: dict[str, str],
    accel: str,
    max_n: int,
    memory_mib: int | None = None,
    seconds_per_instance: float = SECONDS_PER_INSTANCE,
    report: Callable[[str], None] = print,
) -> tuple[list[Step], str]:
    """Run the steps up to max_n; (steps, why the ramp stopped)."""
    available = meminfo()
    done: list[Step] = []
    for n in plan_steps(max_n):
        if done and not fits(n, done[-1].cost, available):
            return done, (
                f"stopped before {n}: at {done[-1].cost / 2**20:.0f} MiB per instance it would exceed "
                f"{MEMORY_HEADROOM:.0%} of the {available / 2**30:.1f} GiB available"
            )
        report(f"  starting {n} instance(s) at once")
        s = step(env, n, accel, memory_mib, timeout=60 + seconds_per_instance * n)
        done.append(s)
        if not s.ok:
            report(f"  {n}: {s.answered} answered ({s.error})")
            return done, f"stopped at {n}: {s.error}"
        report(
            f"  {n}: all answered in {s.seconds:.1f} s, {s.per_instance / 2**20:.0f} MiB per instance "
            f"(QEMU + supervisor), host MemAvailable down {s.host_used / 2**30:.2f} GiB"
        )
    return done, f"reached the largest step asked for ({max_n})"
