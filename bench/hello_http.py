"""hello-http on five stacks, side by side, measured in one run on this machine:
kiln under QEMU, kiln's unix target, a traditional Debian VM (systemd, Debian's
cloud kernel, same QEMU and accelerator), the same Debian tree in a
bubblewrap container, and a plain `python3.11 app.py`.

Figures: boot to first response (median of N runs), image size, files,
executables and shell, minimum guest memory (bisection; VMs), host RSS per
instance after serving, throughput with wrk, and the density of kiln
unikernels (how many answer at once, host memory against N).

    python bench/hello_http.py                 # everything; rewrites docs/benchmarks.md, docs/bench/*
    python bench/hello_http.py --quick         # 3 runs, coarse bisection, short wrk, small density ramp
    python bench/hello_http.py --stacks kiln-qemu,plain --max-n 3 --output /tmp/b.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from bench import density, report
from bench.harness import (
    Summary,
    accelerator,
    bisect_min,
    machine,
    replace_section,
    serving,
    subtree_named,
    time_to_first_response,
    wrk,
)
from bench.stacks import IMAGE, STACKS, KilnQemu, Stack
from kiln.runtime.instance import process_tree, rss_of
from kiln_testing.command import ROOT
from kiln_testing.homes import isolated_home, kiln_home_of
from kiln_testing.ports import free_port

console = Console(highlight=False)
DOCS = ROOT / "docs"
NOTES = [
    "The container is bubblewrap (Debian's `bubblewrap`), not podman: it runs the debootstrapped tree as it is, "
    "needs no image import, no daemon or conmon, and no netavark/iptables set-up in this sandboxed host. "
    "It shares the host's network namespace (like `docker run --network host`), so it has no port forwarder "
    "in the way; kiln's qemu target and the traditional VM go through QEMU's user-mode network (slirp), "
    "kiln's unix target through kiln's own forwarder.",
    "The traditional VM boots Debian's `linux-image-cloud-amd64` with its initramfs on a q35 machine "
    "(firmware, PCI, a writable ext4 disk in snapshot mode) and starts the app as a systemd service; "
    "kiln boots its own kernel on microvm with no firmware and the app as PID 1.",
]


def step(title: str) -> None:
    console.print(f"[bold]==>[/bold] {title}")


def boot_times(stacks: list[Stack], runs: int, results: dict[str, dict], timeout: float) -> None:
    """Interleave the stacks run by run, so that drift on the host touches all of them alike."""
    for i in range(runs):
        for stack in stacks:
            r = results[stack.key]
            if r.get("error"):
                continue
            port = free_port()
            t = time_to_first_response(stack.argv(port), port, env=stack.env, timeout=timeout)
            if t.seconds is None:
                r["error"] = f"no answer within {timeout:.0f} s in run {i + 1}: {t.output.strip()[-300:]}"
                console.print(f"  [red]{stack.title}: no answer[/red]")
                continue
            r["boot"].append(t.seconds)
            console.print(f"  run {i + 1}/{runs} {stack.title}: {t.seconds * 1000:,.0f} ms")


def serve_and_load(stack: Stack, r: dict, wrk_seconds: int, timeout: float) -> None:
    """One instance: 100 requests, a wrk run, then its host memory."""
    port = free_port()
    with serving(stack.argv(port), port, env=stack.env, timeout=timeout) as server:
        if server.first_response is None:
            r["error"] = r.get("error") or f"no answer within {timeout:.0f} s: {server.output().strip()[-300:]}"
            return
        r["served"] = server.get(100)
        try:
            r["wrk"] = asdict(wrk(f"http://127.0.0.1:{port}/", wrk_seconds))
        except (RuntimeError, ValueError) as err:
            r["error"] = str(err)
        holder = subtree_named(server.proc.pid, stack.holder) if stack.holder else process_tree(server.proc.pid)
        r["rss"] = rss_of(holder)
        r["rss_all"] = rss_of(process_tree(server.proc.pid))
    rps = f"{r['wrk']['requests_per_second']:,.0f} req/s" if r.get("wrk") else "no wrk figure"
    console.print(f"  {stack.title}: {r['served']}/100 answered, {rps}, RSS {(r['rss'] or 0) / 2**20:.0f} MiB")


def min_memory(stack: Stack, r: dict, step_mib: int, timeout: float) -> None:
    assert stack.memory_range is not None
    lo, hi = stack.memory_range

    def works(mib: int) -> bool:
        port = free_port()
        with serving(stack.argv(port, mib), port, env=stack.env, timeout=timeout) as server:
            ok = server.first_response is not None and server.get(100, "/health") == 100
        console.print(f"  {stack.title} with {mib} MiB: {'boots and answers 100 requests' if ok else 'fails'}")
        return ok

    r["min_memory"] = bisect_min(lo, hi, works, step=step_mib)
    r["default_memory"] = stack.default_memory()
    if r["min_memory"] is None:
        r["memory_note"] = f"does not serve with {hi} MiB"


def run(args: argparse.Namespace) -> dict:
    keys = args.stacks.split(",") if args.stacks else list(STACKS)
    unknown = [k for k in keys if k not in STACKS]
    if unknown:
        raise SystemExit(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(STACKS)}")
    runs = args.runs or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        with kiln_home_of(env):
            return measure(args, keys, runs, env)


def measure(args: argparse.Namespace, keys: list[str], runs: int, env: dict[str, str]) -> dict:
    step("building the kiln image")
    KilnQemu(env, "tcg").prepare()
    accel = accelerator(env, IMAGE)  # the baseline VM uses the same
    console.print(f"  accelerator: [bold]{accel.upper()}[/bold]")
    stacks = [STACKS[k](env, accel) for k in keys]
    results: dict[str, dict] = {}
    for stack in stacks:
        step(f"preparing {stack.title}{stack.prepare_note}")
        t0 = time.perf_counter()
        stack.prepare()
        facts = stack.facts()
        console.print(f"  ready in {time.perf_counter() - t0:.0f} s")
        results[stack.key] = {"key": stack.key, "title": stack.title, "boot": [], "facts": asdict(facts)}
        if stack.memory_range is None:
            results[stack.key]["memory_note"] = stack.memory_note
    step(f"boot to first response, {runs} runs each")
    boot_times(stacks, runs, results, timeout=args.timeout)
    step("serving: 100 requests, wrk, host memory")
    for stack in stacks:
        if not results[stack.key].get("error"):
            serve_and_load(stack, results[stack.key], 3 if args.quick else 10, args.timeout)
    for stack in stacks:
        r = results[stack.key]
        if stack.memory_range and r["boot"] and not r.get("error"):
            step(f"lowest guest memory of {stack.title} (bisection)")
            probe_timeout = max(30.0, 3 * Summary.of(r["boot"]).median)
            min_memory(stack, r, (16 if stack.memory_range[0] < 64 else 64) if args.quick else 4, probe_timeout)
    dens = None
    if "kiln-qemu" in keys and args.max_n > 0:
        step(f"density: kiln (qemu) instances at once, up to {args.max_n}")
        steps, stopped = density.ramp(
            env, accel, args.max_n, seconds_per_instance=args.density_wait, report=lambda line: console.print(line)
        )
        dens = {
            "steps": [s.to_dict() for s in steps],
            "stopped": stopped,
            "memory_mib": KilnQemu(env, accel).default_memory(),  # the image's default, what users run
            "deadline": f"60 s + {args.density_wait:g} s × N",
        }
    return {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "accel": accel,
        "quick": args.quick,
        "runs": runs,
        "machine": machine(),
        "stacks": [results[k] for k in keys],
        "density": dens,
        "notes": [n for n in NOTES if "container" in keys or "debian-vm" in keys],
    }


def publish(results: dict, output: Path, data: Path, plots_dir: Path, relative_to: Path) -> dict[str, str]:
    """Write the JSON, the plots and the Markdown block; return the plots as {title: path}."""
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps(results, indent=2) + "\n")
    plots: dict[str, str] = {}
    boot_png = plots_dir / "boot-time.png"
    report.plot_boot(results, boot_png)
    plots["Boot to first response per stack"] = os.path.relpath(boot_png, relative_to)
    if results.get("density") and results["density"]["steps"]:
        density_png = plots_dir / "density-memory.png"
        report.plot_density(results["density"], density_png)
        plots["Memory per instance against N"] = os.path.relpath(density_png, relative_to)
    replace_section(output, "hello-http", report.render(results, plots))
    return plots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 3)[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 runs, coarse bisection, 3 s of wrk, density to 5")
    parser.add_argument("--runs", type=int, default=0, help="boot runs per stack (default 5, quick 3)")
    parser.add_argument("--stacks", default="", help=f"comma-separated subset of: {', '.join(STACKS)}")
    parser.add_argument("--max-n", type=int, default=None, help="largest density step (default 300, quick 5; 0: none)")
    parser.add_argument(
        "--density-wait",
        type=float,
        default=density.SECONDS_PER_INSTANCE,
        help="a density step of N fails unless all answer within 60 s + this × N seconds "
        f"(default {density.SECONDS_PER_INSTANCE:g}: a bound for a stuck run, generous for TCG on 2 cores)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a first answer")
    parser.add_argument(
        "--keep-density",
        action="store_true",
        help="with --max-n 0: keep the density figures of the last run (dated) instead of dropping them",
    )
    parser.add_argument("--output", type=Path, default=DOCS / "benchmarks.md")
    parser.add_argument("--data", type=Path, default=None, help="results JSON (default: docs/bench/hello-http.json)")
    parser.add_argument("--plots", type=Path, default=None, help="directory for the PNGs (default: docs/bench)")
    args = parser.parse_args(argv)
    if args.max_n is None:
        args.max_n = 5 if args.quick else 300
    out_dir = args.output.parent / "bench"
    data = args.data or out_dir / "hello-http.json"
    results = run(args)
    if results["density"] is None and args.keep_density and data.is_file():
        previous = json.loads(data.read_text())
        if previous.get("density"):  # --max-n 0: keep the last ramp's figures, dated
            results["density"] = {
                **previous["density"],
                "measured": previous["density"].get("measured", previous["measured"]),
            }
    publish(results, args.output, data, args.plots or out_dir, args.output.parent)
    console.print(f"[bold]==>[/bold] written: {args.output} (block hello-http), {out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
