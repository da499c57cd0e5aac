"""Framework hints: modules a framework loads by a name held in a string.

Frameworks pick their parts at run time from strings, which no import
statement names and the static analysis therefore cannot see:

- uvicorn resolves `loop="auto"`, `http="auto"`, `ws="auto"` and `lifespan="auto"`
  through tables of "module:attribute" strings and `import_from_string`, and
  its logging config names its formatter classes as dotted strings;
- anyio loads its event-loop backend with `import_module(f"anyio._backends._{name}")`
  (asyncio is the one a plain asyncio app, such as uvicorn's, uses);
- requests finds its character detector with `importlib.import_module(lib)`
  over ("chardet", "charset_normalizer"), a name held in a variable.

Django's INSTALLED_APPS (settings strings) is not covered yet: such apps list
their apps in `include`, and `kiln build --check` names what is missing.

When the module on the left is part of the app, the modules on the right are
added too, each only if it exists (an optional part that is not installed is
left out, as any optional import is). `kiln build --check` finds what this
table misses; `include` in kiln.toml keeps it.
"""

from __future__ import annotations

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
    "requests.compat": ("chardet", "charset_normalizer"),
}
