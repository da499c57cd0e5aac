"""The QEMU command line, checked without booting (the plan, as in MirageOS's golden tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import UsageError
from kiln.targets.portmap import PortMap
from kiln.targets.qemu_command import (
    PcVmSpec,
    VmSpec,
    command,
    cpu_model,
    decode_exit,
    device_set,
    kernel_cmdline,
    pc_command,
)


def spec(**kw: object) -> VmSpec:
    base: dict[str, object] = {
        "kernel": Path("/k/vmlinux"),
        "rootfs": Path("/s/root"),
        "memory_mib": 48,
        "accel": "tcg",
    }
    base.update(kw)
    return VmSpec(**base)  # type: ignore[arg-type]


def opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_microvm_pvh_tcg() -> None:
    argv = command(spec(ports=(PortMap(host_ip="127.0.0.1", host=8080, guest=80),), qmp_socket=Path("/r/q.sock")))
    assert argv[0] == "qemu-system-x86_64"
    assert opt(argv, "-machine")[0].startswith("microvm,")
    assert opt(argv, "-accel") == ["tcg,tb-size=32"] and opt(argv, "-cpu") == ["max"] and opt(argv, "-m") == ["48M"]
    assert opt(argv, "-kernel") == ["/k/vmlinux"]
    assert "-no-reboot" in argv and "isa-debug-exit,iobase=0xf4,iosize=0x04" in opt(argv, "-device")
    assert opt(argv, "-drive") == ["id=root,file=/s/root,format=raw,if=none,readonly=on"]
    assert {"virtio-blk-device,drive=root", "virtio-rng-device", "virtio-net-device,netdev=net0"} <= set(
        opt(argv, "-device")
    )
    assert opt(argv, "-netdev") == ["user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80"]
    assert opt(argv, "-qmp") == ["unix:/r/q.sock,server=on,wait=off"]


def test_no_network_no_netdev() -> None:
    argv = command(spec(network=False))
    assert "-netdev" not in argv and "kiln.ip" not in kernel_cmdline(spec(network=False))


def test_kernel_cmdline() -> None:
    line = kernel_cmdline(spec(cmdline=("kiln.seed=ab",)))
    for part in (
        "console=ttyS0",
        "root=/dev/vda",
        "rootfstype=erofs",
        "ro",
        "init=/kiln/init",
        "panic=-1",
        "quiet",
        "kiln.ip=10.0.2.15/24",
        "kiln.gw=10.0.2.2",
        "kiln.seed=ab",
    ):
        assert part in line.split()
    assert "quiet" not in kernel_cmdline(spec(quiet=False)).split()


@pytest.mark.parametrize(
    ("accel", "vendor", "cpu"),
    [
        ("kvm", "AuthenticAMD", "host,-arch-capabilities"),
        ("kvm", "GenuineIntel", "host"),
        ("tcg", "AuthenticAMD", "max"),
    ],
)
def test_cpu_model(accel: str, vendor: str, cpu: str) -> None:
    assert cpu_model(accel, vendor) == cpu


@pytest.mark.parametrize(("rc", "status"), [(1, 0), (7, 3), (255, 127), (0, None), (2, None), (-9, None)])
def test_decode_exit(rc: int, status: int | None) -> None:
    assert decode_exit(rc) == status


def test_traditional_vm_is_a_pc_with_firmware_and_a_snapshot_disk() -> None:
    argv = pc_command(
        PcVmSpec(
            kernel=Path("/b/vmlinuz"),
            initrd=Path("/b/initrd.img"),
            disk=Path("/b/disk.img"),
            memory_mib=512,
            accel="tcg",
            ports=(PortMap(host_ip="127.0.0.1", host=9000, guest=8080),),
        )
    )
    assert opt(argv, "-machine") == ["q35"]
    # Same accelerator and CPU model as kiln's guests, but QEMU's own TCG defaults (no kiln tuning).
    assert opt(argv, "-accel") == ["tcg"] and opt(argv, "-cpu") == ["max"] and opt(argv, "-m") == ["512M"]
    assert opt(argv, "-kernel") == ["/b/vmlinuz"] and opt(argv, "-initrd") == ["/b/initrd.img"]
    assert opt(argv, "-append") == ["console=ttyS0 root=/dev/vda rw quiet"]
    assert opt(argv, "-drive") == ["file=/b/disk.img,format=raw,if=virtio,snapshot=on"]
    assert "virtio-net-pci,netdev=net0" in opt(argv, "-device")
    assert opt(argv, "-netdev") == ["user,id=net0,hostfwd=tcp:127.0.0.1:9000-:8080"]
    kvm = pc_command(PcVmSpec(Path("k"), Path("i"), Path("d"), 256, "kvm"))
    assert opt(kvm, "-accel") == ["kvm"] and opt(kvm, "-cpu")[0].startswith("host")


def test_control_channel_and_snapshot_ram() -> None:
    saving = command(spec(control_socket=Path("/r/c.sock"), ram_file=Path("/s/ram"), ram_shared=True))
    assert "socket,id=control,path=/r/c.sock,server=on,wait=off" in opt(saving, "-chardev")
    assert "isa-serial,chardev=control,iobase=0x2f8,irq=3" in opt(saving, "-device")
    assert opt(saving, "-object") == ["memory-backend-file,id=ram,size=48M,mem-path=/s/ram,share=on"]
    assert opt(saving, "-machine")[0].endswith(",memory-backend=ram") and "-incoming" not in saving
    clone = command(spec(control_socket=Path("/r/c.sock"), ram_file=Path("/s/ram"), incoming=True))
    assert opt(clone, "-object") == ["memory-backend-file,id=ram,size=48M,mem-path=/s/ram,share=off"]
    assert opt(clone, "-incoming") == ["defer"] and opt(clone, "-accel") == ["tcg,tb-size=16"]


def test_device_set_ignores_paths_and_ports() -> None:
    a = spec(control_socket=Path("/r/c.sock"), ports=(PortMap(host=8080, guest=80),))
    b = spec(control_socket=Path("/elsewhere/c.sock"), rootfs=Path("/other"), ram_file=Path("/s/ram"))
    assert device_set(a) == device_set(b) == "microvm,debug-exit,virtio-blk,virtio-rng,virtio-net,uart:control"
    assert device_set(spec(network=False, volumes=(("vol0", Path("/d")),))).endswith("9p:vol0")


def test_lan_and_environment() -> None:
    from kiln.targets.base import Lan

    back = Lan(socket=Path("/c/p/back.sock"), address="10.89.0.3/24", mac="52:54:00:89:00:03",
               hosts=(("db", "10.89.0.2"), ("web", "10.89.0.3"), ("database", "10.89.0.2")))  # fmt: skip
    front = Lan(socket=Path("/c/p/front.sock"), address="10.89.1.2/24", mac="52:54:00:89:01:02",
                hosts=(("proxy", "10.89.1.3"), ("web", "10.89.1.2")))  # fmt: skip
    s = spec(lans=(back, front), env=(("A", "1 2"), ("B", "x=y")))
    argv = command(s)
    netdevs = opt(argv, "-netdev")
    assert netdevs[0] == "user,id=net0" and netdevs[1:] == [
        "stream,id=lan0,server=off,addr.type=unix,addr.path=/c/p/back.sock",
        "stream,id=lan1,server=off,addr.type=unix,addr.path=/c/p/front.sock",
    ]  # the user network first: the guest names it eth0, the project's networks eth1 and eth2
    assert "virtio-net-device,netdev=lan1,mac=52:54:00:89:01:02" in opt(argv, "-device")
    params = dict(p.split("=", 1) for p in kernel_cmdline(s).split() if p.startswith("kiln."))
    assert (params["kiln.ip1"], params["kiln.ip2"]) == ("10.89.0.3/24", "10.89.1.2/24")
    assert bytes.fromhex(params["kiln.hosts"]).decode() == (
        "10.89.0.2\tdb\n10.89.0.3\tweb\n10.89.0.2\tdatabase\n10.89.1.3\tproxy\n10.89.1.2\tweb\n"
    )
    assert opt(command(spec(isolated=True, ports=(PortMap(host_ip="127.0.0.1", host=1, guest=2),))), "-netdev")[0] \
        == "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:1-:2"  # an internal network's: no way out  # fmt: skip
    assert bytes.fromhex(params["kiln.env"]).decode() == "A=1 2\nB=x=y\n"
    assert device_set(s) != device_set(spec())  # a snapshot without the second NIC does not fit


def test_secrets_are_a_read_only_share_and_the_command_line_names_them_only() -> None:
    """A compose service's secrets: their directory shared read-only, their names and targets on the kernel
    command line (kiln.secrets), never their content."""
    from kiln.guest.protocol import unhex_lines

    argv = command(spec(secrets=(Path("/h/secrets/db"), ("0 db-password -1 -1 400",))))
    assert "local,id=kiln-secrets,path=/h/secrets/db,security_model=none,readonly=on" in opt(argv, "-fsdev")
    assert "virtio-9p-device,fsdev=kiln-secrets,mount_tag=kiln-secrets" in opt(argv, "-device")
    word = next(w for w in kernel_cmdline(spec(secrets=(Path("/h"), ("0 db-password -1 -1 400",)))).split()
                if w.startswith("kiln.secrets="))  # fmt: skip
    assert unhex_lines(word.split("=", 1)[1]) == ["0 db-password -1 -1 400"]
    assert device_set(spec(network=False, secrets=(Path("/h"), ("x",)))).endswith("9p:kiln-secrets")
    assert "kiln.secrets" not in kernel_cmdline(spec())


def test_binds_are_shares_of_their_directories_named_on_the_command_line(tmp_path: Path) -> None:
    """A file bound over the image's goes through its directory's share, read-only when asked; the guest is told
    which file of it, and where (kiln.binds); the root is not touched."""
    from kiln.guest.protocol import unhex_lines
    from kiln.targets.base import BindMount
    from kiln.targets.qemu import bind_shares

    (tmp_path / "site").mkdir()
    (tmp_path / "nginx.conf").write_text("events {}\n")
    shares = bind_shares((BindMount(host=tmp_path / "nginx.conf", guest="/etc/nginx/nginx.conf", read_only=True),
                          BindMount(host=tmp_path / "site", guest="/srv/site")))  # fmt: skip
    argv = command(spec(binds=shares))
    assert opt(argv, "-fsdev")[:2] == [f"local,id=bind0,path={tmp_path},security_model=none,readonly=on",
                                        f"local,id=bind1,path={tmp_path / 'site'},security_model=none"]  # fmt: skip
    word = next(w for w in kernel_cmdline(spec(binds=shares)).split() if w.startswith("kiln.binds="))
    assert unhex_lines(word.split("=", 1)[1]) == ["bind0 /etc/nginx/nginx.conf nginx.conf 1", "bind1 /srv/site - 0"]
    with pytest.raises(UsageError, match="is neither a file nor a directory"):
        bind_shares((BindMount(host=tmp_path / "gone", guest="/x"),))
