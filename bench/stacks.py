"""The stacks that serve hello-http in the comparison, each able to say how to
start it on a port (and with how much guest RAM) and what its image holds.

    kiln-qemu     kiln's image under QEMU microvm (kiln run)
    kiln-unix     the same image as a sandboxed host process (kiln run --target unix)
    debian-vm     a traditional VM: Debian + systemd + python3, Debian's cloud kernel, same QEMU and accelerator
    container     the same Debian tree under bubblewrap, the app as the command
    plain         python3.11 app.py on the host
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kiln import _proc
from kiln.baselines import traditional
from kiln.image import unpack
from kiln.store import Store
from kiln.surface import scan_tree
from kiln.targets.portmap import PortMap
from kiln.targets.qemu_command import PcVmSpec, pc_command
from kiln_testing.command import KILN, ROOT

APP = ROOT / "examples" / "hello-http"
IMAGE = "hello-http"
GUEST_PORT = 8080
HOST_PYTHON = "/usr/bin/python3.11"


@dataclass(frozen=True)
class ImageFacts:
    size: int | None  # bytes on the host's disk
    files: int | None
    executables: int | None
    shell: bool | None
    detail: str = ""

    @classmethod
    def of_tree(cls, root: Path, size: int, detail: str, extra_files: int = 0) -> ImageFacts:
        files, executables, shells, _ = scan_tree(root)
        return cls(size, files + extra_files, len(executables), bool(shells), detail)


def app_file_count() -> int:
    """The app's files, which the Debian stacks add to their tree."""
    return sum(1 for p in APP.rglob("*") if p.is_file())


