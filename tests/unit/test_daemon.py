"""kiln.daemon (background processes: records, readiness, stop) and kiln.records (the run records' codec)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from kiln import daemon, records
from kiln.daemon import Daemon, Record, alive, proc_start_time
from kiln.engine.state import ContainerPlan
from kiln.errors import KilnError
from kiln.runtime.instance import InstanceState
from kiln.targets.base import Plan, RunConfig, VolumeMap
from kiln.targets.portmap import PortMap
from kiln.targets.ports import free_port


def test_liveness_checks_the_start_time() -> None:
    me = os.getpid()
    start = proc_start_time(me)
    assert start is not None and alive(me, start)
    assert not alive(me, start + 1)  # same pid, another process: not ours
    child = subprocess.Popen(["true"])
    child.wait()
    assert proc_start_time(child.pid) is None and not alive(child.pid, start)
    assert not alive(None, None)


def test_run_records_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig(
        ports=(PortMap(host_ip="127.0.0.1", host=8080, guest=80),),
        volumes=(VolumeMap(host=tmp_path, guest="/data"),),
        memory_mib=48,
        qmp_socket=tmp_path / "q.sock",
        extra_env={"A": "1"},
    )
    assert records.decode(records.encode(cfg), RunConfig) == cfg
    plan = Plan(target="qemu", image="web", argv=["qemu-system-x86_64", "-M", "microvm"], forwards=[cfg.ports[0]],
                upstreams=[40000], qmp_socket=tmp_path / "q.sock", memory_mib=48)  # fmt: skip
    decided = ContainerPlan(plan=plan, netns="new", rlimits=(("RLIMIT_NOFILE", 1024, 4096),))
    again = records.decode(records.encode(decided), ContainerPlan)
    assert again == decided and isinstance(again.plan.qmp_socket, Path)
    state = InstanceState(status="running", vm_pid=7, restarts=2)
    assert records.decode(records.encode(state), InstanceState) == state
    assert list(records.to_builtins(cfg)["volumes"]) == [{"host": str(tmp_path), "guest": "/data"}]


@pytest.mark.parametrize(
    ("data", "why"),
    [(b"{", "not a valid RunConfig record"), (b'{"memory_mib": "lots"}', r"Expected `int \| null`, got `str`"),
     (b"[]", "Expected `object`")],
)  # fmt: skip
def test_a_bad_record_is_one_readable_error(data: bytes, why: str) -> None:
    with pytest.raises(records.BadRecordError, match=why):
        records.decode(data, RunConfig)


def test_a_record_cannot_hold_what_it_cannot_read_back() -> None:
    class Odd(msgspec.Struct):
        value: object

    with pytest.raises(NotImplementedError, match="cannot keep a socket"):
        records.encode(Odd(value=socket.socket()))


def _announce(directory: Path, forget: bool) -> None:
    code = "from pathlib import Path; from kiln import daemon; "
    code += f"daemon.announce(Path({str(directory)!r}), 'me', {forget})"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_daemon_that_ends_by_itself_takes_its_record_with_it(tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    _announce(here, forget=True)
    assert not (here / "me.pid").exists()
    _announce(here, forget=False)  # the kiln-oci shim's: kept, and read as ended
    record = daemon.read(here / "me.pid")
    assert record is not None and not record.alive() and record.argv[0] == "-c"
    assert daemon.stale(tmp_path) == [here / "me.pid"]


def test_a_record_names_its_process_only(tmp_path: Path) -> None:
    daemon.announce(tmp_path / "here", "me", forget=False)
    record = daemon.read(tmp_path / "here" / "me.pid")
    assert record is not None and record.pid == os.getpid() and record.alive()
    assert daemon.stale(tmp_path) == []
    daemon.write(tmp_path / "here" / "other.pid", Record(pid=os.getpid(), start=record.start + 1))  # a reused pid
    assert daemon.stale(tmp_path) == [tmp_path / "here" / "other.pid"]
    (tmp_path / "here" / "junk.pid").write_text("not json")
    assert daemon.read(tmp_path / "here" / "junk.pid") is None


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_start_waits_until_ready_and_stop_ends_it(tmp_path: Path) -> None:
    port = free_port()
    server = Daemon(tmp_path, "web", "http.server", ["--bind", "127.0.0.1", str(port)])
    proc = server.start("the web server", lambda: _answers(port), timeout=30)
    running = server.running()
    assert running is not None and running.pid == proc.pid and _answers(port)
    assert server.stop(grace=5) is True
    proc.wait(timeout=5)
    assert server.running() is None and not server.record_path.exists() and not _answers(port)
    assert server.stop(grace=5) is False  # not running: nothing to do


def test_a_daemon_that_ends_first_is_named_with_its_last_word(tmp_path: Path) -> None:
    broken = Daemon(tmp_path, "tool", "json.tool", [str(tmp_path / "missing.json")])
    with pytest.raises(KilnError, match=r"the tool did not start: .*No such file or directory.* \(log: .*tool.log\)"):
        broken.start("the tool", lambda: False, timeout=30)


def test_a_daemon_never_ready_is_stopped(tmp_path: Path) -> None:
    port = free_port()
    server = Daemon(tmp_path, "web", "http.server", ["--bind", "127.0.0.1", str(port)])
    with pytest.raises(KilnError, match="the web server did not get ready within 1 s"):
        server.start("the web server", lambda: False, timeout=1)
    assert server.running() is None


def test_what_a_daemon_said_before_it_ended_counts(tmp_path: Path) -> None:
    """A child that reports on a pipe and exits at once (the kiln-oci shim refusing a namespace)."""
    r, w = os.pipe()
    said: list[bytes] = []

    def ready() -> bool:
        if not said:
            said.append(os.read(r, 100))
        return True

    quick = Daemon(tmp_path, "quick", "kiln.daemon_probe_absent")  # never imported: argv below replaces it
    quick.argv = [sys.executable, "-c", f"import os; os.write({w}, b'no thanks')"]
    quick.start("the child", ready, timeout=30, pass_fds=(w,)).wait()
    os.close(r)
    assert said == [b"no thanks"]
