"""The root file system tree of an image, assembled in a staging directory.

Paths are given as they will be inside the guest ("/usr/bin/python3.11").
`add_host_path` copies a host file the way the loader would reach it: every
symbolic link on the way (/lib64 -> usr/lib64, ld-linux... -> ../lib/...) is
recreated as a link, so the guest resolves the same names as the host.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from kiln.errors import KilnError

# Mount points guest init needs (run: where a compose service's secrets go, at /run/secrets, in a tmpfs init
# mounts over an image whose /run is read-only), and the directory it reads its config from.
SKELETON = ("dev", "proc", "sys", "tmp", "run", "kiln")


class RootFS:
    def __init__(self, staging: Path) -> None:
        self.root = staging
        self.root.mkdir(parents=True, exist_ok=True)
        for d in SKELETON:
            (self.root / d).mkdir(exist_ok=True)
        (self.root / "tmp").chmod(0o1777)

    def host(self, guest_path: str | PurePosixPath) -> Path:
        rel = PurePosixPath(guest_path)
        if not rel.is_absolute() or ".." in rel.parts:
            raise KilnError(f"bad path inside the image: {guest_path}")
        return self.root.joinpath(*rel.parts[1:])

    def mkdir(self, guest_path: str) -> None:
        self.host(guest_path).mkdir(parents=True, exist_ok=True)

    def add_file(self, guest_path: str, src: Path, mode: int | None = None) -> None:
        dest = self.host(guest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        os.chmod(dest, mode if mode is not None else (src.stat().st_mode & 0o755) | 0o444)

    def add_bytes(self, guest_path: str, data: bytes, mode: int = 0o444) -> None:
        dest = self.host(guest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        os.chmod(dest, mode)

    def add_symlink(self, guest_path: str, target: str) -> None:
        dest = self.host(guest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        dest.symlink_to(target)

    def add_host_path(self, host_path: str | Path, sysroot: Path = Path("/")) -> None:
        """Copy the file at `host_path` to the same path, links included. With `sysroot`, the
        path is read below it (an unpacked set of packages) and links resolve inside it."""
        path = PurePosixPath(os.path.abspath(host_path))
        current = PurePosixPath("/")
        parts = list(path.parts[1:])
        hops = 0
        while parts:
            current = current / parts.pop(0)
            real = sysroot.joinpath(*current.parts[1:])
            if real.is_symlink():
                hops += 1
                if hops > 40:
                    raise KilnError(f"{host_path}: too many levels of symbolic links")
                target = os.readlink(real)
                link = self.host(current)
                if not link.is_symlink():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(target)
                resolved = PurePosixPath(os.path.normpath(current.parent / target))
                parts = list(resolved.parts[1:]) + parts
                current = PurePosixPath("/")
            elif not parts:
                if real.is_dir() and hops:  # a link to a directory (tomcat10's conf -> /etc/tomcat10): the link,
                    self.mkdir(str(current))  # and its directory; what is in it is added on its own
                    return
                if not real.is_file():
                    raise KilnError(f"{host_path}: not a regular file")
                if not self.host(current).exists():
                    self.add_file(str(current), real)
            elif not real.is_dir():
                raise KilnError(f"{host_path}: {current} is not a directory")

    def add_host_tree(self, host_path: Path, sysroot: Path = Path("/"), dest: str | None = None) -> None:
        """Copy a file, or a directory with everything below it, to the same path (or to `dest`)."""
        source = sysroot.joinpath(*PurePosixPath(os.path.abspath(host_path)).parts[1:])
        if dest is not None:
            if source.is_dir():
                for dirpath, _dirnames, filenames in os.walk(source):
                    rel = Path(dirpath).relative_to(source).as_posix()
                    self.mkdir(str(PurePosixPath(dest) / rel))
                    for name in filenames:
                        self.add_file(str(PurePosixPath(dest) / rel / name), Path(dirpath) / name)
            else:
                self.add_file(dest, source)
            return
        if not source.is_dir():
            self.add_host_path(host_path, sysroot)
            return
        for dirpath, _dirnames, filenames in os.walk(source):
            guest = PurePosixPath("/") / Path(dirpath).relative_to(sysroot).as_posix()
            self.mkdir(str(guest))
            for name in filenames:
                self.add_host_path(guest / name, sysroot)

    def files(self) -> list[PurePosixPath]:
        """Every regular file and link in the tree, as guest paths."""
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
                out.append(PurePosixPath("/") / Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(out)
