"""Which files in an app's directory are the app's: what `COPY . .` would copy.

Every file under the app's directory is the app's, as Docker copies a build
context, less:

- what a `.dockerignore` or `.kilnignore` beside it excludes (both read, in
  that order; Docker's pattern rules, `**` and `!` exceptions included, through
  the Docker SDK's own matcher);
- directories that are never an app's: version control, caches, and
  virtualenvs (any directory holding a `pyvenv.cfg`);
- vendored directories (`python_path`), whose modules are third-party.

The import analysis keeps every Python module among them (an app is kept whole,
whatever a server's command names), and kiln.image.data every other file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

IGNORE_FILES = (".dockerignore", ".kilnignore")
# Directories of an app that are not its files.
SKIPPED_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
     ".ruff_cache", ".idea", ".vscode"}
)  # fmt: skip


def ignore_patterns(root: Path) -> list[str]:
    """The patterns of the app's ignore files, comments and blank lines dropped."""
    patterns: list[str] = []
    for name in IGNORE_FILES:
        path = root / name
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    patterns.append(line)
    return patterns


def app_files(root: Path, vendored: Iterable[Path] = ()) -> list[Path]:
    """Every file of the app in `root`, sorted (see the module's docstring)."""
    skipped = {p.resolve() for p in vendored}
    patterns = ignore_patterns(root)
    kept: set[str] | None = None
    if patterns:
        from docker.utils.build import exclude_paths  # Docker's own .dockerignore rules

        kept = set(exclude_paths(str(root), patterns))
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SKIPPED_DIRS and (here / d).resolve() not in skipped and not (here / d / "pyvenv.cfg").is_file()
        )  # fmt: skip
        for name in sorted(filenames):
            path = here / name
            if kept is None or str(path.relative_to(root)) in kept:
                found.append(path)
    return found


def module_name(root: Path, path: Path) -> str | None:
    """The module name an app file is imported by with the app's directory on sys.path
    (`pkg/views.py` -> pkg.views), or None if it is not a module or cannot be imported by name."""
    rel = path.relative_to(root)
    if rel.suffix != ".py":
        return None
    parts = [*rel.parent.parts, rel.stem] if rel.stem != "__init__" else list(rel.parent.parts)
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)
