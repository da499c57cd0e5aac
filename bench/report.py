"""The comparison's report: the results as JSON, a Markdown block for
docs/benchmarks.md, and two PNG plots (boot time per stack, memory against N).

Everything here works from the results dictionary alone, so a report can be
regenerated from a saved run and tested without booting anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import Summary, ratio

# The table's columns, in order; the smoke test checks the report against them.
COLUMNS = (
    "stack",
    "boot to first response (median)",
    "min–max",
    "boot ×",
    "image on disk",
    "image ×",
    "files",
    "executables",
    "shell",
    "min guest memory",
    "host RSS per instance",
    "RSS ×",
    "requests/s (wrk)",
    "requests/s ×",
)
DASH = "—"

Results = dict[str, Any]


def baseline_of(results: Results) -> dict[str, Any] | None:
    """The stack the ratios are against: the traditional VM if it was measured, else the plain process."""
    by_key = {s["key"]: s for s in results["stacks"]}
    return by_key.get("debian-vm") or by_key.get("plain")


def boot_summary(stack: dict[str, Any]) -> Summary | None:
    return Summary.of(stack["boot"]) if stack.get("boot") else None


def _ms(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds * 1000:,.0f} ms"


def _mb(n: float | None) -> str:
    return DASH if n is None else f"{n / 1e6:,.1f} MB"


def _mib(n: float | None) -> str:
    return DASH if n is None else f"{n / 2**20:,.0f} MiB"


def _x(value: float | None, base: float | None) -> str:
    r = ratio(value, base)
    if r is None:
        return DASH
    return f"{r:.2f}×" if r >= 0.01 else f"{r:.4f}×"


def _num(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def rows(results: Results) -> list[list[str]]:
    base = baseline_of(results) or {}
    base_boot = boot_summary(base)
    out = []
    for s in results["stacks"]:
        boot = boot_summary(s)
        facts = s["facts"]
        rps = s["wrk"]["requests_per_second"] if s.get("wrk") else None
        base_rps = base["wrk"]["requests_per_second"] if base.get("wrk") else None
        if s.get("min_memory"):
            min_mem = f"{s['min_memory']} MiB (default {s['default_memory']})"
        else:
            min_mem = s.get("memory_note") or DASH
        out.append(
            [
                s["title"],
                _ms(boot.median if boot else None),
                f"{_ms(boot.low)}–{_ms(boot.high)}" if boot else DASH,
                _x(boot.median if boot else None, base_boot.median if base_boot else None),
                _mb(facts["size"]),
                _x(facts["size"], base.get("facts", {}).get("size")),
                _num(facts["files"]),
                _num(facts["executables"]),
                DASH if facts["shell"] is None else ("yes" if facts["shell"] else "no"),
                min_mem,
                _mib(s.get("rss")),
                _x(s.get("rss"), base.get("rss")),
                DASH if rps is None else f"{rps:,.0f}",
                _x(rps, base_rps),
            ]
        )
    return out


def table(header: tuple[str, ...] | list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]


def render(results: Results, plots: dict[str, str] | None = None) -> str:
    """The Markdown block: accelerator first, the table, the details, density, the machine."""
    base = baseline_of(results)
    accel = results["accel"].upper()
    lines = [
        "## hello-http on five stacks (`bench/hello_http.py`)",
        "",
        f"**Accelerator: {accel}**"
        + (" (KVM does not work on this host; every VM here is software-emulated)" if accel == "TCG" else "")
        + f". Measured {results['measured']}, "
        + f"{'quick mode, ' if results.get('quick') else ''}boot times are medians of {results['runs']} runs. "
        + (f"Ratios (×) are against **{base['title']}**, measured in the same run." if base else ""),
        "",
        *table(COLUMNS, rows(results)),
        "",
        "- *Boot to first response*: from the start command to the first HTTP 200 from the host, through the "
        "forwarded port.",
        "- *Min guest memory*: the lowest `-m` (bisection) with which the VM boots and then answers 100 requests "
        "in a row.",
        "- *Host RSS per instance*: resident memory of the process holding the instance (QEMU, the sandbox's "
        "process tree, the container's, the plain process) after it served 100 requests and the wrk run; "
        "kiln's own `kiln run` process is not counted (see the details).",
        "- *Requests/s*: `wrk` with 1 thread and 8 connections against `/` through the same forwarded port.",
        "",
        "Details:",
        "",
    ]
    for s in results["stacks"]:
        extra = []
        if s["facts"].get("detail"):
            extra.append(s["facts"]["detail"])
        if s.get("rss_all") and s.get("rss") and abs(s["rss_all"] - s["rss"]) > 2**20:
            extra.append(f"everything the start command started: {_mib(s['rss_all'])}")
        if s.get("served") is not None:
            extra.append(f"{s['served']}/100 requests answered")
        if s.get("wrk"):
            w = s["wrk"]
            lat = f", mean latency {w['latency_ms']:.1f} ms" if w.get("latency_ms") is not None else ""
            extra.append(f"wrk: {w['requests']:,} requests, {w['errors']} errors{lat}")
        if s.get("error"):
            extra.append(f"**error: {s['error']}**")
        lines.append(f"- **{s['title']}**: " + "; ".join(extra))
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    density = results.get("density")
    if density:
        lines += ["", *render_density(density)]
    if plots:
        lines += ["", *(f"![{title}]({path})" for title, path in plots.items())]
    lines += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in results["machine"].items()), ""]
    return "\n".join(lines)


def largest(density: dict[str, Any]) -> int:
    ok = [s["n"] for s in density["steps"] if s["answered"] == s["n"]]
    return max(ok, default=0)


def render_density(density: dict[str, Any]) -> list[str]:
    lines = [
        "### Density: kiln (qemu) instances at once",
        "",
        f"Largest N that answered: **{largest(density)}** (aim ≥ 100); {density['stopped']}. "
        f"Guest RAM per instance: {density['memory_mib']} MiB. "
        f"A step of N counts only if all N answer within {density['deadline']}."
        + (f" (This ramp was measured {density['measured']}, in an earlier run.)" if density.get("measured") else ""),
        "",
    ]
    body = []
    for s in density["steps"]:
        per = (s["vm_rss"] + s["supervisor_rss"]) / s["n"]
        body.append(
            [
                str(s["n"]),
                f"{s['answered']}/{s['n']}",
                DASH if s["seconds"] is None else f"{s['seconds']:.1f} s",
                _mib(s["vm_rss"]),
                _mib(s["supervisor_rss"]),
                _mib(per),
                f"{s['host_used'] / 2**30:.2f} GiB",
            ]
        )
    head = ["N", "answered", "until all answered", "QEMU RSS", "supervisors' RSS", "per instance", "host memory used"]
    return lines + table(head, body)


def plot_boot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stacks = [s for s in results["stacks"] if s.get("boot")]
    summaries = [Summary.of(s["boot"]) for s in stacks]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    y = range(len(stacks))
    medians = [x.median * 1000 for x in summaries]
    err = [[(x.median - x.low) * 1000 for x in summaries], [(x.high - x.median) * 1000 for x in summaries]]
    colors = ["#2a7ab0" if s["key"].startswith("kiln") else "#9a9a9a" for s in stacks]
    ax.barh(list(y), medians, xerr=err, color=colors, capsize=3)
    ax.set_yticks(list(y), [s["title"] for s in stacks])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("boot to first HTTP response, ms (log scale; bars: median, whiskers: min–max)")
    ax.set_title(f"hello-http, {results['accel'].upper()}")
    for i, m, x in zip(y, medians, summaries, strict=True):
        ax.text(x.high * 1000 * 1.15, i, f"{m:,.0f} ms", va="center", fontsize=8)
    ax.set_xlim(right=max(x.high for x in summaries) * 1000 * 4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_density(density: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in density["steps"] if s["answered"] == s["n"]]
    n = [s["n"] for s in steps]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.plot(n, [(s["vm_rss"] + s["supervisor_rss"]) / s["n"] / 2**20 for s in steps], "o-", label="RSS per instance")
    ax.plot(n, [s["vm_rss"] / s["n"] / 2**20 for s in steps], "s--", label="QEMU only")
    ax.plot(n, [max(s["host_used"], 0) / s["n"] / 2**20 for s in steps], "^:", label="host memory used / N")
    ax.set_xlabel("instances running at once (N)")
    ax.set_ylabel("MiB per instance")
    ax.set_ylim(bottom=0)
    ax.set_title("kiln (qemu) hello-http density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
