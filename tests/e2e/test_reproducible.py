"""Reproducible images: the same app built in two directories and two stores has one digest,
the manifest names no host path, and `--name` names the image of any kind of app."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from kiln.paths import kiln_home
from kiln_testing.command import EXAMPLES, kiln
from kiln_testing.homes import SHARED_HOME, isolated_home


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*_strings(k), *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_same_app_two_directories_two_stores_one_digest(tmp_path: Path, kernel_built: None) -> None:
    digests, manifests = [], []
    for i, name in enumerate(("a", "b")):  # as CI checkouts are: each directory its own name
        app = tmp_path / f"checkout-{i}" / name
        shutil.copytree(EXAMPLES / "hello-http", app)
        env = isolated_home(tmp_path / f"home-{i}", SHARED_HOME)
        built = json.loads(kiln("build", "--json", str(app), env=env, check=True).stdout)
        digests.append(built["digest"])
        manifests.append(json.loads(kiln("inspect", "--json", "hello-http", env=env, check=True).stdout)["manifest"])
        # no absolute host path anywhere: not the checkout, not the store, not the developer's home
        for text in _strings(manifests[-1]):
            for host in (str(tmp_path), str(app), env["KILN_HOME"], str(kiln_home()), str(Path.home())):
                assert host not in text, f"host path {host} in the manifest: {text}"
    assert digests[0] == digests[1]
    build = manifests[0]["build"]
    assert build["source"] == "hello-http" and build["config_file"] == "kiln.toml"  # the image's name
    assert manifests[0]["created"].startswith("1970-01-01T00:00:00")
    # what `kiln images` shows as CREATED is when this store got it, as Docker users read that column
    listed = json.loads(kiln("images", "--json", env=env, check=True).stdout)
    got = datetime.fromisoformat(listed[0]["created"])
    assert abs((datetime.now(UTC) - got).total_seconds()) < 600 and listed[0]["manifest_created"].startswith("1970")
    table = kiln("images", env=env, check=True).stdout
    assert "1970-01-01" not in table and got.strftime("%Y-%m-%d %H:%M") in table


def test_source_date_epoch_sets_created(env: dict[str, str]) -> None:
    built = kiln("build", "--json", str(EXAMPLES / "hello-http"), env={**env, "SOURCE_DATE_EPOCH": "1764000000"},
                 check=True)  # fmt: skip
    manifest = json.loads(kiln("inspect", "--json", "hello-http", env=env, check=True).stdout)["manifest"]
    assert manifest["created"].startswith("2025-11-24T16:00:00") and json.loads(built.stdout)["digest"]
    assert "2025-11-24 16:00:00" in kiln("images", env=env, check=True).stdout  # the source's time, when given
    bad = kiln("build", str(EXAMPLES / "hello-http"), env={**env, "SOURCE_DATE_EPOCH": "yesterday"})
    assert bad.returncode != 0 and "SOURCE_DATE_EPOCH" in bad.stderr and "Traceback" not in bad.stderr


def test_name_names_the_image_of_a_python_app(env: dict[str, str]) -> None:
    kiln("build", str(EXAMPLES / "hello-http" / "app.py"), "--name", "x", env=env, check=True)
    assert [i["name"] for i in json.loads(kiln("images", "--json", env=env, check=True).stdout)] == ["x"]
    both = kiln("build", str(EXAMPLES / "hello-http"), "--name", "x", "-t", "y", env=env)
    assert both.returncode != 0 and "give one" in both.stderr
    native_only = kiln("build", str(EXAMPLES / "hello-http"), "-p", "80", env=env)
    assert native_only.returncode != 0 and "native program" in native_only.stderr
