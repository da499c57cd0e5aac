"""The long operations the fault harness kills, the states they start from, and their own checks.

build         kiln build examples/hello-http (init compiled, the root staged, EROFS, verity, blobs, tag)
kernel build  kiln kernel build for the config the shared object tree holds (a cache of its own)
pull          kiln pull from docker-registry on loopback
push          kiln push to it (a new repository each time, so every blob goes up)
snapshot      kiln snapshot hello-http (a boot under QEMU, the VM saved, blobs, the index)
compose up    kiln compose up -d of two services (supervisors, a switch, state records); then down
export        kiln export libvirt hello-http
export disk   kiln export disk hello-http (a kernel from the cache, the ESP, the GPT, the partitions)
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from kiln_testing.command import EXAMPLES
from kiln_testing.faults.harness import Home, Operation, processes_of
from kiln_testing.ports import free_ports

HELLO = EXAMPLES / "hello-http"


def template(kind: str, root: Path, shared_kernel: Path, registry: str) -> Home:
    """A prepared home every trial of an operation copies: "empty" (the kernels only), "image" (hello-http
    built), "kernel" (a kernel cache of its own beside the shared source and object tree), "pushed" (empty,
    with hello-http in the registry for pull)."""
    home = Home(root, shared_kernel, private_kernel_builds=kind == "kernel").make()
    if kind in ("image", "pushed"):
        _ok(home.kiln("build", str(HELLO)))
    if kind == "pushed":
        _ok(home.kiln("tag", "hello-http", f"{registry}/faults/pull:1"))
        _ok(home.kiln("push", f"{registry}/faults/pull:1"))
        shutil.rmtree(home.store)  # the trials pull it into an empty store
    return home


def _ok(proc: object) -> None:
    if proc.returncode != 0:  # type: ignore[attr-defined]
        raise AssertionError(f"preparing a fault template failed: {proc.stderr}")  # type: ignore[attr-defined]


def tree_features(shared_kernel: Path) -> tuple[str, ...] | None:
    """The features of the config the shared object tree was last built for (so its make is short)."""
    for work in sorted((shared_kernel / "work").glob("*/.config")):
        for build in sorted((shared_kernel / "builds").glob("*/config")):
            if build.read_bytes() == work.read_bytes():
                return tuple(json.loads((build.parent / "meta.json").read_text())["features"])
    return None


# ---- checks of what a killed run left ---------------------------------------------------------
def kernel_cache_whole(home: Home) -> list[str]:
    """Every kernel in the cache is whole (its meta.json last, and what it says is there)."""
    problems = []
    for build in sorted((home.home / "kernel" / "builds").iterdir()):
        if build.name.startswith("."):
            continue  # a staging directory (kiln.atomic), swept by the next build
        meta = build / "meta.json"
        if not meta.is_file():
            problems.append(f"kernel {build.name} has no meta.json")
            continue
        info = json.loads(meta.read_text())
        xz = build / "vmlinux.xz"
        if not xz.is_file() or xz.stat().st_size != info["vmlinux_xz_size"]:
            problems.append(f"kernel {build.name}: vmlinux.xz is not what meta.json says")
    return problems


def ps_truthful(home: Home, settle: float = 90) -> list[str]:
    """`kiln ps -a` says running for every instance whose VM runs, and for no other. An instance whose
    supervisor was starting its VM when kiln was killed goes on starting (supervisors outlive the command
    that started them): it is given `settle` seconds to leave "starting" before the VMs are counted."""
    import time

    deadline = time.monotonic() + settle
    while True:
        proc = home.kiln("ps", "-a", "--json")
        if proc.returncode != 0:
            return [f"kiln ps failed: {proc.stderr.strip()}"]
        rows = json.loads(proc.stdout)
        if not any(r["state"] == "starting" for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems = [f"kiln ps still says {r['name']} is starting after {settle:.0f} s" for r in rows
                if r["state"] == "starting"]  # fmt: skip
    running = {r["pid"] for r in rows if r["state"] == "running"}
    live = {pid for pid, name in processes_of(home) if name.startswith("qemu-system")}
    problems += [f"kiln ps says {r['name']} runs, but its VM is gone" for r in rows
                 if r["state"] == "running" and r["pid"] not in live]  # fmt: skip
    problems += [f"a VM (pid {pid}) runs that kiln ps does not show running" for pid in live - running]
    return problems


def export_whole(home: Home) -> list[str]:
    """No export, or a whole one: domain.xml parses and names files that are there."""
    out = home.work / "out" / "hello"
    domain = out / "domain.xml"
    if not domain.exists():
        return []
    try:
        tree = ET.parse(domain)
    except ET.ParseError as err:
        return [f"out/hello/domain.xml does not parse: {err}"]
    files = [e.text for e in tree.iter("kernel")] + [e.get("file") for e in tree.iter("source") if e.get("file")]
    return [f"domain.xml names {f}, which is not there" for f in files if f and not Path(f).exists()]


def disk_whole(home: Home) -> list[str]:
    """No disk, or a whole one: its GPT reads, with the ESP, the root and the verity partition."""
    import subprocess

    disk = home.work / "out" / "hello.img"
    if not disk.exists():
        return []
    got = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True)
    if got.returncode != 0:
        return [f"out/hello.img has no partition table sfdisk reads: {got.stderr.strip()[:200]}"]
    names = [p.get("name") for p in json.loads(got.stdout)["partitiontable"]["partitions"]]
    return [] if names == ["esp", "root", "root-verity"] else [f"out/hello.img holds partitions {names}"]


def _compose_file(home: Home) -> None:
    a, b = free_ports(2)
    (home.work / "compose.yaml").write_text(
        "services:\n"
        f"  web:\n    image: hello-http\n    ports: ['127.0.0.1:{a}:8080']\n"
        f"  api:\n    image: hello-http\n    ports: ['127.0.0.1:{b}:8080']\n"
    )


def _tag_for_push(registry: str) -> object:
    def each(home: Home) -> None:
        _ok(home.kiln("tag", "hello-http", f"{registry}/faults/push-{home.run_id}:1"))

    return each


def operations(registry: str, shared_kernel: Path) -> list[Operation]:
    features = tree_features(shared_kernel)
    kernel_args = ("kernel", "build", "--features", ",".join(features)) if features else ("kernel", "build")
    return [
        Operation("build", ("build", "hello-http"),
                  each=lambda h: shutil.copytree(HELLO, h.work / "hello-http", dirs_exist_ok=True)),
        Operation("kernel build", kernel_args, template="kernel", verify=kernel_cache_whole, timeout=3600),
        Operation("pull", ("pull", f"{registry}/faults/pull:1"), template="pushed"),
        Operation("push", lambda h: ("push", f"{registry}/faults/push-{h.run_id}:1"), template="image",
                  each=_tag_for_push(registry)),  # type: ignore[arg-type]
        Operation("snapshot", ("snapshot", "hello-http"), template="image"),
        Operation("compose up", ("compose", "up", "-d"), template="image", each=_compose_file,
                  finish=("compose", "down"), verify=ps_truthful),
        Operation("export", ("export", "libvirt", "hello-http", "-o", "out/hello"), template="image",
                  verify=export_whole),
        Operation("export disk", ("export", "disk", "hello-http", "-o", "out/hello.img", "--force"),
                  template="image", verify=disk_whole),
    ]  # fmt: skip
