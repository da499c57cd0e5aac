"""Reading an strace log: only the app's processes and threads, files with their outcome."""

from __future__ import annotations

from pathlib import Path

from kiln.trace import parse, suggest

LOG = """\
100 execve("/usr/bin/unshare", ["unshare"], 0x1 /* 3 vars */) = 0
101 mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL) = 0
101 clone(child_stack=NULL, flags=CLONE_FILES|SIGCHLD) = 102
102 execve("/usr/sbin/nginx", ["/usr/sbin/nginx"], 0x2 /* 0 vars */ <unfinished ...>
101 wait4(-1,  <unfinished ...>
102 <... execve resumed>) = 0
102 openat(AT_FDCWD, "/etc/nginx/mime.types", O_RDONLY) = -1 ENOENT (No such file or directory)
102 openat(AT_FDCWD, "/etc/kiln/nginx.conf", O_RDONLY) = 3
102 clone3({flags=CLONE_VM|CLONE_THREAD, exit_signal=0}, 88) = -1 ENOSYS (Function not implemented)
102 clone(child_stack=0x7f, flags=CLONE_VM|CLONE_THREAD) = 103
103 openat(AT_FDCWD, "/usr/lib/x86_64-linux-gnu/libfoo.so", O_RDONLY) = -1 ENOENT (No such file or directory)
102 vfork() = -1 EPERM (Operation not permitted)
102 epoll_wait(4, [], 512, 1000) = 0
"""


def test_only_the_app_is_counted() -> None:
    t = parse(LOG, "/usr/sbin/nginx")
    assert "mount" not in t.syscalls and "wait4" not in t.syscalls
    assert t.syscalls["execve"] == 1 and t.syscalls["epoll_wait"] == 1 and t.syscalls["clone"] == 1
    assert t.files == {
        "/usr/sbin/nginx": "ok",
        "/etc/nginx/mime.types": "ENOENT",
        "/etc/kiln/nginx.conf": "ok",
        "/usr/lib/x86_64-linux-gnu/libfoo.so": "ENOENT",
    }
    assert t.refused == {"vfork"}


def test_suggestions_only_add(tmp_path: Path) -> None:
    for rel in ("etc/nginx/mime.types", "usr/lib/x86_64-linux-gnu/libfoo.so", "etc/kiln/nginx.conf"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    s = suggest(parse(LOG, "/usr/sbin/nginx"), {"/etc/kiln/nginx.conf", "/usr/sbin/nginx"}, tmp_path)
    assert s.files == ["/etc/nginx/mime.types"]
    assert s.libraries == ["/usr/lib/x86_64-linux-gnu/libfoo.so"]
    assert s.allow == ["vfork"]
