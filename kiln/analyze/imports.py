"""Read the imports out of one Python source file, with how much each one matters.

The scan is static (`ast`), so no app code runs at build time. Each import is
classified by the code around it:

- required: a plain import. It must resolve, or the build fails.
- preferred / fallback: `try: import a` / `except ImportError: import b`.
  The preferred module is kept when it resolves; the fallback only when it does not.
- optional: `try: import a` / `except ImportError: pass` (no alternative). The
  code works without it, so it is left out unless `include` asks for it. A
  handler that raises again (`except ImportError: raise ImportError("install
  Django")`) does not make the import optional.
- conditional: under an `if` that mentions the platform but that
  kiln.analyze.conditions cannot decide. Kept when it resolves, never an error
  when it does not. Tests it can decide (`sys.version_info >= (3, 14)`,
  `sys.platform == "win32"`, `os.name == "nt"`...) are evaluated against the
  embedded interpreter, and only the branch that runs is scanned.
- dynamic: `importlib.import_module("a")` / `__import__("a")` with a literal
  name, or with a name held in a module-level constant: `for p in PLUGINS:
  import_module(p)` over `PLUGINS = ("a.b", "a.c")` (a tuple, list, set or the
  keys and values of a dict of literal strings), and `import_module(f"a.{p}")`
  over such a loop. Kept when it resolves.

`entry_point_groups` finds the plugin groups a module loads by name (pluggy's
`load_setuptools_entrypoints("datasette")`, `entry_points(group="...")`), so
that the analysis can keep every installed plugin of that group.

Each import also records whether it sits inside a function (`deferred`):
such an import runs only if that function is called.

Imports under `if TYPE_CHECKING:` never run and are ignored, and so are those
under `if __name__ == "__main__":` in any module but the entry point.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from kiln.analyze.conditions import Facts
from kiln.errors import AppError

_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
_PLATFORM_NAMES = {"platform", "name", "TYPE_CHECKING"}


class Kind(StrEnum):
    REQUIRED = "required"
    PREFERRED = "preferred"
    FALLBACK = "fallback"
    OPTIONAL = "optional"
    CONDITIONAL = "conditional"
    DYNAMIC = "dynamic"


@dataclass(frozen=True)
class ImportRef:
    """`from <module> import <names>` (names empty for `import <module>`), at `line`."""

    module: str
    level: int
    names: tuple[str, ...]
    line: int
    kind: Kind
    group: int = 0  # ties preferred imports to their fallbacks
    deferred: bool = False  # inside a function body


def parse(source: bytes, filename: Path) -> ast.Module:
    """Parse source, turning a syntax error into 'file:line: message'."""
    try:
        return ast.parse(source, filename=str(filename))
    except SyntaxError as err:
        raise AppError(f"{filename}:{err.lineno}: syntax error: {err.msg}") from None
    except ValueError as err:  # e.g. source with NUL bytes
        raise AppError(f"{filename}: cannot be parsed: {err}") from None


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _IMPORT_ERRORS for t in types)


def _mentions_platform(test: ast.expr) -> bool:
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr in _PLATFORM_NAMES:
            return True
        if isinstance(node, ast.Name) and node.id == "TYPE_CHECKING":
            return True
    return False


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
        and isinstance(test.ops[0], ast.Eq)
    )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _strings(node: ast.expr | None, constants: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The literal strings an expression holds: a string, a tuple/list/set of them, a dict's string keys and
    values, or a module-level name bound to one of those; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    items: list[ast.expr | None] = []
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items = list(node.elts)
    elif isinstance(node, ast.Dict):
        items = [*node.keys, *node.values]
    else:
        return None
    found = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return tuple(found) if found else None


def module_constants(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Module-level names bound to literal strings or collections of them (`DEFAULT_PLUGINS = (...)`)."""
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            value, targets = node.value, node.targets
        elif isinstance(node, ast.AnnAssign):
            value, targets = node.value, [node.target]
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and (strings := _strings(value, found)) is not None:
                found[target.id] = strings
    return found


