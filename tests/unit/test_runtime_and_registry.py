"""Restart policy, volume specs, registry references and credentials."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from kiln.errors import KilnError, UsageError
from kiln.registry import docker_credentials, split_ref
from kiln.runtime.instance import RestartPolicy
from kiln.store import Ref
from kiln.targets.base import RunConfig, VolumeMap


@pytest.mark.parametrize(
    ("text", "code", "restarts", "expected"),
    [
        ("no", 1, 0, False),
        ("always", 0, 7, True),
        ("on-failure", 0, 0, False),
        ("on-failure", 3, 9, True),
        ("on-failure:2", 1, 1, True),
        ("on-failure:2", 1, 2, False),
    ],
)
def test_restart_policy(text: str, code: int, restarts: int, expected: bool) -> None:
    policy = RestartPolicy.parse(text)
    assert str(policy) == text and policy.should_restart(code, restarts) is expected


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:x", "no:1", ""])
def test_restart_policy_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid restart policy"):
        RestartPolicy.parse(text)


def test_volume_specs(tmp_path: Path) -> None:
    v = VolumeMap.parse(f"{tmp_path}:/data")
    assert v.host == tmp_path and v.guest == "/data"
    for bad in ("/data", f"{tmp_path}:data", f"{tmp_path / 'missing'}:/data"):
        with pytest.raises(UsageError):
            VolumeMap.parse(bad)
    cfg = RunConfig(volumes=(v,))
    assert cfg.volume_hosts(("/data", "/cache")) == [tmp_path, None]
    with pytest.raises(UsageError, match="declares no volume at /data"):
        RunConfig(volumes=(v,)).volume_hosts(())


def test_split_ref() -> None:
    assert split_ref(Ref.parse("localhost:5000/demo/hello:1.0")) == ("localhost:5000", "demo/hello")
    assert split_ref(Ref.parse("registry.example/x")) == ("registry.example", "x")
    with pytest.raises(UsageError, match="names no registry"):
        split_ref(Ref.parse("hello-http"))
    with pytest.raises(UsageError, match="names no registry"):
        split_ref(Ref.parse("demo/hello"))


def test_docker_credentials(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"localhost:5000": {"auth": base64.b64encode(b"me:pw:x").decode()}}}))
    assert docker_credentials("localhost:5000", config) == ("me", "pw:x")
    assert docker_credentials("other:5000", config) is None
    assert docker_credentials("localhost:5000", tmp_path / "missing.json") is None


def test_instance_files_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    from kiln.runtime import instance as instances
    from kiln.targets.portmap import PortMap

    config = instances.InstanceConfig(
        name="web",
        image="hello-http",
        digest="sha256:" + "a" * 64,
        target="qemu",
        run=RunConfig(
            ports=(PortMap(host_ip="127.0.0.1", host=8080, guest=80),),
            volumes=(VolumeMap(host=tmp_path, guest="/data"),),
            memory_mib=48,
            accel="tcg",
            qmp_socket=tmp_path / "q.sock",
            snapshot="never",
            extra_env={"A": "1"},
        ),
        restart=RestartPolicy.parse("on-failure:3"),
        created=instances.now(),
        summoned_by=42,
    )
    inst = instances.create(config)
    assert inst.config == config
    state = instances.InstanceState(status="running", vm_pid=7, started_at=instances.now(), restarts=2)
    inst.write_state(state)
    assert inst.read_state() == state
    (inst.dir / "state.json").write_text('{"status": "dancing"}')
    assert inst.read_state().error == "no readable state"
    (inst.dir / "config.json").write_text('{"name": "web"}')
    with pytest.raises(KilnError, match="instance web: unreadable config"):
        _ = inst.config


def test_run_config_checks_its_values() -> None:
    from kiln.targets.portmap import PortMap

    with pytest.raises(UsageError, match="at least 16 MiB"):
        RunConfig(memory_mib=8)
    with pytest.raises(ValueError, match="invalid accelerator"):
        RunConfig(accel="hvf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid port"):
        PortMap(host=0, guest=80)


# What a 32 MiB guest printed (quiet kernel) when the OOM killer ended the hog fixture and the kernel
# then deadlocked on memory: a real console, from tests/fixtures/apps/hog.
OOM_THEN_PANIC = """\
hog: allocating
Out of memory: Killed process 23 (python3.11) total-vm:24664kB, anon-rss:13680kB, file-rss:1612kB, shmem-rss:0kB, \
UID:0 pgtables:84kB oom_score_adj:0
Kernel panic - not syncing: System is deadlocked on memory
Kernel Offset: disabled
"""


def test_a_panic_after_the_oom_killer_is_the_apps_out_of_memory_end() -> None:
    from kiln.runtime.failure import explain

    found = explain(OOM_THEN_PANIC, 137, memory_mib=32)
    assert found is not None and found.kind == "oom"
    # init's own wording; the peak is what the kill record says the app held (13,680 + 1,612 KiB)
    assert found.reason == "the app ran out of memory: 32 MiB guest, the app used 15 MiB at its peak; try --memory 64M"
    without_size = explain(OOM_THEN_PANIC, 137)
    assert (
        without_size is not None and without_size.reason == "the app ran out of memory: the app used 15 MiB at its peak"
    )


def test_other_panics_stay_panics() -> None:
    from kiln.runtime.failure import explain

    plain = explain("Kernel panic - not syncing: VFS: Unable to mount root fs\n", 1, memory_mib=32)
    assert plain is not None and (plain.kind, plain.reason) == (
        "panic",
        "the guest kernel panicked: VFS: Unable to mount root fs",
    )
    # the same panic with no kill before it: nothing says the app ran out of memory
    no_kill = explain("Kernel panic - not syncing: System is deadlocked on memory\n", 1, memory_mib=32)
    assert no_kill is not None and no_kill.kind == "panic"


def test_the_console_reader_notes_the_oom_kill() -> None:

    from kiln.targets.console import ConsoleReader, oom_then_panic

    read, write = os.pipe()
    with os.fdopen(write, "wb") as w:
        w.write(OOM_THEN_PANIC.encode())
    with os.fdopen(read, "rb") as r:
        console = ConsoleReader(r, None)
        console.join(5)
    assert console.oom_killed and console.panic == "System is deadlocked on memory"
    assert oom_then_panic(console.oom_killed, console.panic)
    assert not oom_then_panic(False, console.panic) and not oom_then_panic(True, "VFS: Unable to mount root fs")


@pytest.mark.parametrize(
    ("name", "host"),
    [("redis:7", "docker.io"), ("library/redis", "docker.io"), ("bitnami/redis:7", "docker.io"),
     ("quay.io/x/y:1", "quay.io"), ("127.0.0.1:5000/a/b", "127.0.0.1:5000"), ("localhost/a", "localhost")],
)  # fmt: skip
def test_a_docker_name_is_on_the_registry_docker_reads_it_on(name: str, host: str) -> None:
    """So that `redis:7` is Docker Hub's (and a registries.conf mirror of docker.io serves it), not a host."""
    from kiln.oci.source import Source

    assert Source.parse(f"docker://{name}").host == host
