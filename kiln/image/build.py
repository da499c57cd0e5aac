"""Build a Python app into an image: analyze, lay out, compile, pack, store.

    app dir ──analyze──▶ modules + ELF closure
            ──layout───▶ staging tree (interpreter, libraries, .pyc, init, config)
            ──pack─────▶ root.erofs
            ──commit───▶ blobs (kernel, rootfs, manifest) + tag, atomically

All work happens in a scratch directory of the store; the store itself is
changed only by `commit`, under the store lock, and the tag is written last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import msgspec

from kiln import __version__
from kiln.analyze import elf
from kiln.analyze.needs import Needs, python_needs
from kiln.analyze.python import ModuleGraph, analyze
from kiln.config import App, AppConfig
from kiln.deps import declared as declared_deps
from kiln.deps.install import install
from kiln.errors import UsageError
from kiln.guest import START_SOURCE, init_binary
from kiln.guest.protocol import CONFIG_PATH, INIT_PATH, START_PATH, config_lines
from kiln.image import erofs
from kiln.image.data import Placement, app_data, kept_distributions, package_data, system_data
from kiln.image.etc import add_resolver
from kiln.image.options import BuildOptions, Progress
from kiln.image.pycompile import cached, compile_all
from kiln.image.rootfs import RootFS
from kiln.image.sizing import memory_for
from kiln.image.verity import protect
from kiln.interpreter import RUN_FLAGS, Interpreter, probe
from kiln.kernel import build as kbuild
from kiln.manifest import (
    MEDIA_KERNEL,
    MEDIA_ROOTFS,
    BuildInputs,
    DistributionEntry,
    Entry,
    KernelPart,
    LibraryEntry,
    Manifest,
    ModuleEntry,
    PythonInfo,
    RootfsPart,
    SyscallPolicy,
)
from kiln.policy import Policy, policy
from kiln.store import Ref, Store

APP_DIR = PurePosixPath("/app")

Step = Callable[[str], None]


@dataclass(frozen=True)
class Built:
    ref: Ref
    digest: str
    manifest: Manifest
    analysis: PythonAnalysis | None = None  # a Python app's, for `kiln build --check`


def _pyc(path: PurePosixPath) -> PurePosixPath:
    return path.with_suffix(".pyc")


def keeps_source(config: AppConfig, origin: str) -> bool:
    return config.sources == "all" or (config.sources == "app" and origin == "app")


def _entry(app: App, graph: ModuleGraph, interp: Interpreter, place: Placement, memory_mib: int) -> Entry:
    assert isinstance(app.config, AppConfig) and graph.launch is not None
    launch = graph.launch
    if launch.kind == "file":
        main = place.guest(graph.modules["__main__"].path)
        start: tuple[str, ...] = (str(main if keeps_source(app.config, "app") else _pyc(main)),)
    elif launch.kind == "module":
        start = ("-m", launch.target)
    else:
        start = ("-e", launch.target, launch.name)
    bases = sorted({str(place.guest(m.base)) for m in graph.modules.values() if m.origin == "third-party" and m.base})
    env = {"PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8", "HOME": "/tmp"}
    if bases:
        env["PYTHONPATH"] = ":".join(bases)
    env.update(app.config.env)
    fixed = (str(interp.executable), *RUN_FLAGS, str(_pyc(PurePosixPath(START_PATH))), *start)
    return Entry(
        argv=(*fixed, *launch.args),
        args_from=len(fixed),
        env=env,
        workdir=str(place.app_dir),
        ports=app.config.ports,
        volumes=app.config.volumes,
        memory_mib=memory_mib,
        ready=app.config.ready,
        client_address=True,
    )


def layout(
    app: App, graph: ModuleGraph, interp: Interpreter, root: RootFS, place: Placement
) -> tuple[list[ModuleEntry], elf.Closure]:
    assert isinstance(app.config, AppConfig)
    jobs: list[tuple[Path, Path, str]] = []
    entries: list[ModuleEntry] = []
    for mod in sorted(graph.modules.values(), key=lambda m: m.name):
        dest: PurePosixPath | None = None
        if mod.kind == "source" and mod.path is not None:
            source = place.guest(mod.path)
            reads_own = app.config.sources != "none" and mod.name.split(".")[0] in graph.keep_sources
            if keeps_source(app.config, mod.origin) or reads_own:
                root.add_file(str(source), mod.path, 0o444)
                dest = cached(source, interp.cache_tag)
                shown = source
            else:
                dest = shown = _pyc(source)  # its code names a file that exists: the .pyc itself
            jobs.append((mod.path, root.host(dest), str(shown)))
        elif mod.kind == "extension" and mod.path is not None:
            dest = place.guest(mod.path)
            root.add_file(str(dest), mod.path, 0o555)
        entries.append(ModuleEntry(name=mod.name, origin=mod.origin, kind=mod.kind, path=str(dest) if dest else None))
    jobs.append((START_SOURCE, root.host(_pyc(PurePosixPath(START_PATH))), str(_pyc(PurePosixPath(START_PATH)))))
    compile_all(interp, jobs, root.root)
    root.mkdir(str(interp.guest(interp.lib_dynload)))  # getpath's landmark for the platform library
    entries = [msgspec.structs.replace(e, size=root.host(e.path).stat().st_size) if e.path else e for e in entries]

    init = init_binary()
    root.add_file(INIT_PATH, init, 0o555)
    sysroot = interp.sysroot or Path("/")
    root.add_host_path(interp.executable, sysroot)
    extensions = [interp.guest(m.path) for m in graph.extensions if m.path]
    if interp.sysroot is not None:  # an image's interpreter: init joins it in the tree, to load the tree's C library
        (sysroot / "kiln").mkdir(exist_ok=True)
        shutil.copyfile(init, sysroot / "kiln" / "init")
        closure = elf.closure([Path(INIT_PATH), interp.executable, *extensions], sysroot=sysroot)
    else:
        closure = elf.closure([init, interp.executable, *extensions])
    # Libraries that wheels vendor (`<dist>.libs/`, found through RPATH $ORIGIN) move with their
    # site-packages; everything else keeps the path the loader asks for.
    placed = elf.Closure()
    for requested in closure.libraries:
        host = Path(os.path.normpath(requested))
        if any(host.is_relative_to(site) for site in place.sites):
            guest = str(place.guest(host))
            root.add_file(guest, closure.files[requested])
        else:
            guest = requested
            root.add_host_path(requested, sysroot)
        placed.files[guest] = closure.files[requested]
        placed.needed_by[guest] = str(place.guest(Path(os.path.normpath(closure.needed_by[requested]))))
    return entries, placed


def _sources_digest(app: App, graph: ModuleGraph, data: list[Path]) -> str:
    """sha256 over what the build read from the app's directory (its modules, config, dependency
    declarations and data files), each file as its path relative to the app, NUL, its content."""
    files = {m.path for m in graph.modules.values() if m.origin == "app" and m.path} | set(data)
    if app.config_file:
        files.add(app.config_file)
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: str(p.relative_to(app.root))):
        h.update(str(f.relative_to(app.root)).encode() + b"\0" + f.read_bytes())
    declared = None if app.single_file else declared_deps.read(app.root)
    if declared is not None:  # the declarations with what they include (-r files, local packages)
        h.update(b"dependencies\0" + declared.key.encode())
    return "sha256:" + h.hexdigest()


def build_inputs(app: App, source: str, sources_digest: str) -> BuildInputs:
    """What the image was built from, by name and digest: never a path of the building host nor the name
    of the directory it was checked out in, so the same sources give the same manifest anywhere
    (docs/security.md)."""
    return BuildInputs(
        source=source,
        config_file=str(app.config_file.relative_to(app.root)) if app.config_file else None,
        sources_digest=sources_digest,
        kiln_version=__version__,
    )


def build_time() -> datetime:
    """The image's `created`: SOURCE_DATE_EPOCH when set (reproducible-builds.org), else 1970-01-01.

    Nothing in the inputs tells a trustworthy time (a checkout's mtimes are the checkout's), and
    the build time would make every build a different image; so, as Nix and ko do, the epoch."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if raw:
        if not raw.isdigit():
            raise UsageError(f"SOURCE_DATE_EPOCH must be seconds since 1970 (got {raw!r})")
        return datetime.fromtimestamp(int(raw), UTC)
    return datetime.fromtimestamp(0, UTC)


