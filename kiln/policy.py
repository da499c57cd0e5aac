"""The syscall policy that seals an app: which calls guest init refuses.

Guest init installs a seccomp filter in the app's process just before it
starts the app, on both targets. Refused calls go to init through seccomp
user notification: init prints a console line naming the call and the caller,
and the call fails with EPERM, so an app that handles the error keeps running.
The app's own start (its one execve) is let through by init.

The policy is data here and mechanism in kiln/guest/init/policy.c: each rule becomes
one line of /kiln/config ("seccomp <action> <number> <name>").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kiln.errors import AppError

# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
SYSCALLS: dict[str, int] = {
    "clone": 56,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "ptrace": 101,
    "pivot_root": 155,
    "mount": 165,
    "umount2": 166,
    "reboot": 169,
    "init_module": 175,
    "delete_module": 176,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "execveat": 322,
    "clone3": 435,
}

# Refused by default, and why.
DEFAULT_DENY: dict[str, str] = {
    "fork": "a unikernel runs one process",
    "vfork": "a unikernel runs one process",
    "clone": "a unikernel runs one process (threads, with CLONE_THREAD, are allowed)",
    "execve": "no other program may run",
    "execveat": "no other program may run",
    "ptrace": "no process may inspect another",
    "mount": "the file systems are fixed once init has set them up",
    "umount2": "the file systems are fixed once init has set them up",
    "pivot_root": "the file systems are fixed once init has set them up",
    "init_module": "no kernel modules",
    "finit_module": "no kernel modules",
    "delete_module": "no kernel modules",
    "kexec_load": "no other kernel",
    "kexec_file_load": "no other kernel",
    "bpf": "no programs in the kernel",
    "reboot": "only init powers the VM off",
    "keyctl": "no kernel key management",
    "add_key": "no kernel key management",
    "request_key": "no kernel key management",
}

# clone3 passes its flags in memory a filter cannot read: it fails with ENOSYS,
# and the C library falls back to clone, whose flags the filter checks.
ENOSYS = ("clone3",)


@dataclass(frozen=True)
class Policy:
    denied: tuple[str, ...]
    relaxed: dict[str, str]  # syscall -> the reason the config gave

    def config_lines(self) -> list[str]:
        lines = [f"seccomp enosys {SYSCALLS[n]} {n}" for n in ENOSYS]
        for name in self.denied:
            action = "notify-unless-thread" if name == "clone" else "notify"
            lines.append(f"seccomp {action} {SYSCALLS[name]} {name}")
        return lines


def policy(allow: Mapping[str, str]) -> Policy:
    """The default policy, relaxed by the config's `[seccomp] allow = {call = "reason"}`."""
    for name, reason in allow.items():
        if name not in DEFAULT_DENY:
            known = ", ".join(sorted(DEFAULT_DENY))
            raise AppError(f"[seccomp] allow: {name!r} is not refused by the policy (it refuses: {known})")
        if not reason.strip():
            raise AppError(f"[seccomp] allow: say why {name} is needed")
    denied = tuple(n for n in DEFAULT_DENY if n not in allow)
    return Policy(denied=denied, relaxed=dict(allow))
