"""`kiln export firecracker`: what Firecracker boots, from a kiln image.

    DIR/vmlinux       the image's own kernel, uncompressed (virtio-mmio, the 8250 console: what
                      Firecracker's devices are, as they are QEMU microvm's)
    DIR/rootfs.img    the image's root file system with its dm-verity tree, read-only, as kiln run boots it
    DIR/config.json   for `firecracker --no-api --config-file DIR/config.json`: boot source and arguments,
                      the drive, the network interface (a TAP device), machine config, the entropy device;
                      the console is Firecracker's serial port on its standard output

The boot arguments are the ones the microvm target proves (kiln.guest.protocol.kernel_cmdline),
with eth0's address given statically: Firecracker has no DHCP server. No drive is Firecracker's "root
device" (it would add root=/dev/vda): the arguments name the verified root themselves. The JSON is
validated against Firecracker's own API specification (schema/firecracker-api.yaml) before it is written.
Firecracker needs KVM, which this machine lacks: the export is validated here, not booted.

    kiln export firecracker hello-http -o out/fc
    firecracker --no-api --config-file out/fc/config.json
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

from kiln import atomic
from kiln.export import openapi
from kiln.guest import protocol
from kiln.image import unpack
from kiln.store import Image, Store

SCHEMA = Path(__file__).parent / "schema" / "firecracker-api.yaml"
# Firecracker's getting-started network: the TAP device is 172.16.0.1/30 on the host, the guest .2
GUEST_IP = "172.16.0.2/30"
GATEWAY = "172.16.0.1"
TAP = "tap0"


@cache
def _validator() -> Any:
    import yaml

    return openapi.strict_validator(yaml.safe_load(SCHEMA.read_text())["definitions"], "FullVmConfiguration")


def validate(config: dict[str, Any]) -> None:
    openapi.validate(_validator(), config, "the config is not valid for Firecracker")


def boot_args(image: Image, guest_ip: str, gateway: str) -> str:
    m = image.manifest
    return protocol.kernel_cmdline(
        protocol.Boot(
            memory_mib=m.entry.memory_mib,
            network=m.kernel.network,
            verity_table=protocol.dm_table(m.rootfs.verity),
            guest_ip=guest_ip,
            gateway=gateway,
        )
    )


def config(image: Image, out: Path, guest_ip: str, gateway: str, tap: str) -> dict[str, Any]:
    m = image.manifest
    cfg: dict[str, Any] = {
        "boot-source": {"kernel_image_path": str(out / "vmlinux"), "boot_args": boot_args(image, guest_ip, gateway)},
        "drives": [
            {
                "drive_id": "rootfs",
                "path_on_host": str(out / "rootfs.img"),
                "is_root_device": False,  # the boot arguments name the verified root (dm-0) themselves
                "is_read_only": True,
            }
        ],
        "machine-config": {"vcpu_count": 1, "mem_size_mib": m.entry.memory_mib, "smt": False},
        "entropy": {},
    }
    if m.kernel.network:
        cfg["network-interfaces"] = [{"iface_id": "eth0", "host_dev_name": tap}]
    return cfg


def export(
    store: Store, image: Image, out: Path, guest_ip: str = GUEST_IP, gateway: str = GATEWAY, tap: str = TAP
) -> dict[str, Any]:
    """Write DIR/vmlinux, DIR/rootfs.img and DIR/config.json (paths absolute); the config."""
    out = out.resolve()
    cfg = config(image, out, guest_ip, gateway, tap)
    validate(cfg)
    out.mkdir(parents=True, exist_ok=True)
    for source, target in (
        (unpack.kernel(store, image), out / "vmlinux"),
        (unpack.rootfs(store, image), out / "rootfs.img"),
    ):
        tmp = target.with_name(f".{target.name}.{atomic.owner()}.tmp")
        shutil.copyfile(source, tmp)
        atomic.install_file(tmp, target)
    atomic.write_bytes(out / "config.json", (json.dumps(cfg, indent=2) + "\n").encode())
    return cfg
