"""Kernel configs: the project's fragment files, merged and hashed.

A kernel config is a set of *features*, each a fragment file in
`kiln/kernel/fragments/`. The merged text of those fragments, the source
version and the build recipe's version give the config hash, which names the
cached build: the same hash is never built twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import KernelError

FRAGMENTS_DIR = Path(__file__).parent / "fragments"

# Bump when the way a config is turned into a kernel changes (make targets, strip...).
# 4: fixed KBUILD_BUILD_* (reproducible kernels), one object tree for every config.
RECIPE_VERSION = 4

# What every kiln guest needs: boot, console, the verified root file system,
# entropy, seccomp for the syscall policy, and the host<->init control channel.
BASE_FEATURES = (
    "base",
    "serial-console",
    "control",
    "virtio-mmio",
    "virtio-blk",
    "erofs",
    "dm-verity",
    "virtio-rng",
    "seccomp",
)
NETWORK_FEATURES = ("virtio-net", "ipv4")
# What `kiln kernel build` builds without --features or --for: a networked event-loop app.
DEFAULT_FEATURES = (*BASE_FEATURES, *NETWORK_FEATURES, "epoll")

_OPTION = re.compile(r"^(CONFIG_[A-Z0-9_]+)=(.*)$")


def available_features() -> list[str]:
    return sorted(p.stem for p in FRAGMENTS_DIR.glob("*.config"))


def read_options(text: str) -> dict[str, str]:
    """CONFIG_X=value lines of a config or fragment ('# CONFIG_X is not set' -> 'n')."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _OPTION.match(line):
            options[m.group(1)] = m.group(2)
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:].split()[0]] = "n"
    return options


@dataclass(frozen=True)
class KernelConfig:
    """A merged fragment set for one source version."""

    features: tuple[str, ...]
    source_version: str
    text: str

    @property
    def options(self) -> dict[str, str]:
        return read_options(self.text)

    @property
    def hash(self) -> str:
        h = hashlib.sha256()
        h.update(f"kiln-kernel-recipe-{RECIPE_VERSION}\n{self.source_version}\n".encode())
        h.update(self.text.encode())
        return h.hexdigest()[:16]


def merge(features: tuple[str, ...] | list[str], source_version: str) -> KernelConfig:
    """Merge the named fragments, in a stable order, into one config fragment."""
    unknown = sorted(set(features) - set(available_features()))
    if unknown:
        raise KernelError(f"unknown kernel feature(s): {', '.join(unknown)}")
    merged: dict[str, str] = {}
    for feature in sorted(set(features)):
        merged.update(read_options((FRAGMENTS_DIR / f"{feature}.config").read_text()))
    text = "".join(f"{k}={v}\n" if v != "n" else f"# {k} is not set\n" for k, v in sorted(merged.items()))
    return KernelConfig(tuple(sorted(set(features))), source_version, text)
