"""Targets: where an image runs. Each implements kiln.targets.base.Target.

qemu   QEMU microvm, PVH boot, KVM when it works, TCG otherwise
unix   the same root file system as a sandboxed host process

`target(name)` imports only the target asked for: a unix run does not load QEMU's code, and
reading kiln.targets.base (RunConfig) loads neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.targets.base import Target

# what `kiln run --target` offers -> where its class lives
_CLASSES = {"qemu": "kiln.targets.qemu:QemuTarget", "unix": "kiln.targets.unix:UnixTarget"}
NAMES = tuple(_CLASSES)


def target(name: str) -> type[Target]:
    """The class of target `name` (one of NAMES), imported on first use."""
    module, attr = _CLASSES[name].split(":")
    cls: type[Target] = getattr(importlib.import_module(module), attr)
    return cls
