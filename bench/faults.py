"""Faults and load, measured: `make faults` (python bench/faults.py) writes docs/reliability.md.

kill points   every kill point of each long operation (tests.faults.harness): kiln killed with SIGKILL,
              then the store checked, the command run again, and what is left looked for
full disks    each operation with KILN_HOME on a tmpfs holding 10%...90% of what it writes
bursts        N simultaneous first connections: the app as a plain host process (the baseline),
              kiln run on qemu and on unix, the summoner from zero, compose
soak          the summoner: summon -> serve -> idle stop, 1,000 times; its memory, files and threads

python bench/faults.py                     # everything (hours under TCG: the kernel build's points)
python bench/faults.py --quick             # a few points per operation, 100 soak cycles
python bench/faults.py --only bursts,soak  # some parts (kill, disk, bursts, soak); the others' blocks stay
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import machine, replace_section
from kiln.paths import kiln_home
from kiln_testing.command import KILN, ROOT
from kiln_testing.faults.harness import Discovery, Trial, discover, disk_trial, kill_trial
from kiln_testing.faults.load import Burst, Resources, burst
from kiln_testing.faults.operations import operations, template
from kiln_testing.homes import isolated_home
from kiln_testing.ports import free_port
from kiln_testing.registry import Registry

DOC = ROOT / "docs" / "reliability.md"
FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
SIZES = (50, 100, 200)
HELLO = ROOT / "examples" / "hello-http"
CLONE = ROOT / "tests" / "fixtures" / "apps" / "clone-http"
HEADER = (
    "# Reliability: faults survived and load held\n\n"
    'Written by `bench/faults.py` (`make faults`); do not edit the blocks by hand. Every "held" is a check\n'
    "that could have failed: the store verified by `kiln store check`, the next run of the same command, and\n"
    "a search for temporary files, held locks, sockets and processes the run left (kiln_testing/faults/harness.py).\n"
)


def _say(text: str) -> None:
    print(text, flush=True)


# ---- kill points and full disks ------------------------------------------------------------------
def sweep(base: Path, registry: Registry, names: list[str] | None, quick: bool) -> tuple[list[Trial], list[Trial]]:
    shared = kiln_home() / "kernel"
    kills: list[Trial] = []
    disks: list[Trial] = []
    templates: dict[str, object] = {}
    for op in operations(registry.host, shared):
        if names and op.name not in names:
            continue
        if op.template not in templates:
            templates[op.template] = template(op.template, base / f"template-{op.template}", shared, registry.host)
        tpl = templates[op.template]
        d: Discovery = discover(op, tpl, base / "discover")  # type: ignore[arg-type]
        points = d.points if not quick else d.points[:: max(1, len(d.points) // 4)]
        _say(f"{op.name}: {len(d.points)} kill points, {d.peak_bytes / 2**20:.1f} MiB at most, {d.seconds:.1f} s")
        for i, point in enumerate(points):
            trial = kill_trial(op, point, tpl, base / f"trial-{i}")  # type: ignore[arg-type]
            _say(f"  kill {i + 1}/{len(points)} {trial.outcome}: {point.what} {trial.problems or ''}")
            kills.append(trial)
        if op.name != "push" and os.geteuid() == 0:
            for fraction in FRACTIONS if not quick else (0.5,):
                trial = disk_trial(op, tpl, base / "disk", fraction, d.peak_bytes)  # type: ignore[arg-type]
                _say(f"  disk {trial.point}: {trial.outcome} {trial.problems or ''} {trial.detail}")
                disks.append(trial)
    return kills, disks


def kill_table(trials: list[Trial]) -> str:
    rows = ["| operation | kill points | held | not reached | failed |", "|---|---:|---:|---:|---|"]
    for name in dict.fromkeys(t.operation for t in trials):
        mine = [t for t in trials if t.operation == name]
        failed = [t for t in mine if t.outcome == "failed"]
        failures = "; ".join(f"{t.point}: {', '.join(t.problems)}" for t in failed) or "none"
        rows.append(f"| {name} | {len(mine)} | {sum(t.held for t in mine)} | "
                    f"{sum(t.outcome == 'not reached' for t in mine)} | {failures} |")  # fmt: skip
    detail = ["", "<details><summary>every kill point</summary>", "", "| operation | killed at | outcome |",
              "|---|---|---|"]  # fmt: skip
    detail += [f"| {t.operation} | {t.point}{f' ({t.detail})' if t.detail else ''} | {t.outcome} |" for t in trials]
    return "\n".join(rows + detail + ["", "</details>"])


def disk_table(trials: list[Trial]) -> str:
    rows = ["| operation | room for | outcome | its one line |", "|---|---|---|---|"]
    for t in trials:
        line = t.detail.replace("|", "\\|")
        outcome = t.outcome if not t.problems else f"failed: {'; '.join(t.problems)}"
        rows.append(f"| {t.operation} | {t.point} | {outcome} | `{line}` |")
    return "\n".join(rows)


# ---- bursts ------------------------------------------------------------------------------------------
def _wait_port(port: int, timeout: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def bursts(env: dict[str, str], sizes: tuple[int, ...]) -> dict[str, dict[int, Burst]]:
    """Each stack at each size, from a fresh start: the first connections of an instance."""
    out: dict[str, dict[int, Burst]] = {}

    def plain(port: int) -> Callable[[], None]:
        proc = subprocess.Popen([sys.executable, str(HELLO / "app.py"), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        _wait_port(port)  # a plain process is measured listening (it starts in ~50 ms)
        return lambda: (proc.send_signal(signal.SIGTERM), proc.wait())  # type: ignore[func-returns-value]

    def run(target: str) -> Callable[[int], Callable[[], None]]:
        def start(port: int) -> Callable[[], None]:
            subprocess.run([KILN, "run", "-d", "--target", target, "--name", "burst", "-p", f"127.0.0.1:{port}:8080",
                            "hello-http"], env=env, check=True, capture_output=True)  # fmt: skip
            return lambda: subprocess.run([KILN, "rm", "-f", "burst"], env=env, capture_output=True)  # type: ignore[return-value]

        return start

    def summoner(port: int) -> Callable[[], None]:
        subprocess.run([KILN, "summon", "-d", "--name", "burst", f"clone-http={port}:8080"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        return lambda: subprocess.run([KILN, "summon", "--stop", "--name", "burst"], env=env, capture_output=True)  # type: ignore[return-value]

    def compose(port: int) -> Callable[[], None]:
        directory = Path(tempfile.mkdtemp())
        (directory / "compose.yaml").write_text(
            f"services:\n  web:\n    image: hello-http\n    ports: ['127.0.0.1:{port}:8080']\n"
        )
        argv = [KILN, "compose", "-f", str(directory / "compose.yaml"), "-p", "burst"]
        subprocess.run([*argv, "up", "-d"], env=env, check=True, capture_output=True)
        return lambda: (subprocess.run([*argv, "down"], env=env, capture_output=True), shutil.rmtree(directory))  # type: ignore[return-value]

    stacks: dict[str, Callable[[int], Callable[[], None]]] = {
        "plain process (baseline)": plain,
        "kiln run (qemu)": run("qemu"),
        "kiln run --target unix": run("unix"),
        "kiln summon (from zero)": summoner,
        "kiln compose": compose,
    }
    for name, start in stacks.items():
        out[name] = {}
        for size in sizes:
            port = free_port()
            stop = start(port)
            try:
                out[name][size] = burst(port, size, 30.0)
            finally:
                stop()
            _say(f"burst {name} x{size}: {out[name][size]}")
    return out


def burst_table(results: dict[str, dict[int, Burst]]) -> str:
    sizes = sorted({s for r in results.values() for s in r})
    head = "| stack | " + " | ".join(f"{s} at once: answered (p95)" for s in sizes) + " |"
    rows = [head, "|---|" + "---|" * len(sizes)]
    base = results.get("plain process (baseline)", {})
    for name, by_size in results.items():
        cells = []
        for s in sizes:
            b = by_size[s]
            p95 = f"{b.p95:.2f} s" if b.p95 is not None else "-"
            ratio = ""
            if name != "plain process (baseline)" and s in base and base[s].p95 and b.p95:
                ratio = f", {b.p95 / base[s].p95:.1f}× the baseline's p95"
            cells.append(f"{b.answered}/{b.size} ({p95}{ratio})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# ---- soak --------------------------------------------------------------------------------------------
def soak(env: dict[str, str], cycles: int) -> tuple[int, Resources, Resources, float]:
    from kiln_testing.faults.soak import soak as cycle
    from kiln_testing.summoner import Summoner

    port = free_port()
    s = Summoner(env, f"clone-http={port}:8080", "--idle", "200ms")
    began = time.monotonic()
    try:
        answered, start, end = cycle(s, port, cycles, env["KILN_HOME"])
    finally:
        s.stop()
    return answered, start, end, time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few points per operation, 100 soak cycles")
    parser.add_argument("--only", default="kill,disk,bursts,soak", help="parts to run (comma-separated)")
    parser.add_argument("--operations", default="", help="operations to kill (comma-separated; default all)")
    parser.add_argument("--cycles", type=int, help="soak cycles (default 1000; 100 with --quick)")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    cycles = args.cycles or (100 if args.quick else 1000)
    facts = machine()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = f"Measured {stamp} on {facts['cpu']}, {facts['qemu']}, accelerator TCG (KVM does not work here)."
    if not DOC.exists():
        DOC.write_text(HEADER)
    with tempfile.TemporaryDirectory(prefix="kiln-faults-") as tmp:
        base = Path(tmp)
        registry = Registry(base / "registry")
        try:
            if parts & {"kill", "disk"}:
                names = [n for n in args.operations.split(",") if n] or None
                kills, disks = sweep(base / "sweep", registry, names, args.quick)
                if "kill" in parts and kills:
                    replace_section(DOC, "faults:kill", f"## Kill points\n\n{where}\n\n{kill_table(kills)}")
                if "disk" in parts and disks:
                    replace_section(DOC, "faults:disk", f"## Full disks\n\n{where} KILN_HOME on a tmpfs with room "
                                    f"for part of what the operation writes (its peak, measured first).\n\n"
                                    f"{disk_table(disks)}")  # fmt: skip
            env = isolated_home(base / "home")
            if parts & {"bursts", "soak"}:
                subprocess.run([KILN, "build", str(HELLO)], env=env, check=True, capture_output=True)
                subprocess.run([KILN, "build", str(CLONE)], env=env, check=True, capture_output=True)
                subprocess.run([KILN, "snapshot", "clone-http"], env=env, check=True, capture_output=True)
            if "bursts" in parts:
                results = bursts(env, SIZES if not args.quick else (100,))
                text = (f"## Bursts of first connections\n\n{where} hello-http (the stdlib's server, backlog 5) "
                        "as a plain host process, and as a kiln image; the summoner serves clone-http from its "
                        "snapshot with nothing running when the burst arrives. Each connection is an HTTP GET by "
                        "httpx; answered: HTTP 200 within 30 s of the burst's start.\n\n")  # fmt: skip
                replace_section(DOC, "faults:bursts", text + burst_table(results))
            if "soak" in parts:
                answered, start, end, seconds = soak(env, cycles)
                text = (f"## Soak: the summoner\n\n{where} {cycles} cycles of summon (a snapshot restore) -> one "
                        f"request -> idle stop (200 ms), in {seconds / 60:.1f} minutes.\n\n"
                        "| | after 5 cycles | at the end |\n|---|---|---|\n"
                        f"| resident memory | {start.rss_kib / 1024:.1f} MiB | {end.rss_kib / 1024:.1f} MiB |\n"
                        f"| open files | {start.files} | {end.files} |\n| threads | {start.threads} | {end.threads} |\n"
                        f"| instance directories | {start.instance_dirs} | {end.instance_dirs} |\n"
                        f"| answered | | {answered}/{cycles} |\n")  # fmt: skip
                replace_section(DOC, "faults:soak", text)
        finally:
            registry.stop()
    _say(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
