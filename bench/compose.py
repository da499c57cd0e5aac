"""Compose: examples/compose-counter (a Python web app and the redis unikernel on a private network).

- `kiln compose up -d` until the counter's first answer (median of --runs), against `kiln run -d` of
  hello-http alone until its first answer, in the same run;
- host memory of the project (RSS of its QEMUs, their supervisors and the project's switch);
- requests/s of the counter (each request is a redis round trip over the private network) with
  wrk, against hello-http's requests/s (the same kind of Python server, no round trip).

    python bench/compose.py            # rewrites its block in docs/benchmarks.md
    python bench/compose.py --quick    # one run, short wrk
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import KILN, ROOT, free_port, isolated_home, machine, replace_section, wait_for_answer, wrk
from bench.stacks import APP
from kiln.runtime.instance import process_tree, rss_of

COMPOSE = ROOT / "examples" / "compose-counter" / "compose.yaml"


def kiln(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KILN, *args], env=env, capture_output=True, text=True, check=True, timeout=900)


def pids_of(env: dict[str, str], names: list[str]) -> list[int]:
    rows = json.loads(kiln(env, "ps", "--json").stdout)
    pids = []
    for r in rows:
        if r["name"] in names:
            state = json.loads((Path(env["KILN_HOME"]) / "instances" / r["name"] / "state.json").read_text())
            pids += process_tree(state.get("supervisor_pid"))
    return pids


def switch_pid(env: dict[str, str], project: str) -> int | None:
    record = Path(env["KILN_HOME"]) / "compose" / project / "switch.json"
    return json.loads(record.read_text())["pid"] if record.exists() else None


def measure(env: dict[str, str], runs: int, seconds: int) -> dict:
    kiln(env, "build", str(APP))
    up_times, single_times, memory = [], [], []
    rps: dict[str, float] = {}
    for i in range(runs):
        port = free_port()
        penv = {**env, "WEB_PORT": str(port)}
        t = time.perf_counter()
        kiln(penv, "compose", "-f", str(COMPOSE), "-p", "bench", "up", "-d")
        if not wait_for_answer(port, time.perf_counter() + 300, "/health"):
            raise RuntimeError("the counter did not answer")
        up_times.append(time.perf_counter() - t)
        pids = pids_of(env, ["bench-web", "bench-redis"])
        sw = switch_pid(env, "bench")
        memory.append((rss_of(pids) or 0) + (rss_of([sw]) or 0 if sw else 0))
        if i == 0:
            rps["counter"] = wrk(f"http://127.0.0.1:{port}/", seconds).requests_per_second
        kiln(penv, "compose", "-f", str(COMPOSE), "-p", "bench", "down")
        port = free_port()
        t = time.perf_counter()
        kiln(env, "run", "-d", "--cold", "--name", "bench-single", "-p", f"127.0.0.1:{port}:8080", "hello-http")
        if not wait_for_answer(port, time.perf_counter() + 300):
            raise RuntimeError("hello-http did not answer")
        single_times.append(time.perf_counter() - t)
        if i == 0:
            rps["hello-http"] = wrk(f"http://127.0.0.1:{port}/", seconds).requests_per_second
        kiln(env, "rm", "-f", "bench-single")
        print(
            f"  run {i + 1}: up {up_times[-1]:.1f} s, hello-http alone {single_times[-1]:.1f} s, "
            f"project RSS {memory[-1] / 2**20:.0f} MiB",
            flush=True,
        )
    return {
        "up": statistics.median(up_times),
        "single": statistics.median(single_times),
        "memory": statistics.median(memory),
        "rps": rps,
        "runs": runs,
    }


def render(r: dict, when: str) -> str:
    rows = [
        "## Compose: compose-counter on a private network (`bench/compose.py`)",
        "",
        f"Measured {when}, accelerator TCG, medians of {r['runs']} runs; ratios (×) against hello-http alone, "
        "measured in the same run.",
        "",
        "| | compose-counter (web + redis) | hello-http alone | × |",
        "|---|---:|---:|---:|",
        f"| start to first answer (`compose up -d` / `run -d`) | {r['up']:.1f} s | {r['single']:.1f} s | "
        f"{r['up'] / r['single']:.2f}× |",
        f"| requests/s (wrk, 1 thread, 8 connections) | {r['rps']['counter']:,.0f} | {r['rps']['hello-http']:,.0f} | "
        f"{r['rps']['counter'] / r['rps']['hello-http']:.2f}× |",
        f"| host memory (RSS: QEMUs, supervisors, switch) | {r['memory'] / 2**20:.0f} MiB | — | — |",
        "",
        "- Each counter request is a redis `INCR` over the project's private network: web (10.89.0.3) to redis "
        "(10.89.0.2) through the project's switch, a user-space process on a UNIX socket.",
        "- `compose up` waits for redis to be healthy (its TCP port listens, checked by guest init) before it "
        "starts web: the two boots are in sequence.",
        "- Not measured here: the same two services as a pair of Debian VMs. The traditional VM baseline of "
        "`bench/hello_http.py` runs one Python app; a redis VM beside it is not built yet.",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()),
    ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    runs, seconds = (1, 5) if args.quick else (args.runs, 10)
    with tempfile.TemporaryDirectory(prefix="kiln-bench-compose-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        try:
            result = measure(env, runs, seconds)
        finally:
            subprocess.run([KILN, "compose", "-f", str(COMPOSE), "-p", "bench", "down"], env=env, capture_output=True)
            subprocess.run([KILN, "rm", "-f", "bench-single"], env=env, capture_output=True)
    replace_section(args.output, "compose", render(result, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
