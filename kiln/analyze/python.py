"""The import graph of a Python app: which modules it reaches, from where.

Starting where the app's command starts (its entry file, the module of
`python -m`, or the entry point of a console script, and the app modules a
server names in its arguments: kiln.analyze.command), the modules the
interpreter loads at start-up and the config's `include` list, we follow every import (see kiln.analyze.imports
for how each one is classified) and resolve module names the way CPython's
path finder does, against the *target* interpreter's sys.path with the app's
directory first. Nothing is imported or run.

Imports inside functions of the stdlib and of third-party packages are
*deferred*: they run only if the function is called. They are followed from
modules that the app loads eagerly (a function the app may call), but not
from modules that were themselves only reached through a deferred import.
That one level keeps, say, argparse's use of shutil, without dragging in
everything that any function of shutil could ever load. The app's own
deferred imports are always followed, and `include` keeps anything else.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kiln.analyze import imports
from kiln.analyze.app_files import app_files, module_name
from kiln.analyze.command import Launch, resolve_console
from kiln.analyze.conditions import Facts
from kiln.analyze.hints import FRAMEWORK_HINTS, NOT_SHIPPED, django_strings, virtual_module, whole_packages
from kiln.analyze.imports import ImportRef, Kind
from kiln.config import App, AppConfig
from kiln.deps.metadata import Distributions
from kiln.errors import AnalysisError, AppError
from kiln.interpreter import Interpreter

Origin = Literal["app", "stdlib", "third-party"]
ModKind = Literal["source", "extension", "builtin", "namespace"]

# Codecs the interpreter looks up by name at run time (str.encode, open()),
# which no import statement names.
INTERPRETER_DYNAMIC = ("encodings.ascii", "encodings.latin_1", "encodings.utf_8")
# Modules that the interpreter's C modules import at run time, which no
# import statement names (CPython's own "hidden imports").
C_IMPORTS: dict[str, tuple[str, ...]] = {
    "_socket": ("encodings.idna",),  # host names go through the idna codec
    "time": ("_strptime",),  # time.strptime
    "_datetime": ("_strptime",),  # datetime.strptime
    "_decimal": ("numbers", "collections", "contextvars"),
    "_pickle": ("copyreg", "_compat_pickle"),
    "_elementtree": ("xml.etree.ElementPath",),
    "_ctypes": ("ctypes",),
}
# getpath finds the standard library by this module's file.
LANDMARKS = ("os",)


@dataclass(frozen=True)
class Module:
    name: str
    kind: ModKind
    origin: Origin
    path: Path | None = None  # .py / .so on the host (__init__.py for packages)
    base: Path | None = None  # the sys.path entry it was found under
    is_package: bool = False
    search: tuple[Path, ...] = ()  # where its submodules live (packages only)
    frozen: bool = False  # the interpreter carries a frozen copy


@dataclass(frozen=True)
class Unresolved:
    name: str
    importer: str
    file: Path | None
    line: int

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else self.importer
        return f"{self.name} (imported at {where})"


@dataclass
class ModuleGraph:
    modules: dict[str, Module] = field(default_factory=dict)
    unresolved: list[Unresolved] = field(default_factory=list)  # fatal
    ignored: list[Unresolved] = field(default_factory=list)  # conditional/stdlib, not fatal
    optional_left_out: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # name -> where, why
    excluded: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # by `exclude`: name -> where
    distributions: Distributions = field(default_factory=Distributions)
    reached_from: dict[str, tuple[str, int]] = field(default_factory=dict)  # module -> (importer, line)
    kernel_uses: dict[str, set[str]] = field(default_factory=dict)  # module -> kernel interfaces it names
    launch: Launch | None = None  # how the app starts, console scripts resolved to their entry points
    whole: tuple[str, ...] = ()  # distributions kept whole
    requested: tuple[str, ...] = ()  # distributions the user asked for (extras followed)
    entry_point_groups: dict[str, str] = field(default_factory=dict)  # group -> the module that loads it
    notes: list[str] = field(default_factory=list)  # what the build says about the analysis
    keep_sources: set[str] = field(default_factory=set)  # third-party packages that read their own source

    def why(self, name: str) -> list[str]:
        """The chain of modules whose imports brought `name` in, entry first."""
        chain = [name]
        while (via := self.reached_from.get(chain[-1])) and len(chain) < 100:
            chain.append(via[0])
        return chain[::-1]

    @property
    def extensions(self) -> list[Module]:
        return [m for m in self.modules.values() if m.kind == "extension"]


class Resolver:
    """Finds modules by name in a list of directories, like importlib's PathFinder."""

    def __init__(
        self, app: App, interp: Interpreter, site_dirs: tuple[Path, ...] = (), app_dirs: tuple[str, ...] = ()
    ) -> None:
        self.interp = interp
        self.app_root = app.root
        assert isinstance(app.config, AppConfig)
        # Vendored directories (python_path) and installed dependencies hold third-party packages.
        self.third_party = (*[(app.root / p).resolve() for p in app.config.python_path], *site_dirs)
        # An app that declares its dependencies gets exactly those: the host's own site-packages and
        # dist-packages (Debian's python3-* packages) are not searched, as in a virtualenv.
        host_sites = ("site-packages", "dist-packages")
        system = [p for p in interp.path if not (site_dirs and p.name in host_sites)]
        # A server's --app-dir/--chdir: put on sys.path before the app is imported
        first = [(app.root / d).resolve() for d in app_dirs if (app.root / d).resolve().is_relative_to(app.root)]
        self.path = [*first, app.root, *self.third_party, *system]
        self.cache: dict[str, Module | None] = {}

    def origin(self, path: Path) -> Origin:
        if any(path.is_relative_to(d) for d in self.third_party):
            return "third-party"
        if path.is_relative_to(self.app_root) and not self.app_root.is_relative_to(self.interp.stdlib):
            return "app"
        if path.is_relative_to(self.interp.stdlib) and not any(
            part in ("site-packages", "dist-packages") for part in path.relative_to(self.interp.stdlib).parts
        ):
            return "stdlib"
        return "third-party"

    def find(self, name: str) -> Module | None:
        if name in self.cache:
            return self.cache[name]
        result = self._find(name)
        self.cache[name] = result
        return result

    def _find(self, name: str) -> Module | None:
        parent, _, last = name.rpartition(".")
        if not parent and name in self.interp.builtins:
            return Module(name, "builtin", "stdlib")
        if name in self.interp.frozen and self.interp.frozen_only(name):
            return Module(name, "builtin", "stdlib", frozen=True)
        if parent:
            pkg = self.find(parent)
            if pkg is None or not pkg.is_package:
                return None
            dirs, bases = list(pkg.search), pkg.base
        else:
            dirs, bases = self.path, None
        portions: list[Path] = []
        for d in dirs:
            base = bases or d
            found = self._in_dir(name, d, last, base)
            if isinstance(found, Module):
                return found
            if found is not None:
                portions.append(found)
        if portions:
            return Module(
                name, "namespace", self.origin(portions[0]), None, bases or portions[0].parent, True, tuple(portions)
            )
        return None

    def _in_dir(self, name: str, d: Path, last: str, base: Path) -> Module | Path | None:
        frozen = name in self.interp.frozen
        pkg_dir = d / last
        if (pkg_dir / "__init__.py").is_file():
            init = pkg_dir / "__init__.py"
            return Module(name, "source", self.origin(init), init, base, True, (pkg_dir,), frozen)
        for suffix in self.interp.extension_suffixes:
            ext = d / f"{last}{suffix}"
            if ext.is_file():
                return Module(name, "extension", self.origin(ext), ext, base)
        src = d / f"{last}.py"
        if src.is_file():
            return Module(name, "source", self.origin(src), src, base, False, (), frozen)
        if pkg_dir.is_dir():
            return pkg_dir
        return None