def kernel_for(features: tuple[str, ...], options: BuildOptions, progress: Progress) -> kbuild.Kernel:
    """The cached kernel with these features; built now unless options.build_kernel is False."""
    cfg = kbuild.resolve_config(features)
    cached = kbuild.cached(cfg)
    if cached is not None:
        return cached
    if not options.build_kernel:
        return kbuild.require(cfg)  # raises, saying how to build it
    with progress.kernel(cfg) as report:
        return kbuild.build(cfg, progress=report)


@dataclass(frozen=True)
class PythonAnalysis:
    interp: Interpreter
    graph: ModuleGraph
    needs: Needs
    place: Placement
    dependencies_from: str | None  # where the installed dependencies were declared


def analyze_python(
    app: App, say: Step | None = None, interp: Interpreter | None = None, app_dir: PurePosixPath = APP_DIR
) -> PythonAnalysis:
    """Install the app's declared dependencies (or take them from the cache), then analyze its imports.
    With `interp`, a container image's interpreter (kiln.oci.python): what the image installed is what it
    has, and the app stays at `app_dir`, its place in the image."""
    assert isinstance(app.config, AppConfig)
    say = say or (lambda _msg: None)
    interp = interp or probe(app.config.python)
    sites: dict[Path, PurePosixPath] = {}
    requested: tuple[tuple[str, tuple[str, ...]], ...] = ()
    declared = None if app.single_file or interp.sysroot is not None else declared_deps.read(app.root)
    if declared is not None and not declared.empty:
        say(f"dependencies: {declared_deps.describe(declared)}")
        installed = install(app.root, declared, interp, lambda line: say(f"  {line}"))
        state = "cached, nothing installed" if installed.cached else "installed"
        say(f"dependencies: {len(installed.packages)} distributions ({state})")
        sites[installed.site] = PurePosixPath(f"/usr/local/lib/python{interp.short_version}/site-packages")
        requested = installed.requested
    graph = analyze(app, interp, tuple(sites), requested)
    if graph.whole:
        say(
            f"kept whole: {len(graph.whole)} distributions ({', '.join(graph.whole[:6])}"
            f"{' and more' if len(graph.whole) > 6 else ''})"
        )
    for note in graph.notes:
        say(f"note: {note}")
    if graph.keep_sources and app.config.sources != "none":
        say(f"sources kept: {', '.join(sorted(graph.keep_sources))} (reads its own source: inspect.getsource)")
    return PythonAnalysis(
        interp,
        graph,
        python_needs(app.config, graph),
        Placement(app.root, app_dir, sites, interp.sysroot),
        declared.source if declared is not None and sites else None,
    )


