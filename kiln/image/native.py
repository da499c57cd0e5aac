"""Build a native Linux program into an image: the executable, its ELF closure,
the files the config keeps, a generated /etc, and guest init.

    kiln build --exe /usr/bin/memcached --name memcached -- -u root -m 64 -p 11211
    kiln build examples/memcached          # kiln.toml with exe = "/usr/bin/memcached"
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kiln import __version__
from kiln.analyze import elf
from kiln.analyze.native import native_needs
from kiln.analyze.needs import Needs
from kiln.config import App, NativeConfig
from kiln.errors import AppError
from kiln.guest import init_binary
from kiln.image.build import INIT_PATH, BuildResult, Contents, KernelProgress, Step, finish, kernel_for
from kiln.image.etc import write_etc
from kiln.image.rootfs import RootFS
from kiln.manifest import BuildInputs, Entry
from kiln.policy import policy
from kiln.store import Ref, Store, sha256_file


def resolve_exe(exe: str, base: Path) -> Path:
    """The program: a path (relative to the app's directory) or a name on PATH."""
    found = Path(exe) if os.sep in exe else (Path(p) if (p := shutil.which(exe)) else None)
    if found is not None and not found.is_absolute():
        found = base / found
    if found is None or not found.exists():
        raise AppError(f"no such program: {exe}")
    if not elf.is_elf(found):
        raise AppError(f"{found}: not an ELF executable (kiln builds native programs from ELF binaries)")
    return found


def _host_path(name: str, base: Path) -> Path:
    path = Path(name) if Path(name).is_absolute() else base / name
    if not path.exists():
        raise AppError(f"files: {name} does not exist")
    return path


def analyze_native(app: App) -> tuple[Path, list[Path], Path, elf.Closure, Needs]:
    """(program, dlopen'd libraries, guest init, their ELF closure, kernel needs)."""
    cfg = app.config
    assert isinstance(cfg, NativeConfig)
    exe = resolve_exe(cfg.exe, app.root)
    extra = [resolve_exe(lib, app.root) for lib in cfg.libraries]
    init = init_binary()
    closure = elf.closure([exe, init, *extra])
    return exe, extra, init, closure, native_needs(cfg, [exe, *extra, *(closure.files[p] for p in closure.libraries)])


def build_native(
    app: App,
    store: Store,
    tag: str | None = None,
    step: Step | None = None,
    build_kernel: bool = True,
    kernel_progress: KernelProgress | None = None,
) -> BuildResult:
    say = step or (lambda _msg: None)
    cfg = app.config
    assert isinstance(cfg, NativeConfig)
    ref = Ref.parse(tag) if tag else Ref(app.name)
    say(f"analyzing {cfg.exe}")
    exe, extra, init, closure, needs = analyze_native(app)
    rules = policy(cfg.seccomp.allow)
    kernel = kernel_for(needs.features, build_kernel, kernel_progress)
    with store.staging() as scratch:
        say(f"laying out {exe.name} and {len(closure.libraries)} libraries")
        root = RootFS(scratch / "root")
        root.add_file(INIT_PATH, init, 0o555)
        for path in [exe, *extra, *map(Path, closure.libraries)]:
            root.add_host_path(path)
        for name in cfg.files:
            root.add_host_tree(_host_path(name, app.root))
        write_etc(root, app.name, cfg.users)
        entry = Entry(
            argv=(str(exe), *cfg.args),
            env=dict(cfg.env),
            workdir="/",
            ports=cfg.ports,
            volumes=cfg.volumes,
            memory_mib=cfg.memory,
        )
        inputs = BuildInputs(
            source=str(exe),
            config_file=str(app.config_file) if app.config_file else None,
            sources_digest=sha256_file(exe),
            kiln_version=__version__,
        )
        return finish(store, ref, Contents(root, entry, closure, None, inputs), needs, rules, kernel, say)
