"""What installed distributions say about themselves (their `*.dist-info`).

The import analysis asks two things of them:

- which distribution a module file belongs to (from each distribution's RECORD),
  so that its `*.dist-info` goes into the image beside its modules
  (`importlib.metadata.version()` and entry points then work in the guest);
- which console scripts the distributions provide (`entry_points.txt`), so that a
  command such as `gunicorn app:app` starts where pip's launcher would;
- whether a distribution *needs* another one: a Requires-Dist line whose
  marker holds on the embedded interpreter with no extra asked for. An import
  a package makes of something it does not need (an optional extra, another
  platform's module, an older Python's backport) cannot fail the build;
- which modules a distribution installs (its RECORD), so that a distribution
  the app reaches is kept whole, as `pip install` put it on disk;
- which distributions the user asked for, extras followed (`uvicorn[standard]`
  asks for uvloop and httptools too: `requested`);
- the entry points each distribution declares, by group, for the plugin
  systems that load them by group name (pluggy, `importlib.metadata`).

importlib.metadata reads the files and `packaging` evaluates the markers.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class Distribution:
    name: str  # canonical (PEP 503) name
    version: str
    info_dir: Path  # its *.dist-info directory
    requires: tuple[str, ...]  # canonical names it needs on this interpreter (no extras)
    top_level: frozenset[str]  # the top-level modules and packages it installs
    scripts: tuple[tuple[str, str], ...] = ()  # console scripts: (name, "module:attr")
    modules: tuple[str, ...] = ()  # every module it installs, by dotted name (RECORD's .py and extensions)
    entry_points: tuple[tuple[str, str, str], ...] = ()  # (group, name, "module:attr")
    requirements: tuple[str, ...] = ()  # its Requires-Dist lines as written (extras and markers included)


@dataclass
class Distributions:
    """The distributions installed in some directories, indexed by the files they own."""

    by_file: dict[Path, Distribution] = field(default_factory=dict)
    by_name: dict[str, Distribution] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # the interpreter's, for Requires-Dist markers

    @classmethod
    def scan(cls, directories: Iterable[Path], markers: dict[str, str]) -> Distributions:
        found = cls(markers=dict(markers))
        for directory in directories:
            for info in sorted(directory.glob("*.dist-info")):
                dist = importlib.metadata.PathDistribution(info)
                name = canonicalize_name(dist.metadata["Name"] or info.name.split("-")[0])
                if name in found.by_name:  # an earlier directory shadows it, as on sys.path
                    continue
                files = list(dist.files or ())
                points = dist.entry_points
                scripts = tuple((e.name, e.value) for e in points.select(group="console_scripts"))
                entry = Distribution(
                    name,
                    dist.version,
                    info,
                    needed(dist.requires or (), markers),
                    _top_level(files),
                    scripts,
                    _modules(files),
                    tuple((e.group, e.name, e.value) for e in points),
                    tuple(dist.requires or ()),
                )
                found.by_name[name] = entry
                for file in files:
                    found.by_file[(directory / file).resolve()] = entry
        return found

    def console_scripts(self) -> dict[str, str]:
        """Every console script the distributions provide: name -> "module:attr" (the first one wins)."""
        found: dict[str, str] = {}
        for dist in self.by_name.values():
            for name, target in dist.scripts:
                found.setdefault(name, target)
        return found

    def owner(self, path: Path | None) -> Distribution | None:
        return self.by_file.get(path.resolve()) if path else None

    def needs(self, importer: Distribution, module: str) -> bool:
        """Does `importer` declare, for this interpreter and no extras, the distribution that `module` comes from?"""
        top = module.split(".")[0]
        for name in importer.requires:
            if name == canonicalize_name(top):
                return True
            dist = self.by_name.get(name)
            if dist is not None and top in dist.top_level and self.provides(dist, module):
                return True
        return False

    def provides(self, dist: Distribution, module: str) -> bool:
        """Does `dist` install `module`? A top-level name several distributions share (the `zope` namespace of
        zope.interface and zope.deprecation) says nothing of `zope.component`: the modules they install do."""
        parts = module.split(".")
        top = parts[0]
        shared = sum(1 for d in self.by_name.values() if top in d.top_level) > 1
        if not dist.modules or (not shared and len(parts) == 1):
            return True
        prefixes = [".".join(parts[:i]) for i in range(2 if shared else 1, len(parts) + 1)]
        return any(p in dist.modules for p in prefixes) or (not shared and top in dist.top_level)

    def requested(self, asked: Iterable[tuple[str, Iterable[str]]]) -> set[str]:
        """The installed distributions the user asked for: each `name[extra,...]` asked, and what each extra
        asked for adds, extras of extras followed (`fastapi[standard]` -> fastapi-cli[standard] -> uvicorn[standard]
        -> uvloop, httptools...). A plain dependency of a requested distribution is not itself requested."""
        found: set[str] = set()
        queue = [(canonicalize_name(n), frozenset(e)) for n, e in asked]
        seen: set[tuple[str, frozenset[str]]] = set()
        while queue:
            name, extras = queue.pop()
            if (name, extras) in seen or name not in self.by_name:
                continue
            seen.add((name, extras))
            found.add(name)
            for line in self.by_name[name].requirements:
                try:
                    req = Requirement(line)
                except InvalidRequirement:
                    continue
                if req.marker is None or req.marker.evaluate({**self.markers, "extra": ""}):
                    continue  # a plain dependency, not asked for by an extra
                if any(req.marker.evaluate({**self.markers, "extra": e}) for e in extras):
                    queue.append((canonicalize_name(req.name), frozenset(req.extras)))
        return found

    def entry_points(self, group: str) -> list[tuple[Distribution, str, str]]:
        """(distribution, name, "module:attr") of every entry point in `group`, by distribution name."""
        return [
            (dist, name, value)
            for dist in sorted(self.by_name.values(), key=lambda d: d.name)
            for g, name, value in dist.entry_points
            if g == group
        ]


def _modules(files: Iterable[importlib.metadata.PackagePath]) -> tuple[str, ...]:
    """The dotted names of the modules among a RECORD's files: `pkg/sub/mod.py` -> pkg.sub.mod,
    `pkg/__init__.py` -> pkg, `_speedups.cpython-311-x86_64-linux-gnu.so` -> _speedups."""
    names: set[str] = set()
    for file in files:
        parts = file.parts
        if not parts or parts[0] in ("..", "bin") or parts[0].endswith((".dist-info", ".data")):
            continue
        last = parts[-1]
        if last.endswith(".py"):
            stem = last[:-3]
        elif last.endswith(".so"):
            stem = last.split(".", 1)[0]
        else:
            continue
        dotted = [*parts[:-1], stem] if stem != "__init__" else list(parts[:-1])
        # import_module loads a file by any name without a dot (rich's `_unicode_data.unicode17-0-0`)
        if dotted and all(p and "." not in p for p in dotted):
            names.add(".".join(dotted))
    return tuple(sorted(names))


def _top_level(files: Iterable[importlib.metadata.PackagePath]) -> frozenset[str]:
    tops = set()
    for file in files:
        first = file.parts[0]
        if first.endswith((".dist-info", ".data")) or first in ("..", "bin", "__pycache__"):
            continue
        tops.add(first.split(".")[0] if len(file.parts) == 1 else first)
    return frozenset(tops)


def needed(requires: Iterable[str], markers: dict[str, str]) -> tuple[str, ...]:
    """The canonical names among Requires-Dist lines that hold on this interpreter without extras."""
    names: list[str] = []
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({**markers, "extra": ""}):
            continue
        names.append(canonicalize_name(req.name))
    return tuple(dict.fromkeys(names))
