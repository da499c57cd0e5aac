"""The guest RAM an image gets when its config names none (`memory` in kiln.toml).

A guest needs room for its kernel, for the page cache of the root's files it reads (EROFS is
mounted with cache_strategy=disabled, so there is no second, compressed copy), and for the app's
heap with the kernel's own objects. A guest with too little does not fail: it thrashes, reading
the interpreter back from the root on every request. Docker's Compose tutorial app (Flask +
redis) never got as far as listening in 48 MiB.

So the default is read from the image, generously (RAM a guest never touches costs the host
nothing, since QEMU allocates it as the guest first writes it):
- the kernel's size;
- every byte of the root's files, the most the page cache can hold of them;
- twice the bytecode: a Python module's code objects take about three times its .pyc on the heap
  once imported, and the .pyc's own pages are not needed after (hello-http: 7.8 MiB anonymous
  with 3.0 MiB of bytecode; the Compose tutorial app: 26.3 MiB with 10.0 MiB);
- SLACK_MIB for the kernel's slab, stacks and what it keeps free;
- for a server that forks workers (gunicorn: a master and N workers; kiln.analyze.servers), each
  process beyond the first its own heap again, twice the bytecode and WORKER_MIB: a worker loads
  the app itself and writes to every object it touches (reference counts), so little stays shared
  (gunicorn -w 2 with Flask: each worker 21 MiB anonymous with 9.6 MiB of bytecode; one was killed
  for want of memory at the single-process default of 64 MiB);
rounded up to STEP_MIB, and never below FLOOR_MIB, the default every example was measured at.

What it gives, against the lowest RAM that serves (TCG, 2026-11-30): hello-http 48 MiB (serves
from 31), examples/flask-app 64 MiB (served at 48, not 40), the Compose tutorial app 72 MiB (served
at 56, slowly at 52, not at 48); the Flask figures measured with the kernel of before the 16 KiB
log, which left the app 2 MiB less. With today's kernel the tutorial app still never answers in
48 MiB, and answers 6.8 s after start at its 72.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from kiln.image.rootfs import RootFS
    from kiln.kernel.build import Kernel

MIB = 1 << 20
FLOOR_MIB = 48
SLACK_MIB = 8
STEP_MIB = 8
WORKER_MIB = 4


class RootBytes(NamedTuple):
    files: int  # every regular file
    bytecode: int  # of which .pyc


def default_memory_mib(kernel_bytes: int, root: RootBytes, processes: int = 1) -> int:
    """The guest RAM, in MiB, for a kernel of kernel_bytes and a root holding `root`, run as `processes`."""
    heap = 2 * root.bytecode
    need = -(-(kernel_bytes + root.files + heap * processes) // MIB) + SLACK_MIB + WORKER_MIB * (processes - 1)
    return max(FLOOR_MIB, -(-need // STEP_MIB) * STEP_MIB)


def root_bytes(tree: Path) -> RootBytes:
    """What the regular files below tree hold (links count as nothing: they are read as their target)."""
    files = bytecode = 0
    for dirpath, _dirs, names in os.walk(tree):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                files += st.st_size
                bytecode += st.st_size if name.endswith(".pyc") else 0
    return RootBytes(files, bytecode)


def memory_for(configured: int | None, kernel: Kernel, root: RootFS, processes: int = 1) -> int:
    """The config's memory if it names one, else the default sized from the kernel and the laid-out root."""
    if configured is not None:
        return configured
    return default_memory_mib(kernel.vmlinux_size, root_bytes(root.root), processes)
