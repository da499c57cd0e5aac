"""The accounts a Debian package's service runs as, read from the package without running anything.

Debian's system accounts come from two places, and kiln reads both:

- `base-passwd`'s fixed accounts (root 0, daemon 1, ..., www-data 33, nobody
  65534), which every Debian system has with the same ids (STATIC below, from
  base-passwd's passwd.master and group.master);
- the accounts a package makes for itself: `adduser --system [--group |
  --ingroup G] [--home DIR] NAME` and `addgroup --system NAME` (or
  `useradd -r` / `groupadd -r`) in its maintainer scripts, and `u NAME ...`,
  `g NAME ...` and `m USER GROUP` lines in the sysusers.d files it ships.

A package's own accounts get ids from 100 upward in the order they appear (as
adduser gives system accounts the first free id from 100), so the same
package gives the same /etc/passwd on any build host.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

# base-passwd 3.6's passwd.master (name: uid, gid) and group.master (name: gid)
STATIC_USERS = {
    "root": (0, 0), "daemon": (1, 1), "bin": (2, 2), "sys": (3, 3), "sync": (4, 65534), "games": (5, 60),
    "man": (6, 12), "lp": (7, 7), "mail": (8, 8), "news": (9, 9), "uucp": (10, 10), "proxy": (13, 13),
    "www-data": (33, 33), "backup": (34, 34), "list": (38, 38), "irc": (39, 39), "_apt": (42, 65534),
    "nobody": (65534, 65534),
}  # fmt: skip
STATIC_GROUPS = {
    "root": 0, "daemon": 1, "bin": 2, "sys": 3, "adm": 4, "tty": 5, "disk": 6, "lp": 7, "mail": 8, "news": 9,
    "uucp": 10, "man": 12, "proxy": 13, "kmem": 15, "dialout": 20, "fax": 21, "voice": 22, "cdrom": 24,
    "floppy": 25, "tape": 26, "sudo": 27, "audio": 29, "dip": 30, "www-data": 33, "backup": 34, "operator": 37,
    "list": 38, "irc": 39, "src": 40, "shadow": 42, "utmp": 43, "video": 44, "sasl": 45, "plugdev": 46,
    "staff": 50, "games": 60, "users": 100, "nogroup": 65534,
}  # fmt: skip
FIRST_SYSTEM_ID = 100
NO_HOME = "/nonexistent"


@dataclass
class Accounts:
    """Users (name -> (uid, gid, home)) and groups (name -> gid), with their members."""

    users: dict[str, tuple[int, int, str]] = field(default_factory=lambda: {"root": (0, 0, "/root")})
    groups: dict[str, int] = field(default_factory=lambda: {"root": 0})
    members: dict[str, list[str]] = field(default_factory=dict)  # group -> users (supplementary)
    made: list[str] = field(default_factory=list)  # accounts the package itself makes, in order

    def _next_id(self) -> int:
        taken = {u for u, _g, _h in self.users.values()} | set(self.groups.values())
        taken |= {u for u, _g in STATIC_USERS.values()} | set(STATIC_GROUPS.values())
        n = FIRST_SYSTEM_ID
        while n in taken:
            n += 1
        return n

    def group(self, name: str) -> int:
        if name not in self.groups:
            self.groups[name] = STATIC_GROUPS.get(name, self._next_id())
        return self.groups[name]

    def user(self, name: str, group: str | None = None, home: str = NO_HOME, made: bool = False) -> None:
        if name in self.users:
            return
        if name in STATIC_USERS:
            uid, static_gid = STATIC_USERS[name]
            gid = self.group(group) if group else static_gid
            self.groups.setdefault(next((g for g, i in STATIC_GROUPS.items() if i == static_gid), name), static_gid)
        else:
            uid = self._next_id()
            gid = self.group(group) if group else self.groups.setdefault(name, uid)
        self.users[name] = (uid, gid, home)
        if made:
            self.made.append(name)

    def passwd(self) -> list[str]:
        return [f"{n}:x:{u}:{g}::{h}:{NO_HOME}" for n, (u, g, h) in sorted(self.users.items(), key=lambda i: i[1][0])]

    def group_lines(self) -> list[str]:
        return [
            f"{n}:x:{g}:{','.join(self.members.get(n, []))}" for n, g in sorted(self.groups.items(), key=lambda i: i[1])
        ]


_ADDUSER = re.compile(r"\b(adduser|useradd|addgroup|groupadd)\b([^;&|\n]*)")


def from_script(text: str, into: Accounts) -> None:
    """The accounts `adduser`/`addgroup`/`useradd`/`groupadd` lines of a maintainer script make."""
    for m in _ADDUSER.finditer(text.replace("\\\n", " ")):
        tool = m.group(1)
        try:
            words = shlex.split(m.group(2), comments=True)
        except ValueError:
            continue
        opts: dict[str, str] = {}
        names: list[str] = []
        i = 0
        while i < len(words):
            w = words[i]
            if w in ("--ingroup", "--gid", "-g", "--home", "-d", "--shell", "-s", "--uid", "-u", "--gecos",
                     "-c", "--comment", "--home-dir", "--firstuid", "--lastuid"):  # fmt: skip
                if i + 1 < len(words):
                    opts[w] = words[i + 1]
                i += 2
                continue
            if not w.startswith("-") and not w.startswith("$") and re.match(r"^[a-z_][a-z0-9_.-]*\$?$", w):
                names.append(w)
            i += 1
        if not names:
            continue
        if tool in ("addgroup", "groupadd") or (tool == "adduser" and "--group" in words and len(names) == 1
                                                  and "--system" not in words):  # fmt: skip
            into.group(names[0])
            continue
        if tool == "adduser" and len(names) == 2 and "--system" not in words:
            into.members.setdefault(names[1], []).append(names[0])  # adduser USER GROUP: a membership
            continue
        name = names[0]
        group = opts.get("--ingroup") or opts.get("-g") or opts.get("--gid")
        if "--group" in words or "-U" in words:
            into.group(name)
            group = name
        into.user(name, group, opts.get("--home") or opts.get("-d") or opts.get("--home-dir") or NO_HOME, made=True)


def from_sysusers(text: str, into: Accounts) -> None:
    """sysusers.d(5): `u NAME ID "GECOS" HOME`, `g NAME ID`, `m USER GROUP`."""
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) < 2:
            continue
        kind, name = words[0], words[1]
        if kind == "g":
            into.group(name)
        elif kind == "u":
            ids = words[2] if len(words) > 2 else "-"
            group = ids.split(":")[1] if ":" in ids and not ids.split(":")[1].isdigit() else None
            into.user(name, group, words[4] if len(words) > 4 and words[4] != "-" else NO_HOME, made=True)
        elif kind == "m" and len(words) > 2:
            into.group(words[2])
            into.members.setdefault(words[2], []).append(name)


def read(control_dirs: list[Path], root: Path, files: list[str], into: Accounts | None = None) -> Accounts:
    """The accounts the packages' maintainer scripts (in `control_dirs`) and sysusers.d files make."""
    accounts = into or Accounts()
    for control in control_dirs:
        for script in ("preinst", "postinst"):
            path = control / script
            if path.is_file():
                from_script(path.read_text(errors="replace"), accounts)
    for f in files:
        if "/sysusers.d/" in f and f.endswith(".conf") and (root / f.lstrip("/")).is_file():
            from_sysusers((root / f.lstrip("/")).read_text(), accounts)
    return accounts
