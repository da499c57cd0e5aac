"""What an app declares it depends on, read from the files Python projects use.

In order of precedence:

1. `requirements.txt`: handed to pip as it is (`-r` includes, `--hash` lines,
   `==` pins of a lock, options); every file it includes is part of the key.
2. `[project] dependencies` in `pyproject.toml`, with `uv.lock` beside it
   honoured as constraints: every package the lock pins from an index is
   installed at exactly the locked version.

`key` covers every byte that decides what gets installed (the files, and the
content of local path requirements such as `./mypkg`), so an unchanged set maps
to the same cache entry.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import AppError

_INCLUDE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)")


@dataclass(frozen=True)
class Declared:
    """Dependencies as pip will be asked for them."""

    source: str  # the file they come from, relative to the app ("requirements.txt")
    requirements: str  # the text of a requirements file for pip
    file: Path | None  # the requirements file itself, handed to pip so that its -r paths resolve
    constraints: str  # pins from a lock file ("" if none)
    included: tuple[Path, ...]  # further files the requirements name (-r/-c), whose content is part of the key
    key: str  # sha256 of everything above

    @property
    def empty(self) -> bool:
        return not any(line.strip() and not line.lstrip().startswith("#") for line in self.requirements.splitlines())


def _includes(path: Path, seen: set[Path]) -> list[Path]:
    """The files a requirements file includes, recursively (pip resolves them relative to the including file)."""
    found: list[Path] = []
    for line in path.read_text().splitlines():
        m = _INCLUDE.match(line)
        if not m:
            continue
        child = (path.parent / m.group(1)).resolve()
        if child in seen:
            continue
        if not child.is_file():
            raise AppError(f"{path}: includes {m.group(1)}, which does not exist")
        seen.add(child)
        found += [child, *_includes(child, seen)]
    return found


_LOCAL = re.compile(r"^\s*(?:-e\s+|--editable\s+)?(\.{1,2}/\S*|/\S+|file:\S+)")
_NOT_SOURCE = ("build", "dist", "__pycache__", ".git")


def _local_trees(text: str, base: Path) -> list[bytes]:
    """The content of local path requirements (`./pkg`, `file:...`), so that editing one is a new set."""
    parts: list[bytes] = []
    for line in text.splitlines():
        m = _LOCAL.match(line)
        if not m:
            continue
        path = (base / m.group(1).removeprefix("file://").removeprefix("file:")).resolve()
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for f in files:
            rel = f.relative_to(path.parent)
            if f.is_file() and not any(p in _NOT_SOURCE or p.endswith(".egg-info") for p in rel.parts):
                parts.append(str(rel).encode() + b"\0" + f.read_bytes())
    return parts


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def _lock_pins(lock: Path) -> str:
    """`name==version` for every package uv.lock pins from a package index."""
    try:
        data = tomllib.loads(lock.read_text())
    except tomllib.TOMLDecodeError as err:
        raise AppError(f"{lock}: {err}") from None
    pins = sorted(
        f"{pkg['name']}=={pkg['version']}"
        for pkg in data.get("package", [])
        if "registry" in pkg.get("source", {}) and "version" in pkg
    )
    return "".join(f"{p}\n" for p in pins)


def read(root: Path) -> Declared | None:
    """The dependencies the app in `root` declares, or None if it declares none."""
    req = root / "requirements.txt"
    if req.is_file():
        included = tuple(_includes(req, {req.resolve()}))
        text = req.read_text()
        return Declared(
            "requirements.txt",
            text,
            req,
            "",
            included,
            _digest(
                text.encode(),
                *(
                    f"{p.relative_to(root) if p.is_relative_to(root) else p}\0".encode() + p.read_bytes()
                    for p in included
                ),
                *_local_trees(text, root),
                *(tree for p in included for tree in _local_trees(p.read_text(), p.parent)),
            ),
        )
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except tomllib.TOMLDecodeError as err:
        raise AppError(f"{pyproject}: {err}") from None
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise AppError(f"{pyproject}: [project] dependencies must be a list of strings")
    if not deps:
        return None
    text = "".join(f"{d}\n" for d in deps)
    lock = root / "uv.lock"
    constraints = _lock_pins(lock) if lock.is_file() else ""
    source = "pyproject.toml" + (" + uv.lock" if constraints else "")
    return Declared(source, text, None, constraints, (), _digest(text.encode(), constraints.encode()))


def describe(declared: Declared) -> str:
    """A short summary for progress output: the first few requirement names."""
    names = [
        line.split()[0].split(";")[0]
        for line in declared.requirements.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    ]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{shown} (from {declared.source})"
