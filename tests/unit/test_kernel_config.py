"""Kernel config fragments: merging and hashing."""

from __future__ import annotations

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
