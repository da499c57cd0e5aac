"""Compile Python sources to bytecode with the interpreter the image embeds.

A module whose source the image keeps (the app's own, by default) has its
bytecode in `__pycache__/NAME.cpython-311.pyc` beside it, as the interpreter
itself would cache it, and its code names the source: tracebacks show the
app's lines, and code that asks where it lives (a frame's `co_filename`,
`inspect.getsourcefile`, python-dotenv's `find_dotenv`) finds a file that
exists. Every other module is "sourceless": its .pyc where the source would
be, and its code names the .pyc, a file that exists too (python-dotenv's
`find_dotenv` walks the callers' frames for one, from any library). Either
way the guest path is recorded as the file name, with unchecked-hash
validation, so the build is reproducible and the interpreter never looks at a
source's timestamp.

Compiled with `-X no_debug_ranges`: code objects carry line numbers but not the
column ranges behind 3.11's `^^^^` markers in tracebacks. The .pyc files are
~7% smaller, and so is what the guest holds in memory for every code object.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from kiln.interpreter import Interpreter

OUT = "/.kiln-out"  # where the image's root is bound when a sandboxed interpreter compiles into it
SRC = "/.kiln-src"

_COMPILER = r"""
import json, py_compile, sys
for src, dst, shown in json.load(sys.stdin):
    py_compile.compile(src, cfile=dst, dfile=shown, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def cached(source: PurePosixPath, cache_tag: str) -> PurePosixPath:
    """Where the interpreter looks for the bytecode of a kept source (importlib.util.cache_from_source)."""
    return source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"


def compile_all(interp: Interpreter, jobs: list[tuple[Path, Path, str]], out: Path) -> None:
    """jobs: (source on the host, .pyc to write below `out`, file name to show in tracebacks). A container
    image's interpreter (interp.sysroot) compiles in the sandbox over its tree: the sources outside the tree
    (kiln's start-up hook) and `out` are bound in."""
    if not jobs:
        return
    for _, dst, _ in jobs:
        dst.parent.mkdir(parents=True, exist_ok=True)
    binds: dict[str, Path] = {}
    writable: dict[str, Path] = {}
    if interp.sysroot is not None:
        writable[OUT] = out
        moved = []
        for src, dst, shown in jobs:
            if src.is_relative_to(interp.sysroot):
                inside = str(interp.guest(src))
            else:
                inside = f"{SRC}/{len(binds)}.py"
                binds[inside] = src
            moved.append((Path(inside), Path(OUT) / dst.relative_to(out), shown))
        jobs = moved
    payload = json.dumps([[str(s), str(d), shown] for s, d, shown in jobs]).encode()
    interp.run(
        ["-s", "-E", "-X", "no_debug_ranges", "-c", _COMPILER], "compiling to bytecode", binds, writable, payload
    )
