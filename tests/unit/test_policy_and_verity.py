"""The syscall policy's data, the dm-verity table, and the QEMU plan for sealed images."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import AppError
from kiln.guest.protocol import dm_table
from kiln.manifest import Verity
from kiln.policy import DEFAULT_DENY, SYSCALLS, policy
from kiln.surface import syscall_numbers
from kiln.targets.qemu_command import VmSpec, command, kernel_cmdline


def test_default_policy_refuses_what_the_issue_lists() -> None:
    p = policy({})
    for call in (
        "fork",
        "vfork",
        "clone",
        "execve",
        "execveat",
        "ptrace",
        "mount",
        "init_module",
        "finit_module",
        "kexec_load",
        "kexec_file_load",
        "bpf",
        "reboot",
        "keyctl",
    ):
        assert call in p.denied
    lines = p.config_lines()
    assert "seccomp enosys 435 clone3" in lines
    assert "seccomp notify-unless-thread 56 clone" in lines
    assert "seccomp notify 59 execve" in lines


def test_relaxing_one_call_needs_a_reason() -> None:
    p = policy({"ptrace": "the app debugs itself"})
    assert "ptrace" not in p.denied and p.relaxed == {"ptrace": "the app debugs itself"}
    with pytest.raises(AppError, match="say why ptrace is needed"):
        policy({"ptrace": " "})
    with pytest.raises(AppError, match="'read' is not refused by the policy"):
        policy({"read": "because"})


def test_syscall_numbers_match_the_kernel_source() -> None:
    numbers = syscall_numbers()
    for name, nr in SYSCALLS.items():
        assert numbers[name] == nr, name
    assert set(DEFAULT_DENY) <= set(SYSCALLS)


def test_dm_table() -> None:
    v = Verity(root_hash="a" * 64, salt="b" * 64, data_blocks=10, hash_offset=40960)
    assert dm_table(v) == (f"root,,,ro,0 80 verity 1 /dev/vda /dev/vda 4096 4096 10 10 sha256 {'a' * 64} {'b' * 64}")


def test_verified_root_on_the_command_line() -> None:
    spec = VmSpec(
        kernel=Path("/k"),
        rootfs=Path("/r"),
        memory_mib=48,
        accel="tcg",
        verity_table="T A B",
        volumes=(("vol0", Path("/host/data")),),
    )
    line = kernel_cmdline(spec)
    assert 'root=/dev/dm-0 dm-mod.create="T A B" dm-mod.waitfor=/dev/vda' in line
    argv = command(spec)
    assert "local,id=vol0,path=/host/data,security_model=none" in argv
    assert "virtio-9p-device,fsdev=vol0,mount_tag=vol0" in argv