def _absolute(ref: ImportRef, importer: Module) -> str | None:
    if ref.level == 0:
        return ref.module
    package = importer.name if importer.is_package else importer.name.rpartition(".")[0]
    parts = package.split(".") if package else []
    if ref.level - 1 >= len(parts):
        return None
    base = parts[: len(parts) - (ref.level - 1)]
    return ".".join(base + ([ref.module] if ref.module else []))


class _Walker:
    def __init__(
        self,
        app: App,
        interp: Interpreter,
        site_dirs: tuple[Path, ...],
        launch: Launch,
        requested: tuple[tuple[str, tuple[str, ...]], ...] = (),
    ) -> None:
        assert isinstance(app.config, AppConfig)
        self.app = app
        self.resolver = Resolver(app, interp, site_dirs, launch.app_dirs)
        self.as_main = {"__main__"}  # modules that run as __main__ (their `if __name__ == "__main__":` runs)
        self.facts = Facts(
            interp.version_info,
            interp.markers["sys_platform"],
            interp.markers["os_name"],
            interp.markers["platform_system"],
            interp.markers["implementation_name"],
        )
        self.graph = ModuleGraph()
        # Hidden imports whose names the interpreter computes.
        self.hidden = {"sysconfig": (interp.sysconfigdata,)}
        self.graph.distributions = Distributions.scan(
            [
                p
                for p in self.resolver.path
                if p != app.root
                and (not p.is_relative_to(interp.stdlib) or p.name in ("site-packages", "dist-packages"))
            ],
            interp.markers,
        )
        self.include = set(app.config.include)
        self.exclude = set(app.config.exclude)
        # Modules that will raise ImportError when imported (a plain import of theirs is missing), and the
        # fallbacks waiting on a preferred import of one of them: (importer, preferred targets, fallback refs).
        self.broken: set[str] = set()
        self.waiting: list[tuple[Module, set[str], list[ImportRef]]] = []
        self.queue: list[Module] = []
        self.lazy: dict[str, bool] = {}
        self.refs: dict[str, list[ImportRef]] = {}
        self.trim = app.config.trim
        self.asked = requested
        self.partial: set[str] = set()  # modules kept only as part of a whole: their misses are never fatal
        self.expanded: set[str] = set()  # distributions already kept whole
        self.plugins: set[str] = set()  # entry-point groups whose plugins are kept
        self.named: set[str] = set()  # the top-level names any kept module imports

    def add(self, name: str, via: tuple[str, int] | None = None, lazy: bool = False) -> bool:
        """Add `name` and its parent packages; False if any part cannot be found."""
        if (virtual := virtual_module(name)) is not None:  # six.moves.X: six, and the stdlib module X is
            owner, real = virtual
            found = self.add(owner, via, lazy)
            if real is not None and found:
                self.add(real, via, lazy)
            return found
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub in self.graph.modules:
                if self.lazy.get(sub) and not lazy:  # now reached eagerly: follow its deferred imports
                    self.lazy[sub] = False
                    self.queue.append(self.graph.modules[sub])
                continue
            mod = self.resolver.find(sub)
            if mod is None:
                return False
            self.graph.modules[sub] = mod
            self.lazy[sub] = lazy
            if via:
                self.graph.reached_from[sub] = via
            self.queue.append(mod)
            hints = (*C_IMPORTS.get(sub, ()), *FRAMEWORK_HINTS.get(sub, ()), *self.hidden.get(sub, ()))
            for hidden in (*hints, *whole_packages(sub, mod.search)):
                self.add(hidden, (sub, 0), lazy)  # kept if it exists
        return True

    def is_included(self, name: str) -> bool:
        return any(name == inc or name.startswith(inc + ".") for inc in self.include)

    def is_excluded(self, name: str) -> bool:
        return any(name == exc or name.startswith(exc + ".") for exc in self.exclude)

    def required_by_metadata(self, importer: Module, target: str) -> str | None:
        """The distribution of a third-party `importer` if its metadata says it needs `target`'s; else None."""
        dists = self.graph.distributions
        owner = dists.owner(importer.path)
        return owner.name if owner is not None and dists.needs(owner, target) else None

    def visit(self, importer: Module, refs: list[ImportRef]) -> None:
        failed_groups: set[int] = set()
        fatal = importer.origin != "stdlib"
        if importer.name in self.partial:
            self._visit_partial(importer, refs)
            return
        importer_lazy = self.lazy.get(importer.name, False)
        preferred: dict[int, set[str]] = defaultdict(set)
        for ref in refs:
            target = _absolute(ref, importer)
            if ref.kind == Kind.PREFERRED and target:
                preferred[ref.group].add(target)
            deferred = ref.deferred and importer.origin != "app"
            if deferred and importer_lazy and not (target and self.is_included(target)):
                if target and target not in self.graph.modules:
                    self.graph.optional_left_out[target].append(f"{importer.name}:{ref.line} (in a function)")
                continue
            lazy = importer_lazy or deferred
            if target and self.is_excluded(target) and not self.is_included(target):
                self.graph.excluded[target].append(f"{importer.name}:{ref.line}")
                continue
            shown = target or f"from {'.' * ref.level}{ref.module} import {', '.join(ref.names)}"
            miss = Unresolved(shown, importer.name, importer.path, ref.line)
            if ref.kind == Kind.FALLBACK and ref.group not in failed_groups:
                # The preferred import resolved, but may still fail when the module it names runs.
                self.waiting.append((importer, preferred[ref.group], [ref]))
                continue
            free = target is not None and (
                target in self.graph.modules
                or ((found := self.resolver.find(target)) is not None and found.kind == "builtin")
            )
            if ref.kind == Kind.OPTIONAL and not free and not (target and self.is_included(target)):
                if target:
                    self.graph.optional_left_out[target].append(f"{importer.name}:{ref.line}")
                continue
            if target is None or not self.add(target, (importer.name, ref.line), lazy):
                if ref.kind == Kind.PREFERRED:
                    failed_groups.add(ref.group)
                elif ref.kind not in (Kind.REQUIRED, Kind.FALLBACK, Kind.OPTIONAL) or not fatal:
                    self.graph.ignored.append(miss)
                elif importer.origin == "app" or target is None:
                    self.graph.unresolved.append(miss)
                elif needer := self.required_by_metadata(importer, target):
                    self.graph.unresolved.append(
                        Unresolved(f"{target} (needed by {needer})", importer.name, importer.path, ref.line)
                    )
                else:
                    # A package's import of something its metadata does not require on this interpreter:
                    # an optional extra, another platform's module. Left out, listed.
                    self.graph.optional_left_out[target].append(f"{importer.name}:{ref.line} (not required)")
                    if ref.kind == Kind.REQUIRED and not ref.deferred:
                        self.broken.add(importer.name)
                continue
            for attr in ref.names:
                if attr != "*":
                    # a submodule, if it is one; an attribute otherwise
                    self.add(f"{target}.{attr}", (importer.name, ref.line), lazy)

    def _visit_partial(self, importer: Module, refs: list[ImportRef]) -> None:
        """A module kept as part of a whole (its distribution, the app's directory): what it imports is kept
        when it resolves, in a function or not (the whole can call any of its functions, and Docker's image
        has the whole stdlib: sqlalchemy's sqlite dialect imports sqlite3 when it connects), and a miss is only
        listed."""
        for ref in refs:
            target = _absolute(ref, importer)
            if target is None:
                continue
            if self.is_excluded(target) and not self.is_included(target):
                self.graph.excluded[target].append(f"{importer.name}:{ref.line}")
                continue
            if ref.kind == Kind.OPTIONAL and target not in self.graph.modules and not self.is_included(target):
                self.graph.optional_left_out[target].append(f"{importer.name}:{ref.line}")
                continue
            if target not in self.graph.modules and self._other_distribution(importer, target):
                # a whole brings its own modules, and the distributions its metadata requires: an installed
                # speedup nobody asked for (uvloop for a plain uvicorn) stays out, as an optional import does
                self.graph.optional_left_out[target].append(f"{importer.name}:{ref.line} (not required)")
                continue
            if not self.add(target, (importer.name, ref.line), lazy=True):
                if ref.kind not in (Kind.DYNAMIC, Kind.CONDITIONAL):
                    self.graph.optional_left_out[target].append(f"{importer.name}:{ref.line} (not installed)")
                continue
            for attr in ref.names:
                if attr != "*":
                    self.add(f"{target}.{attr}", (importer.name, ref.line), lazy=True)

    def _other_distribution(self, importer: Module, target: str) -> bool:
        """Is `target` in an installed distribution other than third-party `importer`'s, which its metadata
        does not require?"""
        if importer.origin != "third-party":
            return False
        dists = self.graph.distributions
        top = self.resolver.find(target.split(".")[0])
        theirs = dists.owner(top.path) if top is not None else None
        ours = dists.owner(importer.path)
        return theirs is not None and ours is not None and theirs.name != ours.name and not dists.needs(ours, target)

    def add_partial(self, name: str, via: str) -> None:
        """Keep `name` as part of a whole, if it exists and is not kept already."""
        if name in self.graph.modules or self.is_excluded(name):
            return
        if self.resolver.find(name) is None:
            return
        # the parents it needs are either kept already or part of the same whole
        parts = name.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        self.partial |= prefixes - self.graph.modules.keys()
        self.add(name, (via, 0), lazy=True)

    def app_whole(self) -> None:
        """Every module in the app's directory: the app is kept whole, as `COPY . .` copies it."""
        if self.app.single_file:
            return
        assert isinstance(self.app.config, AppConfig)
        vendored = [self.app.root / p for p in self.app.config.python_path]
        for path in app_files(self.app.root, vendored):
            name = module_name(self.app.root, path)
            if name is not None and name != "__main__":
                found = self.resolver.find(name)
                if found is not None and found.origin == "app":
                    self.add_partial(name, "the app's directory")

    def expand(self) -> bool:
        """Keep the wholes the graph now reaches (see the module's docstring); True if anything was added."""
        before = len(self.graph.modules)
        dists = self.graph.distributions
        for group, loader in sorted(self.graph.entry_point_groups.items()):
            if group in self.plugins:
                continue
            self.plugins.add(group)
            for dist, name, value in dists.entry_points(group):
                module = value.split(":")[0].strip()
                if not self.add(module, (f"{loader} (entry point {group}: {name} of {dist.name})", 0), lazy=True):
                    raise AnalysisError(
                        f"entry point {name} of {dist.name} (group {group}, loaded by {loader}) names {module}, "
                        "which is not installed"
                    )
        if self.trim == "distributions":
            wanted = {d.name for m in self.graph.modules.values() if (d := dists.owner(m.path)) is not None}
            wanted |= set(self.graph.requested)
            for name in sorted(wanted - self.expanded):
                self.expanded.add(name)
                for module in dists.by_name[name].modules:
                    if not any(part in NOT_SHIPPED for part in module.split(".")[1:]):
                        self.add_partial(module, f"{name} (kept whole)")
        return len(self.graph.modules) > before

    def start(self, launch: Launch) -> Launch:
        """Add where the command starts; return the launch with a console script's entry point resolved."""
        where = self.app.command_from or "the command"
        importer = "__main__"
        if launch.kind == "file":
            main = Module("__main__", "source", "app", self.app.root / launch.target, self.app.root)
            self.graph.modules["__main__"] = main
            self.queue.append(main)
        else:
            if launch.kind == "console":
                installed = sorted(self.graph.distributions.by_name)
                shown = f"installed: {', '.join(installed)}" if installed else "none is installed"
                launch = resolve_console(launch, self.graph.distributions.console_scripts(), where, shown)
            module = launch.module
            assert module is not None
            found = self.resolver.find(module)
            if found is not None and launch.kind == "module" and found.is_package:
                module = f"{module}.__main__"  # python -m PACKAGE runs PACKAGE.__main__
            if launch.kind == "module":
                self.as_main = {module}
                self.add("runpy")  # kiln's start-up hook runs -m through runpy, as the interpreter does
            if not self.add(module):
                what = "the console script's entry point" if launch.kind == "console" else "python -m"
                raise AnalysisError(f"{where}: {what} {module} cannot be found")
            importer = module
        server = launch.server.name if launch.server else launch.name
        for name in launch.app_modules:
            if not self.add(name, (importer, 0)):
                raise AnalysisError(
                    f"{where}: {server} imports {name} (named in its arguments), and there is no such module in "
                    f"{self.app.root}"
                )
        return launch

    def run(self, launch: Launch, startup: list[str]) -> ModuleGraph:
        self.graph.launch = self.start(launch)
        for name in startup:
            if not self.add(name):
                raise AnalysisError(f"the interpreter needs {name} at start-up, and it cannot be found")
        for name in sorted(self.include):
            if not self.add(name):
                raise AnalysisError(f"include: module {name} cannot be found")
        self.settle()
        dists = self.graph.distributions
        self.graph.requested = tuple(sorted(dists.requested(self.asked)))
        self.app_whole()
        self.settle()
        while self.expand():
            self.settle()
        self.graph.whole = tuple(sorted(self.expanded))
        # a requested distribution no kept module names in an import, and that runs no other way
        unused = [
            d for d in self.graph.requested
            if not dists.by_name[d].top_level & self.named and not dists.by_name[d].scripts
            and not any(g in self.plugins for g, _n, _v in dists.by_name[d].entry_points)
        ]  # fmt: skip
        if unused:
            self.graph.notes.append(
                f"asked for, and imported by no module of the image: {', '.join(unused)} (kept; "
                "drop it from the requirements if the app does not need it)"
            )
        self.graph.optional_left_out = {
            k: v for k, v in sorted(self.graph.optional_left_out.items()) if k not in self.graph.modules
        }
        self.graph.excluded = dict(sorted(self.graph.excluded.items()))
        return self.graph

    def settle(self) -> None:
        """Follow every import queued, then the fallbacks of preferred imports that fail."""
        self._drain()
        while resumed := [w for w in self.waiting if w[1] & self.broken]:
            # A preferred module fails at import time: its fallback runs instead, and is kept if it exists.
            self.waiting = [w for w in self.waiting if not w[1] & self.broken]
            for importer, _targets, fallback in resumed:
                self.visit(importer, [dataclasses.replace(r, kind=Kind.CONDITIONAL) for r in fallback])
            self._drain()

    def _drain(self) -> None:
        while self.queue:
            mod = self.queue.pop(0)
            if mod.kind != "source" or mod.path is None:
                continue
            if mod.name not in self.refs:
                try:
                    tree = imports.parse(mod.path.read_bytes(), mod.path)
                except AppError as err:
                    if mod.name not in self.partial:
                        raise
                    # a file nothing imports that this Python cannot compile (a Python 2 script, a template)
                    del self.graph.modules[mod.name]
                    self.graph.notes.append(f"left out, as this Python cannot compile it: {err}")
                    self.refs[mod.name] = []
                    continue
                for group, _line in imports.entry_point_groups(tree):
                    self.graph.entry_point_groups.setdefault(group, mod.name)
                self.refs[mod.name] = imports.scan(tree, is_main=mod.name in self.as_main, facts=self.facts)
                django_settings = mod.origin == "app" or mod.name == "django.conf.global_settings"
                if django_settings and self.resolver.find("django") is not None:
                    self.refs[mod.name] += [
                        ImportRef(name, 0, (), line, Kind.DYNAMIC) for name, line in django_strings(tree)
                    ]
                self.refs[mod.name] += [  # a codec named by a constant is imported by that name when used
                    ImportRef(name, 0, (), line, Kind.DYNAMIC) for name, line in imports.codec_modules(tree)
                ]
                if uses := imports.kernel_uses(tree):
                    self.graph.kernel_uses[mod.name] = uses
                own = mod.name.split(".")[0]
                if mod.origin == "third-party" and imports.reads_source(tree):
                    self.graph.keep_sources.add(own)  # its .py files stay beside their bytecode
                self.named |= {t for r in self.refs[mod.name] if r.level == 0 and (t := r.module.split(".")[0]) != own}
            self.visit(mod, self.refs[mod.name])


def analyze(
    app: App,
    interp: Interpreter,
    site_dirs: tuple[Path, ...] = (),
    requested: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> ModuleGraph:
    """The module graph of `app` (graph.launch says how it starts); raises AnalysisError listing every
    unresolved import. `requested`: the distributions the user asked for, as (name, extras)."""
    startup = [
        m for m in interp.startup_modules if m != "__main__" and m not in interp.builtins and m not in interp.frozen
    ]
    startup += [m for m in (*INTERPRETER_DYNAMIC, *LANDMARKS) if m not in startup]
    launch = app.launch
    graph = _Walker(app, interp, site_dirs, launch, requested).run(launch, startup)
    if graph.unresolved:
        listing = "; ".join(str(u) for u in graph.unresolved)
        count = len(graph.unresolved)
        raise AnalysisError(f"{count} import{'s' if count > 1 else ''} cannot be resolved: {listing}")
    return graph
