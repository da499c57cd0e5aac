"""Shared benchmark plumbing (kiln_testing holds what tests share too): starting a server and timing its
first HTTP answer, host memory of a process tree, `wrk` and its output,
statistics, memory bisection, machine facts, generated blocks in the docs."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from kiln import _proc
from kiln.runtime.instance import children_map, process_tree
from kiln_testing.answers import NoAnswerError, wait_for_answer
from kiln_testing.command import KILN, ROOT, interrupt


def accelerator(env: dict[str, str], image: str) -> str:
    """The accelerator kiln chooses on this host for `image` ("kvm" or "tcg"), read from its dry run."""
    argv = subprocess.run(
        [KILN, "run", "--dry-run", image], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return argv[argv.index("-accel") + 1].split(",")[0]


@dataclass
class Timing:
    seconds: float | None  # None: no answer within the timeout
    output: str
    served: int = 0  # successful answers to the extra requests


@dataclass
class Server:
    """A started server: its process, and when (seconds after the start command) it first answered."""

    proc: subprocess.Popen[bytes]
    port: int
    first_response: float | None
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def get(self, n: int, path: str = "/") -> int:
        """Make n requests one after the other; how many were answered 200."""
        ok = 0
        with httpx.Client(timeout=10) as client:
            for _ in range(n):
                with contextlib.suppress(httpx.HTTPError):
                    ok += client.get(f"http://127.0.0.1:{self.port}{path}").status_code == 200
        return ok


def answered(port: int, timeout: float, path: str = "/", alive: Callable[[], bool] | None = None) -> bool:
    """Whether http://127.0.0.1:port/path answers 200 within `timeout` seconds (polled every 5 ms, for timing)."""
    try:
        wait_for_answer(port, "http", timeout, path=path, status=200, alive=alive, request_timeout=2, poll=0.005)
    except NoAnswerError:
        return False
    return True


def stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGINT (what Ctrl-C sends), then SIGKILL to the whole session if it lingers."""
    interrupt(proc, grace, group=True)


@contextlib.contextmanager
def serving(
    argv: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    path: str = "/",
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Start argv (output to a file: a chatty server must never block on a full pipe), wait
    for its first answer, hand it over, and stop it afterwards whatever happened."""
    with tempfile.NamedTemporaryFile(prefix="kiln-bench-", suffix=".log") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            ok = answered(port, timeout, path, alive=lambda: proc.poll() is None)
            yield Server(proc, port, time.perf_counter() - start if ok else None, Path(log.name))
        finally:
            stop(proc)


def time_to_first_response(
    argv: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    path: str = "/",
    extra_requests: int = 0,
    cwd: Path | None = None,
) -> Timing:
    """Start argv (in cwd), time its first 200 answer at http://127.0.0.1:port/path, make
    `extra_requests` more requests, then stop it."""
    with serving(argv, port, env, timeout, path, cwd) as server:
        served = server.get(extra_requests, path) if server.first_response is not None else 0
        return Timing(server.first_response, server.output(), served)


# -- statistics ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarize")
        return cls(statistics.median(values), min(values), max(values), len(values))


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None when either is unknown or the base is zero."""
    if value is None or not base:
        return None
    return value / base


# -- host memory --------------------------------------------------------------------------------


def parse_status_kib(text: str, field: str) -> int | None:
    """A `Field:   123 kB` line of /proc/PID/status or /proc/meminfo, in bytes."""
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def meminfo(field: str = "MemAvailable", path: Path = Path("/proc/meminfo")) -> int:
    value = parse_status_kib(path.read_text(), field)
    if value is None:
        raise ValueError(f"{field} not in {path}")
    return value


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def subtree_named(pid: int, prefix: str) -> list[int]:
    """The process tree below (and including) the first process in pid's tree whose name starts with prefix."""
    children = children_map()
    for p in process_tree(pid, children):
        if comm(p).startswith(prefix):
            return process_tree(p, children)
    return []


# -- load generation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    requests: int
    errors: int  # socket errors of every kind plus non-2xx/3xx answers
    latency_ms: float | None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(text: str) -> WrkResult:
    """Read wrk's summary (Requests/sec, requests, latency average, errors)."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", text, re.MULTILINE)
    if not rps or not total:
        raise ValueError(f"not wrk output: {text.strip()[:200]!r}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors += int(non2xx.group(1)) if non2xx else 0
    lat = re.search(r"^\s*Latency\s+([\d.]+)(us|ms|s|m)\b", text, re.MULTILINE)
    latency = float(lat.group(1)) * _UNITS[lat.group(2)] if lat else None
    return WrkResult(float(rps.group(1)), int(total.group(1)), errors, latency)


def wrk(url: str, seconds: int, connections: int = 8, threads: int = 1) -> WrkResult:
    argv = [_proc.require("wrk"), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {(proc.stderr or proc.stdout).strip()[:200]}")
    return parse_wrk(proc.stdout)


def bisect_min(lo: int, hi: int, works: Callable[[int], bool], step: int = 2) -> int | None:
    """The smallest value in [lo, hi] (to `step`) for which works() holds, assuming monotony."""
    if not works(hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        model = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "host kernel": platform.release(),
        "qemu": qemu,
        "python (guest)": subprocess.run(
            ["/usr/bin/python3.11", "--version"], capture_output=True, text=True
        ).stdout.strip(),
    }


def replace_section(doc: Path, name: str, body: str) -> None:
    """Replace the generated block `name` in `doc` (append it if absent)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = (
        doc.read_text()
        if doc.exists()
        else "# Benchmarks\n\nGenerated by the scripts in `bench/`; do not edit the blocks by hand.\n\n"
    )
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip() + "\n\n" + block
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def example_args(argv: list[str] | None, description: str, quick_help: str) -> argparse.Namespace:
    """The options of a benchmark over examples: --runs, --quick (one run), --output (the report)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    return args
