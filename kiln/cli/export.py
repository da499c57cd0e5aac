"""`kiln export libvirt|kubevirt|disk|firecracker IMAGE`: hand an image to libvirt, KubeVirt, firmware and
clouds, or Firecracker (kiln.export)."""

from __future__ import annotations

from pathlib import Path

import click

from kiln.cli import ui
from kiln.cli.ui import print_json

EPILOG = """\b
Examples:
  kiln export libvirt hello-http -o out/hello -p 127.0.0.1:8080:8080
  virsh define out/hello/domain.xml && virsh start hello-http
  kiln export kubevirt hello-http --registry registry.example/demo -o hello-vm.yaml
  kubectl apply -f hello-vm.yaml
  kiln export disk hello-http -o hello.qcow2 --format qcow2
  kiln export disk hello-http -o hello.tar.gz --cloud gce
  kiln export firecracker hello-http -o out/fc
"""


@click.group(epilog=EPILOG)
def export() -> None:
    """Export an image: to libvirt, KubeVirt, a bootable disk or Firecracker.

    libvirt: a domain; KubeVirt: container images and a VirtualMachine; disk: a GPT disk that UEFI and
    BIOS firmware boot (and clouds import); Firecracker: a kernel, its drive and a config file."""


@export.command(
    epilog="\b\nExamples:\n  kiln export libvirt hello-http -o out/hello -p 127.0.0.1:8080:8080\n"
    "  kiln export libvirt hello-http -o out/hello -p 127.0.0.1:8080:8080 --firmware uefi --start"
)
@click.argument("image")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Directory for the domain.")
@click.option("-p", "--publish", "ports", multiple=True, help="Publish a guest port: [ip:]hostport:guestport.")
@click.option("--name", help="The domain's name (default: the image's).")
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="kvm: a KVM domain; tcg: QEMU's emulation; auto: KVM when it works here.",
)
@click.option(
    "--firmware",
    type=click.Choice(["uefi", "bios"]),
    help="Boot a disk (kiln export disk) through OVMF or SeaBIOS, instead of libvirt's direct kernel boot.",
)
@click.option("--define", is_flag=True, help="Also define the domain in libvirt (libvirt-python).")
@click.option("--start", is_flag=True, help="Also define and start it.")
@click.option("--connect", "uri", default="qemu:///system", show_default=True, help="libvirt's URI.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def libvirt(
    image: str,
    output: Path,
    ports: tuple[str, ...],
    name: str | None,
    accel: str,
    firmware: str | None,
    define: bool,
    start: bool,
    uri: str,
    as_json: bool,
) -> None:
    """Write a libvirt domain (q35, virtio-pci, direct kernel boot; or --firmware: a disk that OVMF or
    SeaBIOS boots) and the files it boots from."""
    from kiln.cli.kernel import ConsoleProgress
    from kiln.export import libvirt as lv
    from kiln.export import machine
    from kiln.store import Store
    from kiln.targets import accel as accelerator
    from kiln.targets.portmap import PortMap

    store = Store()
    maps = [PortMap.parse(p) for p in ports]
    img = store.image(image)
    vm = machine.prepare(store, img, ConsoleProgress())
    chosen, note = accelerator.choose(accel, vm.kernel)
    if note:
        ui.note(note)
    if firmware:
        xml = lv.export_firmware(store, img, output, name or vm.name, maps, chosen, firmware, ConsoleProgress())
    else:
        xml = lv.export(vm, output, name or vm.name, maps, chosen)
    defined = lv.define(xml, uri, start) if define or start else None
    if as_json:
        print_json(
            {
                "domain": str(xml),
                "name": name or vm.name,
                "accel": chosen,
                "kernel_cmdline": None if firmware else vm.cmdline,
                "firmware": firmware,
                "defined": defined is not None,
                "started": start,
            }
        )
        return
    ui.say(f"wrote {xml} ({'KVM' if chosen == 'kvm' else 'TCG'})")
    if defined:
        ui.say(f"{'defined and started' if start else 'defined'} {defined} in {uri}")
    else:
        ui.say(f"virsh define {xml} && virsh start {name or vm.name}")


@export.command(
    epilog="\b\nExample:\n  kiln export kubevirt hello-http --registry localhost:5000/demo -o hello-vm.yaml"
)
@click.argument("image")
@click.option("--registry", required=True, help="Where the container images go: HOST[:PORT][/REPOSITORY].")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The VirtualMachine (YAML).")
@click.option("--tag", help="The container images' tag (default: the image's).")
@click.option("--name", help="The VirtualMachine's name (default: the image's).")
@click.option("--json", "as_json", is_flag=True, help="Print the pushed references as JSON.")
def kubevirt(image: str, registry: str, output: Path, tag: str | None, name: str | None, as_json: bool) -> None:
    """Push a containerDisk and a kernel-boot image, and write a VirtualMachine that boots them."""
    from kiln.cli.kernel import ConsoleProgress
    from kiln.export import kubevirt as kv
    from kiln.export import machine
    from kiln.store import Store

    store = Store()
    img = store.image(image)
    vm = machine.prepare(store, img, ConsoleProgress(), guest_ip=kv.POD_IP, gateway=kv.POD_GATEWAY)
    with store.staging() as scratch:
        done = kv.export(vm, registry, tag or img.ref.tag, output, scratch, name or vm.name)
    if as_json:
        print_json(done)
        return
    ui.say(f"pushed {done['disk']}")
    ui.say(f"pushed {done['kernel']}")
    ui.say(f"wrote {done['manifest']}; kubectl apply -f {done['manifest']}")


