"""What an app needs from the kernel, derived from the analysis.

Every kiln guest needs the base (boot, console, virtio-mmio, the verified
EROFS root, entropy, seccomp for the syscall policy). Beyond that:

- networking (virtio-net, IPv4, AF_UNIX) if the app declares ports or reaches
  the socket module;
- 9p if it declares volumes;
- System V IPC if the program itself or an extension module calls shmget, semget or
  msgget (PostgreSQL), not a library that falls back without it;
- epoll, eventfd, timerfd and signalfd only if some reached module names them,
  or an extension module imports the C library's call for them (uvloop's libuv
  calls eventfd() and epoll_create1(): the same symbol table as a native
  program's, kiln.analyze.native).

Each feature is a fragment in kiln/kernel/fragments/; the reasons go in the
manifest so `kiln inspect` can say why an option is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from kiln.analyze.python import ModuleGraph
from kiln.config import AppConfig
from kiln.kernel.config import BASE_FEATURES, NETWORK_FEATURES

NETWORK_SYMBOLS = frozenset({"socket", "bind", "listen", "accept", "accept4", "connect", "getaddrinfo"})
SYMBOL_FEATURES = {
    "epoll_create": "epoll",
    "epoll_create1": "epoll",
    "epoll_ctl": "epoll",
    "epoll_wait": "epoll",
    "eventfd": "eventfd",
    "eventfd_write": "eventfd",
    "timerfd_create": "timerfd",
    "timerfd_settime": "timerfd",
    "signalfd": "signalfd",
}
# counted only where the program (or an extension module) calls them itself: libraries call them as a fallback
# they do without (OpenSSL's seeding shares a segment if it can; Berkeley DB's, Perl's System V modules')
OWN_SYMBOL_FEATURES = {"shmget": "sysvipc", "semget": "sysvipc", "msgget": "sysvipc"}


def imported_symbols(path: Path) -> set[str]:
    """The undefined dynamic symbols of an ELF file: what it takes from its libraries."""
    try:
        with open(path, "rb") as f:
            dynsym = ELFFile(f).get_section_by_name(".dynsym")
            if not isinstance(dynsym, SymbolTableSection):
                return set()
            return {s.name.split("@")[0] for s in dynsym.iter_symbols() if s.name and s["st_shndx"] == "SHN_UNDEF"}
    except (ELFError, OSError):
        return set()


INTERFACE_FEATURES = {"epoll": "epoll", "eventfd": "eventfd", "timerfd_create": "timerfd", "signalfd": "signalfd"}


@dataclass(frozen=True)
class Needs:
    features: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)  # feature -> why (beyond the base)

    def plus(self, asked: tuple[tuple[str, str], ...]) -> Needs:
        """These needs and the features a build was asked for (BuildOptions.needs), with their reasons."""
        if not asked:
            return self
        reasons = {**dict(asked), **self.reasons}
        return Needs(tuple(sorted({*self.features, *(feature for feature, _ in asked)})), reasons)


def python_needs(config: AppConfig, graph: ModuleGraph) -> Needs:
    reasons: dict[str, str] = {}
    if config.ports:
        why = f"the app listens on port{'s' if len(config.ports) > 1 else ''} {', '.join(map(str, config.ports))}"
    elif "_socket" in graph.modules:
        why = "the app reaches the socket module (" + " -> ".join(graph.why("_socket")) + ")"
    else:
        why = ""
    if why:
        for feature in NETWORK_FEATURES:
            reasons[feature] = why
    if config.volumes:
        reasons["9p"] = f"volumes {', '.join(config.volumes)}"
    for module, uses in sorted(graph.kernel_uses.items()):
        for name in sorted(uses):
            reasons.setdefault(INTERFACE_FEATURES[name], f"{module} uses {name}")
    for ext in sorted(graph.extensions, key=lambda m: m.name):
        if ext.path is None:
            continue
        features = {**SYMBOL_FEATURES, **OWN_SYMBOL_FEATURES}
        for symbol in sorted(imported_symbols(ext.path) & features.keys()):
            reasons.setdefault(features[symbol], f"{ext.name} calls {symbol}()")
    return Needs(tuple(sorted({*BASE_FEATURES, *reasons})), reasons)
