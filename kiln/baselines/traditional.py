"""The stacks kiln is measured against, built from Debian's packages and cached.

A *traditional VM* of an app: a Debian bookworm root file system made with
debootstrap (minbase + systemd + python3 + Debian's cloud kernel and its
initramfs), the app copied to /opt/<name> and run by a systemd unit,
systemd-networkd asking slirp's DHCP for an address, packed into an ext4
disk image with `mkfs.ext4 -d` (no loop device, no mount). The kernel and the
initramfs are taken out of the tree's /boot so QEMU can boot them directly.

    $KILN_HOME/cache/baselines/vm-<key>/{vmlinuz,initrd.img,disk.img,done}

The key hashes the tree's name, the app's files, the unit and any extra files,
so a changed app gets a new disk and an unchanged one is never rebuilt. An app
that needs more of Debian (redis-server for the compose baseline) gets a tree
with those packages too, cached beside the plain one.

The *container* runs the same debootstrapped tree under bubblewrap.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln import _proc, atomic
from kiln.baselines import debian
from kiln.errors import KilnError
from kiln.paths import home_dir

RECIPE = "1"
PACKAGES = ("systemd", "systemd-sysv", "udev", "python3", "linux-image-cloud-amd64", "initramfs-tools")

NETWORK = """\
[Match]
Name=en*

[Network]
DHCP=ipv4
"""


@dataclass(frozen=True)
class VmImage:
    kernel: Path
    initrd: Path
    disk: Path
    tree: Path  # the debootstrapped tree the disk was made from (without the app)

    def size(self) -> int:
        """Bytes on the host's disk: kernel + initramfs + the allocated blocks of the disk image."""
        return self.kernel.stat().st_size + self.initrd.stat().st_size + self.disk.stat().st_blocks * 512


def tree(packages: tuple[str, ...] = ()) -> Path:
    """The Debian tree shared by the traditional VM and the container (minutes to build, once), with
    `packages` beside the usual ones if asked (another tree, cached too)."""
    return debian.rootfs("minbase", PACKAGES + packages)


def unit(name: str, argv: Sequence[str], environment: Mapping[str, str] | None = None) -> str:
    env = "".join(f"Environment={key}={value}\n" for key, value in sorted((environment or {}).items()))
    return (
        f"[Unit]\nDescription={name}\nAfter=network.target\n\n"
        f"[Service]\nExecStart={' '.join(argv)}\n{env}Restart=on-failure\nDynamicUser=yes\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def lan_network(mac: str, address: str) -> str:
    """A systemd-networkd file giving the NIC with `mac` a static `address` (IP/PREFIX): a second NIC
    on a private segment, as a compose project's. It sorts before the DHCP file, so it wins."""
    return f"[Match]\nMACAddress={mac}\n\n[Network]\nAddress={address}\n"


def _key(name: str, app_dir: Path, unit_text: str, root: Path, extra: Mapping[str, str], disable: Sequence[str]) -> str:
    h = hashlib.sha256(f"{RECIPE}|{root}|{name}|{unit_text}|{sorted(extra.items())}|{sorted(disable)}".encode())
    for f in sorted(p for p in app_dir.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(app_dir)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _boot_file(boot: Path, prefix: str) -> Path:
    found = sorted(boot.glob(f"{prefix}-*"))
    if not found:
        raise KilnError(f"no {prefix}-* in {boot}: is linux-image-cloud-amd64 installed in the baseline tree?")
    return found[-1]


def _enable(etc: Path, target: str, unit_path: str) -> None:
    wants = etc / "systemd" / "system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / Path(unit_path).name
    if not link.exists():
        link.symlink_to(unit_path)


def vm_image(
    name: str,
    app_dir: Path,
    argv: Sequence[str] | None,
    *,
    environment: Mapping[str, str] | None = None,
    packages: tuple[str, ...] = (),
    files: Mapping[str, str] | None = None,
    disable: Sequence[str] = (),
) -> VmImage:
    """A bootable traditional VM running `argv` (paths inside the guest) as the systemd service `name`
    (None: no service of its own; a package's services run as Debian enables them). The app directory is
    copied to /opt/<name>; `packages` are installed too, `files` (guest path -> text) written, and the units
    in `disable` (a package's own service) not started."""
    root = tree(packages)
    unit_text = "" if argv is None else unit(name, argv, environment)
    extra = dict(files or {})
    final = home_dir("cache", "baselines") / f"vm-{_key(name, app_dir, unit_text, root, extra, disable)}"
    image = VmImage(final / "vmlinuz", final / "initrd.img", final / "disk.img", root)
    if (final / "done").is_file():
        return image
    if final.exists():
        shutil.rmtree(final)  # an interrupted earlier attempt
    mkfs = _proc.require("mkfs.ext4")
    with atomic.staging_dir(final) as tmp:
        staged = tmp / "root"
        _proc.run(["cp", "-a", root, staged], what="copying the Debian tree")
        shutil.copytree(app_dir, staged / "opt" / name, dirs_exist_ok=True)
        etc = staged / "etc"
        if unit_text:
            unit_path = etc / "systemd" / "system" / f"{name}.service"
            unit_path.unlink(missing_ok=True)  # a package's alias of that name would carry the text to its unit
            unit_path.write_text(unit_text)
            _enable(etc, "multi-user.target", f"/etc/systemd/system/{name}.service")
        (etc / "systemd" / "network" / "20-wired.network").write_text(NETWORK)
        _enable(etc, "multi-user.target", "/lib/systemd/system/systemd-networkd.service")
        _enable(etc, "sockets.target", "/lib/systemd/system/systemd-networkd.socket")
        (etc / "hostname").write_text(f"{name}\n")
        (etc / "fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
        for guest_path, text in extra.items():
            target = staged / guest_path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            target.write_text(text)
        for unit_name in disable:
            for link in (etc / "systemd" / "system").glob(f"*.wants/{unit_name}"):
                link.unlink()
        shutil.copy2(_boot_file(staged / "boot", "vmlinuz"), tmp / "vmlinuz")
        shutil.copy2(_boot_file(staged / "boot", "initrd.img"), tmp / "initrd.img")
        used = sum(p.lstat().st_size for p in staged.rglob("*"))
        size_mib = int(used * 1.3 / 2**20) + 128  # room for the journal, inodes and what the system writes at boot
        _proc.run(
            [mkfs, "-q", "-F", "-L", "root", "-d", staged, tmp / "disk.img", f"{size_mib}M"],
            what="mkfs.ext4 of the traditional VM's disk",
        )
        shutil.rmtree(staged)
        (tmp / "done").write_text("ok\n")
    return image
