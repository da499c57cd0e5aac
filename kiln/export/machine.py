"""An image as a PCI machine sees it: libvirt and KubeVirt run q35, not QEMU's microvm.

The root file system and the dm-verity table are the image's own, byte for byte. The kernel is
the image's feature set plus `pci` (virtio-pci, MSI-X; kiln/kernel/fragments/pci.config), built
once and cached like any kernel: only exported images pay for PCI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kiln.guest import protocol
from kiln.guest.protocol import GATEWAY, GUEST_IP
from kiln.image import unpack
from kiln.image.build import kernel_for
from kiln.image.options import QUIET, BuildOptions, Progress
from kiln.store import Image, Store

EXPORT_FEATURE = "pci"


@dataclass(frozen=True)
class Machine:
    image: Image
    kernel: Path  # uncompressed, PVH-bootable vmlinux with virtio-pci
    rootfs: Path  # the image's root file system (EROFS + verity tree), as stored
    cmdline: str
    memory_mib: int
    ports: tuple[int, ...]
    gateway: str = GATEWAY  # eth0's gateway on the kernel command line: the engine's network must have it
    guest_ip: str = GUEST_IP  # eth0's address (IP/PREFIX) on the kernel command line

    @property
    def name(self) -> str:
        return self.image.ref.name.rsplit("/", 1)[-1].replace("_", "-").replace(".", "-")


def prepare(
    store: Store,
    image: Image,
    progress: Progress = QUIET,
    guest_ip: str = GUEST_IP,
    gateway: str = GATEWAY,
) -> Machine:
    """The image's PCI kernel (built if not cached), its verified root and its command line."""
    m = image.manifest
    kernel = kernel_for(tuple(sorted({*m.kernel.features, EXPORT_FEATURE})), BuildOptions(), progress)
    rootfs = unpack.rootfs(store, image)
    boot = protocol.Boot(
        memory_mib=m.entry.memory_mib,
        network=m.kernel.network,
        verity_table=protocol.dm_table(m.rootfs.verity),
        guest_ip=guest_ip,
        gateway=gateway,
    )
    cmdline = protocol.kernel_cmdline(boot)
    return Machine(image, kernel.vmlinux, rootfs, cmdline, m.entry.memory_mib, m.entry.ports, gateway, guest_ip)
