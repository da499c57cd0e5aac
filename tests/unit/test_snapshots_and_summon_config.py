"""Snapshots in the store (add, list, remove, prune), what makes one fit a run, and summon.toml."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.errors import UsageError
from kiln.manifest import MEDIA_SNAPSHOT_RAM, MEDIA_SNAPSHOT_STATE, MadeWith, Part, SnapshotRecord
from kiln.store import Ref, Store
from kiln.summon.config import SummonConfig, load, parse_duration
from tests.unit.test_parsers_fuzz import VALID

MADE = MadeWith(qemu="QEMU emulator version 7.2.22", accel="tcg", cpu="max", memory_mib=48, devices="d", after="ready")


def _image(store: Store, tmp_path: Path) -> str:
    """A tagged image whose manifest names two real blobs."""
    parts = []
    for name in ("kernel", "root"):
        (tmp_path / name).write_bytes(f"{name} stand-in".encode())
        parts.append(tmp_path / name)

    def manifest(stored: list[tuple[str, int]]) -> bytes:
        (kd, _), (rd, _) = stored
        data = {**VALID, "kernel": {**VALID["kernel"], "digest": kd}, "rootfs": {**VALID["rootfs"], "digest": rd}}
        return json.dumps(data).encode()

    return store.add_image(Ref("app"), parts, manifest)


def _snapshot(store: Store, image: str, tmp_path: Path, made: MadeWith = MADE) -> str:
    ram, state = store.root / "tmp" / "ram", store.root / "tmp" / "state"
    ram.write_bytes(b"\0" * 4096 + made.key().encode())
    state.write_bytes(b"device state")

    def record(parts: list[tuple[str, int]]) -> bytes:
        (rd, rs), (sd, ss) = parts
        return SnapshotRecord(
            image=image,
            made_with=made,
            ram=Part(digest=rd, size=rs, media_type=MEDIA_SNAPSHOT_RAM),
            state=Part(digest=sd, size=ss, media_type=MEDIA_SNAPSHOT_STATE),
            created=datetime(2026, 1, 1, tzinfo=UTC),
            boot_seconds=1.5,
        ).to_json()

    return store.add_snapshot(image, made.key(), [ram, state], record)


def test_snapshots_are_stored_listed_and_pruned_with_their_image(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    image = _image(store, tmp_path)
    digest = _snapshot(store, image, tmp_path)
    other = _snapshot(store, image, tmp_path, msgspec.structs.replace(MADE, memory_mib=64))
    assert {d for _, _, d in store.snapshot_refs(image)} == {digest, other}
    snap = store.snapshot(digest)
    assert snap.made_with == MADE and store.has_blob(snap.ram.digest) and not (store.root / "tmp" / "ram").exists()
    assert store.prune(keep=set()) == []  # the image is tagged: its snapshots stay
    assert store.remove_snapshots(image, MADE.key()) == 1
    gone = store.prune(keep=set())
    assert digest in gone and snap.ram.digest in gone and other not in gone
    store.untag("app")
    store.prune(keep=set())
    assert store.snapshot_refs() == [] and list((store.root / "blobs" / "sha256").iterdir()) == []


def test_a_failed_snapshot_leaves_no_blob(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    image = _image(store, tmp_path)
    before = set((store.root / "blobs" / "sha256").iterdir())
    ram = store.root / "tmp" / "ram"
    ram.write_bytes(b"ram")

    def broken(parts: list[tuple[str, int]]) -> bytes:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        store.add_snapshot(image, "k", [ram], broken)
    assert set((store.root / "blobs" / "sha256").iterdir()) == before and store.snapshot_refs(image) == []


def test_what_differs_is_said_in_words() -> None:
    run = msgspec.structs.replace(MADE, memory_mib=64, qemu="QEMU emulator version 8.0")
    assert MADE.differences(run) == [
        "qemu: snapshot QEMU emulator version 7.2.22, this run QEMU emulator version 8.0",
        "memory: snapshot 48 MiB, this run 64 MiB",
    ]
    assert MADE.key() != run.key() and MADE.key() == msgspec.structs.replace(MADE).key()


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("500ms", 0.5), ("2m", 120), (5, 5), ("1h", 3600)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@given(st.text(max_size=12))
def test_duration_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


def test_summon_config_from_file_and_command_line(tmp_path: Path) -> None:
    path = tmp_path / "summon.toml"
    path.write_text('idle = "10s"\nmax_running = 3\n[[service]]\nimage = "hello-http:1.0"\nports = ["8080:8080"]\n')
    cfg = load(path, ["redis=127.0.0.1:6379:6379"], max_running=None)
    assert cfg.idle == 10 and cfg.max_running == 3
    assert [(s.name, str(s.ports[0])) for s in cfg.service] == [
        ("hello-http", "0.0.0.0:8080->8080/tcp"),
        ("redis", "127.0.0.1:6379->6379/tcp"),
    ]
    assert load(None, ["a=1:2"], idle="1s").idle == 1
    # a detached summoner reads its config back from JSON (kiln summon -d)
    assert SummonConfig.model_validate(json.loads(cfg.model_dump_json())) == cfg


@pytest.mark.parametrize(
    ("services", "message"),
    [
        (["hello-http"], "expected IMAGE="),
        (["a=8080:80", "b=8080:81"], "host port 8080 is given to two services"),
        (["a=8080:80", "a=8081:80"], "two services are named a"),
        (["Bad_Name=1:2"], "must be a DNS label"),
    ],
)
def test_summon_config_errors(services: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load(None, services)


def test_the_example_summon_toml_is_valid() -> None:
    cfg = load(Path(__file__).resolve().parents[2] / "examples" / "summon" / "summon.toml", [])
    assert [s.name for s in cfg.service] == ["hello"] and cfg.dns is not None and cfg.dns.domain == "kiln.test"
