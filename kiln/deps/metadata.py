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
  platform's module, an older Python's backport) cannot fail the build.

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


@dataclass
class Distributions:
    """The distributions installed in some directories, indexed by the files they own."""

    by_file: dict[Path, Distribution] = field(default_factory=dict)
    by_name: dict[str, Distribution] = field(default_factory=dict)

    @classmethod
    def scan(cls, directories: Iterable[Path], markers: dict[str, str]) -> Distributions:
        found = cls()
        for directory in directories:
            for info in sorted(directory.glob("*.dist-info")):
                dist = importlib.metadata.PathDistribution(info)
                name = canonicalize_name(dist.metadata["Name"] or info.name.split("-")[0])
                if name in found.by_name:  # an earlier directory shadows it, as on sys.path
                    continue
                files = list(dist.files or ())
                scripts = tuple((e.name, e.value) for e in dist.entry_points.select(group="console_scripts"))
                entry = Distribution(
                    name, dist.version, info, needed(dist.requires or (), markers), _top_level(files), scripts
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
            if dist is not None and top in dist.top_level:
                return True
        return False


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
