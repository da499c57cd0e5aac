"""What a native program needs from the kernel, read from the symbols it imports.

The executable and the libraries of its ELF closure (all but the C library,
which defines these calls rather than using them) name the system calls they
make through libc: `socket`/`bind`/`listen` mean networking, `epoll_create1`
means epoll, and so on. Declared ports and volumes count as for Python apps;
a Debian service's configuration may ask for more (IPv6, when it listens on
an IPv6 address: kiln.debs.service).
"""

from __future__ import annotations

from pathlib import Path

from kiln.analyze.needs import NETWORK_SYMBOLS, OWN_SYMBOL_FEATURES, SYMBOL_FEATURES, Needs, imported_symbols
from kiln.config import NativeConfig
from kiln.kernel.config import BASE_FEATURES, NETWORK_FEATURES


def native_needs(
    config: NativeConfig, elfs: list[Path], configured: dict[str, str] | None = None, own: int = 1
) -> Needs:
    """`elfs`: the program, what it loads by name, then its libraries (the first `own` are its own); `configured`:
    features a Debian service's configuration asks for (kiln.debs.service), and why."""
    users: dict[str, str] = {}
    for index, path in enumerate(elfs):
        if path.name.startswith(("libc.so", "ld-linux")):
            continue
        for symbol in sorted(imported_symbols(path)):
            if index < own or symbol not in OWN_SYMBOL_FEATURES:
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
    for symbol, feature in {**SYMBOL_FEATURES, **OWN_SYMBOL_FEATURES}.items():
        if symbol in users:
            reasons.setdefault(feature, f"{users[symbol]} calls {symbol}()")
    if reasons.get("ipv4"):
        for feature, why in (configured or {}).items():
            reasons.setdefault(feature, why)
    return Needs(tuple(sorted({*BASE_FEATURES, *reasons})), reasons)
