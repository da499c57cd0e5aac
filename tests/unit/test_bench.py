"""The benchmark harness's own logic: wrk's output, statistics, /proc parsing,
the density ramp's planning, and the report (table, ratios, plots)."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import density, report
from bench.harness import Summary, bisect_min, parse_status_kib, parse_wrk, ratio, replace_section, subtree_named
from kiln_testing.ports import free_port, free_ports

WRK_CLEAN = """\
Running 2s test @ http://127.0.0.1:18090/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.64ms  426.33us   6.32ms   70.35%
    Req/Sec     2.22k   139.49     2.37k    66.67%
  4648 requests in 2.10s, 835.34KB read
Requests/sec:   2213.60
Transfer/sec:    397.83KB
"""

WRK_ERRORS = """\
Running 10s test @ http://127.0.0.1:8080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.50us    1.02ms  40.11ms   97.10%
    Req/Sec   310.22     40.01   400.00     70.00%
  3102 requests in 10.01s, 557.40KB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:    309.90
Transfer/sec:     55.68KB
"""


def test_parse_wrk_clean_run() -> None:
    r = parse_wrk(WRK_CLEAN)
    assert r.requests_per_second == pytest.approx(2213.60)
    assert r.requests == 4648 and r.errors == 0
    assert r.latency_ms == pytest.approx(2.64)


def test_parse_wrk_counts_socket_errors_and_bad_statuses_and_reads_microseconds() -> None:
    r = parse_wrk(WRK_ERRORS)
    assert r.requests == 3102 and r.errors == 2 + 1 + 3 + 4
    assert r.latency_ms == pytest.approx(0.8125)


def test_parse_wrk_rejects_other_text() -> None:
    with pytest.raises(ValueError, match="not wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_summary_and_ratio() -> None:
    s = Summary.of([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (s.median, s.low, s.high, s.n) == (3.0, 1.0, 10.0, 5)
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 4.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
    with pytest.raises(ValueError):
        Summary.of([])


@given(st.integers(16, 1024), st.integers(1, 64))
def test_bisection_finds_the_threshold_within_one_step(threshold: int, step: int) -> None:
    probes: list[int] = []

    def works(mib: int) -> bool:
        probes.append(mib)
        return mib >= threshold

    found = bisect_min(16, 1024, works, step=step)
    assert found is not None and threshold <= found <= threshold + step
    assert len(probes) <= 12  # logarithmic, not a scan


def test_bisection_reports_none_when_even_the_top_fails() -> None:
    assert bisect_min(16, 128, lambda _m: False) is None


def test_parse_status_kib() -> None:
    text = "Name:\tqemu\nVmPeak:\t  200 kB\nVmRSS:\t  151040 kB\n"
    assert parse_status_kib(text, "VmRSS") == 151040 * 1024
    assert parse_status_kib(text, "VmSwap") is None
    assert parse_status_kib("MemTotal:  1000 kB\nMemAvailable:  512 kB\n", "MemAvailable") == 512 * 1024


def test_subtree_named_finds_the_process_holding_the_instance() -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (found := subtree_named(proc.pid, "sleep")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(found) == 1 and found[0] != proc.pid
        assert subtree_named(proc.pid, "no-such-process") == []
    finally:
        proc.kill()
        proc.wait()


def test_replace_section_replaces_only_its_block(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    replace_section(doc, "one", "first")
    replace_section(doc, "two", "second")
    replace_section(doc, "one", "first, again")
    text = doc.read_text()
    assert "first, again" in text and "second" in text and "first\n" not in text
    assert text.count("<!-- bench:one:start -->") == 1


def test_density_steps_end_at_the_largest_asked_for() -> None:
    assert density.plan_steps(5) == [1, 5]
    assert density.plan_steps(100) == [1, 10, 25, 50, 75, 100]
    assert density.plan_steps(1) == [1]


def test_density_memory_guard() -> None:
    gib = 2**30
    assert density.fits(100, 0.15 * gib, 20 * gib)
    assert not density.fits(150, 0.15 * gib, 20 * gib)  # 22.5 GiB > 80 % of 20 GiB


def test_free_ports_are_distinct() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50


def test_wait_all_counts_only_answers_by_the_deadline() -> None:
    """Real servers on loopback: one answers at once, one only after the deadline, one port stays closed."""

    class Health(http.server.BaseHTTPRequestHandler):
        delay = 0.0

        def do_GET(self) -> None:
            time.sleep(self.delay)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Late(Health):
        delay = 3.0

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (Health, Late)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        ports = [srv.server_address[1] for srv in servers] + [free_port()]
        start = time.perf_counter()
        answered = density.wait_all(ports, deadline=start + 1.5)
        assert set(answered) == {0} and start <= answered[0] <= start + 1.5
        assert time.perf_counter() - start < 1.5 + density.ANSWER_TIMEOUT + 1  # bounded
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def test_step_cost_uses_the_larger_of_the_host_drop_and_qemu_rss() -> None:
    s = density.Step(n=10, answered=10, seconds=9.0, vm_rss=1000, supervisor_rss=300, host_used=1500)
    assert s.ok and s.per_instance == 130 and s.cost == 150
    noisy = density.Step(n=10, answered=9, seconds=None, vm_rss=1000, supervisor_rss=300, host_used=-20)
    assert not noisy.ok and noisy.cost == 100


def stack(key: str, title: str, boot: list[float], size: int | None, rss: int, rps: float, **kw: Any) -> dict:
    facts = {"size": size, "files": 10 if size else None, "executables": 2 if size else None}
    facts |= {"shell": (key == "debian-vm") if size else None, "detail": ""}
    wrk = {"requests_per_second": rps, "requests": int(rps * 10), "errors": 0, "latency_ms": 1.0}
    return {"key": key, "title": title, "boot": boot, "facts": facts, "rss": rss, "rss_all": rss, "served": 100,
            "wrk": wrk, **kw}  # fmt: skip


def results(with_vm: bool = True) -> dict:
    stacks = [
        stack(
            "kiln-qemu", "kiln (qemu)", [2.0, 2.2, 2.1], 8_500_000, 130 * 2**20, 200.0, min_memory=40, default_memory=48
        ),
        stack("plain", "plain process", [0.05, 0.06, 0.07], None, 19 * 2**20, 3000.0, memory_note="n/a"),
    ]
    if with_vm:
        stacks.insert(
            1,
            stack(
                "debian-vm",
                "traditional VM (Debian)",
                [21.0, 20.0, 22.0],
                510_000_000,
                300 * 2**20,
                150.0,
                min_memory=120,
                default_memory=512,
            ),
        )
    steps = [
        {"n": 1, "answered": 1, "seconds": 2.5, "vm_rss": 130 * 2**20, "supervisor_rss": 32 * 2**20,
         "host_used": 140 * 2**20, "error": ""},
        {"n": 10, "answered": 10, "seconds": 20.0, "vm_rss": 1300 * 2**20, "supervisor_rss": 320 * 2**20,
         "host_used": 1400 * 2**20, "error": ""},
    ]  # fmt: skip
    return {
        "measured": "2026-11-24 10:00 UTC",
        "accel": "tcg",
        "quick": False,
        "runs": 3,
        "machine": {"cpu": "test", "cores": "2"},
        "stacks": stacks,
        "density": {
            "steps": steps,
            "stopped": "reached the largest step asked for (10)",
            "memory_mib": 48,
            "deadline": "60 s + 15 s × N",
        },
        "notes": [],
    }


def table_rows(markdown: str) -> list[list[str]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]


def test_report_has_every_column_and_the_accelerator_before_the_table() -> None:
    md = report.render(results())
    header, *body = table_rows(md)
    assert header == list(report.COLUMNS)
    assert all(len(r) == len(report.COLUMNS) for r in body[:3])
    assert md.index("**Accelerator: TCG**") < md.index("| stack |")
    assert "Machine: cpu: test; cores: 2" in md


def test_report_ratios_are_against_the_traditional_vm() -> None:
    md = report.render(results())
    assert "against **traditional VM (Debian)**" in md
    rows = {r[0]: dict(zip(report.COLUMNS, r, strict=True)) for r in table_rows(md)[1:4]}
    kiln = rows["kiln (qemu)"]
    assert kiln["boot to first response (median)"] == "2,100 ms" and kiln["boot ×"] == "0.10×"
    assert kiln["image ×"] == "0.02×" and kiln["RSS ×"] == "0.43×" and kiln["requests/s ×"] == "1.33×"
    assert rows["traditional VM (Debian)"]["boot ×"] == "1.00×" and rows["traditional VM (Debian)"]["shell"] == "yes"
    assert kiln["min guest memory"] == "40 MiB (default 48)"
    plain = rows["plain process"]
    assert plain["image on disk"] == "—" and plain["image ×"] == "—" and plain["shell"] == "—"


def test_report_falls_back_to_the_plain_process_when_no_vm_was_measured() -> None:
    md = report.render(results(with_vm=False))
    assert "against **plain process**" in md
    rows = {r[0]: dict(zip(report.COLUMNS, r, strict=True)) for r in table_rows(md)[1:3]}
    assert rows["plain process"]["boot ×"] == "1.00×" and rows["kiln (qemu)"]["boot ×"] == "35.00×"


def test_report_density_block() -> None:
    md = report.render(results())
    assert "Largest N that answered: **10**" in md
    failed = results()
    failed["density"]["steps"].append(
        {"n": 25, "answered": 20, "seconds": None, "vm_rss": 0, "supervisor_rss": 0, "host_used": 0, "error": "x"}
    )
    md = report.render(failed)
    assert "Largest N that answered: **10**" in md and "| 25 | 20/25 | — |" in md
    assert "A step of N counts only if all N answer within 60 s + 15 s × N." in md


def test_plots_are_png_files(tmp_path: Path) -> None:
    r = results()
    report.plot_boot(r, tmp_path / "boot.png")
    report.plot_density(r["density"], tmp_path / "density.png")
    for name in ("boot.png", "density.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / name).stat().st_size > 5000


def test_corpus_runs_the_images_command_as_plain_python() -> None:
    from bench.corpus import host_argv, report

    fixed = ["/usr/bin/python3.11", "-I", "/kiln/start.pyc"]
    console = {"argv": [*fixed, "-e", "gunicorn.app.wsgiapp:run", "gunicorn", "-b", ":8000", "app:app"], "args_from": 6}
    argv = host_argv(console)
    assert argv[:2] == ["/usr/bin/python3.11", "-c"] and argv[3:] == ["-b", ":8000", "app:app"]
    assert "from gunicorn.app.wsgiapp import run" in argv[2] and "sys.argv[0] = 'gunicorn'" in argv[2]
    assert host_argv({"argv": [*fixed, "-m", "aiohttp.web", "x"], "args_from": 5}) == [
        "/usr/bin/python3.11", "-m", "aiohttp.web", "x"]  # fmt: skip
    assert host_argv({"argv": [*fixed, "/app/app.py"], "args_from": 4}) == ["/usr/bin/python3.11", "app.py"]
    row = {"app": "a", "image": 2_000_000, "debian_tree": 20_000_000, "build_cold": 1.0, "build_cached": 0.5,
           "unix_first_answer": 0.3, "python3_first_answer": None}  # fmt: skip
    text = report([row, {"app": "b", "error": "no wheel"}])
    assert "| a | 2.0 MB | 20.0 MB | 0.100 |" in text and "no answer" in text and "build failed: no wheel" in text


def test_the_servers_report_shows_each_ratio_and_a_lost_row() -> None:
    from bench import servers

    text = servers._report(
        1, "TCG",
        [("postgresql-15", "15.20", 48e6, 480e6, 60, 9.5, 1.25, 57.0)],
        [("postgresql-15", "pgbench -S, 4 clients (transactions/s)", 300.0, 3000.0)],
        [("postgresql-15", True), ("mariadb-server", False)],
    )  # fmt: skip
    assert "| postgresql-15 15.20 | 48.0 MB | 480.0 MB (60 packages) | 0.100 | 9500 ms | 1250 ms | 57000 ms | 6.0× |" \
        in text  # fmt: skip
    assert "| postgresql-15 | pgbench -S, 4 clients (transactions/s) | 300 | 3,000 | 0.10× |" in text
    assert "postgresql-15: kept, mariadb-server: LOST." in text and "accelerator: **TCG**" in text
