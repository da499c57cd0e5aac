"""Targets: where an image runs. Each implements kiln.targets.base.Target.

qemu   QEMU microvm, PVH boot, KVM when it works, TCG otherwise
unix   the same root file system as a sandboxed host process
"""

from __future__ import annotations

from kiln.targets.base import Target
from kiln.targets.qemu import QemuTarget
from kiln.targets.unix import UnixTarget

TARGETS: dict[str, type[Target]] = {"qemu": QemuTarget, "unix": UnixTarget}
