"""An app's command, as its author runs it, turned into how the image starts it.

    command = ["uvicorn", "main:app", "--host", "0.0.0.0"]   # a console script
    command = ["python", "-m", "flask", "run"]               # a module
    command = ["python", "manage.py", "runserver"]           # a file (or just ["manage.py", ...])

`parse` reads the words (at config time: no interpreter needed) into a
`Launch`: a file, a module run as `__main__`, or a console script. A console
script names an entry point of an installed distribution, found later in its
`entry_points.txt` (`resolve_console`), as pip's generated launcher would.
When the program is a server kiln knows (kiln.analyze.servers), the launch
also says which app module it imports by name, where it listens, whether it
forks, and what was changed for a unikernel (reloaders off).

The guest runs every kind through kiln's start-up hook (kiln/guest/start.py):
`start.pyc FILE ARGS`, `start.pyc -m MODULE ARGS`, or
`start.pyc -e MODULE:ATTR NAME ARGS` (a console script: `sys.exit(ATTR())`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kiln.analyze import servers
from kiln.analyze.servers import Forks, Listen, Server
from kiln.errors import AppError

# python, python3, python3.11, /usr/bin/python3, /usr/local/bin/python3.12
PYTHON = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")
# interpreter options that change nothing kiln's start-up does not already do (unbuffered, no .pyc writes, ...)
HARMLESS_FLAGS = frozenset({"-u", "-B", "-s", "-S", "-E", "-q", "-b", "-bb"})
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Launch:
    """How the image's interpreter starts the app."""

    kind: Literal["file", "module", "console"]
    target: str  # the file (relative to the app), the module, or the console script's "module:attr"
    name: str  # what the app sees as its program (sys.argv[0] for a console script)
    args: tuple[str, ...]
    server: Server | None = None
    app_modules: tuple[str, ...] = ()  # modules the server imports by name
    app_dirs: tuple[str, ...] = ()  # directories (relative to the app) it puts on sys.path first
    listen: Listen | None = None
    forks: Forks | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def words(self) -> list[str]:
        """The command as its author would type it."""
        if self.kind == "module":
            return ["python", "-m", self.target, *self.args]
        if self.kind == "file":
            return ["python", self.target, *self.args]
        return [self.name, *self.args]

    @property
    def module(self) -> str | None:
        """The module a module or a console script starts in."""
        if self.kind == "module":
            return self.target
        if self.kind == "console" and ":" in self.target:
            return self.target.split(":", 1)[0]
        return None


def _python_words(words: list[str], where: str) -> tuple[str, str, list[str]]:
    """`python [FLAGS] -m MOD ARGS` or `python [FLAGS] FILE ARGS` -> (kind, target, args)."""
    rest = words[1:]
    while rest and rest[0].startswith("-") and rest[0] != "-m":
        flag = rest.pop(0)
        if flag == "-c":
            raise AppError(f"{where}: python -c runs a command string: put the code in a file, and name the file")
        if flag in ("-X", "-W"):
            if rest:
                rest.pop(0)
            continue
        if flag not in HARMLESS_FLAGS and not flag.startswith(("-X", "-W")):
            raise AppError(f"{where}: python {flag}: kiln starts the interpreter itself and cannot pass {flag} on")
    if not rest:
        raise AppError(f"{where}: {' '.join(words)} starts an interactive interpreter: name a file or -m MODULE")
    if rest[0] == "-m":
        if len(rest) < 2 or not MODULE_NAME.match(rest[1]):
            raise AppError(f"{where}: python -m needs a module name")
        return "module", rest[1], rest[2:]
    return "file", rest[0], rest[1:]


def _file(path: str, app_root: Path, workdir: str | None, where: str) -> str:
    """The file, relative to the app's directory (an absolute path under the image's WORKDIR maps into it)."""
    if path.startswith("/") and workdir and (path == workdir or path.startswith(workdir.rstrip("/") + "/")):
        path = path[len(workdir.rstrip("/")) + 1 :]
    rel = Path(path)
    if rel.is_absolute() or ".." in rel.parts:
        raise AppError(f"{where}: {path} is outside the app's directory")
    if not (app_root / rel).is_file():
        raise AppError(f"{where}: {path} does not exist in {app_root}")
    return rel.as_posix()