def build_python(
    app: App,
    store: Store,
    options: BuildOptions,
    progress: Progress,
    analysis: PythonAnalysis | None = None,
    image: Callable[[RootFS, Entry], tuple[Entry, BuildInputs]] | None = None,
) -> Built:
    """Build a Python app. A container image's app (kiln.oci.python) comes analyzed with the image's
    interpreter, and `image` then finishes its entry and inputs from the image's config and tree."""
    say = progress.step
    build_time()  # a malformed SOURCE_DATE_EPOCH fails before any work (mkfs.erofs reads it too)
    ref = Ref.parse(options.tag) if options.tag else Ref(app.name)
    for line in app.describe():
        say(line)
    analysis = analysis or analyze_python(app, say)
    interp, graph, needs, place = analysis.interp, analysis.graph, analysis.needs.plus(options.needs), analysis.place
    rules = policy(app.config.seccomp.allow)
    kernel = kernel_for(needs.features, options, progress)

    with store.staging() as scratch:
        say(f"laying out {len(graph.modules)} modules")
        root = RootFS(scratch / "root")
        modules, closure = layout(app, graph, interp, root, place)
        app_files = app_data(app, root, place)
        data_files = package_data(graph, root, place) + len(app_files) + system_data(graph, root)
        root.add_bytes("/etc/hosts", f"127.0.0.1\tlocalhost {app.name}\n".encode())
        root.add_bytes("/etc/nsswitch.conf", b"hosts: files dns\n")
        add_resolver(root)
        python = PythonInfo(
            interpreter=str(interp.executable),
            version=interp.version,
            modules=tuple(modules),
            optional_left_out=tuple(graph.optional_left_out),
            excluded=tuple(graph.excluded),
            dependencies_from=analysis.dependencies_from,
            distributions=tuple(DistributionEntry(name=d.name, version=d.version) for d in kept_distributions(graph)),
            data_files=data_files,
        )
        # the image's name, not the directory's: two checkouts under other names are the same sources
        source = app.entry_path.name if app.single_file else app.name
        inputs = build_inputs(app, source, _sources_digest(app, graph, app_files))
        forks = graph.launch.forks if graph.launch else None
        memory = memory_for(app.config.memory, kernel, root, forks.processes if forks else 1)
        entry = _entry(app, graph, interp, place, memory)
        if image is not None:
            entry, inputs = image(root, entry)
        contents = Contents(root, entry, closure, python, inputs)
        return dataclasses.replace(finish(store, ref, contents, needs, rules, kernel, say), analysis=analysis)