def _names(arg: ast.expr, bound: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The module names an argument of import_module can be: a literal, a bound name, or an f-string or
    `"a." + name` over one bound name."""
    if isinstance(arg, ast.Constant | ast.Name):
        return _strings(arg, bound) or ()
    pieces: list[ast.expr] = []
    if isinstance(arg, ast.JoinedStr):
        pieces = [v.value if isinstance(v, ast.FormattedValue) else v for v in arg.values]
    elif isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
        pieces = [arg.left, arg.right]
    variables = [p for p in pieces if isinstance(p, ast.Name)]
    if len(variables) != 1 or not all(isinstance(p, ast.Constant | ast.Name) for p in pieces):
        return ()
    values = bound.get(variables[0].id, ())
    return tuple("".join(str(p.value) if isinstance(p, ast.Constant) else v for p in pieces) for v in values)


def _dynamic_targets(call: ast.Call, bound: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in {"import_module", "__import__"} or not call.args:
        return ()
    return tuple(n for n in _names(call.args[0], bound) if n and not n.startswith(".") and _DOTTED.match(n))


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Groups that name programs to launch, not plugins to load: a library that lists them (pip, a CLI's help) does
# not run them.
LAUNCHER_GROUPS = frozenset({"", "console_scripts", "gui_scripts"})
# Calls that load the entry points of a group named by their first argument or `group=`.
_GROUP_CALLS = {"load_setuptools_entrypoints", "iter_entry_points", "entry_points", "select"}


def entry_point_groups(tree: ast.Module) -> list[tuple[str, int]]:
    """(group, line) for every plugin group the module loads by a literal name: pluggy's
    `pm.load_setuptools_entrypoints("datasette")`, `importlib.metadata.entry_points(group="x")`,
    `entry_points().select(group="x")`, pkg_resources' `iter_entry_points("x")`."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in _GROUP_CALLS:
            continue
        args = [k.value for k in node.keywords if k.arg == "group"]
        if name in ("load_setuptools_entrypoints", "iter_entry_points") and node.args:
            args.append(node.args[0])
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value not in LAUNCHER_GROUPS:
                found.append((arg.value, node.lineno))
    return found


class _Collector:
    def __init__(self, is_main: bool, facts: Facts, constants: dict[str, tuple[str, ...]] | None = None) -> None:
        self.is_main = is_main
        self.facts = facts
        self.bound = dict(constants or {})  # names bound to literal strings: module constants, loop variables
        self.refs: list[ImportRef] = []
        self._groups = itertools.count(1)
        self._functions = 0

    def block(self, stmts: list[ast.stmt], kind: Kind, group: int = 0) -> None:
        for stmt in stmts:
            self.stmt(stmt, kind, group)

    def add(self, node: ast.Import | ast.ImportFrom, kind: Kind, group: int) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.refs.append(ImportRef(alias.name, 0, (), node.lineno, kind, group, self._functions > 0))
        else:
            names = tuple(a.name for a in node.names)
            self.refs.append(
                ImportRef(node.module or "", node.level, names, node.lineno, kind, group, self._functions > 0)
            )

    def stmt(self, node: ast.stmt, kind: Kind, group: int) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            self.add(node, kind, group)
        elif isinstance(node, ast.Try | ast.TryStar):
            self._try(node, kind, group)
        elif isinstance(node, ast.For | ast.AsyncFor) and isinstance(node.target, ast.Name):
            # `for name in CONSTANTS:` binds name to each of them in the loop's body
            values = _strings(node.iter, self.bound)
            self.expressions(node.iter, kind)
            saved = self.bound.get(node.target.id)
            if values is not None:
                self.bound[node.target.id] = values
            self.block(node.body, kind, group)
            if saved is not None:
                self.bound[node.target.id] = saved
            else:
                self.bound.pop(node.target.id, None)
            self.block(node.orelse, kind, group)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                if expr is not None:
                    self.expressions(expr, kind)
            self._functions += 1
            self.block(node.body, kind, group)
            self._functions -= 1
        elif isinstance(node, ast.If):
            if _is_type_checking(node.test) or (_is_main_guard(node.test) and not self.is_main):
                self.block(node.orelse, kind, group)
                return
            verdict = self.facts.evaluate(node.test)
            if verdict is not None:
                self.expressions(node.test, kind)
                self.block(node.body if verdict else node.orelse, kind, group)
                return
            inner = Kind.CONDITIONAL if _mentions_platform(node.test) and kind == Kind.REQUIRED else kind
            self.expressions(node.test, kind)
            self.block(node.body, inner, group)
            self.block(node.orelse, inner, group)
        else:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and self._functions == 0:
                self.facts.bind(node.targets[0], node.value)
            for field in ast.iter_fields(node):
                value = field[1]
                items = value if isinstance(value, list) else [value]
                stmts = [v for v in items if isinstance(v, ast.stmt)]
                if stmts:
                    self.block(stmts, kind, group)
                for v in items:
                    if isinstance(v, ast.expr):
                        self.expressions(v, kind)
                    elif isinstance(v, ast.excepthandler | ast.match_case):
                        self.block(v.body, kind, group)

    def _try(self, node: ast.Try | ast.TryStar, kind: Kind, group: int) -> None:
        catching = [h for h in node.handlers if _catches_import_error(h)]
        # `except ImportError: raise ...` (Django's manage.py) only rewords the error: the import is required.
        guarded = bool(catching) and not all(any(isinstance(n, ast.Raise) for n in h.body) for h in catching)
        if not guarded:
            self.block(node.body, kind, group)
            for h in node.handlers:
                self.block(h.body, kind, group)
        else:
            handler_imports = any(
                isinstance(n, ast.Import | ast.ImportFrom) for h in node.handlers for n in ast.walk(h)
            )
            if handler_imports:
                g = next(self._groups)
                self.block(node.body, Kind.PREFERRED, g)
                for h in node.handlers:
                    self.block(h.body, Kind.FALLBACK, g)
            else:
                self.block(node.body, Kind.OPTIONAL, group)
                for h in node.handlers:
                    self.block(h.body, kind, group)
        self.block(node.orelse, Kind.OPTIONAL if guarded else kind, group)
        self.block(node.finalbody, kind, group)

    def expressions(self, expr: ast.expr, kind: Kind) -> None:  # noqa: ARG002
        for node in ast.walk(expr):
            if isinstance(node, ast.Call):
                for target in _dynamic_targets(node, self.bound):
                    self.refs.append(ImportRef(target, 0, (), node.lineno, Kind.DYNAMIC, 0, self._functions > 0))


def scan(tree: ast.Module, is_main: bool = False, facts: Facts | None = None) -> list[ImportRef]:
    """Every import that can run in a parsed module on the interpreter `facts` describes, in source order."""
    collector = _Collector(is_main, facts.child() if facts else Facts(), module_constants(tree))
    collector.block(tree.body, Kind.REQUIRED)
    return collector.refs


# Names whose use means the code calls a kernel interface that is a config option.
KERNEL_INTERFACES = frozenset({"epoll", "eventfd", "timerfd_create", "signalfd"})


_CODEC_CALLS = {"encode", "decode", "lookup", "getencoder", "getdecoder", "getincrementalencoder",
                "getincrementaldecoder", "getreader", "getwriter", "iterencode", "iterdecode"}  # fmt: skip


def codec_modules(tree: ast.Module) -> list[tuple[str, int]]:
    """(encodings.NAME, line) for the codecs a module names by a constant (`s.encode("unicode_escape")`,
    `open(p, encoding="latin-1")`, `codecs.lookup("idna")`): the codec registry imports them by name."""
    import encodings
    import encodings.aliases

    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        names = [k.value for k in node.keywords if k.arg == "encoding"]
        if isinstance(node.func, ast.Attribute) and node.func.attr in _CODEC_CALLS and node.args:
            names.append(node.args[0])
        for name in names:
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value:
                norm = encodings.normalize_encoding(name.value).lower()
                found.append((f"encodings.{encodings.aliases.aliases.get(norm, norm)}", node.lineno))
    return found


def kernel_uses(tree: ast.Module) -> set[str]:
    """Which of KERNEL_INTERFACES the module names (select.epoll, os.eventfd...)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in KERNEL_INTERFACES:
            found.add(node.attr)
        elif isinstance(node, ast.alias) and node.name in KERNEL_INTERFACES:
            found.add(node.name)
        elif isinstance(node, ast.Constant) and node.value in KERNEL_INTERFACES:
            found.add(node.value)  # hasattr(select, "epoll")
    return found


# inspect's functions that read a module's source file: they fail on a sourceless module.
SOURCE_READERS = frozenset({"getsource", "getsourcelines", "findsource"})


def reads_source(tree: ast.Module) -> bool:
    """Does the module call inspect.getsource (or getsourcelines, findsource)? Sanic's touchup rewrites its
    own methods from their source at start-up."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in SOURCE_READERS:
                return True
    return False
