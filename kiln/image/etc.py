"""A minimal /etc for native programs: only what the C library consults.

passwd and group hold root and the accounts the config names (with the host's
ids when the host has them), nsswitch.conf sends every lookup to those files
(and DNS for hosts), and hosts names the machine. resolv.conf is a link to
/proc/net/pnp, where the kernel's DHCP client (a firmware-booted disk,
kiln.export.disk) writes the name servers the network gave it; elsewhere it
leads nowhere, and the C library asks 127.0.0.1 as it always has. No shell is named anywhere:
no account has a login.
"""

from __future__ import annotations

import grp
import pwd

from kiln.image.rootfs import RootFS

NO_LOGIN = "/nonexistent"


def accounts(users: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(passwd lines, group lines) for root and `users`."""
    passwd, groups = ["root:x:0:0:root:/root:" + NO_LOGIN], {0: "root"}
    next_id = 1000
    for name in dict.fromkeys(u for u in users if u != "root"):
        try:
            entry = pwd.getpwnam(name)
            uid, gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir
        except KeyError:
            uid = gid = next_id
            next_id += 1
            home = NO_LOGIN
        passwd.append(f"{name}:x:{uid}:{gid}::{home}:{NO_LOGIN}")
        try:
            groups.setdefault(gid, grp.getgrgid(gid).gr_name)
        except KeyError:
            groups.setdefault(gid, name)
    return passwd, [f"{name}:x:{gid}:" for gid, name in sorted(groups.items())]


def write_etc(
    root: RootFS, hostname: str, users: tuple[str, ...], lines: tuple[list[str], list[str]] | None = None
) -> None:
    """passwd and group (`lines`, a Debian service's accounts from kiln.debs.accounts; else root and
    `users` with the host's ids), nsswitch.conf and hosts."""
    passwd, group = lines or accounts(users)
    root.add_bytes("/etc/passwd", ("\n".join(passwd) + "\n").encode())
    root.add_bytes("/etc/group", ("\n".join(group) + "\n").encode())
    root.add_bytes("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")
    root.add_bytes("/etc/hosts", f"127.0.0.1\tlocalhost {hostname}\n".encode())
    add_resolver(root)


def add_resolver(root: RootFS) -> None:
    """/etc/resolv.conf -> the name servers DHCP gave the kernel (see above)."""
    root.add_symlink("/etc/resolv.conf", "../proc/net/pnp")
