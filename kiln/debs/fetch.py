"""Debian packages as build input: fetch a package and the libraries it depends
on into a private directory, and unpack them there. Nothing is installed on
the build host: `apt-get download` and `dpkg-deb -x` only; no maintainer
script runs (kiln.debs.accounts reads them).

    $KILN_HOME/cache/debs/<package>-<key>/debs/             the .deb files
    $KILN_HOME/cache/debs/<package>-<key>/root/             their contents, unpacked
    $KILN_HOME/cache/debs/<package>-<key>/control/<name>/   each package's control files (conffiles, postinst)
    $KILN_HOME/cache/debs/<package>-<key>/meta.json

Which packages: the package and its whole dependency closure, as apt resolves
it for an empty system (so alternatives are chosen consistently); a server's
binary may live in a sibling, as redis-server's does in redis-tools. The build
then keeps only the files the ELF closure and the config ask for.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kiln import _proc, atomic
from kiln.errors import AppError, KilnError
from kiln.paths import home_dir


@dataclass(frozen=True)
class Unpacked:
    package: str
    version: str
    root: Path
    packages: tuple[str, ...]
    installed_kib: int  # Installed-Size of every fetched package, as Debian counts it
    main_files: tuple[str, ...]  # the paths the package itself ships
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # every fetched package's files and links
    dirs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # and its directories
    sources: dict[str, str] = field(default_factory=dict)  # every fetched package's source package

    @property
    def family(self) -> tuple[str, ...]:
        """The package and the packages built from the same source (nginx and nginx-common, redis-server and
        redis-tools): where its unit, conffiles, directories and maintainer scripts may live. The package first."""
        source = self.sources.get(self.package, self.package)
        siblings = sorted(p for p in self.packages if p != self.package and self.sources.get(p, p) == source)
        return (self.package, *siblings)

    def family_files(self) -> tuple[str, ...]:
        return tuple(f for p in self.family for f in self.files.get(p, ()))

    def family_dirs(self) -> tuple[str, ...]:
        return tuple(sorted({d for p in self.family for d in self.dirs.get(p, ())}))

    def control(self, package: str | None = None) -> Path:
        """A package's control files (DEBIAN/: conffiles, postinst, ...), the main package's by default."""
        return self.root.parent / "control" / (package or self.package)


CACHE_FORMAT = "3"  # 2: control files, every package's files and directories; 3: their source packages


def _apt_cache(*args: str) -> str:
    # as if nothing were installed, as the download resolves it: an installed version from another
    # repository (nodesource's nodejs on a Debian host) is not what apt-get fetches with an empty status
    with tempfile.NamedTemporaryFile(dir=_proc.scratch()) as status:
        proc = subprocess.run(
            [_proc.require("apt-cache"), f"-o=Dir::State::status={status.name}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
    return proc.stdout if proc.returncode == 0 else ""


def candidate(package: str) -> str:
    for line in _apt_cache("policy", package).splitlines():
        if line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return version
    raise AppError(f"no such Debian package: {package} (apt-cache knows no candidate; try apt-get update)")


def fetch(package: str, extra: tuple[str, ...] = ()) -> Unpacked:
    """The package and its libraries, downloaded and unpacked (cached); `extra` packages join the same tree
    (what a build-time step needs there, such as the shell lighttpd's include_shell runs)."""
    version = candidate(package)
    wanted = [f"{p}={candidate(p)}" for p in extra]
    key = hashlib.sha256(" ".join([CACHE_FORMAT, f"{package}={version}", *wanted]).encode()).hexdigest()[:12]
    final = home_dir("cache", "debs") / f"{package}-{key}"
    if not (final / "meta.json").is_file():
        with atomic.staging_dir(final) as tmp:
            (tmp / "debs" / "partial").mkdir(parents=True)
            (tmp / "control").mkdir()
            (tmp / "status").touch()  # as if nothing were installed: apt resolves every dependency
            try:
                _proc.run(
                    [
                        "apt-get",
                        "install",
                        "-y",
                        "-q",
                        "--download-only",
                        "--no-install-recommends",
                        f"-o=Dir::State::status={tmp / 'status'}",
                        f"-o=Dir::Cache::archives={tmp / 'debs'}",
                        "-o=Debug::NoLocking=1",
                        f"{package}={version}",
                        *wanted,
                    ],
                    what=f"downloading {package}",
                )
            except KilnError as err:
                raise AppError(f"cannot fetch Debian package {package}: {err}") from None
            names = sorted(d.name.split("_", 1)[0] for d in (tmp / "debs").glob("*.deb"))
            installed, main_files, files, dirs, sources = 0, [], {}, {}, {}
            for deb in sorted((tmp / "debs").glob("*.deb")):
                _proc.run(["dpkg-deb", "-x", deb, tmp / "root"], what=f"unpacking {deb.name}")
                fields = _proc.run(
                    ["dpkg-deb", "-f", deb, "Package", "Installed-Size", "Source"], what="reading a .deb"
                )
                meta = dict(ln.split(": ", 1) for ln in fields.stdout.decode().splitlines() if ": " in ln)
                installed += int(meta.get("Installed-Size", "0") or 0)
                name = meta.get("Package", deb.name.split("_", 1)[0])
                sources[name] = meta.get("Source", name).split(" ", 1)[0]  # "redis (5:7.0.15-1)": the name
                _proc.run(["dpkg-deb", "-e", deb, tmp / "control" / name], what=f"reading {deb.name}'s control files")
                listing = _proc.run(["dpkg-deb", "--fsys-tarfile", deb], what="listing a .deb").stdout
                files[name], dirs[name] = _tar_names(listing)
                if name == package:
                    main_files = files[name]
            (tmp / "meta.json").write_text(
                json.dumps(
                    {
                        "package": package,
                        "version": version,
                        "packages": names,
                        "installed_kib": installed,
                        "main_files": main_files,
                        "files": files,
                        "dirs": dirs,
                        "sources": sources,
                    },
                    indent=2,
                )
            )
    meta = json.loads((final / "meta.json").read_text())
    return Unpacked(
        package,
        version,
        final / "root",
        tuple(meta["packages"]),
        int(meta["installed_kib"]),
        tuple(meta["main_files"]),
        {name: tuple(paths) for name, paths in meta["files"].items()},
        {name: tuple(paths) for name, paths in meta["dirs"].items()},
        dict(meta["sources"]),
    )


def _tar_names(tar: bytes) -> tuple[list[str], list[str]]:
    """(files and links, directories) of a package's data archive, as absolute paths."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        members = t.getmembers()
    files = sorted("/" + m.name.lstrip("./") for m in members if not m.isdir())
    dirs = sorted("/" + m.name.lstrip("./").rstrip("/") for m in members if m.isdir() and m.name.strip("./"))
    return files, dirs


def default_exe(unpacked: Unpacked) -> str:
    """The package's program: /usr/sbin/NAME or /usr/bin/NAME, else its only one."""
    pkg = unpacked.package
    for name in (pkg, pkg.removesuffix("-server"), pkg.removesuffix("-bin")):
        for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            if f"{d}/{name}" in unpacked.main_files:
                return f"{d}/{name}"
    programs = [f for f in unpacked.main_files if f.startswith(("/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"))]
    if len(programs) == 1:
        return programs[0]
    raise AppError(f"Debian package {pkg} ships {len(programs)} programs: say which with exe = ...")