@dataclass
class Contents:
    """What a builder laid out: the tree, how to start the app, and what to record."""

    root: RootFS
    entry: Entry
    closure: elf.Closure
    python: PythonInfo | None
    inputs: BuildInputs


def finish(
    store: Store, ref: Ref, contents: Contents, needs: Needs, rules: Policy, kernel: kbuild.Kernel, say: Step
) -> Built:
    """Seal what a builder laid out: volumes, /kiln/config, EROFS, dm-verity, then the store."""
    root, entry, closure = contents.root, contents.entry, contents.closure
    for directory in (*entry.volumes, *(w.path for w in entry.writable)):
        root.mkdir(directory)  # the mount points
    root.add_bytes(CONFIG_PATH, config_lines(entry, ref.name.rsplit("/", 1)[-1], rules.config_lines()))
    files = root.files()
    say(f"packing {len(files)} files")
    rootfs_img = root.root.parent / "root.erofs"
    erofs.pack(root.root, rootfs_img)
    verity = protect(rootfs_img)
    meta = kernel.meta
    libraries = tuple(
        LibraryEntry(path=p, size=closure.files[p].stat().st_size, needed_by=closure.needed_by[p])
        for p in closure.libraries
    )

    def manifest(kernel_digest: str, kernel_size: int, rootfs_digest: str, rootfs_size: int) -> Manifest:
        return Manifest(
            name=ref.name,
            created=build_time(),
            kernel=KernelPart(
                digest=kernel_digest,
                size=kernel_size,
                media_type=MEDIA_KERNEL,
                config_hash=kernel.config_hash,
                features=tuple(meta["features"]),
                reasons=needs.reasons,
                source_version=str(meta["source_version"]),
                options=kernel.enabled_options(),
                options_enabled=int(meta["options_enabled"]),
                uncompressed_size=kernel.vmlinux_size,
            ),
            rootfs=RootfsPart(
                digest=rootfs_digest,
                size=rootfs_size,
                media_type=MEDIA_ROOTFS,
                compression=erofs.COMPRESSION,
                files=len(files),
                verity=verity,
            ),
            entry=entry,
            policy=SyscallPolicy(denied=rules.denied, relaxed=rules.relaxed),
            python=contents.python,
            libraries=libraries,
            build=contents.inputs,
        )

    say("storing")
    return commit(store, ref, kernel.vmlinux_xz, rootfs_img, manifest)


def commit(
    store: Store,
    ref: Ref,
    kernel_file: Path,
    rootfs_file: Path,
    manifest: Callable[[str, int, str, int], Manifest],
) -> Built:
    """Add the kernel, the root file system and the manifest naming them to the store, tagged."""
    made: list[Manifest] = []

    def make(stored: list[tuple[str, int]]) -> bytes:
        (kdigest, ksize), (rdigest, rsize) = stored
        made.append(manifest(kdigest, ksize, rdigest, rsize))
        return made[0].to_json()

    digest = store.add_image(ref, [kernel_file, rootfs_file], make)
    return Built(ref, digest, made[0])
