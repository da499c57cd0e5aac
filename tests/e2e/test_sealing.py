"""Sealing, booted for real: the syscall policy, the read-only root, volumes,
the per-app kernel, dm-verity and the digest check, the attack-surface report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kiln_testing.command import FIXTURES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port

TARGETS = ["qemu", "unix"]


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_policy_refuses_and_the_app_keeps_serving(
    target: str, sealed_image: str, session_env: dict[str, str], instances: list[Instance], tmp_path: Path
) -> None:
    port = free_port()
    volume = tmp_path / "data"
    volume.mkdir()
    inst = Instance(sealed_image, session_env, target, {port: 8080}, extra=("-v", f"{volume}:/data"))
    instances.append(inst)
    assert inst.wait_http(port, "/").text == "alive"
    assert inst.wait_http(port, "/fork").text == "EPERM"
    assert inst.wait_http(port, "/shell").text == "EPERM"
    assert inst.wait_http(port, "/exec").text == "EPERM"
    for path in ("/kiln-was-here", "/app/app.pyc", "/usr/bin/python3.11"):
        assert inst.wait_http(port, f"/write?path={path}").text == "EROFS", path
    assert inst.wait_http(port, "/write?path=/tmp/scratch").text == "done"
    assert inst.wait_http(port, "/read?path=/tmp/scratch").text == "written by the guest\n"
    assert inst.wait_http(port, "/write?path=/data/from-guest").text == "done"
    assert (volume / "from-guest").read_text() == "written by the guest\n"
    (volume / "from-host").write_text("hello from the host\n")
    assert inst.wait_http(port, "/read?path=/data/from-host").text == "hello from the host\n"
    assert inst.wait_http(port, "/").text == "alive"  # still serving after every refusal
    assert inst.stop() == 130
    out = inst.output
    assert "kiln-init: refused clone (a new process) by pid" in out
    assert "kiln-init: refused vfork by pid" in out or out.count("refused clone (a new process)") >= 2
    assert "kiln-init: refused execve by pid" in out


@pytest.mark.vm
def test_volume_without_host_directory_is_temporary(
    sealed_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(sealed_image, session_env, "qemu", {port: 8080})
    instances.append(inst)
    assert inst.wait_http(port, "/write?path=/data/x").text == "done"
    inst.stop()
    assert "volume /data: no host directory given, using a temporary one" in inst.output


def test_unknown_volume_is_refused(sealed_image: str, session_env: dict[str, str], tmp_path: Path) -> None:
    proc = kiln("run", "-v", f"{tmp_path}:/elsewhere", sealed_image, env=session_env)
    assert proc.returncode == 2 and "the image declares no volume at /elsewhere (it declares: /data)" in proc.stderr


@pytest.mark.vm
def test_app_without_network_gets_no_network_kernel(session_env: dict[str, str], hello_image: str) -> None:
    kiln("build", str(FIXTURES / "exit3"), env=session_env, check=True)
    quiet = json.loads(kiln("inspect", "--json", "exit3", env=session_env, check=True).stdout)["manifest"]
    loud = json.loads(kiln("inspect", "--json", hello_image, env=session_env, check=True).stdout)["manifest"]
    quiet_opts, loud_opts = set(quiet["kernel"]["options"]), set(loud["kernel"]["options"])
    for option in ("CONFIG_INET", "CONFIG_UNIX", "CONFIG_NETDEVICES", "CONFIG_VIRTIO_NET"):
        assert option in loud_opts and option not in quiet_opts, option
    # Linux 6.1 builds the seccomp filter engine only with the networking core:
    # the core stays, with no protocol family and no device.
    assert "CONFIG_SECCOMP_FILTER" in quiet_opts and "CONFIG_NET" in quiet_opts
    assert "virtio-net" not in quiet["kernel"]["features"] and quiet["kernel"]["reasons"] == {
        "epoll": "selectors uses epoll"
    }
    assert "CONFIG_9P_FS" not in quiet_opts and "CONFIG_9P_FS" not in loud_opts  # no volumes, no 9p
    assert quiet["kernel"]["config_hash"] != loud["kernel"]["config_hash"]
    argv = kiln("run", "--dry-run", "exit3", env=session_env, check=True).stdout
    assert "-netdev" not in argv and "kiln.ip=" not in argv
    proc = kiln("run", "exit3", env=session_env, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr


def _flip(path: Path, offset: int) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_tampered_root_is_refused_before_boot(target: str, env: dict[str, str]) -> None:
    kiln("build", str(FIXTURES / "exit3"), env=env, check=True)
    manifest = json.loads(kiln("inspect", "--json", "exit3", env=env, check=True).stdout)["manifest"]
    blob = Path(env["KILN_HOME"]) / "store" / "blobs" / "sha256" / manifest["rootfs"]["digest"].split(":")[1]
    _flip(blob, blob.stat().st_size // 2)
    proc = kiln("run", "--target", target, "exit3", env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "refusing to run: the root file system of image exit3:latest is damaged" in proc.stderr
    assert "exit3: leaving" not in proc.stdout


@pytest.mark.vm
def test_guest_refuses_a_block_that_fails_verity(env: dict[str, str]) -> None:
    kiln("build", str(FIXTURES / "exit3"), env=env, check=True)
    manifest = json.loads(kiln("inspect", "--json", "exit3", env=env, check=True).stdout)["manifest"]
    blob = Path(env["KILN_HOME"]) / "store" / "blobs" / "sha256" / manifest["rootfs"]["digest"].split(":")[1]
    _flip(blob, 1100)  # inside the EROFS superblock: data block 0, which the kernel must read to mount
    proc = kiln("run", "--unsafe-skip-digest-check", "exit3", env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        "the guest refused a corrupted block of its root file system (dm-verity: data block 0 is corrupted)"
        in proc.stderr
    )
    assert "exit3: leaving" not in proc.stdout


def test_surface_report(hello_image: str, session_env: dict[str, str]) -> None:
    data = json.loads(
        kiln("inspect", "--surface", "--json", hello_image, env=session_env, timeout=900, check=True).stdout
    )
    mine, debian = data["image"], data["debian"]
    assert mine["shells"] == [] and mine["setuid"] == []
    assert mine["executables"] == ["/kiln/init", "/usr/bin/python3.11"]
    assert mine["ports"] == "8080/tcp"
    allowed, total, refused = re.match(r"(\d+) of (\d+) \((\d+) refused: fork, ", mine["syscalls"]).groups()
    assert int(allowed) + int(refused) == int(total) and int(refused) == 19
    assert debian["syscalls"] == f"{total} of {total} (no filter)"
    assert "/usr/bin/dash" in debian["shells"] and debian["setuid"]
    assert debian["files"] > 20 * mine["files"] and len(debian["executables"]) > 100
    assert debian["kernel_options"] > 4 * mine["kernel_options"]
    table = kiln("inspect", "--surface", hello_image, env=session_env, check=True).stdout
    for row in (
        "files",
        "executables",
        "shell present",
        "setuid/setgid files",
        "syscalls allowed",
        "kernel options on",
        "listening ports",
        "processes",
    ):
        assert row in table
    assert mine["processes"] == "one (fork and exec refused)"
