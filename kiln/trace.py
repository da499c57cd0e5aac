"""`kiln trace`: watch a program at work on the unix target, under strace, and
suggest what its config should add.

The trace records, for the app's processes and threads only (not init's),
every system call it makes and every file it opens or looks for. It only ever
*adds*: files the program opened or looked for that exist where the image was
built from but not in the image, libraries it loaded with dlopen, and calls the
syscall policy refused. Nothing is removed on the strength of a trace: code a
test run did not reach is still needed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kiln.analyze import elf
from kiln.policy import DEFAULT_DENY

_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*?)(?:\s+=\s+(-?\d+|\?)(?:\s+(E[A-Z0-9]+))?.*)?$")
_PATH_CALLS = {
    "open",
    "openat",
    "openat2",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "execve",
    "execveat",
    "opendir",
}
_SPAWN_CALLS = {"clone", "clone3", "fork", "vfork"}
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class Trace:
    syscalls: Counter[str] = field(default_factory=Counter)
    files: dict[str, str] = field(default_factory=dict)  # path -> "ok" or the errno name
    refused: set[str] = field(default_factory=set)  # policy calls that failed with EPERM


def parse(text: str, program: str) -> Trace:
    """The app's part of an `strace -f` log: from its execve of `program`, and its threads."""
    app: set[int] = set()
    pending: dict[int, str] = {}  # pid -> the call whose result comes in a "resumed" line
    trace = Trace()
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        pid, resumed, call, rest, result, errno = int(m[1]), m[2], m[3], m[4], m[5], m[6]
        if call and "<unfinished ...>" in line:
            pending[pid] = line
        name = resumed or call
        if resumed and pid in pending:
            rest = _LINE.match(pending.pop(pid))[4] + rest  # type: ignore[index]
        if name in ("execve", "execveat") and result == "0" and program in rest.split(",")[0]:
            app.add(pid)
        if pid not in app or result is None or ("<unfinished" in line and not resumed):
            continue
        trace.syscalls[name] += 1
        if name in _SPAWN_CALLS and result.isdigit() and int(result) > 0:
            app.add(int(result))
        if name in DEFAULT_DENY and errno == "EPERM":
            trace.refused.add(name)
        if name in _PATH_CALLS and (s := _STRING.search(rest)) and s[1].startswith("/"):
            path = s[1]
            if trace.files.get(path) != "ok":
                trace.files[path] = "ok" if errno is None else errno
    return trace


@dataclass
class Suggestions:
    files: list[str]
    libraries: list[str]
    allow: list[str]


def suggest(trace: Trace, image_files: set[str], source_root: Path) -> Suggestions:
    """What to add to the config, from what the program touched and the image lacks."""
    files, libraries = [], []
    for path, outcome in sorted(trace.files.items()):
        if path in image_files or path.startswith(("/proc", "/sys", "/dev", "/tmp")):
            continue
        host = elf.resolve_in(source_root, path)
        if host is None or not host.is_file():
            continue
        (libraries if ".so" in Path(path).name and outcome == "ENOENT" else files).append(path)
    return Suggestions(files=files, libraries=libraries, allow=sorted(trace.refused))
