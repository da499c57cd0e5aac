"""ELF closure (pyelftools) and the root file system's handling of host paths."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kiln.analyze.elf import closure, is_elf, ld_so_conf_dirs
from kiln.errors import AnalysisError
from kiln.image.rootfs import RootFS

PYTHON = Path("/usr/bin/python3.11")


def test_python_closure_has_loader_and_libc() -> None:
    c = closure([PYTHON])
    names = {Path(p).name for p in c.libraries}
    assert {"libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"} <= names
    assert c.needed_by[next(p for p in c.libraries if p.endswith("libm.so.6"))] == str(PYTHON)


def test_non_elf_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    assert not is_elf(script)
    with pytest.raises(AnalysisError, match="not a readable ELF file"):
        closure([script])


def test_missing_library_is_named(tmp_path: Path) -> None:
    (tmp_path / "lib.c").write_text("int kiln_answer(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int kiln_answer(void);\nint main(void) { return kiln_answer(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", tmp_path / "libkilntest.so", tmp_path / "lib.c"], check=True)
    subprocess.run(
        ["gcc", "-o", tmp_path / "main", tmp_path / "main.c", f"-L{tmp_path}", "-lkilntest", "-Wl,-rpath,$ORIGIN"],
        check=True,
    )
    found = closure([tmp_path / "main"])
    assert str(tmp_path / "libkilntest.so") in found.libraries  # through RPATH $ORIGIN
    (tmp_path / "libkilntest.so").unlink()
    with pytest.raises(AnalysisError, match=r"needs libkilntest\.so, which was not found"):
        closure([tmp_path / "main"])


def test_ld_so_conf_include(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("/opt/a/lib  # comment\n")
    (tmp_path / "ld.so.conf").write_text("include conf.d/*.conf\n/opt/b/lib\n")
    assert ld_so_conf_dirs(tmp_path / "ld.so.conf") == ["/opt/a/lib", "/opt/b/lib"]


def _resolve_inside(root: Path, guest: str) -> Path:
    """Follow links the way the guest would, with `root` as /."""
    current = Path("/")
    parts = list(Path(guest).parts[1:])
    for _ in range(100):
        if not parts:
            return root / current.relative_to("/")
        current = current / parts.pop(0)
        staged = root / current.relative_to("/")
        if staged.is_symlink():
            target = os.readlink(staged)
            parts = list(Path(os.path.normpath(current.parent / target)).parts[1:]) + parts
            current = Path("/")
    raise AssertionError("link loop")


def test_add_host_path_recreates_links(tmp_path: Path) -> None:
    root = RootFS(tmp_path / "root")
    loader = "/lib64/ld-linux-x86-64.so.2"
    root.add_host_path(loader)
    staged = _resolve_inside(root.root, loader)
    assert staged.is_file() and not staged.is_symlink()
    assert staged.read_bytes() == Path(os.path.realpath(loader)).read_bytes()
    assert (root.root / "lib64").is_symlink() == Path("/lib64").is_symlink()
    if Path("/lib64").is_symlink():
        assert os.readlink(root.root / "lib64") == os.readlink("/lib64")


def test_a_link_to_a_directory_is_kept_as_a_link(tmp_path: Path) -> None:
    """tomcat10 ships /var/lib/tomcat10/conf -> /etc/tomcat10: the link, and the directory it names (whose
    files are added on their own), not an error."""
    sysroot = tmp_path / "unpacked"
    (sysroot / "etc" / "tomcat10").mkdir(parents=True)
    (sysroot / "var" / "lib" / "tomcat10").mkdir(parents=True)
    (sysroot / "var" / "lib" / "tomcat10" / "conf").symlink_to("/etc/tomcat10")
    root = RootFS(tmp_path / "root")
    root.add_host_path("/var/lib/tomcat10/conf", sysroot)
    assert os.readlink(root.root / "var/lib/tomcat10/conf") == "/etc/tomcat10"
    assert (root.root / "etc" / "tomcat10").is_dir()
    (sysroot / "var" / "lib" / "tomcat10" / "dir").mkdir()
    with pytest.raises(Exception, match="not a regular file"):
        root.add_host_path("/var/lib/tomcat10/dir", sysroot)  # a directory asked for as a file is still refused


def test_guest_paths_cannot_escape(tmp_path: Path) -> None:
    root = RootFS(tmp_path / "root")
    with pytest.raises(Exception, match="bad path"):
        root.add_bytes("/../../etc/passwd", b"x")