DISK_EPILOG = """\b
Examples:
  kiln export disk hello-http -o hello.img
  kiln export disk hello-http -o hello.qcow2 --format qcow2 --platform qemu
  kiln export disk hello-http -o hello.tar.gz --cloud gce
  kiln export disk hello-http -o hello.vmdk --cloud aws --format vmdk
  kiln export disk hello-http -o hello.vhd --cloud azure --platform azure
  kiln export disk my-app -o my-app.img --volume-size /data=1G --size 2G
"""


@export.command(epilog=DISK_EPILOG)
@click.argument("image")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The disk file to write.")
@click.option("--format", "fmt", default="raw", show_default=True, help="raw, qcow2, vmdk or vhd.")
@click.option("--firmware", default="both", show_default=True, help="uefi, bios or both.")
@click.option(
    "--platform",
    default="generic",
    show_default=True,
    help="qemu, gce, aws, azure, vmware, virtualbox, or generic (every one's drivers).",
)
@click.option("--cloud", help="Package as gce (disk.raw in a .tar.gz), aws (raw or vmdk) or azure (fixed VHD).")
@click.option("--volume-size", "volume_sizes", multiple=True, help="A declared volume's partition: PATH=SIZE (64M).")
@click.option("--size", "total", help="The whole disk's size (default: what it holds), e.g. 2G.")
@click.option("--force", is_flag=True, help="Replace the output if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def disk(
    image: str,
    output: Path,
    fmt: str,
    firmware: str,
    platform: str,
    cloud: str | None,
    volume_sizes: tuple[str, ...],
    total: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write a GPT disk that UEFI and BIOS firmware boot: the kernel on an EFI system partition, the
    image's root and its verity tree as read-only partitions, the network by DHCP."""
    from kiln.cli.kernel import ConsoleProgress
    from kiln.errors import UsageError
    from kiln.export import disk as exporter
    from kiln.store import Store
    from kiln.units import parse_size

    sizes = {}
    try:
        for item in volume_sizes:
            path, sep, value = item.rpartition("=")
            if not sep or not path:
                raise ValueError(f"--volume-size takes PATH=SIZE, not {item!r}")
            sizes[path] = parse_size(value, f"--volume-size {path}")
        whole = parse_size(total, "--size") if total else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    store = Store()
    done = exporter.export(
        store,
        store.image(image),
        output,
        platform=platform,
        firmware=firmware,
        fmt=fmt,
        cloud=cloud,
        force=force,
        progress=ConsoleProgress(),
        sizes=sizes,
        size=whole,
    )
    if as_json:
        print_json(done)
        return
    mib = 1 << 20
    ui.say(
        f"wrote {output} ({done['format']}, {firmware} firmware, platform {platform}; "
        f"{int(done['allocated']) / mib:.1f} MiB allocated of {int(done['apparent']) / mib:.1f} MiB)"  # type: ignore[call-overload]
    )


@export.command(
    epilog="\b\nExample:\n  kiln export firecracker hello-http -o out/fc\n"
    "  firecracker --no-api --config-file out/fc/config.json"
)
@click.argument("image")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Directory for the files.")
@click.option("--guest-ip", default="172.16.0.2/30", show_default=True, help="eth0's address (IP/PREFIX).")
@click.option("--gateway", default="172.16.0.1", show_default=True, help="eth0's gateway: the TAP device's address.")
@click.option("--tap", default="tap0", show_default=True, help="The host's TAP device for eth0.")
@click.option("--json", "as_json", is_flag=True, help="Print the config as JSON.")
def firecracker(image: str, output: Path, guest_ip: str, gateway: str, tap: str, as_json: bool) -> None:
    """Write what Firecracker boots: the uncompressed kernel, the root drive (with its verity tree) and a
    --config-file JSON, validated against Firecracker's API specification. Firecracker needs KVM."""
    from kiln.export import firecracker as fc
    from kiln.store import Store

    store = Store()
    cfg = fc.export(store, store.image(image), output, guest_ip, gateway, tap)
    if as_json:
        print_json(cfg)
        return
    ui.say(f"wrote {output}/config.json; firecracker --no-api --config-file {output}/config.json")
