"""Debian packages as build input: fetch a package and the libraries it depends
on into a private directory, and unpack them there. Nothing is installed on
the build host: `apt-get download` and `dpkg-deb -x` only.

    $KILN_HOME/cache/debs/<package>-<key>/debs/   the .deb files
    $KILN_HOME/cache/debs/<package>-<key>/root/   their contents, unpacked
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
from dataclasses import dataclass
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


def _apt_cache(*args: str) -> str:
    proc = subprocess.run([_proc.require("apt-cache"), *args], capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def candidate(package: str) -> str:
    for line in _apt_cache("policy", package).splitlines():
        if line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return version
    raise AppError(f"no such Debian package: {package} (apt-cache knows no candidate; try apt-get update)")


def fetch(package: str) -> Unpacked:
    """The package and its libraries, downloaded and unpacked (cached)."""
    version = candidate(package)
    key = hashlib.sha256(f"{package}={version}".encode()).hexdigest()[:12]
    final = home_dir("cache", "debs") / f"{package}-{key}"
    if not (final / "meta.json").is_file():
        with atomic.staging_dir(final) as tmp:
            (tmp / "debs" / "partial").mkdir(parents=True)
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
                        package,
                    ],
                    what=f"downloading {package}",
                )
            except KilnError as err:
                raise AppError(f"cannot fetch Debian package {package}: {err}") from None
            names = sorted(d.name.split("_", 1)[0] for d in (tmp / "debs").glob("*.deb"))
            installed, main_files = 0, []
            for deb in sorted((tmp / "debs").glob("*.deb")):
                _proc.run(["dpkg-deb", "-x", deb, tmp / "root"], what=f"unpacking {deb.name}")
                fields = _proc.run(["dpkg-deb", "-f", deb, "Package", "Installed-Size"], what="reading a .deb")
                meta = dict(ln.split(": ", 1) for ln in fields.stdout.decode().splitlines() if ": " in ln)
                installed += int(meta.get("Installed-Size", "0") or 0)
                if meta.get("Package") == package:
                    listing = _proc.run(["dpkg-deb", "--fsys-tarfile", deb], what="listing a .deb").stdout
                    main_files = _tar_names(listing)
            (tmp / "meta.json").write_text(
                json.dumps(
                    {
                        "package": package,
                        "version": version,
                        "packages": names,
                        "installed_kib": installed,
                        "main_files": main_files,
                    },
                    indent=2,
                )
            )
    meta = json.loads((final / "meta.json").read_text())
    return Unpacked(
        package, version, final / "root", tuple(meta["packages"]), int(meta["installed_kib"]), tuple(meta["main_files"])
    )


def _tar_names(tar: bytes) -> list[str]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return sorted("/" + m.name.lstrip("./") for m in t.getmembers() if not m.isdir())


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
