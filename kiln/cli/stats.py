"""`kiln stats`: memory and CPU of each running instance, sampled over a moment."""

from __future__ import annotations

import time

import click

from kiln.cli.ui import columns, human_size, print_json, say
from kiln.errors import UsageError
from kiln.runtime.instance import all_instances, cpu_seconds, rss_bytes

SAMPLE = 0.5


@click.command(epilog="\b\nExamples:\n  kiln stats\n  kiln stats --json\n  kiln stats --guest web   # as kiln top web")
@click.argument("name", required=False)
@click.option("--guest", is_flag=True, help="Figures from inside instance NAME (one sample of kiln top).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def stats(name: str | None, guest: bool, as_json: bool) -> None:
    """Guest memory (configured and resident on the host) and CPU use of each running instance;
    with --guest NAME, the figures from inside one (as kiln top shows them)."""
    if guest or name:
        if not (guest and name):
            raise UsageError("kiln stats NAME needs --guest (kiln stats alone lists every instance)")
        from kiln.cli.top import one_sample, screen

        sample = one_sample(name)
        if as_json:
            print_json(sample)
        else:
            say(screen(name, sample, sample["cpu_percent"], sample["restarts"], sample["target"]))  # type: ignore[arg-type]
        return
    running = [(i, i.state()) for i in all_instances()]
    running = [(i, st) for i, st in running if st.status == "running"]
    before = {i.name: cpu_seconds(st.vm_pid) for i, st in running}
    time.sleep(SAMPLE if running else 0)
    rows = []
    for inst, st in running:
        cpu0, cpu1 = before[inst.name], cpu_seconds(st.vm_pid)
        m = inst.config.run.memory_mib
        rows.append(
            {
                "name": inst.name,
                "target": inst.config.target,
                "memory_limit_mib": m,
                "rss": rss_bytes(st.vm_pid),
                "cpu_percent": round(100 * (cpu1 - cpu0) / SAMPLE, 1)
                if cpu0 is not None and cpu1 is not None
                else None,
                "cpu_seconds": cpu1,
            }
        )
    if as_json:
        print_json(rows)
        return
    table: list[list[str]] = []
    for r in rows:
        table.append(
            [
                r["name"],
                r["target"],
                f"{r['memory_limit_mib']} MiB" if r["memory_limit_mib"] else "image's",
                human_size(r["rss"]) if r["rss"] else "",
                f"{r['cpu_percent']}" if r["cpu_percent"] is not None else "",
                f"{r['cpu_seconds']:.1f} s" if r["cpu_seconds"] is not None else "",
            ]
        )
    columns(("NAME", "TARGET", "GUEST MEMORY", "HOST RSS", "CPU %", "CPU TIME"), table)
