"""Framework hints: modules a framework loads by a name held in a string.

Frameworks pick their parts at run time from strings, which no import
statement names and the static analysis therefore cannot see:

- uvicorn resolves `loop="auto"`, `http="auto"`, `ws="auto"` and `lifespan="auto"`
  through tables of "module:attribute" strings and `import_from_string`, and
  its logging config names its formatter classes as dotted strings;
- anyio loads its event-loop backend with `import_module(f"anyio._backends._{name}")`
  (asyncio is the one a plain asyncio app, such as uvicorn's, uses);
- gunicorn loads its worker class and logger class by dotted name
  (`gunicorn.workers.sync.SyncWorker`, the threaded `gthread` one when
  `--threads` is above 1, `gunicorn.glogging.Logger`); `-k NAME` names
  another, which kiln.analyze.servers adds from the command;
- hypercorn imports its asyncio worker inside `hypercorn.run.run`;
- requests finds its character detector with `importlib.import_module(lib)`
  over ("chardet", "charset_normalizer"), a name held in a variable.

Django names nearly everything by strings: DJANGO_SETTINGS_MODULE, and in the
settings INSTALLED_APPS, MIDDLEWARE, ROOT_URLCONF, WSGI_APPLICATION, template
and database backends, password validators. In an app that reaches Django,
every string in the app's own modules and in Django's defaults
(`django.conf.global_settings`) that reads as a dotted name becomes an
import that is kept if it resolves (as the module itself, or as a module and
an attribute), and so do the submodules Django loads by convention for each
installed app (`apps`, `models`, `admin`, `urls`) and for a database ENGINE
(`base`); see `django_strings`. A
`templatetags`, `management.commands` or `migrations` package is kept whole:
Django lists its modules at run time (`{% load i18n %}`, `manage.py
runserver`, `manage.py migrate`); see `whole_packages`.

When the module on the left is part of the app, the modules on the right are
added too, each only if it exists (an optional part that is not installed is
left out, as any optional import is). `kiln build --check` finds what this
table misses; `include` in kiln.toml keeps it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

FRAMEWORK_HINTS: dict[str, tuple[str, ...]] = {
    "uvicorn.config": (
        "uvicorn.loops.auto",
        "uvicorn.loops.asyncio",
        "uvicorn.protocols.http.auto",
        "uvicorn.protocols.http.h11_impl",
        "uvicorn.protocols.websockets.auto",
        "uvicorn.lifespan.on",
        "uvicorn.lifespan.off",
        "uvicorn.logging",
    ),
    "anyio._core._eventloop": ("anyio._backends._asyncio",),
    "gunicorn.config": ("gunicorn.workers.sync", "gunicorn.workers.gthread", "gunicorn.glogging"),
    "hypercorn.run": ("hypercorn.asyncio.run",),
    "django.core.management": ("django.core.management.commands",),
    # a database backend's `compiler_module`, imported by that name when the ORM compiles a query
    "django.db.backends.base.operations": ("django.db.models.sql.compiler",),
    # the template engine's `default_builtins`, and the loaders it adds by name when TEMPLATES names none
    "django.template.engine": (
        "django.template.defaulttags",
        "django.template.defaultfilters",
        "django.template.loader_tags",
        "django.template.loaders.filesystem",
        "django.template.loaders.app_directories",
        "django.template.loaders.cached",
    ),
    "requests.compat": ("chardet", "charset_normalizer"),
    # why: pandas' Cython module imports zoneinfo's pure-Python twin by name (its string table is compressed,
    # so no scan of the .so shows it); without it `import pandas` fails
    "pandas._libs.tslibs.timezones": ("zoneinfo", "zoneinfo._zoneinfo"),
    # why: pandas (>= 1.2) imports cmath from its C code; PyInstaller's hook-pandas lists it as hidden
    "pandas": ("cmath",),
}

# why: six builds `six.moves` at run time (a module object put in sys.modules, no file), mapping Python 2
# names to the Python 3 stdlib; `from six.moves.urllib.parse import urlencode` (httpbin) is six plus the
# stdlib module it names. PyInstaller's hook-six.moves reads the same table by importing six.
SIX_MOVES: dict[str, str] = {
    "urllib": "urllib", "urllib_parse": "urllib.parse", "urllib_error": "urllib.error",
    "urllib_request": "urllib.request", "urllib_response": "urllib.response",
    "urllib_robotparser": "urllib.robotparser",
    "http_client": "http.client", "http_cookiejar": "http.cookiejar", "http_cookies": "http.cookies",
    "html_entities": "html.entities", "html_parser": "html.parser", "BaseHTTPServer": "http.server",
    "SimpleHTTPServer": "http.server", "CGIHTTPServer": "http.server", "configparser": "configparser",
    "copyreg": "copyreg", "queue": "queue", "socketserver": "socketserver", "_thread": "_thread",
    "builtins": "builtins", "reprlib": "reprlib", "cPickle": "pickle", "collections_abc": "collections.abc",
    "email_mime_base": "email.mime.base", "email_mime_image": "email.mime.image",
    "email_mime_multipart": "email.mime.multipart", "email_mime_nonmultipart": "email.mime.nonmultipart",
    "email_mime_text": "email.mime.text", "xmlrpc_client": "xmlrpc.client", "xmlrpc_server": "xmlrpc.server",
    "dbm_gnu": "dbm.gnu", "dbm_ndbm": "dbm.ndbm", "_dummy_thread": "_thread",
}  # fmt: skip
# a package made at run time -> (the module that makes it, its names -> the real modules they stand for)
VIRTUAL_PACKAGES: dict[str, tuple[str, dict[str, str]]] = {"six.moves": ("six", SIX_MOVES)}


def virtual_module(name: str) -> tuple[str, str | None] | None:
    """(the module that makes `name` at run time, the real module it stands for) for a name under a package
    that exists only at run time (`six.moves.urllib.parse` -> ("six", "urllib.parse")); None otherwise."""
    for prefix, (owner, table) in VIRTUAL_PACKAGES.items():
        if name == prefix:
            return owner, None
        if name.startswith(prefix + "."):
            first, _, rest = name[len(prefix) + 1 :].partition(".")
            real = table.get(first)
            return owner, (f"{real}.{rest}" if rest and real else real)
    return None


# why: a distribution's own test suite (pandas/tests, numpy/_core/tests: tens of MB) is run by its
# developers, never imported by an app; it is left out of a distribution kept whole.
NOT_SHIPPED = frozenset({"tests"})

# Submodules Django imports by convention: for every installed app, and `base` of a database ENGINE.
DJANGO_APP_MODULES = ("apps", "models", "admin", "urls", "templatetags", "management.commands", "migrations", "base")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def django_strings(tree: ast.Module) -> list[tuple[str, int]]:
    """(module name to try, line) for the dotted-name strings of one of a Django app's own modules."""
    found: list[tuple[str, int]] = []
    installed = {  # INSTALLED_APPS names apps that are often a single word ("blog")
        id(item)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "INSTALLED_APPS" for t in node.targets)
        and isinstance(node.value, ast.List | ast.Tuple)
        for item in node.value.elts
    }
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if _DOTTED.match(node.value) or (id(node) in installed and node.value.isidentifier()):
            name = node.value
            found.append((name, node.lineno))
            if "." in name:  # a module and an attribute ("app.wsgi.application")
                found.append((name.rpartition(".")[0], node.lineno))
            found += [(f"{name}.{sub}", node.lineno) for sub in DJANGO_APP_MODULES]
    return list(dict.fromkeys(found))


def whole_packages(name: str, search: tuple[Path, ...]) -> list[str]:
    """Submodules of package `name` that a framework lists at run time (every one of them)."""
    if not name.endswith((".templatetags", ".management.commands", ".migrations")):
        return []
    return sorted({f"{name}.{f.stem}" for d in search for f in d.glob("*.py") if f.stem != "__init__"})
