"""The ELF dependency closure of executables and shared objects (pyelftools).

For each ELF file we read PT_INTERP, DT_NEEDED, DT_RPATH and DT_RUNPATH and
look each needed library up the way the dynamic loader does: RPATH (only
without RUNPATH), RUNPATH, the directories of /etc/ld.so.conf, then the
default directories. `ldd` is never run or parsed.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from kiln.errors import AnalysisError

DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)


@dataclass(frozen=True)
class ElfInfo:
    path: Path
    machine: str
    elfclass: int
    interpreter: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str | None


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def read_elf(path: Path) -> ElfInfo:
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            interp = None
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            soname = None
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = seg.get_interp_name()
            for section in elf.iter_sections():
                if not isinstance(section, DynamicSection):
                    continue
                for tag in section.iter_tags():
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif kind == "DT_RPATH":
                        rpath.extend(tag.rpath.split(":"))
                    elif kind == "DT_RUNPATH":
                        runpath.extend(tag.runpath.split(":"))
                    elif kind == "DT_SONAME":
                        soname = tag.soname
            return ElfInfo(
                path, elf["e_machine"], elf.elfclass, interp, tuple(needed), tuple(rpath), tuple(runpath), soname
            )
    except (ELFError, OSError) as err:
        raise AnalysisError(f"{path}: not a readable ELF file ({err})") from None


def ld_so_conf_dirs(conf: Path = Path("/etc/ld.so.conf")) -> list[str]:
    """Directories listed in ld.so.conf, following its include lines."""
    dirs: list[str] = []
    seen: set[Path] = set()

    def read(path: Path) -> None:
        if path in seen or not path.is_file():
            return
        seen.add(path)
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("include "):
                pattern = line.split(None, 1)[1]
                if not pattern.startswith("/"):
                    pattern = str(path.parent / pattern)
                for inc in sorted(glob.glob(pattern)):
                    read(Path(inc))
            elif line:
                dirs.append(line)

    read(conf)
    return dirs


def _expand(entry: str, origin: Path) -> str:
    return entry.replace("$ORIGIN", str(origin)).replace("${ORIGIN}", str(origin))


@dataclass
class Closure:
    """Every ELF file needed, keyed by the path the loader asks for."""

    files: dict[str, Path] = field(default_factory=dict)  # requested path -> host file
    needed_by: dict[str, str] = field(default_factory=dict)  # requested path -> first requester

    @property
    def libraries(self) -> list[str]:
        return sorted(self.files)


def resolve_in(sysroot: Path, guest: str) -> Path | None:
    """The host file behind guest path `guest` in a tree rooted at `sysroot`, following
    symbolic links as the guest would (absolute targets stay inside the tree)."""
    if sysroot == Path("/"):
        return Path(guest) if Path(guest).exists() else None
    parts = [p for p in guest.split("/") if p]
    current: list[str] = []
    for _ in range(256):
        if not parts:
            return sysroot.joinpath(*current)
        part = parts.pop(0)
        if part == "..":
            current = current[:-1]
            continue
        candidate = sysroot.joinpath(*current, part)
        if candidate.is_symlink():
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p and p != "."] + parts
            if target.startswith("/"):
                current = []
            continue
        if not candidate.exists():
            return None
        current.append(part)
    return None


def closure(roots: list[Path], search_dirs: list[str] | None = None, sysroot: Path | None = None) -> Closure:
    """The closure of `roots`: their interpreter and every library they load, transitively.

    Paths are as the loader sees them; with `sysroot`, the files live below it (an unpacked
    set of Debian packages) and links are followed inside it."""
    root = sysroot or Path("/")
    dirs = search_dirs if search_dirs is not None else ld_so_conf_dirs(root / "etc" / "ld.so.conf") + list(DEFAULT_DIRS)
    result = Closure()

    def load(guest: str) -> tuple[str, Path, ElfInfo]:
        host = resolve_in(root, guest)
        if host is None:
            raise AnalysisError(f"{guest} does not exist")
        return guest, host, read_elf(host)

    queue = [load(str(r)) for r in roots]
    # a library loaded by name (dlopen with its path: the JVM's libjvm.so) is in the process by the time the
    # libraries that need it by its soname load (libzip.so, beside it, names libjvm.so with no path to find it by)
    by_name = {info.soname or Path(guest).name: guest for guest, _host, info in queue[1:]}
    done: set[Path] = set()
    while queue:
        guest, host, info = queue.pop()
        if host.resolve() in done:
            continue
        done.add(host.resolve())
        if info.interpreter and info.interpreter not in result.files:
            interp = resolve_in(root, info.interpreter)
            if interp is None:
                raise AnalysisError(f"{guest}: its dynamic loader {info.interpreter} does not exist")
            result.files[info.interpreter] = interp
            result.needed_by[info.interpreter] = guest
        origin = str(Path(guest).parent)
        search = [] if info.runpath else [_expand(d, origin) for d in info.rpath]
        search += [_expand(d, origin) for d in info.runpath] + dirs
        for lib in info.needed:
            if lib in by_name and not info.interpreter:
                continue
            found = _find(lib, search, info, root) if "/" not in lib else _find(lib, ["/"], info, root)
            if found is None:
                raise AnalysisError(
                    f"{guest}: needs {lib}, which was not found (searched {', '.join(dict.fromkeys(search))})"
                )
            if found[0] not in result.files:
                result.files[found[0]] = found[1]
                result.needed_by[found[0]] = guest
                queue.append(found)
    return result


def _find(lib: str, search: list[str], requester: ElfInfo, root: Path) -> tuple[str, Path, ElfInfo] | None:
    """The first library called `lib` in `search` that suits the requester: (guest path, file, its ELF facts)."""
    for d in dict.fromkeys(search):
        guest = f"{d.rstrip('/')}/{lib.lstrip('/')}" if d != "/" else lib
        host = resolve_in(root, guest)
        if host is not None and host.is_file():
            try:
                info = read_elf(host)
            except AnalysisError:
                continue
            if info.machine == requester.machine and info.elfclass == requester.elfclass:
                return guest, host, info
    return None
