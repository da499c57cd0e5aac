"""Build a kiln image from a container image: only what its program needs, from the image's own tree.

The program is the image's Entrypoint + Cmd (kiln.oci.config), found on the
image's PATH in the image's tree, never the host's. What the kiln image keeps:

- a native program: it and its ELF closure (the tree's libraries, at the paths
  the loader asks for), any `libraries` it loads with dlopen, and the image's
  data files: every file that is neither an ELF file nor executable, less
  documentation, man pages, licenses, package-manager databases, caches and
  logs (DROPPED), and less the message catalogs of programs it does not keep
  (/usr/share/locale/*/LC_MESSAGES/DOMAIN.mo, kept for a DOMAIN that is a kept
  program's or library's name). Every other executable, every shell and every
  library outside the closure is left out;
- a Python app (the program is the image's interpreter, or a console script
  it runs): the import analysis with that interpreter and its site-packages,
  asked for its paths by running it in the sandbox over the tree
  (kiln.oci.python); only the modules the app reaches.

The image's config is honoured as `docker run` honours it: Env, WorkingDir,
User (the account is in the generated /etc/passwd, and init starts the
program as it), ExposedPorts, Volumes and StopSignal. A script as the program,
or a program that is not in the image, fails in one line.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path, PurePosixPath

from kiln.analyze import elf
from kiln.analyze.command import PYTHON
from kiln.analyze.native import native_needs
from kiln.config import NativeConfig, default_name
from kiln.errors import AppError
from kiln.guest import init_binary
from kiln.guest.protocol import INIT_PATH
from kiln.image.build import Built, Contents, finish, kernel_for
from kiln.image.etc import write_etc
from kiln.image.options import BuildOptions, Progress
from kiln.image.rootfs import RootFS
from kiln.image.sizing import memory_for
from kiln.manifest import Entry
from kiln.oci import entrypoints
from kiln.oci.first_start import first_start, modules_of
from kiln.oci.image import (
    ROOT_CAPS,
    Fetched,
    Overrides,
    accounts_of,
    fetch,
    image_inputs,
    image_name,
    is_program,
    on_path,
    shebang,
    source_image,
    volumes_of,
)
from kiln.policy import policy
from kiln.shell_form import SHELLS
from kiln.store import Ref, Store
from kiln.surface import scan_tree

# What the kiln image never takes from a container image's tree (paths relative to it).
DROPPED = (
    "usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/lintian/", "usr/share/bug/",
    "usr/share/common-licenses/", "usr/share/doc-base/",
    "usr/share/bash-completion/", "usr/share/zsh/", "usr/share/fish/", "usr/share/menu/",
    "var/lib/dpkg/", "var/lib/apt/", "var/cache/", "var/log/", "var/lib/pip/", "root/.cache/",
    "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/passwd-", "etc/group-", "etc/shadow-",
    "etc/gshadow-", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab", "etc/apt/", "etc/dpkg/",
    "etc/cron.", "etc/init.d/", "etc/rc", "etc/logrotate", "etc/systemd/", "etc/pam.d/", "etc/security/",
    "etc/sudoers", "etc/profile", "etc/bash", "etc/skel/", "etc/update-motd.d/", "etc/kernel/",
    "usr/lib/apt/", "usr/lib/dpkg/", "usr/libexec/", "usr/share/perl5/Debconf", "var/lib/systemd/",
    "boot/", "proc/", "sys/", "dev/", "run/", "tmp/", "kiln/", "usr/share/pixmaps/", "usr/share/icons/",
)  # fmt: skip


def build_dockerfile(
    context: Path,
    dockerfile: Path,
    store: Store,
    options: BuildOptions,
    progress: Progress,
    overrides: Overrides | None = None,
    target: str | None = None,
    build_args: dict[str, str] | None = None,
) -> Built:
    """A Dockerfile built by buildah (kiln.oci.builder), then the image as build_image reads one."""
    from kiln.oci import builder

    with store.staging() as scratch:
        layout = scratch / "built"
        builder.build(context, dockerfile, layout, target, build_args, progress.step)
        named = options if options.tag else dataclasses.replace(options, tag=default_name(context.resolve()))
        return build_image(f"oci:{layout}:image", store, named, progress, overrides)


def _domains(elf_paths: set[str]) -> set[str]:
    """Message-catalog domains of kept ELF files: redis-server, libc (from libc.so.6), ..."""
    return {PurePosixPath(p).name.split(".so")[0] for p in elf_paths}


def data_files(tree: Path, closure_files: set[str]) -> list[str]:
    """Guest paths of the image's data files: neither ELF nor executable, nor anything DROPPED, nor the
    message catalogs of programs the image does not keep."""
    domains = _domains(closure_files)
    kept = []
    for dirpath, dirnames, filenames in os.walk(tree):
        rel_dir = os.path.relpath(dirpath, tree)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not (rel_dir + d + "/").startswith(DROPPED))
        for name in sorted(filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]):
            rel = rel_dir + name
            if rel.startswith(DROPPED) or f"/{rel}" in closure_files:
                continue
            if "/LC_MESSAGES/" in rel and rel.startswith("usr/share/locale") and name.rsplit(".", 1)[0] not in domains:
                continue
            host = Path(dirpath, name)
            if os.path.islink(host):
                target = elf.resolve_in(tree, f"/{rel}")
                if target is None or not target.is_file() or is_program(target):
                    continue  # a link to nothing kept, or to a program
            elif not host.is_file() or is_program(host):
                continue
            if name in SHELLS:
                continue
            kept.append(f"/{rel}")
    return kept


def build_image(
    reference: str,
    store: Store,
    options: BuildOptions,
    progress: Progress,
    overrides: Overrides | None = None,
) -> Built:
    say = progress.step
    overrides = overrides or Overrides()
    got = fetch(reference, store, overrides, say)
    config = got.config
    where = reference
    argv = config.command(overrides.entrypoint, overrides.args, where)
    program = on_path(got.tree, argv[0], config)
    host = elf.resolve_in(got.tree, program)
    assert host is not None
    interpreter = shebang(host)
    if interpreter is not None:
        if interpreter and PYTHON.match(interpreter[0].rsplit("/", 1)[-1]):
            from kiln.oci.python import build_python_image

            return build_python_image(got, argv, store, options, progress, overrides)
        known = entrypoints.recognize(host.read_bytes())
        rest = [known.server, *argv[1:]] if known and argv[1:2] and argv[1].startswith("-") else argv[1:]
        if known is not None and rest[:1] == [known.server]:
            say(f"entrypoint: {program} is {known.name}: {known.why}")
            server = on_path(got.tree, known.server, config)
            return _build_native(got, [server, *rest[1:]], store, options, progress, overrides, known)
        raise AppError(
            f"{where}: its program {program} is a script (#!{' '.join(interpreter)}), and a unikernel runs no "
            f"shell or interpreter it was not built around: give the program itself with --entrypoint"
        )
    if PYTHON.match(program.rsplit("/", 1)[-1]):
        from kiln.oci.python import build_python_image

        return build_python_image(got, argv, store, options, progress, overrides)
    if not elf.is_elf(host):
        raise AppError(f"{where}: its program {program} is not an ELF executable")
    return _build_native(got, [program, *argv[1:]], store, options, progress, overrides)


def _build_native(
    got: Fetched,
    argv: list[str],
    store: Store,
    options: BuildOptions,
    progress: Progress,
    overrides: Overrides,
    known: entrypoints.KnownEntrypoint | None = None,
) -> Built:
    tree, config = got.tree, got.config
    say = progress.step
    ref = Ref.parse(options.tag) if options.tag else Ref(image_name(got.source.reference))
    say(f"command: {' '.join(argv)} (from the image's {'Entrypoint + Cmd' if config.entrypoint else 'Cmd'})")
    init = init_binary()
    (tree / "kiln").mkdir(exist_ok=True)  # init joins the program in the tree, to load the image's C library
    shutil.copyfile(init, tree / "kiln" / "init")
    extra = [on_path(tree, lib, config) for lib in overrides.libraries]
    if known is not None:  # the server's modules, loaded by name (plpgsql.so)
        extra += modules_of(tree, argv[0], known)
    closure = elf.closure([Path(argv[0]), Path(INIT_PATH), *map(Path, extra)], sysroot=tree)
    ports = overrides.ports or config.ports
    volumes = volumes_of(config, say)
    if ports:
        say(f"ports: {', '.join(map(str, ports))} (from {'-p' if overrides.ports else 'the image ExposedPorts'})")
    cfg = NativeConfig(exe=argv[0], ports=ports, volumes=volumes)
    elfs = [elf.resolve_in(tree, p) for p in (argv[0], *extra)] + [closure.files[p] for p in closure.libraries]
    own = [p for p in elfs[: 1 + len(extra)] if p is not None]  # the program and what it loads by name
    needs = native_needs(cfg, [*own, *(p for p in elfs[1 + len(extra) :] if p is not None)], own=len(own))
    needs = needs.plus(options.needs)
    kernel = kernel_for(needs.features, options, progress)
    passwd, group, account = accounts_of(tree, config.user or (known.account if known else None), got.source.reference)
    image = source_image(got)
    with store.staging() as scratch:
        root = RootFS(scratch / "root")
        root.add_file(INIT_PATH, init, 0o555)
        for path in [argv[0], *extra, *closure.libraries]:
            root.add_host_path(path, tree)
        data = data_files(tree, set(closure.libraries) | {argv[0]})
        for path in data:
            root.add_host_path(path, tree)
        for d in ("/" + str(config.workdir).strip("/"),):
            root.mkdir(d)
        write_etc(root, ref.name.rsplit("/", 1)[-1], (), (passwd, group))
        first = first_start(tree, root, known, argv[0], config, account, say) if known else None
        if first is not None and first.data not in volumes:
            volumes = (*volumes, first.data)
        kept = scan_tree(root.root)
        say(
            f"the container had {image.files} files and {image.executables} executables; the unikernel keeps "
            f"{kept[0]} files and {len(kept[1])} executables ({len(data)} data files)"
        )
        entry = Entry(
            argv=tuple(argv),
            args_from=1,
            env={**config.env, **overrides.env},
            workdir=config.workdir,
            ports=ports,
            volumes=volumes,
            memory_mib=memory_for(None, kernel, root),
            user=account,
            stop_signal=config.stop_signal,
            # root in a container has Docker's default capabilities: on the unix target, the ones a server uses
            # to give its files and itself to another account (nginx's workers' temp directories)
            keep_caps=ROOT_CAPS if account is None else (),
            writable=first.writable if first else (),
            setup=first.setup if first else None,
            client_address=True,
        )
        inputs = image_inputs(got, image)
        rules = policy(known.allow if known else {})
        return finish(store, ref, Contents(root, entry, closure, None, inputs), needs, rules, kernel, say)
