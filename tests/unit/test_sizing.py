"""The guest RAM an image gets when its config names none (kiln.image.sizing)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kiln.image.rootfs import RootFS
from kiln.image.sizing import FLOOR_MIB, MIB, SLACK_MIB, STEP_MIB, RootBytes, default_memory_mib, memory_for, root_bytes
from kiln.kernel.build import Kernel

KERNEL = 14_285_944  # hello-http's vmlinux


def test_a_small_image_gets_the_floor() -> None:
    assert default_memory_mib(KERNEL, RootBytes(13_696_603, 3_101_272)) == FLOOR_MIB  # hello-http: 41 MiB


def test_an_image_with_dependencies_gets_room_for_its_files_and_heap() -> None:
    assert default_memory_mib(KERNEL, RootBytes(24_200_290, 7_754_606)) == 64  # examples/flask-app: 60 MiB
    assert default_memory_mib(KERNEL, RootBytes(27_013_745, 10_509_045)) == 72  # Compose tutorial app: 68 MiB
    assert default_memory_mib(KERNEL, RootBytes(40 * MIB, 0)) == 64  # a native program: no bytecode, 62 MiB


@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_the_default_holds_kernel_files_heap_and_slack_in_steps(kernel: int, other: int, pyc: int) -> None:
    mib = default_memory_mib(kernel, RootBytes(other + pyc, pyc))
    need = kernel + other + 3 * pyc + SLACK_MIB * MIB
    assert mib >= FLOOR_MIB and mib % STEP_MIB == 0 and mib * MIB >= need
    assert mib == FLOOR_MIB or (mib - STEP_MIB) * MIB < need


def test_files_count_once_links_not_and_bytecode_apart(tmp_path: Path) -> None:
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "libc.so.6").write_bytes(b"x" * 3000)
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "usr" / "lib" / "libc.so").symlink_to("libc.so.6")
    (tmp_path / "app.pyc").write_bytes(b"y" * 500)
    assert root_bytes(tmp_path) == RootBytes(3500, 500)


def test_a_configured_memory_wins(tmp_path: Path) -> None:
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "meta.json").write_text(json.dumps({"vmlinux_size": KERNEL}))
    kernel = Kernel(config_hash="0" * 16, directory=tmp_path / "kernel")
    root = RootFS(tmp_path / "root")
    root.add_bytes("/big", b"\0" * (40 * MIB))
    assert memory_for(32, kernel, root) == 32
    assert memory_for(None, kernel, root) == 64  # 14 + 40 + 8 = 62, in steps of 8
