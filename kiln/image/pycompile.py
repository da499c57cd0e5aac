"""Compile Python sources to bytecode with the interpreter the image embeds.

A module whose source the image keeps (the app's own, by default) has its
bytecode in `__pycache__/NAME.cpython-311.pyc` beside it, as the interpreter
itself would cache it, and its code names the source: tracebacks show the
app's lines, and code that asks where it lives (a frame's `co_filename`,
`inspect.getsourcefile`, python-dotenv's `find_dotenv`) finds a file that
exists. Every other module is "sourceless": its .pyc where the source would
be. Either way the guest path is recorded as the file name, with
unchecked-hash validation, so the build is reproducible and the interpreter
never looks at a source's timestamp.

Compiled with `-X no_debug_ranges`: code objects carry line numbers but not the
column ranges behind 3.11's `^^^^` markers in tracebacks. The .pyc files are
~7% smaller, and so is what the guest holds in memory for every code object.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from kiln import _proc

_COMPILER = r"""
import json, py_compile, sys
for src, dst, shown in json.load(sys.stdin):
    py_compile.compile(src, cfile=dst, dfile=shown, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def cached(source: PurePosixPath, cache_tag: str) -> PurePosixPath:
    """Where the interpreter looks for the bytecode of a kept source (importlib.util.cache_from_source)."""
    return source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"


def compile_all(interpreter: Path, jobs: list[tuple[Path, Path, str]]) -> None:
    """jobs: (source on the host, .pyc to write, file name to show in tracebacks)."""
    if not jobs:
        return
    for _, dst, _ in jobs:
        dst.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps([[str(s), str(d), shown] for s, d, shown in jobs]).encode()
    _proc.run(
        [interpreter, "-s", "-E", "-X", "no_debug_ranges", "-c", _COMPILER], what="compiling to bytecode", input=payload
    )
