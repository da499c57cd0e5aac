"""Property-based: random and malformed manifests and configs get a valid result
or a clear KilnError, never a traceback."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.config import parse_config
from kiln.discover import load_app
from kiln.errors import KilnError
from kiln.manifest import Manifest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

VALID = {
    "name": "x",
    "created": "2026-01-01T00:00:00Z",
    "kernel": {
        "digest": "sha256:" + "a" * 64,
        "size": 1,
        "media_type": "k",
        "config_hash": "h",
        "features": ["base"],
        "source_version": "6.1",
        "options_enabled": 1,
        "uncompressed_size": 2,
    },
    "rootfs": {
        "digest": "sha256:" + "b" * 64,
        "size": 1,
        "media_type": "r",
        "compression": "lz4hc",
        "files": 1,
        "verity": {"root_hash": "c" * 64, "salt": "d" * 64, "data_blocks": 1, "hash_offset": 4096},
    },
    "entry": {"argv": ["/app"], "memory_mib": 48},
    "policy": {"denied": ["fork"]},
    "build": {"source": "/src", "config_file": None, "sources_digest": "sha256:" + "e" * 64, "kiln_version": "0"},
}


def test_the_valid_manifest_parses() -> None:
    m = Manifest.from_json(json.dumps(VALID).encode())
    assert Manifest.from_json(m.to_json()) == m


@given(st.binary(max_size=200))
def test_manifest_from_random_bytes(data: bytes) -> None:
    with contextlib.suppress(KilnError):
        Manifest.from_json(data)


@given(json_values)
def test_manifest_from_random_json(value: object) -> None:
    with contextlib.suppress(KilnError):
        Manifest.from_json(json.dumps(value).encode())


@given(st.sampled_from(sorted(VALID)), json_values)
def test_manifest_with_one_field_replaced(key: str, value: object) -> None:
    doc = {**VALID, key: value}
    try:
        m = Manifest.from_json(json.dumps(doc).encode())
    except KilnError as err:
        assert str(err).startswith("manifest is not a valid kiln manifest")
    else:
        assert m.name


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "entry",
                "args",
                "env",
                "ports",
                "memory",
                "include",
                "sources",
                "volumes",
                "seccomp",
                "python_path",
                "other",
            ]
        ),
        json_values,
        max_size=5,
    )
)
def test_config_from_random_tables(table: dict[str, object]) -> None:
    try:
        parse_config(table, Path("kiln.toml"))
    except KilnError as err:
        assert str(err).startswith("kiln.toml: ")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(st.text(max_size=300))
def test_kiln_toml_from_random_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "app.py").write_text("print(1)\n")
        (root / "kiln.toml").write_text(text)
        with contextlib.suppress(KilnError):
            load_app(root)