def _server_of(kind: str, target: str, name: str, args: list[str], app_root: Path) -> Server | None:
    if kind == "console":
        return servers.SERVERS.get(name)
    if kind == "module":
        top = target.split(".")[0]
        if top == "django":
            return servers.DJANGO
        return servers.SERVERS.get(target) or servers.SERVERS.get(top)
    if "runserver" in args and (app_root / target).is_file() and b"django" in (app_root / target).read_bytes():
        return servers.DJANGO
    return None


def parse(
    words: list[str] | tuple[str, ...], app_root: Path, env: Mapping[str, str], where: str, workdir: str | None = None
) -> Launch:
    """Read a command (see the module's docstring); `where` names its source in messages."""
    words = list(words)
    if not words:
        raise AppError(f"{where}: the command is empty")
    if PYTHON.match(words[0]):
        kind, target, args = _python_words(words, where)
    elif words[0].endswith(".py") or "/" in words[0]:
        kind, target, args = "file", words[0], words[1:]
    else:
        kind, target, args = "console", "", words[1:]
    if kind == "file":
        target = _file(target, app_root, workdir, where)
    name = words[0] if kind == "console" else target
    server = _server_of(kind, target, name, args, app_root)
    notes: list[str] = []
    modules: list[str] = []
    dirs: list[str] = []
    listen = forks = None
    if server is not None:
        args, notes = servers.adjust(server, args)
        modules = servers.app_modules(server, args, env)
        dirs = servers.app_dirs(server, args)
        if server is servers.FASTAPI:
            modules = _fastapi_module(args, app_root, where)
        if server is servers.FLASK and not modules:
            modules = [m for m in ("wsgi", "app") if (app_root / f"{m}.py").is_file()][:1]
        listen = servers.listens(server, args, env)
        forks = servers.forks(server, args, env)
    elif kind == "console":
        listen = servers.listens(servers.GENERIC, args, env)
    return Launch(
        kind,  # type: ignore[arg-type]
        target,
        name,
        tuple(args),
        server,
        tuple(modules),
        tuple(dirs),
        listen,
        forks,
        tuple(notes),
    )


def _fastapi_module(args: list[str], app_root: Path, where: str) -> list[str]:
    """`fastapi run [PATH]`: the module of PATH (default main.py or app.py), as fastapi-cli finds it."""
    opts = servers.parse(servers.FASTAPI, servers.server_args(servers.FASTAPI, args))
    path = (
        opts.positionals[0]
        if opts.positionals
        else next(
            (p for p in ("main.py", "app.py", "api.py", "app/main.py", "app/app.py") if (app_root / p).is_file()), None
        )
    )
    if path is None:
        raise AppError(f"{where}: fastapi run names no file, and there is no main.py or app.py")
    file = app_root / path
    if file.is_dir():
        file = file / "__init__.py"
    if not file.is_file():
        raise AppError(f"{where}: {path} does not exist in {app_root}")
    parts = [file.stem] if file.name != "__init__.py" else []
    parent = file.parent
    while (parent / "__init__.py").is_file() and parent != app_root:
        parts.insert(0, parent.name)
        parent = parent.parent
    return [".".join(parts)]


def resolve_console(launch: Launch, scripts: Mapping[str, str], where: str, installed: str) -> Launch:
    """A console script's launch with its entry point ("module:attr") from the installed distributions."""
    if launch.kind != "console":
        return launch
    target = scripts.get(launch.name)
    if target is None:
        raise AppError(
            f"{where}: {launch.name} is not a file in the app, and no installed distribution provides a console "
            f"script of that name ({installed})"
        )
    module, _, attr = target.partition(":")
    if not MODULE_NAME.match(module.strip()) or not re.match(r"^[A-Za-z_][\w.]*$", attr.strip()):
        raise AppError(f"{where}: the entry point of {launch.name} ({target}) is not module:attribute")
    return dataclasses.replace(launch, target=f"{module.strip()}:{attr.strip()}")
