"""Targets: where an image runs. Each implements kiln.targets.base.Target.

qemu   QEMU microvm, PVH boot, KVM when it works, TCG otherwise
unix   the same root file system as a sandboxed host process
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.targets.base import Target

NAMES = ("qemu", "unix")  # what `kiln run --target` offers, known without importing a target


def __getattr__(name: str) -> object:
    """TARGETS, imported on first use: reading kiln.targets.base (RunConfig) must not load QEMU's code."""
    if name != "TARGETS":
        raise AttributeError(name)
    from kiln.targets.qemu import QemuTarget
    from kiln.targets.unix import UnixTarget

    targets: dict[str, type[Target]] = {"qemu": QemuTarget, "unix": UnixTarget}
    globals()["TARGETS"] = targets
    return targets
