"""What an app needs in its image besides modules, and where host files go in the guest.

- `Placement` maps host paths to guest paths: the app's directory becomes
  /app, installed dependencies become the guest's site-packages, and anything
  else (the interpreter's stdlib) keeps its host path (or, for a container
  image's interpreter, its path in the image's tree).
- `package_data` copies, for every third-party package kept, the files in it
  that are not Python (Jinja templates, certifi's cacert.pem, static files),
  and the `*.dist-info` of every distribution whose modules are kept, so that
  `importlib.metadata.version()` and entry points work in the guest.
- `app_data` copies the app's own data files: by default every non-Python file
  (and every .py file no import can name, such as Alembic's revisions) of the
  app (kiln.analyze.app_files: less what .dockerignore or .kilnignore
  exclude, caches, VCS directories and virtualenvs; none for an app that is a
  single .py file); `data = ["templates/**", ...]` in kiln.toml narrows that to
  the files its globs match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kiln.analyze.app_files import app_files, module_name
from kiln.analyze.python import ModuleGraph
from kiln.config import App, AppConfig
from kiln.deps.metadata import Distribution
from kiln.image.rootfs import RootFS

# Files a package carries that nothing reads at run time.
NOT_DATA_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".pyx", ".pxd", ".c", ".h", ".cpp", ".so")
NOT_DATA_NAMES = frozenset({"py.typed", "__pycache__"})
SKIPPED_APP_FILES = frozenset({"kiln.toml"})


@dataclass(frozen=True)
class Placement:
    """Where host files of the app go inside the image."""

    app_root: Path
    app_dir: PurePosixPath
    sites: dict[Path, PurePosixPath] = field(default_factory=dict)  # host site dir -> guest site dir
    sysroot: Path | None = None  # a container image's tree: what is in it keeps its place in the image

    def guest(self, path: Path | None) -> PurePosixPath:
        assert path is not None
        for host, guest in self.sites.items():
            if path.is_relative_to(host):
                return guest / path.relative_to(host).as_posix()
        if path.is_relative_to(self.app_root):
            return self.app_dir / path.relative_to(self.app_root).as_posix()
        if self.sysroot is not None and path.is_relative_to(self.sysroot):
            return PurePosixPath("/") / path.relative_to(self.sysroot).as_posix()
        return PurePosixPath(path.as_posix())


def kept_distributions(graph: ModuleGraph) -> list[Distribution]:
    """The distributions that own at least one kept module, by name."""
    found = {d.name: d for m in graph.modules.values() if (d := graph.distributions.owner(m.path)) is not None}
    return [found[name] for name in sorted(found)]


def _is_data(name: str) -> bool:
    return name not in NOT_DATA_NAMES and not name.endswith(NOT_DATA_SUFFIXES)


def _copy_tree(src: Path, root: RootFS, place: Placement) -> int:
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(
            d for d in dirnames if d not in NOT_DATA_NAMES and not (Path(dirpath, d, "__init__.py")).is_file()
        )
        for name in sorted(filenames):
            if _is_data(name):
                host = Path(dirpath, name)
                root.add_file(str(place.guest(host)), host)
                count += 1
    return count


# Files the standard library reads from the system, by the module that reads them: zoneinfo's time zones
# (Django with USE_TZ asks for "UTC" on its first request). posix/ and right/ are other builds of the same.
SYSTEM_DATA: dict[str, tuple[Path, ...]] = {"zoneinfo": (Path("/usr/share/zoneinfo"),)}
SYSTEM_DATA_SKIPPED = {"posix", "right", "posixrules"}


def system_data(graph: ModuleGraph, root: RootFS) -> int:
    """Copy the system files the kept standard library modules read (SYSTEM_DATA); how many."""
    count = 0
    for module, dirs in SYSTEM_DATA.items():
        if module not in graph.modules:
            continue
        for top in dirs:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = sorted(d for d in dirnames if d not in SYSTEM_DATA_SKIPPED)
                for name in sorted(filenames):
                    if name not in SYSTEM_DATA_SKIPPED:
                        root.add_host_path(Path(dirpath, name))
                        count += 1
    return count


def package_data(graph: ModuleGraph, root: RootFS, place: Placement) -> int:
    """Copy the data files of kept third-party packages and the metadata of their distributions."""
    count = 0
    for mod in sorted(graph.modules.values(), key=lambda m: m.name):
        if mod.origin == "third-party" and mod.is_package and mod.path is not None:
            # Subpackages are walked when they are kept themselves.
            count += _copy_tree(mod.path.parent, root, place)
    for dist in kept_distributions(graph):
        for dirpath, _dirs, filenames in os.walk(dist.info_dir):
            for name in sorted(filenames):
                host = Path(dirpath, name)
                root.add_file(str(place.guest(host)), host)
                count += 1
    return count


def app_data(app: App, root: RootFS, place: Placement) -> list[Path]:
    """Copy the app's own data files; return them (host paths)."""
    assert isinstance(app.config, AppConfig)
    vendored = {(app.root / p).resolve() for p in app.config.python_path}
    if app.single_file and app.config.data is None:
        return []  # a single .py file: its directory is not the app's
    if app.config.data is not None:
        # A glob that matches a directory ("templates/**") means every file below it.
        matched = [m for pattern in app.config.data for m in app.root.glob(pattern)]
        files = sorted({f for m in matched for f in ([m] if m.is_file() else m.rglob("*")) if f.is_file()})
    else:
        # and the app's .py files no import can name (`migrations/versions/1975ea83b712_create.py`: Alembic loads
        # its revisions by path), as they are: the modules are laid out by the import analysis
        files = [
            f
            for f in app_files(app.root, vendored)
            if (_is_data(f.name) or module_name(app.root, f) is None) and f.name not in SKIPPED_APP_FILES
        ]
    for host in files:
        root.add_file(str(place.guest(host)), host)
    return files
