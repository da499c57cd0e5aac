"""The content-addressed store: blobs, tags, references, tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.errors import KilnError, StoreError, UsageError
from kiln.store import Ref, Store, sha256_file


@pytest.mark.parametrize(
    ("text", "name", "tag"),
    [
        ("hello-http", "hello-http", "latest"),
        ("hello-http:1.0", "hello-http", "1.0"),
        ("localhost:5000/demo/hello:1.0", "localhost:5000/demo/hello", "1.0"),
        ("localhost:5000/demo/hello", "localhost:5000/demo/hello", "latest"),
    ],
)
def test_ref_parse(text: str, name: str, tag: str) -> None:
    assert Ref.parse(text) == Ref(name, tag)


@pytest.mark.parametrize("text", ["", "Hello", "a b", "x:", "-x", "x:/y"])
def test_ref_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        Ref.parse(text)


@given(st.text(max_size=40))
def test_ref_parse_never_crashes(text: str) -> None:
    try:
        ref = Ref.parse(text)
    except KilnError:
        return
    assert Ref.parse(str(ref)) == ref


def test_put_tag_resolve(tmp_path: Path) -> None:
    store = Store(tmp_path)
    f = tmp_path / "part"
    f.write_bytes(b"kernel bytes")
    digest, size = store.put_file(f)
    assert size == 12 and digest == sha256_file(f)
    assert store.put_file(f) == (digest, size)  # idempotent
    store.tag(Ref("img"), digest)
    assert store.resolve("img") == (digest, Ref("img"))
    assert store.resolve("img:latest")[0] == digest
    assert store.resolve(digest[7:19]) == (digest, None)
    with pytest.raises(StoreError, match="no such image: other:latest"):
        store.resolve("other")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_tampered_blob_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.put_bytes(b"root file system")
    blob = store.blob_path(digest)
    blob.chmod(0o644)
    blob.write_bytes(b"root file systen")
    with pytest.raises(StoreError, match="the rootfs is damaged: its content has digest sha256:"):
        store.verify_blob(digest, "the rootfs")


def test_tag_needs_the_blob(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot tag"):
        Store(tmp_path).tag(Ref("x"), "sha256:" + "0" * 64)


def test_no_host_path_in_what_a_manifest_says_it_was_built_from(tmp_path: Path) -> None:
    """build.source and build.config_file name the app, never where it lies on the building host."""
    import msgspec

    from kiln.discover import load_app
    from kiln.image.build import build_inputs

    app_dir = tmp_path / "deep" / "checkout" / "my-app"
    app_dir.mkdir(parents=True)
    (app_dir / "app.py").write_text("print('hi')\n")
    (app_dir / "kiln.toml").write_text('entry = "app.py"\n')
    app = load_app(app_dir)
    inputs = build_inputs(app, app.root.name, "sha256:" + "0" * 64)
    values = json.dumps(msgspec.to_builtins(inputs))
    assert str(tmp_path) not in values and "/" not in inputs.source
    assert inputs.source == "my-app" and inputs.config_file == "kiln.toml"


def _dead_owner() -> str:
    """PID_STARTTICKS of a process that has ended (as a killed command's temporary names carry it)."""
    import subprocess

    from kiln import atomic

    p = subprocess.Popen(["true"])
    p.wait()
    name = f"x.{p.pid}_1."
    assert atomic.left_by_the_dead(name)
    return f"{p.pid}_1"


def test_check_finds_nothing_in_a_good_store(tmp_path: Path) -> None:
    from kiln import atomic

    store = Store(tmp_path)
    store.put_bytes(b"a blob no tag uses yet")
    (tmp_path / "tmp" / f"build-{atomic.owner()}-x").mkdir()  # ours: in progress
    assert store.check() == []


def test_check_finds_and_repair_removes_each_kind_of_damage(tmp_path: Path) -> None:
    store = Store(tmp_path)
    good = store.put_bytes(b"good blob")
    bad = store.put_bytes(b"will be damaged")
    blob = store.blob_path(bad)
    blob.chmod(0o644)
    blob.write_bytes(b"damaged!")
    dangling = tmp_path / "tags" / "gone" / "latest"
    dangling.parent.mkdir(parents=True)
    dangling.write_text("sha256:" + "1" * 64 + "\n")
    snap = tmp_path / "snapshots" / ("2" * 64) / "key"
    snap.parent.mkdir(parents=True)
    snap.write_text("sha256:" + "3" * 64 + "\n")
    dead = _dead_owner()
    left = tmp_path / "tmp" / f"build-{dead}-abc"
    left.mkdir()
    half = tmp_path / "blobs" / "sha256" / f".blob.{dead}.tmp"
    half.write_bytes(b"half")
    half_tag = dangling.parent / f".latest.{dead}.x.tmp"
    half_tag.write_text("sha256:")

    problems = store.check()
    kinds = sorted(p.kind for p in problems)
    assert kinds == ["blob", "leftover", "leftover", "leftover", "snapshot", "tag"], problems
    assert store.check(deep=False) != []  # the quick form still sees the tag, the snapshot and tmp/
    assert {p.kind for p in store.check(deep=False)} == {"tag", "snapshot", "leftover"}
    assert blob.exists() and dangling.exists() and left.exists()  # nothing changed without repair

    store.repair(problems)
    assert store.check() == []
    assert store.has_blob(good) and not blob.exists() and not dangling.exists() and not left.exists()
    assert not half.exists() and not half_tag.exists() and not snap.exists()


def test_store_check_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from kiln.cli.main import cli

    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    store = Store()
    tag = store.root / "tags" / "gone" / "latest"
    tag.parent.mkdir(parents=True)
    tag.write_text("sha256:" + "1" * 64 + "\n")
    r = CliRunner().invoke(cli, ["store", "check", "--json"])
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert out["consistent"] is False and out["problems"][0]["kind"] == "tag"
    r = CliRunner().invoke(cli, ["store", "check", "--repair"])
    assert r.exit_code == 0 and "repaired: tag gone:latest" in r.output
    r = CliRunner().invoke(cli, ["store", "check"])
    assert r.exit_code == 0 and "consistent" in r.output


def test_store_check_reports_the_records_of_killed_daemons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from click.testing import CliRunner

    from kiln import daemon
    from kiln.cli.main import cli

    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    Store()
    gone = subprocess.Popen(["sleep", "30"])
    record = daemon.record_of(gone.pid, ["sleep", "30"])
    assert record is not None
    gone.kill()
    gone.wait()
    daemon.write(tmp_path / "instances" / "web" / "supervisor.pid", record)  # a supervisor that was killed
    daemon.write(tmp_path / "compose" / "app" / "networks" / "back" / "switch.pid", record)  # a network's, killed
    (tmp_path / "compose" / "app" / "networks" / "front").mkdir(parents=True)
    daemon.announce(tmp_path / "compose" / "app" / "networks" / "front", "switch")  # this process: alive
    r = CliRunner().invoke(cli, ["store", "check", "--json"])
    assert r.exit_code == 1
    problems = json.loads(r.output)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [
        ("leftover", str(tmp_path / "instances/web/supervisor.pid")),
        ("leftover", str(tmp_path / "compose/app/networks/back/switch.pid")),
    ]
    assert "instances/web/supervisor.pid: the record of a process that was killed" in problems[0]["message"]
    r = CliRunner().invoke(cli, ["store", "check", "--repair"])
    assert r.exit_code == 0 and not (tmp_path / "instances/web/supervisor.pid").exists()
    assert not (tmp_path / "compose/app/networks/back/switch.pid").exists()
    assert (tmp_path / "compose/app/networks/front/switch.pid").exists()
