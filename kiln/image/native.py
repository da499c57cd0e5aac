"""Build a native Linux program into an image: the executable, its ELF closure,
the files the config keeps, a generated /etc, and guest init.

    kiln build --exe /usr/bin/memcached --name memcached -- -u root -m 64 -p 11211
    kiln build examples/memcached          # kiln.toml with exe = "/usr/bin/memcached"
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kiln.analyze import elf
from kiln.analyze.native import native_needs
from kiln.analyze.needs import Needs
from kiln.config import App, NativeConfig
from kiln.debs import Unpacked, default_exe, fetch
from kiln.errors import AppError
from kiln.guest import init_binary
from kiln.image.build import (
    INIT_PATH,
    BuildResult,
    Contents,
    KernelProgress,
    Step,
    build_inputs,
    build_time,
    finish,
    kernel_for,
)
from kiln.image.etc import write_etc
from kiln.image.rootfs import RootFS
from kiln.image.sizing import memory_for
from kiln.manifest import Entry
from kiln.policy import policy
from kiln.store import Ref, Store, sha256_file


def resolve_exe(exe: str, base: Path, sysroot: Path | None = None) -> str:
    """The program's path as the loader sees it: a path (relative to the app's directory), a name
    on PATH, or with `sysroot` a path inside the unpacked packages."""
    if sysroot is not None:
        host = elf.resolve_in(sysroot, exe)
        if host is None:
            raise AppError(f"no such program in the package: {exe}")
        guest = exe
    else:
        found = Path(exe) if os.sep in exe else (Path(p) if (p := shutil.which(exe)) else None)
        if found is not None and not found.is_absolute():
            found = base / found
        if found is None or not found.exists():
            raise AppError(f"no such program: {exe}")
        host, guest = found, str(found)
    if not elf.is_elf(host):
        raise AppError(f"{exe}: not an ELF executable (kiln builds native programs from ELF binaries)")
    return guest


def _files(root: RootFS, names: tuple[str, ...], base: Path, sysroot: Path) -> None:
    """PATH keeps a file or directory at its path (from the packages if there are any, else
    the host); SRC:DEST copies SRC (relative to the app's directory) to DEST in the image."""
    for name in names:
        src, sep, dest = name.partition(":")
        if sep:
            host = Path(src) if Path(src).is_absolute() else base / src
            if not host.exists():
                raise AppError(f"files: {src} does not exist")
            root.add_host_tree(host, dest=dest)
        else:
            where = sysroot if elf.resolve_in(sysroot, name) is not None else Path("/")
            if elf.resolve_in(where, name) is None:
                raise AppError(f"files: {name} does not exist")
            root.add_host_tree(Path(name), where)


def analyze_native(app: App) -> tuple[str, list[str], Path, elf.Closure, Needs, Path, Unpacked | None]:
    """(program, dlopen'd libraries, guest init, their ELF closure, kernel needs, sysroot, package)."""
    cfg = app.config
    assert isinstance(cfg, NativeConfig)
    init = init_binary()
    if cfg.deb:
        unpacked = fetch(cfg.deb)
        sysroot = unpacked.root
        # guest init joins the program in the unpacked tree, so both load the package's C library
        (sysroot / "kiln").mkdir(exist_ok=True)
        shutil.copyfile(init, sysroot / "kiln" / "init")
        exe = resolve_exe(cfg.exe or default_exe(unpacked), app.root, sysroot)
        extra = [resolve_exe(lib, app.root, sysroot) for lib in cfg.libraries]
        closure = elf.closure([Path(exe), Path(INIT_PATH), *map(Path, extra)], sysroot=sysroot)
    else:
        unpacked, sysroot = None, Path("/")
        exe = resolve_exe(cfg.exe or "", app.root)
        extra = [resolve_exe(lib, app.root) for lib in cfg.libraries]
        closure = elf.closure([Path(exe), init, *map(Path, extra)])
    elfs = [elf.resolve_in(sysroot, p) for p in (exe, *extra)] + [closure.files[p] for p in closure.libraries]
    needs = native_needs(cfg, [p for p in elfs if p is not None])
    return exe, extra, init, closure, needs, sysroot, unpacked


def build_native(
    app: App,
    store: Store,
    tag: str | None = None,
    step: Step | None = None,
    build_kernel: bool = True,
    kernel_progress: KernelProgress | None = None,
) -> BuildResult:
    say = step or (lambda _msg: None)
    build_time()  # a malformed SOURCE_DATE_EPOCH fails before any work (mkfs.erofs reads it too)
    cfg = app.config
    assert isinstance(cfg, NativeConfig)
    ref = Ref.parse(tag) if tag else Ref(app.name)
    say(f"analyzing {cfg.deb or cfg.exe}")
    exe, extra, init, closure, needs, sysroot, unpacked = analyze_native(app)
    rules = policy(cfg.seccomp.allow)
    kernel = kernel_for(needs.features, build_kernel, kernel_progress)
    with store.staging() as scratch:
        say(f"laying out {exe} and {len(closure.libraries)} libraries")
        root = RootFS(scratch / "root")
        root.add_file(INIT_PATH, init, 0o555)
        for path in [exe, *extra, *closure.libraries]:
            root.add_host_path(path, sysroot)
        _files(root, cfg.files, app.root, sysroot)
        write_etc(root, app.name, cfg.users)
        entry = Entry(
            argv=(exe, *cfg.args),
            args_from=1,
            env=dict(cfg.env),
            workdir="/",
            ports=cfg.ports,
            volumes=cfg.volumes,
            memory_mib=memory_for(cfg.memory, kernel, root),
            ready=cfg.ready,
        )
        program = elf.resolve_in(sysroot, exe)
        assert program is not None
        source = f"Debian package {unpacked.package} {unpacked.version}" if unpacked else f"program {Path(exe).name}"
        inputs = build_inputs(app, source, sha256_file(program))
        return finish(store, ref, Contents(root, entry, closure, None, inputs), needs, rules, kernel, say)
