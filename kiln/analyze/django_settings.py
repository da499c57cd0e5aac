"""What a Django project's settings say the image must provide: somewhere to write its SQLite file.

A Django site made by `startproject` keeps its database in a file
(`DATABASES["default"]["NAME"] = BASE_DIR / "db.sqlite3"`), and SQLite
writes beside it (its journal). The image's root is read-only, so kiln reads
the settings (without running them) to find that file's directory:

- the settings module from `manage.py`, `wsgi.py` or `asgi.py`
  (`os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")`);
- `BASE_DIR = Path(__file__).resolve().parent.parent` (or the
  `os.path.dirname(os.path.abspath(__file__))` spelling), evaluated for the
  file's place in the image (/app/mysite/settings.py);
- each sqlite3 database's NAME: `BASE_DIR / "data" / "db.sqlite3"`,
  `os.path.join(BASE_DIR, ...)`, `str(...)`, a literal path, and
  `os.environ.get("VAR", default)` / `os.getenv` (the app's environment, else
  the default).

A directory below /app (or anywhere a volume may be) becomes a declared
volume; /app itself cannot be one (the app's code is there), and the build
says so. What cannot be evaluated this way is left alone.
"""

from __future__ import annotations

import ast
import os.path
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

APP_DIR = PurePosixPath("/app")


def settings_module(app_root: Path) -> str | None:
    """The settings module the project's own entry files name."""
    for name in ("manage.py", *(str(p.relative_to(app_root)) for p in sorted(app_root.glob("*/[wa]sgi.py")))):
        path = app_root / name
        if not path.is_file():
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and len(node.args) == 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
                and node.args[0].value == "DJANGO_SETTINGS_MODULE"  # type: ignore[attr-defined]
            ):
                return str(node.args[1].value)  # type: ignore[attr-defined]
    return None


class _Evaluator:
    """Paths from the few expressions settings files use; None for anything else."""

    def __init__(self, file: PurePosixPath, env: Mapping[str, str]) -> None:
        self.names: dict[str, str] = {"__file__": str(file)}
        self.env = env

    def value(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # Path / "part"
            left, right = self.value(node.left), self.value(node.right)
            return None if left is None or right is None else str(PurePosixPath(left) / right)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            inner = self.value(node.value)
            return None if inner is None else str(PurePosixPath(inner).parent)
        if isinstance(node, ast.Call):
            return self.call(node)
        return None

    def call(self, node: ast.Call) -> str | None:
        func = ast.unparse(node.func)
        args = [self.value(a) for a in node.args]
        if func in ("Path", "pathlib.Path", "str", "os.fspath") and len(args) == 1:
            return args[0]
        if func.endswith((".resolve", ".absolute")) and isinstance(node.func, ast.Attribute):
            return self.value(node.func.value)
        if func in ("os.path.abspath", "os.path.realpath", "os.path.normpath") and len(args) == 1:
            return None if args[0] is None else os.path.normpath(args[0])
        if func == "os.path.dirname" and len(args) == 1:
            return None if args[0] is None else str(PurePosixPath(args[0]).parent)
        if func == "os.path.join" and args and None not in args:
            return str(PurePosixPath(*[a for a in args if a is not None]))
        if func in ("os.environ.get", "os.getenv") and node.args:
            key = args[0]
            default = args[1] if len(args) > 1 else None
            return self.env.get(key, default) if key is not None else None
        return None


def sqlite_files(app_root: Path, env: Mapping[str, str]) -> list[tuple[PurePosixPath, str]]:
    """(guest path of each SQLite database file, the settings file that names it)."""
    module = settings_module(app_root)
    if module is None:
        return []
    rel = Path(*module.split("."))
    path = next((p for p in (app_root / f"{rel}.py", app_root / rel / "__init__.py") if p.is_file()), None)
    if path is None:
        return []
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        return []
    guest = APP_DIR / path.relative_to(app_root).as_posix()
    ev = _Evaluator(guest, env)
    found: list[tuple[PurePosixPath, str]] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "DATABASES" and isinstance(node.value, ast.Dict):
                for db in node.value.values:
                    file = _sqlite_name(db, ev)
                    if file is not None:
                        found.append((PurePosixPath(os.path.normpath(str(PurePosixPath(guest.parent) / file))),
                                      str(path.relative_to(app_root))))  # fmt: skip
            elif (value := ev.value(node.value)) is not None:
                ev.names[name] = value
    return found


def _sqlite_name(db: ast.expr, ev: _Evaluator) -> str | None:
    if not isinstance(db, ast.Dict):
        return None
    fields = {k.value: v for k, v in zip(db.keys, db.values, strict=True) if isinstance(k, ast.Constant)}
    engine = fields.get("ENGINE")
    if not (isinstance(engine, ast.Constant) and str(engine.value).endswith("sqlite3")):
        return None
    name = fields.get("NAME")
    value = ev.value(name) if name is not None else None
    if value is None or value == ":memory:" or value.startswith("file:"):
        return None
    return value
