"""kiln export: a libvirt domain started by Debian's real libvirtd (through libvirt-python), and
KubeVirt's container images pulled by a real OCI client (skopeo) from docker-registry on loopback,
then booted through libvirt from the pulled files with the VirtualMachine's own kernel arguments."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kiln_testing.answers import wait_for_answer
from kiln_testing.command import EXAMPLES, ROOT, kiln
from kiln_testing.ports import free_port
from kiln_testing.registry import Registry

pytestmark = [pytest.mark.vm, pytest.mark.kernel]
SOCKET = Path("/run/libvirt/libvirt-sock")


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[str]:
    """Debian's libvirtd (and the virtlogd it logs QEMU through), started here and stopped after;
    one already running is used as it is."""
    started = []
    if (
        not SOCKET.exists()
        or subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode != 0
    ):
        for daemon in ("virtlogd", "libvirtd"):
            if shutil.which(daemon) is None and not Path(f"/usr/sbin/{daemon}").exists():
                pytest.fail(f"{daemon} is not installed (apt-get install libvirt-daemon-system)")
            proc = subprocess.Popen([f"/usr/sbin/{daemon}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append(proc)
        deadline = time.monotonic() + 30
        while subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail("libvirtd did not start")
            time.sleep(0.2)
    yield "qemu:///system"
    for proc in reversed(started):
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A directory QEMU can reach when libvirt runs it as libvirt-qemu (pytest's are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="kiln-export-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running(uri: str, xml: str) -> Iterator[object]:
    import libvirt

    conn = libvirt.open(uri)
    domain = conn.defineXML(xml)
    try:
        domain.create()
        yield domain
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)  # a firmware domain keeps a variable store
        conn.close()


def answers(port: int, console: Path, timeout: float = 180) -> str:
    """The domain's first 200 answer; its console if none comes."""

    def text() -> str:
        return f"through libvirt; console:\n{console.read_text(errors='replace') if console.exists() else '(none)'}"

    return wait_for_answer(port, timeout=timeout, status=200, poll=0.5, context=text).text


def test_libvirt_domain_serves(session_env: dict[str, str], libvirtd: str, shared_dir: Path) -> None:
    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    port = free_port()
    out = json.loads(
        kiln(
            "export",
            "libvirt",
            "hello-http",
            "-o",
            str(shared_dir),
            "-p",
            f"127.0.0.1:{port}:8080",
            "--accel",
            "tcg",
            "--name",
            f"kiln-test-{port}",
            "--json",
            env=session_env,
            check=True,
            timeout=1800,
        ).stdout
    )
    xml = Path(out["domain"]).read_text()
    assert '<type arch="x86_64" machine="q35">hvm</type>' in xml and "virtio-net-pci" in xml
    with running(libvirtd, xml):
        assert "Hello" in answers(port, shared_dir / "console.log")
    assert "hello-http listening on 0.0.0.0:8080" in (shared_dir / "console.log").read_text(errors="replace")


def test_kubevirt_images_pull_and_boot(
    session_env: dict[str, str], libvirtd: str, shared_dir: Path, tmp_path: Path
) -> None:
    from kiln.export import kubevirt, libvirt
    from kiln.export.machine import Machine
    from kiln.store import Store

    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    registry = Registry(tmp_path / "registry")
    try:
        manifest_path = tmp_path / "vm.yaml"
        kiln(
            "export",
            "kubevirt",
            "hello-http",
            "--registry",
            f"{registry.host}/demo",
            "-o",
            str(manifest_path),
            env=session_env,
            check=True,
            timeout=1800,
        )
        vm = yaml.safe_load(manifest_path.read_text())
        validate_against_reference(vm)
        spec = vm["spec"]["template"]["spec"]
        boot = spec["domain"]["firmware"]["kernelBoot"]
        disk_ref = spec["volumes"][0]["containerDisk"]["image"]
        kernel_ref = boot["container"]["image"]
        assert spec["domain"]["devices"]["interfaces"][0]["ports"] == [
            {"name": "p8080", "port": 8080, "protocol": "TCP"}
        ]
        pulled = {}
        for what, ref in (("disk", disk_ref), ("kernel", kernel_ref)):
            layout = tmp_path / f"oci-{what}"
            subprocess.run(
                ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:x"],
                check=True,
                capture_output=True,
            )
            pulled[what] = files_of(layout)
    finally:
        registry.stop()
    # the files are where KubeVirt looks for them, owned by its qemu user
    disk, disk_owner = pulled["disk"]["disk/root.img"]
    kernel, _ = pulled["kernel"][boot["container"]["kernelPath"].lstrip("/")]
    assert disk_owner == (107, 107)
    store = Store(Path(session_env["KILN_HOME"]) / "store")
    image = store.image("hello-http")
    assert disk == store.blob_path(image.manifest.rootfs.digest).read_bytes()  # the image's root, byte for byte
    # boot what was pulled, through libvirt, with the VirtualMachine's kernel arguments and KubeVirt's
    # masquerade addresses (the guest 10.0.2.2, its gateway 10.0.2.1)
    (shared_dir / "vmlinux").write_bytes(kernel)
    (shared_dir / "root.img").write_bytes(disk)
    port = free_port()
    machine = Machine(
        image,
        shared_dir / "vmlinux",
        shared_dir / "root.img",
        boot["kernelArgs"],
        int(spec["domain"]["memory"]["guest"].removesuffix("Mi")),
        (8080,),
        kubevirt.POD_GATEWAY,
        kubevirt.POD_IP,
    )
    from kiln.targets.portmap import PortMap

    xml = libvirt.domain_xml(
        machine,
        f"kiln-kv-{port}",
        shared_dir / "vmlinux",
        shared_dir / "root.img",
        shared_dir / "console.log",
        [PortMap(host_ip="127.0.0.1", host=port, guest=8080)],
        "tcg",
    )
    with running(libvirtd, xml):
        assert "Hello" in answers(port, shared_dir / "console.log")


