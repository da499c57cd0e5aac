"""The directories a package's tmpfiles.d entries make at boot (`d /run/haproxy 2775 haproxy haproxy -`).

systemd-tmpfiles makes them before any service starts; a unikernel has no
systemd, so kiln reads the `d` and `D` lines of the family's
/usr/lib/tmpfiles.d/*.conf (tmpfiles.d(5)) and makes them writable as the
unit's own directories are. Other line types (files, links, cleanup ages,
ACLs) are not directories a service writes to; they are not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

TMPFILES_DIRS = ("/usr/lib/tmpfiles.d/", "/lib/tmpfiles.d/")


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int | None  # None: "-", tmpfiles.d's default (0755)
    user: str | None
    group: str | None
    source: str  # the file it came from


def _field(value: str) -> str | None:
    return None if value in ("-", "") else value


def read(text: str, source: str) -> list[Directory]:
    """The `d`/`D` lines of one tmpfiles.d file; a line with specifiers (%t) or a path that climbs is skipped."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0].rstrip("!+-=~^") not in ("d", "D"):
            continue
        path = words[1]
        if not path.startswith("/") or "%" in path or ".." in PurePosixPath(path).parts:
            continue
        mode_word = words[2] if len(words) > 2 else "-"
        mode = int(mode_word.lstrip("~:"), 8) if mode_word.lstrip("~:").isdigit() else None
        user = _field(words[3]) if len(words) > 3 else None
        group = _field(words[4]) if len(words) > 4 else None
        out.append(Directory(path.rstrip("/") or "/", mode, user, group, source))
    return out


def files_of(family_files: list[str]) -> list[str]:
    """The family's tmpfiles.d files."""
    return sorted(f for f in family_files if f.startswith(TMPFILES_DIRS) and f.endswith(".conf"))
