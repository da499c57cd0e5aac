"""The platforms a firmware-booted disk (kiln.export.disk) is made for: the devices each gives a guest,
and the kernel fragments that drive them.

Every platform's fragment (kiln/kernel/fragments/platform-*.config) says on its first line why its
drivers are on; the export records those lines beside the kernel's config hash. `generic` is every
platform at once: one kernel that boots on all of them, a little larger.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.errors import UsageError
from kiln.kernel.config import FRAGMENTS_DIR

# What every disk adds to the image's own features: PCI, firmware boot (EFI stub, ACPI, GPT), DHCP, and
# ext4 for the volumes a disk holds as partitions (on in every disk's kernel, so that images with and
# without volumes share one kernel); and what a disk never uses: 9p (a host's directories, for kiln run).
DISK_FEATURES = ("pci", "efi", "dhcp", "ext4")
NOT_ON_DISKS = ("9p",)


@dataclass(frozen=True)
class Platform:
    name: str
    fragments: tuple[str, ...]  # platform-*.config
    storage: str  # what the platform's boot disk sits on
    network: str


PLATFORMS = {
    p.name: p
    for p in (
        Platform("qemu", ("platform-qemu",), "virtio-blk (virtio-pci)", "virtio-net (virtio-pci)"),
        Platform("gce", ("platform-gce",), "virtio-scsi", "virtio-net, gVNIC"),
        Platform("aws", ("platform-aws",), "NVMe", "ENA"),
        Platform("azure", ("platform-azure",), "Hyper-V storage (storvsc)", "Hyper-V network (netvsc)"),
        Platform("vmware", ("platform-vmware",), "PVSCSI", "VMXNET3"),
        Platform("virtualbox", ("platform-virtualbox",), "AHCI (SATA)", "Intel e1000"),
    )
}
PLATFORMS["generic"] = Platform(
    "generic",
    tuple(f for p in PLATFORMS.values() for f in p.fragments),
    "all of the above",
    "all of the above",
)


def platform(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise UsageError(f"unknown platform {name!r} (one of: {', '.join(PLATFORMS)})") from None


def why(fragment: str) -> str:
    """A fragment's reason: its `# why:` line."""
    for line in (FRAGMENTS_DIR / f"{fragment}.config").read_text().splitlines():
        if line.startswith("# why:"):
            return line[len("# why:") :].strip()
    raise AssertionError(f"kernel fragment {fragment} says not why it is on")


def features(image_features: tuple[str, ...], name: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The disk kernel's features for an image on a platform, and why each one beyond the image's is on."""
    added = (*DISK_FEATURES, *platform(name).fragments)
    kept = set(image_features) - set(NOT_ON_DISKS)
    return tuple(sorted(kept | set(added))), {f: why(f) for f in added if f not in image_features}
