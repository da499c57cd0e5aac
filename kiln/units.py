"""Sizes as users write them ("64M", "1G") and as kiln uses them (MiB).

Kept free of heavy imports: `kiln run` parses --memory with it at start-up.
"""

from __future__ import annotations

import re
from typing import Any

MEMORY_RE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?|)\s*$", re.IGNORECASE)


def parse_memory(value: Any) -> int:
    """'64M', '1G', '65536K' or a number of MiB -> MiB."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size such as 64M")
    if isinstance(value, int):
        mib = value
    elif isinstance(value, str) and (m := MEMORY_RE.match(value)):
        number, unit = int(m.group(1)), m.group(2)[:1].upper()
        mib = {"K": number // 1024, "": number, "M": number, "G": number * 1024}[unit]
    else:
        raise ValueError(f"memory must be a size such as 64M, not {value!r}")
    if not 16 <= mib <= 65536:
        raise ValueError(f"memory must be between 16M and 64G, not {mib}M")
    return mib


def parse_size(value: str, what: str = "size") -> int:
    """A disk size: '64M', '2G', '512K' or a number of MiB -> bytes."""
    m = MEMORY_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{what} must be a size such as 64M or 2G, not {value!r}")
    number, unit = int(m.group(1)), m.group(2)[:1].upper()
    size = number * {"K": 1 << 10, "": 1 << 20, "M": 1 << 20, "G": 1 << 30}[unit]
    if size <= 0:
        raise ValueError(f"{what} must be more than zero, not {value!r}")
    return size


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from 30, "30s", "500ms", "2m" or "1h"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 500ms, 2m)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
