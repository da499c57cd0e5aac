"""What a native program needs from the kernel, read from the symbols it imports.

The executable and the libraries of its ELF closure (all but the C library,
which defines these calls rather than using them) name the system calls they
make through libc: `socket`/`bind`/`listen` mean networking, `epoll_create1`
means epoll, and so on. Declared ports and volumes count as for Python apps.
"""

from __future__ import annotations

from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from kiln.analyze.needs import Needs
from kiln.config import NativeConfig
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


def native_needs(config: NativeConfig, elfs: list[Path]) -> Needs:
    users: dict[str, str] = {}
    for path in elfs:
        if path.name.startswith(("libc.so", "ld-linux")):
            continue
        for symbol in sorted(imported_symbols(path)):
            users.setdefault(symbol, path.name)
    reasons: dict[str, str] = {}
    net = next((s for s in sorted(NETWORK_SYMBOLS) if s in users), None)
    if config.ports or net:
        why = (
            (f"the program listens on port{'s' if len(config.ports) > 1 else ''} {', '.join(map(str, config.ports))}")
            if config.ports
            else f"{users[net]} calls {net}()"
        )
        for feature in NETWORK_FEATURES:
            reasons[feature] = why
    if config.volumes:
        reasons["9p"] = f"volumes {', '.join(config.volumes)}"
    for symbol, feature in SYMBOL_FEATURES.items():
        if symbol in users:
            reasons.setdefault(feature, f"{users[symbol]} calls {symbol}()")
    return Needs(tuple(sorted({*BASE_FEATURES, *reasons})), reasons)
