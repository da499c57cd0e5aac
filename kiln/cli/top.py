"""`kiln top NAME`: live figures from inside an instance, refreshed like top (kiln.runtime.guest_stats)."""

from __future__ import annotations

import sys
import time

import click

from kiln.cli import ui
from kiln.cli.ui import human_size, print_json


def screen(name: str, s: dict[str, int], cpu: float, restarts: int, target: str) -> str:
    up = s["uptime_ms"] // 1000
    lines = [
        f"{name} ({target})  up {up // 3600}h{up % 3600 // 60:02d}m{up % 60:02d}s  restarts {restarts}",
        f"guest memory  total {human_size(s['mem_total_kib'] * 1024)}"
        f"  available {human_size(s['mem_available_kib'] * 1024)}"
        if target == "qemu"
        else "guest memory  none (the unix target shares the host's)",
        f"app           rss {human_size(s['app_rss_kib'] * 1024)}  peak {human_size(s['app_peak_kib'] * 1024)}"
        f"  cpu {cpu:.1f}%  threads {s['app_threads']}  open fds {s['app_fds']}",
        f"tcp sockets   listen {s['tcp_listen']}  established {s['tcp_established']}"
        f"  time-wait {s['tcp_time_wait']}  other {s['tcp_other']}",
    ]
    if "gc_tracked" in s:
        lines.append(
            f"python gc     tracked {s['gc_tracked']:,}  counts {s['gc_gen0']}/{s['gc_gen1']}/{s['gc_gen2']}"
            f"  collections {s['gc_collections']:,} (collected {s['gc_collected']:,},"
            f" uncollectable {s['gc_uncollectable']:,})"
        )
    return "\n".join(lines)


def one_sample(name: str) -> dict[str, object]:
    """The figures of instance NAME over half a second, as `kiln top --json` and `kiln stats --guest` print them."""
    from kiln.runtime import guest_stats
    from kiln.runtime.instance import get

    inst = get(name)
    before = guest_stats.sample(inst)
    time.sleep(0.5)
    now = guest_stats.sample(inst)
    return {
        **now,
        "cpu_percent": guest_stats.cpu_percent(before, now),
        "restarts": inst.state().restarts,
        "instance": name,
        "target": inst.config.target,
        "memory_limit_mib": inst.config.run.memory_mib,
    }


@click.command(epilog="\b\nExamples:\n  kiln top web\n  kiln top web --json        # one sample")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one sample as JSON and exit.")
@click.option("-n", "--iterations", type=int, default=0, help="Stop after N refreshes (default: until Ctrl-C).")
@click.option("-d", "--delay", type=float, default=2.0, show_default=True, help="Seconds between refreshes.")
def top(name: str, as_json: bool, iterations: int, delay: float) -> None:
    """Live figures from inside instance NAME: memory, CPU, threads, fds, sockets, uptime, Python's gc."""
    if as_json:
        print_json(one_sample(name))
        return
    from kiln.runtime import guest_stats
    from kiln.runtime.instance import get

    inst = get(name)
    before = guest_stats.sample(inst)
    time.sleep(min(delay, 1.0))
    shown = 0
    try:
        while True:
            now = guest_stats.sample(inst)
            if sys.stdout.isatty():
                click.clear()
            ui.say(screen(name, now, guest_stats.cpu_percent(before, now), inst.state().restarts, inst.config.target))
            shown += 1
            if iterations and shown >= iterations:
                return
            before = now
            time.sleep(delay)
    except KeyboardInterrupt:
        return
