"""`kiln ps`: list instances, rebuilt from their state directories and the live processes."""

from __future__ import annotations

import click

from kiln.cli.ui import columns, human_size, print_json
from kiln.runtime.instance import all_instances, rss_bytes


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@click.command(epilog="\b\nExamples:\n  kiln ps\n  kiln ps -a --json")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show exited instances too.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def ps(show_all: bool, as_json: bool) -> None:
    """List instances: name, image, target, state, ports, uptime, memory, restarts."""
    rows = []
    for inst in all_instances():
        cfg, st = inst.config, inst.state()
        if st.status == "exited" and not show_all:
            continue
        rows.append(
            {
                "name": inst.name,
                "image": cfg.image,
                "digest": cfg.digest,
                "target": cfg.target,
                "state": st.status,
                "exit_code": st.exit_code,
                "ports": [str(p) for p in cfg.run.ports],
                "uptime": inst.uptime(st),
                "memory": rss_bytes(st.vm_pid) if st.status == "running" else None,
                "restarts": st.restarts,
                "restart_policy": str(cfg.restart),
                "pid": st.vm_pid,
                "error": st.error,
                "summoned_by": cfg.summoned_by,
            }
        )
    if as_json:
        print_json(rows)
        return
    table: list[list[str]] = []
    for r in rows:
        state = r["state"] if r["state"] != "exited" else f"exited ({r['exit_code']})"
        if r["summoned_by"] is not None:
            state += " (summoned)"
        table.append(
            [
                r["name"],
                r["image"],
                r["target"],
                state,
                ", ".join(r["ports"]),
                _duration(r["uptime"]),
                human_size(r["memory"]) if r["memory"] else "",
                str(r["restarts"]),
            ]
        )
    columns(("NAME", "IMAGE", "TARGET", "STATE", "PORTS", "UPTIME", "MEMORY", "RESTARTS"), table)