def files_of(layout: Path) -> dict[str, tuple[bytes, tuple[int, int]]]:
    """Every regular file in the single image of an OCI layout: path -> (content, (uid, gid))."""
    index = json.loads((layout / "index.json").read_text())
    blob = layout / "blobs" / "sha256"
    manifest = json.loads((blob / index["manifests"][0]["digest"].split(":")[1]).read_text())
    config = json.loads((blob / manifest["config"]["digest"].split(":")[1]).read_text())
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert config["os"] == "linux" and config["rootfs"]["type"] == "layers"
    out = {}
    for desc in manifest["layers"]:
        data = gzip.decompress((blob / desc["digest"].split(":")[1]).read_bytes())
        with tarfile.open(fileobj=__import__("io").BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out[member.name] = (f.read(), (member.uid, member.gid))
    return out


def validate_against_reference(vm: dict[str, object]) -> None:
    """Against ../shared/reference's copy when it is there, else the project's own (the same file)."""
    import jsonschema

    shared = ROOT.parent / "shared" / "reference" / "kubevirt-openapi.json"
    path = shared if shared.exists() else ROOT / "kiln" / "export" / "schema" / "kubevirt-openapi.json"
    definitions = json.loads(path.read_text())["definitions"]
    jsonschema.validate(vm, {"definitions": definitions, "$ref": "#/definitions/v1.VirtualMachine"})
    assert os.path.getsize(path) > 100_000


def test_export_errors_are_one_line(session_env: dict[str, str], shared_dir: Path) -> None:
    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    down = kiln(
        "export",
        "libvirt",
        "hello-http",
        "-o",
        str(shared_dir),
        "--define",
        "--connect",
        "qemu+unix:///system?socket=/nonexistent/libvirt-sock",
        env=session_env,
        timeout=1800,
    )
    assert down.returncode != 0 and "Traceback" not in down.stderr
    errors = [line for line in down.stderr.splitlines() if line.startswith("kiln: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "kiln: error: libvirtd is not running or not reachable at qemu+unix"
    )
    refused = kiln(
        "export",
        "kubevirt",
        "hello-http",
        "--registry",
        f"127.0.0.1:{free_port()}/demo",
        "-o",
        str(shared_dir / "vm.yaml"),
        env=session_env,
        timeout=1800,
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("kiln: error:")]
    assert len(errors) == 1 and "is not reachable" in errors[0]
    assert not (shared_dir / "vm.yaml").exists()


@pytest.mark.parametrize("firmware", ["uefi", "bios"])
def test_libvirt_boots_the_disk_through_firmware(
    session_env: dict[str, str], libvirtd: str, shared_dir: Path, firmware: str
) -> None:
    """kiln export disk's disk as a libvirt domain with no kernel of libvirt's: OVMF or SeaBIOS boots it,
    and the guest takes its address from QEMU's DHCP server."""
    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    port = free_port()
    out = json.loads(
        kiln("export", "libvirt", "hello-http", "-o", str(shared_dir), "-p", f"127.0.0.1:{port}:8080",
             "--accel", "tcg", "--firmware", firmware, "--name", f"kiln-fw-{port}", "--json",
             env=session_env, check=True, timeout=1800).stdout
    )  # fmt: skip
    xml = Path(out["domain"]).read_text()
    assert "<kernel>" not in xml and (("OVMF_CODE" in xml) == (firmware == "uefi"))
    with running(libvirtd, xml):
        assert "Hello" in answers(port, shared_dir / "console.log", timeout=300)
    console = (shared_dir / "console.log").read_text(errors="replace")
    assert "hello-http listening on 0.0.0.0:8080" in console
    assert ("SYSLINUX" in console) == (firmware == "bios")
