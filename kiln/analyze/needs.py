"""What an app needs from the kernel, derived from the analysis.

Every kiln guest needs the base (boot, console, virtio-mmio, the verified
EROFS root, entropy, seccomp for the syscall policy). Beyond that:

- networking (virtio-net, IPv4, AF_UNIX) if the app declares ports or reaches
  the socket module;
- 9p if it declares volumes;
- epoll, eventfd, timerfd and signalfd only if some reached module names them.

Each feature is a fragment in kiln/kernel/fragments/; the reasons go in the
manifest so `kiln inspect` can say why an option is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kiln.analyze.python import ModuleGraph
from kiln.config import AppConfig
from kiln.kernel.config import BASE_FEATURES, NETWORK_FEATURES

INTERFACE_FEATURES = {"epoll": "epoll", "eventfd": "eventfd", "timerfd_create": "timerfd", "signalfd": "signalfd"}


@dataclass(frozen=True)
class Needs:
    features: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)  # feature -> why (beyond the base)


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
    return Needs(tuple(sorted({*BASE_FEATURES, *reasons})), reasons)
