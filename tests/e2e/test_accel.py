"""Choosing the accelerator: an explicit choice is obeyed; auto probes once and caches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kiln.targets import accel


def test_explicit_choices_are_obeyed() -> None:
    assert accel.choose("tcg", Path("/nonexistent")) == ("tcg", None)
    assert accel.choose("kvm", Path("/nonexistent")) == ("kvm", None)


@pytest.mark.vm
def test_auto_probes_once_and_explains_a_fallback(
    kernel_built: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiln_testing.homes import SHARED_HOME

    kernel = next((SHARED_HOME / "kernel" / "builds").glob("*/vmlinux"))
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    (tmp_path / "cache").mkdir()
    for d in ("init", "probe"):
        if (SHARED_HOME / "cache" / d).exists():
            (tmp_path / "cache" / d).symlink_to(SHARED_HOME / "cache" / d)
    chosen, note = accel.choose("auto", kernel)
    assert chosen in ("kvm", "tcg")
    cache = json.loads((tmp_path / "cache" / "accel.json").read_text())
    (entry,) = cache.values()
    assert entry["kvm"] == (chosen == "kvm") and entry["reason"]
    if chosen == "tcg":
        assert note is not None and "using TCG" in note and "\n" not in note
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            assert entry["reason"] in note
    else:
        assert note is None
    assert accel.choose("auto", kernel) == (chosen, note)  # cached: the same answer, no second probe
