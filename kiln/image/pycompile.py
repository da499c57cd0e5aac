"""Compile Python sources to bytecode with the interpreter the image embeds.

The .pyc files go where the sources would be ("sourceless" layout), with the
guest path recorded as the file name so tracebacks name /app/app.py, and with
unchecked-hash validation so the build is reproducible.

Compiled with `-X no_debug_ranges`: code objects carry line numbers but not the
column ranges behind 3.11's `^^^^` markers in tracebacks. The .pyc files are
~7% smaller, and so is what the guest holds in memory for every code object.
"""

from __future__ import annotations

import json
from pathlib import Path

from kiln import _proc

_COMPILER = r"""
import json, py_compile, sys
for src, dst, shown in json.load(sys.stdin):
    py_compile.compile(src, cfile=dst, dfile=shown, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


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
