"""Compose: examples/compose-counter (a Python web app and the redis unikernel on a private network),
against the same two services as a pair of traditional Debian VMs, measured in the same run.

- start to the counter's first answer (median of --runs): `kiln compose up -d`; for the Debian pair,
  both VMs started at once (each boots Debian's cloud kernel and systemd; web is Debian's python3
  running the same app.py, redis is Debian's redis-server), on a private segment of their own
  through the same switch kiln uses (kiln.compose.switch), with static addresses;
- host memory (RSS: kiln's QEMUs, their supervisors and the switch; the Debian VMs' QEMUs and
  the switch);
- requests/s of the counter with wrk: each request is a redis round trip over the private network.
- `kiln run -d` of hello-http alone, for scale: one unikernel to first answer, and its requests/s.

    python bench/compose.py            # rewrites its block in docs/benchmarks.md
    python bench/compose.py --quick    # one run, short wrk
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import accelerator, answered, machine, replace_section, stop, wrk
from bench.stacks import APP, DebianVm
from kiln import daemon
from kiln.baselines import traditional
from kiln.compose.lifecycle import SwitchProcess
from kiln.runtime.instance import process_tree, rss_of
from kiln.targets.base import Lan
from kiln.targets.portmap import PortMap
from kiln.targets.qemu_command import PcVmSpec, pc_command
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home, kiln_home_of
from kiln_testing.ports import free_port

COMPOSE = ROOT / "examples" / "compose-counter" / "compose.yaml"
WEB_APP = ROOT / "examples" / "compose-counter" / "web"
# the pair's addresses and MACs on its private segment, as kiln's compose gives them (redis .2, web .3)
PAIR = {"redis": ("10.89.0.2/24", "52:54:00:89:00:02"), "web": ("10.89.0.3/24", "52:54:00:89:00:03")}


def kiln(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KILN, *args], env=env, capture_output=True, text=True, check=True, timeout=900)


def pids_of(env: dict[str, str], names: list[str]) -> list[int]:
    rows = json.loads(kiln(env, "ps", "--json").stdout)
    pids = []
    for r in rows:
        if r["name"] in names:
            supervisor = daemon.read(Path(env["KILN_HOME"]) / "instances" / r["name"] / "supervisor.pid")
            pids += process_tree(supervisor.pid if supervisor else None)
    return pids


def switch_pid(env: dict[str, str], project: str) -> int | None:
    record = daemon.read(Path(env["KILN_HOME"]) / "compose" / project / "switch.pid")
    return record.pid if record else None


def measure(env: dict[str, str], runs: int, seconds: int) -> dict:
    kiln(env, "build", str(APP))
    up_times, single_times, memory = [], [], []
    rps: dict[str, float] = {}
    for i in range(runs):
        port = free_port()
        penv = {**env, "WEB_PORT": str(port)}
        t = time.perf_counter()
        kiln(penv, "compose", "-f", str(COMPOSE), "-p", "bench", "up", "-d")
        if not answered(port, 300, "/health"):
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
        if not answered(port, 300):
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


def debian_pair_images(scratch: Path) -> dict[str, traditional.VmImage]:
    """The two traditional VMs (cached): web runs app.py with Debian's python3, redis Debian's redis-server
    (its own unit, listening on every address, not the package's loopback-only service)."""
    images = {}
    for name, (address, mac) in PAIR.items():
        lan = {"/etc/systemd/network/10-lan.network": traditional.lan_network(mac, address)}
        if name == "web":
            images[name] = traditional.vm_image(
                "counter-web", WEB_APP, ["/usr/bin/python3", "/opt/counter-web/app.py"],
                environment={"REDIS_HOST": PAIR["redis"][0].split("/")[0]}, files=lan,
            )  # fmt: skip
        else:
            empty = scratch / "redis-app"
            empty.mkdir(exist_ok=True)
            images[name] = traditional.vm_image(
                "counter-redis", empty,
                ["/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no",
                 "--save", '""'],
                packages=("redis-server",), files=lan, disable=("redis-server.service",),
            )  # fmt: skip
    return images


def _all_alive(procs: list[subprocess.Popen[bytes]]) -> bool:
    return all(p.poll() is None for p in procs)


def measure_debian_pair(images: dict[str, traditional.VmImage], accel: str, scratch: Path, runs: int,
                        seconds: int) -> dict:  # fmt: skip
    """Both VMs started at once on a private segment; until the counter answers, memory, requests/s."""
    up_times, memory = [], []
    rps = 0.0
    for i in range(runs):
        switch = SwitchProcess(scratch / f"pair-{i}")
        switch.directory.mkdir(parents=True)
        switch.start()
        port = free_port()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            t = time.perf_counter()
            for name, img in images.items():
                address, mac = PAIR[name]
                spec = PcVmSpec(
                    kernel=img.kernel,
                    initrd=img.initrd,
                    disk=img.disk,
                    memory_mib=DebianVm.DEFAULT_MEMORY,
                    accel=accel,
                    ports=(PortMap(host_ip="127.0.0.1", host=port, guest=8080),) if name == "web" else (),
                    lan=Lan(socket=switch.socket, address=address, mac=mac),
                )
                log = open(scratch / f"pair-{i}-{name}.log", "wb")  # noqa: SIM115 (QEMU keeps it)
                procs.append(subprocess.Popen(pc_command(spec), stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
                log.close()
            if not answered(port, 900 - (time.perf_counter() - t), "/", alive=functools.partial(_all_alive, procs)):
                raise RuntimeError(f"the Debian pair's counter did not answer (see {scratch}/pair-{i}-*.log)")
            up_times.append(time.perf_counter() - t)
            memory.append((rss_of([p.pid for p in procs]) or 0) + (rss_of([switch.pid() or 0]) or 0))
            if i == 0:
                rps = wrk(f"http://127.0.0.1:{port}/", seconds).requests_per_second
            print(f"  Debian pair, run {i + 1}: up {up_times[-1]:.1f} s, RSS {memory[-1] / 2**20:.0f} MiB", flush=True)
        finally:
            for proc in procs:
                stop(proc)
            switch.stop()
    return {"up": statistics.median(up_times), "memory": statistics.median(memory), "rps": rps}


def render(r: dict, when: str) -> str:
    d = r.get("debian") or {}
    rows_of = [  # (label, kiln, Debian pair, hello-http alone, how to show a value)
        ("start to first answer", r["up"], d.get("up"), r["single"], lambda v: f"{v:.1f} s"),
        ("requests/s (wrk, 1 thread, 8 connections)", r["rps"]["counter"], d.get("rps"), r["rps"]["hello-http"],
         lambda v: f"{v:,.0f}"),
        ("host memory (RSS)", r["memory"], d.get("memory"), None, lambda v: f"{v / 2**20:.0f} MiB"),
    ]  # fmt: skip
    rows = [
        "## Compose: compose-counter on a private network (`bench/compose.py`)",
        "",
        f"Measured {when}, accelerator **{r['accel'].upper()}**, medians of {r['runs']} runs; ratios (×) are "
        "kiln against the **Debian VM pair**, measured in the same run.",
        "",
        "| | kiln: compose-counter (web + redis) | Debian VM pair (web + redis) | × | hello-http alone (kiln) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, kiln_value, debian, single, show in rows_of:
        rows.append(
            f"| {label} | {show(kiln_value)} | {show(debian) if debian else 'not measured'} | "
            f"{f'{kiln_value / debian:.2f}×' if debian else '—'} | {show(single) if single else '—'} |"
        )
    rows += [
        "",
        "- Each counter request is a redis `INCR` over the project's private network: web (10.89.0.3) to redis "
        "(10.89.0.2) through the project's switch (`kiln/compose/switch.py`), a user-space process on a UNIX socket.",
        "- kiln: `compose up -d` waits for redis to be healthy (its TCP port listens, checked by guest init) before "
        "it starts web, so the two boots are in sequence. Memory: both QEMUs, their supervisors and the switch.",
        f"- Debian VM pair: two traditional VMs as in the five-stack table ({DebianVm.DEFAULT_MEMORY} MiB each, "
        "Debian's cloud kernel, systemd), web running the same `app.py` with Debian's python3, redis Debian's "
        "`redis-server`; a second virtio-net-pci NIC on the same kind of switch, addresses from systemd-networkd. "
        "Both start at once (there is no orchestrator to order them): the time is until the counter answers. "
        "Memory: both QEMUs and the switch.",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()),
    ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-debian", action="store_true", help="Leave the Debian VM pair out.")
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
        result["accel"] = accelerator(env, "hello-http")
        if not args.skip_debian:
            with kiln_home_of(env):
                print("the Debian VM pair (the first time: debootstrap with redis-server, minutes)", flush=True)
                images = debian_pair_images(Path(tmp))
                result["debian"] = measure_debian_pair(images, result["accel"], Path(tmp), runs, seconds)
    replace_section(args.output, "compose", render(result, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
