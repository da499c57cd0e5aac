"""Kernel config fragments: merging and hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import KernelError
from kiln.kernel.config import DEFAULT_FEATURES, available_features, merge, read_options


def test_default_features_exist() -> None:
    assert set(DEFAULT_FEATURES) <= set(available_features())


def test_merge_is_order_independent_and_hashed() -> None:
    a = merge(["base", "erofs", "virtio-net"], "6.1.1")
    b = merge(["virtio-net", "base", "erofs", "erofs"], "6.1.1")
    assert a == b and a.hash == b.hash and len(a.hash) == 16
    assert a.options["CONFIG_EROFS_FS"] == "y" and a.options["CONFIG_PVH"] == "y"
    assert merge(["base", "erofs"], "6.1.1").hash != a.hash
    assert merge(["base", "erofs", "virtio-net"], "6.1.2").hash != a.hash


def test_network_is_a_feature() -> None:
    assert "CONFIG_NET" not in merge(["base", "serial-console", "virtio-blk", "erofs"], "v").options
    assert merge(["ipv4"], "v").options["CONFIG_INET"] == "y"


def test_unknown_feature() -> None:
    with pytest.raises(KernelError, match="unknown kernel feature"):
        merge(["base", "bluetooth"], "v")


def test_read_options() -> None:
    assert read_options('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x"\nnoise\n') == {
        "CONFIG_A": "y",
        "CONFIG_B": "n",
        "CONFIG_C": '"x"',
    }


def test_an_extension_modules_c_calls_choose_kernel_features(tmp_path: Path) -> None:
    """uvloop's libuv calls eventfd() and epoll_create1() from C: no Python source names them, the symbols its
    .so imports do, as a native program's would."""
    import subprocess

    from kiln.analyze.needs import python_needs
    from kiln.analyze.python import Module, ModuleGraph
    from kiln.config import AppConfig

    source = tmp_path / "loop.c"
    source.write_text("#include <sys/eventfd.h>\nint make(void) { return eventfd(0, 0); }\n")
    ext = tmp_path / "loop.cpython-311-x86_64-linux-gnu.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", ext, source], check=True)
    graph = ModuleGraph(modules={"fastloop.loop": Module("fastloop.loop", "extension", "third-party", ext)})
    needs = python_needs(AppConfig(ports=(8000,)), graph)
    assert "eventfd" in needs.features and needs.reasons["eventfd"] == "fastloop.loop calls eventfd()"
    assert "eventfd" not in python_needs(AppConfig(ports=(8000,)), ModuleGraph()).features
