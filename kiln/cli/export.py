"""`kiln export libvirt|kubevirt IMAGE`: hand an image to libvirt or KubeVirt (kiln.export)."""

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
"""


@click.group(epilog=EPILOG)
def export() -> None:
    """Export an image to libvirt (a domain) or KubeVirt (container images and a VirtualMachine)."""


@export.command(epilog="\b\nExample:\n  kiln export libvirt hello-http -o out/hello -p 127.0.0.1:8080:8080")
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
    define: bool,
    start: bool,
    uri: str,
    as_json: bool,
) -> None:
    """Write a libvirt domain (q35, virtio-pci, direct kernel boot) and the files it boots from."""
    from kiln.cli.kernel import kernel_progress
    from kiln.export import libvirt as lv
    from kiln.export import machine
    from kiln.store import Store
    from kiln.targets import accel as accelerator
    from kiln.targets.portmap import PortMap

    store = Store()
    maps = [PortMap.parse(p) for p in ports]
    vm = machine.prepare(store, store.image(image), kernel_progress)
    chosen, note = accelerator.choose(accel, vm.kernel)
    if note:
        ui.note(note)
    xml = lv.export(vm, output, name or vm.name, maps, chosen)
    defined = lv.define(xml, uri, start) if define or start else None
    if as_json:
        print_json(
            {
                "domain": str(xml),
                "name": name or vm.name,
                "accel": chosen,
                "kernel_cmdline": vm.cmdline,
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
    from kiln.cli.kernel import kernel_progress
    from kiln.export import kubevirt as kv
    from kiln.export import machine
    from kiln.store import Store

    store = Store()
    img = store.image(image)
    vm = machine.prepare(store, img, kernel_progress, guest_ip=kv.POD_IP, gateway=kv.POD_GATEWAY)
    with store.staging() as scratch:
        done = kv.export(vm, registry, tag or img.ref.tag, output, scratch, name or vm.name)
    if as_json:
        print_json(done)
        return
    ui.say(f"pushed {done['disk']}")
    ui.say(f"pushed {done['kernel']}")
    ui.say(f"wrote {done['manifest']}; kubectl apply -f {done['manifest']}")
