"""Build a native Linux program into an image: the executable, its ELF closure,
the files the config keeps, a generated /etc, and guest init.

    kiln build --exe /usr/bin/memcached --name memcached -- -u root -m 64 -p 11211
    kiln build examples/memcached          # kiln.toml with exe = "/usr/bin/memcached"
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kiln.analyze import elf
from kiln.analyze.app_files import SKIPPED_DIRS
from kiln.analyze.native import native_needs
from kiln.analyze.needs import Needs
from kiln.config import App, NativeConfig
from kiln.debs import Unpacked, fetch
from kiln.debs.hints import HINTS
from kiln.debs.service import Service, describe
from kiln.deps import npm
from kiln.errors import AppError
from kiln.guest import init_binary
from kiln.guest.protocol import INIT_PATH
from kiln.image.build import (
    Built,
    Contents,
    Step,
    build_inputs,
    build_time,
    finish,
    kernel_for,
)
from kiln.image.etc import write_etc
from kiln.image.options import BuildOptions, Progress
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


@dataclass
class NativeAnalysis:
    exe: str  # the program, as the loader sees it
    extra: list[str]  # libraries it loads with dlopen
    init: Path
    closure: elf.Closure
    needs: Needs
    sysroot: Path
    unpacked: Unpacked | None = None
    service: Service | None = None  # a Debian package's service, as its unit and files say it runs


def analyze_native(app: App) -> NativeAnalysis:
    """The program, its ELF closure and kernel needs; for a Debian package, how its service runs."""
    cfg = app.config
    assert isinstance(cfg, NativeConfig)
    init = init_binary()
    if cfg.deb:
        hint = HINTS.get(cfg.deb)
        unpacked = fetch(cfg.deb, extra=hint.extra if hint else ())
        sysroot = unpacked.root
        service = describe(unpacked, cfg)
        # guest init joins the program in the unpacked tree, so both load the package's C library
        (sysroot / "kiln").mkdir(exist_ok=True)
        shutil.copyfile(init, sysroot / "kiln" / "init")
        exe = resolve_exe(service.argv[0], app.root, sysroot)
        # what it loads by name, and the programs it executes itself (their closures too)
        named = (*cfg.libraries, *service.libraries, *service.helpers, *cfg.seccomp.exec)
        extra = [resolve_exe(lib, app.root, sysroot) for lib in named]
        closure = elf.closure([Path(exe), Path(INIT_PATH), *map(Path, extra)], sysroot=sysroot)
        cfg = cfg.model_copy(update={"ports": service.ports, "volumes": (*cfg.volumes, *service.volumes)})
    else:
        unpacked, sysroot, service = None, Path("/"), None
        exe = resolve_exe(cfg.exe or "", app.root)
        extra = [resolve_exe(lib, app.root) for lib in (*cfg.libraries, *cfg.seccomp.exec)]
        closure = elf.closure([Path(exe), init, *map(Path, extra)])
    elfs = [elf.resolve_in(sysroot, p) for p in (exe, *extra)] + [closure.files[p] for p in closure.libraries]
    own = [p for p in elfs[: 1 + len(extra)] if p is not None]  # the program and what it loads by name
    needs = native_needs(cfg, [*own, *(p for p in elfs[1 + len(extra) :] if p is not None)],
                         service.kernel if service else None, own=len(own))  # fmt: skip
    return NativeAnalysis(exe, extra, init, closure, needs, sysroot, unpacked, service)


def _app_dir(app: App, root: RootFS, unpacked: Unpacked | None, say: Step) -> bool:
    """The app's own directory at /app, with its npm dependencies; False when the config keeps none."""
    cfg = app.config
    assert isinstance(cfg, NativeConfig)
    if app.config_file is None or not (cfg.app or (cfg.app is None and npm.declared(app.root))):
        return False
    skip = {*SKIPPED_DIRS, "node_modules"}
    for dirpath, dirnames, filenames in os.walk(app.root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            host = Path(dirpath, name)
            if host != app.config_file:
                root.add_file(str(PurePosixPath("/app") / host.relative_to(app.root).as_posix()), host)
    if npm.declared(app.root):
        major = int(unpacked.version.split(".")[0]) if unpacked and unpacked.package == "nodejs" else None
        modules = npm.install(app.root, major, say)
        say(f"node_modules: {modules.packages} packages ({'cached' if modules.cached else 'installed'})")
        root.add_host_tree(modules.path, dest="/app/node_modules")
    return True


def _service_files(root: RootFS, service: Service, sysroot: Path) -> None:
    """What a Debian service reads besides its ELF closure: conffiles, its private data, generated files."""
    for path in service.keep:
        host = sysroot / path.lstrip("/")
        if host.is_symlink() and host.is_dir():  # a link to a directory: the link (its files are listed too)
            dest = root.host(path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.is_symlink():
                dest.symlink_to(os.readlink(host))
        elif host.is_dir():
            root.mkdir(path)
        elif host.is_symlink() or host.is_file():
            root.add_host_path(path, sysroot)
    for path, data in service.generated.items():
        dest = root.host(path)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        root.add_bytes(path, data)
    for path, tree in service.trees.items():  # made at build time (initdb's data directory), modes kept
        dest = root.host(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tree, dest, symlinks=True, dirs_exist_ok=True)
    for link, target in service.links.items():
        dest = root.host(link)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.is_symlink():
            dest.symlink_to(target)
        pointed = str(PurePosixPath(link).parent / target)
        if elf.resolve_in(sysroot, pointed) is not None:  # what it points to from the package tree (not /run)
            root.add_host_path(pointed, sysroot)


def build_native(
    app: App,
    store: Store,
    options: BuildOptions,
    progress: Progress,
) -> Built:
    say = progress.step
    build_time()  # a malformed SOURCE_DATE_EPOCH fails before any work (mkfs.erofs reads it too)
    cfg = app.config
    assert isinstance(cfg, NativeConfig)
    ref = Ref.parse(options.tag) if options.tag else Ref(app.name)
    say(f"analyzing {cfg.deb or cfg.exe}")
    found = analyze_native(app)
    exe, extra, init, closure, needs, sysroot, unpacked = (
        found.exe, found.extra, found.init, found.closure, found.needs, found.sysroot, found.unpacked
    )  # fmt: skip
    service = found.service
    if service is not None:
        say(f"command: {shlex.join(service.argv)} (from {service.command_from})")
        if service.ports:
            say(
                f"ports: {', '.join(map(str, service.ports))} (from {'the config' if cfg.ports else 'kiln.debs.hints'})"
            )
        if service.user:
            said = f"{service.unit} User=" if service.unit else "kiln.debs.hints"
            say(f"user: {service.user.name} ({service.user.uid}:{service.user.gid}, from {said})")
        for note in service.notes:
            say(f"note: {note}")
    rules = policy({**(service.allow if service else {}), **cfg.seccomp.allow})
    needs = needs.plus(options.needs)
    kernel = kernel_for(needs.features, options, progress)
    with store.staging() as scratch:
        say(f"laying out {exe} and {len(closure.libraries)} libraries")
        root = RootFS(scratch / "root")
        root.add_file(INIT_PATH, init, 0o555)
        for path in [exe, *extra, *closure.libraries]:
            root.add_host_path(path, sysroot)
        _files(root, cfg.files, app.root, sysroot)
        if service is not None:
            _service_files(root, service, sysroot)
        in_app = _app_dir(app, root, unpacked, say)
        write_etc(
            root, app.name, cfg.users, (service.accounts.passwd(), service.accounts.group_lines()) if service else None
        )
        entry = Entry(
            argv=tuple(service.argv) if service else (exe, *cfg.args),
            args_from=1,
            env=service.env if service else dict(cfg.env),
            workdir="/app" if in_app else service.workdir if service else "/",
            ports=service.ports if service else cfg.ports,
            volumes=(*cfg.volumes, *service.volumes) if service else cfg.volumes,
            memory_mib=cfg.memory or max(memory_for(None, kernel, root), service.memory_mib if service else 0),
            ready=cfg.ready,
            user=service.user if service else None,
            writable=tuple(service.writable) if service else (),
            keep_caps=service.keep_caps if service else (),  # type: ignore[arg-type]
            stop_signal=service.stop_signal if service else None,
            setup=service.setup if service else None,
            helpers=(*(service.helpers if service else ()), *cfg.seccomp.exec),
            client_address=True,
        )
        program = elf.resolve_in(sysroot, exe)
        assert program is not None
        source = f"Debian package {unpacked.package} {unpacked.version}" if unpacked else f"program {Path(exe).name}"
        digest = sha256_file(program)
        if in_app:  # the app's own files are inputs too (/app)
            h = hashlib.sha256(digest.encode())
            for f in sorted(root.host("/app").rglob("*")):
                if f.is_file() and not f.is_symlink():
                    h.update(str(f.relative_to(root.root)).encode() + b"\0" + f.read_bytes())
            digest = "sha256:" + h.hexdigest()
        inputs = build_inputs(app, source, digest)
        return finish(store, ref, Contents(root, entry, closure, None, inputs), needs, rules, kernel, say)
