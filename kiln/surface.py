"""The attack surface of an image, beside a Debian minbase system and Debian's
cloud kernel: files, executables, shells, setuid files, syscalls, kernel
options, listening ports. Every figure is counted from the real artefacts.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kiln import atomic
from kiln.image import unpack
from kiln.kernel.config import read_options
from kiln.kernel.source import find_source, unpacked
from kiln.paths import home_dir
from kiln.store import Image, Store

# Bump when scan_tree counts differently: cached baseline figures are keyed by it.
SURFACE_VERSION = 1
SHELL_NAMES = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "busybox", "fish"})
CLOUD_CONFIGS = (
    Path("/usr/src/linux-config-6.1/config.amd64_none_cloud-amd64.xz"),
    *sorted(Path("/boot").glob("config-*-cloud-amd64")),
)


@dataclass
class Surface:
    name: str
    files: int
    executables: list[str]
    shells: list[str]
    setuid: list[str]
    syscalls: str
    kernel: str
    kernel_options: int | None
    ports: str
    notes: list[str] = field(default_factory=list)
    executable_count: int | None = None  # when only the count is known (a container image kiln built from)
    processes: str = "any number"  # the process model: what the syscall policy lets the app start

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _is_executable(path: Path, st: os.stat_result) -> bool:
    """A program someone could run: an ELF executable or a script, with an exec bit (libraries excluded)."""
    if not (st.st_mode & 0o111) or ".so" in path.name:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    if head[:2] == b"#!":
        return True
    return head[:4] == b"\x7fELF" and head[16] in (2, 3)  # ET_EXEC or ET_DYN (PIE)


def scan_tree(root: Path) -> tuple[int, list[str], list[str], list[str]]:
    """(files, executables, shells, setuid/setgid files) of a root file system tree."""
    files = 0
    executables: list[str] = []
    shells: list[str] = []
    setuid: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        linked_dirs = [d for d in dirnames if Path(dirpath, d).is_symlink()]  # /lib -> usr/lib counts as a file
        for name in filenames + linked_dirs:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = "/" + path.relative_to(root).as_posix()
            files += 1
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
                if name in SHELL_NAMES:
                    shells.append(rel)
                continue
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                setuid.append(rel)
            if _is_executable(path, st):
                executables.append(rel)
                if name in SHELL_NAMES:
                    shells.append(rel)
    return files, sorted(executables), sorted(shells), sorted(setuid)


def syscall_numbers() -> dict[str, int]:
    """The x86_64 system calls by name, with their numbers (from the kernel source's table)."""
    table = unpacked(find_source()) / "arch" / "x86" / "entry" / "syscalls" / "syscall_64.tbl"
    numbers = {}
    for line in table.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#") and parts[1] in ("common", "64"):
            numbers[parts[2]] = int(parts[0])
    return numbers


def syscall_count() -> int:
    """How many system calls x86_64 Linux has."""
    return len(syscall_numbers())


def cloud_kernel_options() -> tuple[int, str] | None:
    """(options on, where from) for Debian's cloud kernel config on this machine, if present."""
    for path in CLOUD_CONFIGS:
        if path.is_file():
            if path.suffix == ".xz":
                with lzma.open(path, "rt") as f:
                    text = f.read()
            else:
                text = path.read_text()
            options = read_options(text)
            return sum(1 for v in options.values() if v in ("y", "m")), str(path)
    return None


def image_surface(store: Store, image: Image) -> Surface:
    m = image.manifest
    tree = unpack.tree(store, image)
    files, executables, shells, setuid = scan_tree(tree)
    total = syscall_count()
    refused = len(m.policy.denied)
    return Surface(
        name=f"kiln {image.ref}",
        files=files,
        executables=executables,
        shells=shells,
        setuid=setuid,
        syscalls=f"{total - refused} of {total} ({refused} refused: {', '.join(m.policy.denied)})",
        kernel=f"kiln, config {m.kernel.config_hash}",
        kernel_options=len(m.kernel.options) or m.kernel.options_enabled,
        ports=", ".join(f"{p}/tcp" for p in m.entry.ports) or "none",
        processes=process_model(m.policy.relaxed, m.entry.helpers),
    )


def process_model(relaxed: dict[str, str], helpers: tuple[str, ...] = ()) -> str:
    """What the policy lets the app start: one process, forked workers (no exec), the programs the image names,
    or new programs."""
    if "execve" in relaxed:
        return f"forks and executes programs ({relaxed['execve']})"
    if helpers:
        names = ", ".join(helpers)
        return f"forks, and executes only the image's {names} (init checks each execve's path)"
    forks = [relaxed[c] for c in ("clone", "fork", "vfork", "clone3") if c in relaxed]
    if forks:
        return f"forks workers without exec ({forks[0]})"
    return "one (fork and exec refused)"


def container_surface(image: Image) -> Surface | None:
    """The container image a kiln image was built from, as its build recorded it (kiln.oci)."""
    source = image.manifest.build.image
    if source is None:
        return None
    return Surface(
        name=f"container {source.reference or source.digest[:19]}",
        files=source.files,
        executables=[],
        executable_count=source.executables,
        shells=list(source.shells),
        setuid=[],
        syscalls="every one (no filter; the runtime's default seccomp profile, where it applies one)",
        kernel="the host's",
        kernel_options=None,
        ports=", ".join(f"{p}/tcp" for p in image.manifest.entry.ports) or "none",
    )


def debian_surface(variant: str = "minbase") -> Surface:
    """Debian bookworm `variant` (debootstrap) with Debian's cloud kernel; cached as JSON."""
    from kiln.baselines import debian

    cache = home_dir("cache", "baselines") / f"surface-v{SURFACE_VERSION}-debian-{variant}.json"
    if cache.is_file():
        return Surface(**json.loads(cache.read_text()))
    root = debian.rootfs(variant)
    files, executables, shells, setuid = scan_tree(root)
    cloud = cloud_kernel_options()
    total = syscall_count()
    surface = Surface(
        name=f"Debian {debian.SUITE} {variant}",
        files=files,
        executables=executables,
        shells=shells,
        setuid=setuid,
        syscalls=f"{total} of {total} (no filter)",
        kernel="Debian linux-image-cloud-amd64" + (f" ({cloud[1]})" if cloud else " (config not found)"),
        kernel_options=cloud[0] if cloud else None,
        ports="the app's, plus any service installed",
    )
    atomic.write_bytes(cache, json.dumps(surface.to_dict(), indent=2).encode())
    return surface


def _short(items: list[str], limit: int = 6) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return f"{len(items)}: {shown}" + (f", … (+{len(items) - limit})" if len(items) > limit else "")


def _executables(s: Surface) -> str:
    return str(s.executable_count) if s.executable_count is not None else _short(s.executables, 3)


def rows(surfaces: list[Surface]) -> list[tuple[str, ...]]:
    """The comparison as table rows: figure, then one column per surface."""
    return [
        ("files", *(str(s.files) for s in surfaces)),
        ("executables", *(_executables(s) for s in surfaces)),
        ("shell present", *(("yes: " + ", ".join(s.shells[:4])) if s.shells else "no" for s in surfaces)),
        ("setuid/setgid files", *(_short(s.setuid, 3) for s in surfaces)),
        ("syscalls allowed", *(s.syscalls for s in surfaces)),
        ("kernel", *(s.kernel for s in surfaces)),
        ("kernel options on", *(str(s.kernel_options) if s.kernel_options is not None else "?" for s in surfaces)),
        ("listening ports", *(s.ports for s in surfaces)),
        ("processes", *(s.processes for s in surfaces)),
    ]


def markdown(surfaces: list[Surface]) -> str:
    header = "| | " + " | ".join(s.name for s in surfaces) + " |"
    lines = [header, "|---" * (len(surfaces) + 1) + "|"]
    lines += ["| " + " | ".join(re.sub(r"\|", "/", c) for c in row) + " |" for row in rows(surfaces)]
    return "\n".join(lines)
