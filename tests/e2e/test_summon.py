"""The summoner under TCG: a first connection answered in full, one summon for 20 simultaneous
first connections, idle instances stopped, a killed VM summoned again, DNS, max_running, and a
guest that never becomes ready."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from dnslib import QTYPE, DNSRecord

from kiln_testing.command import kiln
from kiln_testing.ports import free_port
from kiln_testing.summoner import Summoner


@pytest.fixture
def summoners() -> Iterator[list[Summoner]]:
    started: list[Summoner] = []
    yield started
    for s in started:
        s.stop()


def _get(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=60)


@pytest.mark.vm
def test_first_connections_get_full_answers_from_one_summon(
    clone_snapshot: str,
    session_env: dict[str, str],
    summoners: list[Summoner],
) -> None:
    port, metrics = free_port(), free_port()
    s = Summoner(session_env, f"{clone_snapshot}={port}:8080", "--metrics", f"127.0.0.1:{metrics}")
    summoners.append(s)
    assert "a summon restores its snapshot" in s.log
    # a first connection from a second loopback address: the summoned app sees that address
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60) as client:
        first = client.get(f"http://127.0.0.1:{port}/from-a-second-address")
    assert first.status_code == 200 and len(first.json()["random"]) == 32
    s.wait_for("summoned (restore)")
    assert [i["name"] for i in s.instances()] == ["clone-http.summoned"]
    logs = kiln("logs", "clone-http.summoned", env=session_env, check=True).stdout
    assert "127.0.0.2 - - [" in logs and "GET /from-a-second-address" in logs, logs
    assert s.instances()[0]["state"] == "running"
    # scale to zero by hand (kiln stop), then 20 simultaneous first connections: one summon, 20 answers
    kiln("stop", "clone-http.summoned", env=session_env, check=True)
    s.wait_for("its VM ended")
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: _get(port), range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert len({a.json()["random"] for a in answers}) == 20
    assert s.log.count("summoned (restore)") == 2, s.log
    text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
    assert 'kiln_summons_total{how="restore",service="clone-http"} 2.0' in text
    assert "kiln_summon_seconds_count" in text and "kiln_held_connections 0.0" in text
    assert "kiln_instances_running 1.0" in text


@pytest.mark.vm
def test_idle_instances_stop_and_a_killed_vm_is_summoned_again(
    clone_snapshot: str,
    session_env: dict[str, str],
    summoners: list[Summoner],
) -> None:
    port = free_port()
    s = Summoner(session_env, f"{clone_snapshot}={port}:8080", "--idle", "2s")
    summoners.append(s)
    assert _get(port).status_code == 200
    pid = s.instances()[0]["pid"]
    os.kill(int(pid), signal.SIGKILL)  # type: ignore[arg-type]
    s.wait_for("its VM ended")
    assert _get(port).status_code == 200  # the next connection summons a new one
    assert s.instances()[0]["pid"] != pid
    s.wait_for("stopped (idle)", timeout=30)
    assert s.instances() == []
    assert s.log.count("summoned (restore)") == 2
    # the events outlive the summoned instance: two summons, the crash's end, the idle stop
    listed = kiln("events", f"{clone_snapshot}.summoned", "--json", env=session_env, check=True).stdout
    kinds = [json.loads(line)["event"] for line in listed.splitlines()]
    assert kinds.count("summon") >= 2 and "stop" in kinds and kinds[-1] == "idle-stop"


@pytest.mark.vm
def test_a_dns_query_answers_and_summons(
    clone_snapshot: str,
    session_env: dict[str, str],
    summoners: list[Summoner],
) -> None:
    port, dns = free_port(), free_port()
    s = Summoner(session_env, f"{clone_snapshot}={port}:8080", "--dns", f"127.0.0.1:{dns}", "--domain", "kiln.test")
    summoners.append(s)
    reply = DNSRecord.parse(DNSRecord.question("clone-http.kiln.test").send("127.0.0.1", dns, timeout=10))
    assert [(str(rr.rname), QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [
        ("clone-http.kiln.test.", "A", "127.0.0.1")
    ]
    s.wait_for("summoned (restore)")  # summoned by the query alone
    assert [i["name"] for i in s.instances()] == ["clone-http.summoned"]
    unknown = DNSRecord.parse(DNSRecord.question("nothing.kiln.test").send("127.0.0.1", dns, timeout=10))
    assert unknown.header.rcode == 3 and not unknown.rr  # NXDOMAIN


@pytest.mark.vm
def test_max_running_stops_the_least_recently_used(
    clone_snapshot: str,
    session_env: dict[str, str],
    summoners: list[Summoner],
    tmp_path: Path,
) -> None:
    ports = [free_port() for _ in range(3)]
    config = tmp_path / "summon.toml"
    config.write_text(
        "max_running = 2\n"
        + "".join(
            f'[[service]]\nname = "s{i}"\nimage = "{clone_snapshot}"\nports = ["127.0.0.1:{p}:8080"]\n'
            for i, p in enumerate(ports)
        )
    )
    s = Summoner(session_env, "-f", str(config))
    summoners.append(s)
    for p in ports:
        assert _get(p).status_code == 200
    s.wait_for("s0: stopped (lru)")
    assert sorted(i["name"] for i in s.instances()) == ["s1.summoned", "s2.summoned"]
    assert _get(ports[1]).status_code == 200  # s1 is now the most recent: s2 makes room for s0
    assert _get(ports[0]).status_code == 200
    s.wait_for("s2: stopped (lru)")
    assert sorted(i["name"] for i in s.instances()) == ["s0.summoned", "s1.summoned"]


@pytest.mark.vm
def test_a_guest_that_never_listens_resets_the_held_connection(
    clone_snapshot: str,
    session_env: dict[str, str],
    summoners: list[Summoner],
) -> None:
    port = free_port()  # guest port 9999: the app listens on 8080 only
    s = Summoner(session_env, f"{clone_snapshot}={port}:9999", "--ready-timeout", "3s")
    summoners.append(s)
    with pytest.raises(httpx.TransportError):
        _get(port)
    s.wait_for("summon failed")
    assert "did not listen on port(s) 9999" in s.log
    assert s.instances() == []


def test_summon_errors_are_one_line(session_env: dict[str, str], tmp_path: Path) -> None:
    bad = kiln("summon", "no-such-image=8080:8080", env=session_env)
    assert bad.returncode != 0 and "no such image" in bad.stderr and "Traceback" not in bad.stderr
    nothing = kiln("summon", env=session_env)  # and no summon.toml in the current directory
    assert nothing.returncode != 0 and "nothing to serve" in nothing.stderr
    config = tmp_path / "summon.toml"
    config.write_text('idle = "soon"\n[[service]]\nimage = "x"\nports = ["1:2"]\n')
    wrong = kiln("summon", "-f", str(config), env=session_env)
    assert wrong.returncode != 0 and "idle" in wrong.stderr and "not a duration" in wrong.stderr


@pytest.mark.vm
def test_a_detached_summoner_serves_until_stopped(
    clone_snapshot: str,
    session_env: dict[str, str],
) -> None:
    port = free_port()
    started = kiln("summon", "-d", "--name", "bg", f"{clone_snapshot}={port}:8080", env=session_env, check=True)
    try:
        assert "summoner bg running" in started.stdout
        again = kiln("summon", "-d", "--name", "bg", f"{clone_snapshot}={free_port()}:8080", env=session_env)
        assert again.returncode != 0 and "already running" in again.stderr
        assert _get(port).status_code == 200
        ps = json.loads(kiln("ps", "--json", env=session_env, check=True).stdout)
        assert [(i["name"], i["summoned_by"] is not None) for i in ps] == [("clone-http.summoned", True)]
    finally:
        kiln("summon", "--stop", "--name", "bg", env=session_env, check=True)
    assert json.loads(kiln("ps", "--json", env=session_env, check=True).stdout) == []
    log = Path(session_env["KILN_HOME"]) / "summon" / "bg" / "summoner.log"
    assert "clone-http: stopped (shutdown)" in log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