def allocated(root: Path) -> int:
    """Bytes a tree takes on disk (allocated blocks, hard links once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def kiln_json(env: dict[str, str], *args: str) -> object:
    out = subprocess.run([KILN, *args, "--json"], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kiln {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout)


@functools.cache
def kiln_image(home: str) -> tuple[ImageFacts, int]:
    """Build hello-http in the store at `home` with the CLI (as a user would), then count what the
    image holds; (facts, the image's default guest RAM in MiB). Once per store: both kiln stacks share it."""
    env = {**os.environ, "KILN_HOME": home}
    built = kiln_json(env, "build", str(APP))
    assert isinstance(built, dict)
    store = Store(Path(home) / "store")
    image = store.image(IMAGE)
    files, executables, shells, _ = scan_tree(unpack.tree(store, image))
    facts = ImageFacts(
        int(built["size"]),
        files,
        len(executables),
        bool(shells),
        f"kernel {int(built['kernel_size']) / 1e6:.2f} MB xz + root {int(built['rootfs_size']) / 1e6:.2f} MB "
        f"EROFS/lz4hc; executables: {', '.join(executables)}",
    )
    return facts, image.manifest.entry.memory_mib


class Stack(ABC):
    key: ClassVar[str]
    title: ClassVar[str]
    holder: ClassVar[str] = ""  # name of the process that holds the instance ("" = the started command)
    memory_range: ClassVar[tuple[int, int] | None] = None  # MiB, for the bisection (VMs only)
    memory_note: ClassVar[str] = "n/a (no guest RAM)"  # what the table says when there is no bisection
    prepare_note: ClassVar[str] = ""

    def __init__(self, env: dict[str, str], accel: str) -> None:
        self.env = env
        self.accel = accel

    def prepare(self) -> None:  # noqa: B027 (most stacks need nothing built)
        """Build what the stack needs (cached where it is costly)."""

    @abstractmethod
    def argv(self, port: int, memory_mib: int | None = None) -> list[str]: ...

    @abstractmethod
    def facts(self) -> ImageFacts: ...

    def default_memory(self) -> int | None:
        return None


class KilnQemu(Stack):
    key = "kiln-qemu"
    title = "kiln (qemu)"
    holder = "qemu-system"
    memory_range = (16, 128)

    def prepare(self) -> None:
        kiln_image(self.env["KILN_HOME"])

    def argv(self, port: int, memory_mib: int | None = None) -> list[str]:
        mem = ["-m", f"{memory_mib}M"] if memory_mib else []
        # --cold: a boot, even when the store holds the snapshot the restored stack made
        return [KILN, "run", "--cold", "--accel", self.accel, *mem, "-p", f"127.0.0.1:{port}:{GUEST_PORT}", IMAGE]

    def facts(self) -> ImageFacts:
        return kiln_image(self.env["KILN_HOME"])[0]

    def default_memory(self) -> int | None:
        return kiln_image(self.env["KILN_HOME"])[1]


class KilnRestored(KilnQemu):
    """kiln (qemu) restored from a snapshot made once the app listens (`kiln snapshot`)."""

    key = "kiln-restored"
    title = "kiln (qemu, restored)"
    memory_range = None  # a snapshot has the memory it was made with
    memory_note = "the snapshot's (the image's default)"
    prepare_note = " (kiln snapshot: one boot, then saved)"

    def prepare(self) -> None:
        kiln_image(self.env["KILN_HOME"])
        made = subprocess.run([KILN, "images", "--json"], env=self.env, capture_output=True, text=True, check=True)
        if '"after": "ready"' not in made.stdout:
            subprocess.run([KILN, "snapshot", "--accel", self.accel, IMAGE], env=self.env, capture_output=True,
                           check=True)  # fmt: skip

    def argv(self, port: int, memory_mib: int | None = None) -> list[str]:  # noqa: ARG002 (the snapshot's)
        return [KILN, "run", "--snapshot=require", "--accel", self.accel, "-p", f"127.0.0.1:{port}:{GUEST_PORT}", IMAGE]


class KilnUnix(KilnQemu):
    key = "kiln-unix"
    title = "kiln (unix)"
    holder = "unshare"
    memory_range = None

    def argv(self, port: int, memory_mib: int | None = None) -> list[str]:  # noqa: ARG002 (no guest RAM)
        return [KILN, "run", "--target", "unix", "-p", f"127.0.0.1:{port}:{GUEST_PORT}", IMAGE]

    def default_memory(self) -> int | None:
        return None


class DebianVm(Stack):
    key = "debian-vm"
    title = "traditional VM (Debian)"
    memory_range = (64, 1024)
    prepare_note = " (the first time: debootstrap with systemd and Debian's cloud kernel, ~1 min; then cached)"
    DEFAULT_MEMORY = 512  # a small cloud instance
    _image: traditional.VmImage | None = None

    def prepare(self) -> None:
        if DebianVm._image is None:
            DebianVm._image = traditional.vm_image(
                IMAGE, APP, ["/usr/bin/python3", f"/opt/{IMAGE}/app.py", "--port", str(GUEST_PORT)]
            )

    @property
    def image(self) -> traditional.VmImage:
        self.prepare()
        assert self._image is not None
        return self._image

    def argv(self, port: int, memory_mib: int | None = None) -> list[str]:
        img = self.image
        spec = PcVmSpec(
            kernel=img.kernel,
            initrd=img.initrd,
            disk=img.disk,
            memory_mib=memory_mib or self.DEFAULT_MEMORY,
            accel=self.accel,
            ports=(PortMap(host_ip="127.0.0.1", host=port, guest=GUEST_PORT),),
        )
        return pc_command(spec)

    def facts(self) -> ImageFacts:
        img = self.image
        return ImageFacts.of_tree(
            img.tree,
            img.size(),
            f"ext4 disk {img.disk.stat().st_blocks * 512 / 1e6:.0f} MB allocated + vmlinuz "
            f"{img.kernel.stat().st_size / 1e6:.1f} MB + initrd {img.initrd.stat().st_size / 1e6:.1f} MB",
            extra_files=app_file_count() + 4,  # the app, its unit, the network file, the enablement links
        )

    def default_memory(self) -> int | None:
        return self.DEFAULT_MEMORY


class Container(Stack):
    key = "container"
    title = "container (bubblewrap)"
    holder = "bwrap"
    prepare_note = " (the traditional VM's Debian tree, cached)"

    def prepare(self) -> None:
        self.bwrap = _proc.require("bwrap")
        self.tree = traditional.tree()

    def argv(self, port: int, memory_mib: int | None = None) -> list[str]:  # noqa: ARG002 (no guest RAM)
        if not hasattr(self, "tree"):
            self.prepare()
        return [
            self.bwrap,
            "--ro-bind", str(self.tree), "/",
            "--tmpfs", "/opt",
            "--ro-bind", str(APP), f"/opt/{IMAGE}",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--unshare-all",
            "--share-net",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin",
            "/usr/bin/python3", f"/opt/{IMAGE}/app.py", "--port", str(port), "--bind", "127.0.0.1",
        ]  # fmt: skip

    def facts(self) -> ImageFacts:
        if not hasattr(self, "tree"):
            self.prepare()
        return ImageFacts.of_tree(
            self.tree, allocated(self.tree), "the Debian tree of the traditional VM", extra_files=app_file_count()
        )


class Plain(Stack):
    key = "plain"
    title = "plain process"

    def argv(self, port: int, memory_mib: int | None = None) -> list[str]:  # noqa: ARG002 (no guest RAM)
        return [HOST_PYTHON, str(APP / "app.py"), "--port", str(port), "--bind", "127.0.0.1"]

    def facts(self) -> ImageFacts:
        return ImageFacts(None, None, None, None, "runs from the host's installed system")


STACKS: dict[str, type[Stack]] = {s.key: s for s in (KilnQemu, KilnRestored, KilnUnix, DebianVm, Container, Plain)}
BASELINE = "debian-vm"  # ratios are against it when it is measured
