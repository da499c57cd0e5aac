"""Facts about the Python interpreter that will run inside the image.

kiln runs with its own Python, but the image embeds another one (by default
Debian's /usr/bin/python3.11). Everything the analysis resolves must be
resolved against *that* interpreter, so we ask it once, in a subprocess.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from kiln import _proc
from kiln.errors import AppError, KilnError

_PROBE = r"""
import _imp, importlib.machinery as m, importlib.util as u, json, os, platform, sys, sysconfig
impl = sys.implementation
json.dump({
    "executable": sys.executable,
    "version": "%d.%d.%d" % sys.version_info[:3],
    "cache_tag": sys.implementation.cache_tag,
    "magic": u.MAGIC_NUMBER.hex(),
    "stdlib": sysconfig.get_path("stdlib"),
    "platstdlib": sysconfig.get_path("platstdlib"),
    "path": [p for p in sys.path if p],
    "builtins": sorted(sys.builtin_module_names),
    "frozen": sorted(_imp._frozen_module_names()),
    "extension_suffixes": m.EXTENSION_SUFFIXES,
    "sysconfigdata": sysconfig._get_sysconfigdata_name(),
    "markers": {  # PEP 508 environment markers, as packaging computes them
        "implementation_name": impl.name,
        "implementation_version": "%d.%d.%d" % impl.version[:3],
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
}, sys.stdout)
"""

_STARTUP = "import sys, json; json.dump(sorted(sys.modules), sys.stdout)"


class Interpreter(BaseModel):
    model_config = ConfigDict(frozen=True)

    executable: Path
    version: str
    cache_tag: str
    magic: str
    stdlib: Path
    platstdlib: Path
    path: tuple[Path, ...]
    builtins: frozenset[str]
    frozen: frozenset[str]
    extension_suffixes: tuple[str, ...]
    sysconfigdata: str  # the module sysconfig imports by a computed name
    markers: dict[str, str]
    startup_modules: tuple[str, ...]

    def frozen_only(self, name: str) -> bool:
        """A frozen module with no file of its own (os.path, _frozen_importlib...)."""
        rel = Path(*name.split("."))
        base = self.stdlib / rel
        return not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file())

    @property
    def lib_dynload(self) -> Path:
        return self.platstdlib / "lib-dynload"

    @property
    def version_info(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("."))

    @property
    def short_version(self) -> str:
        return ".".join(self.version.split(".")[:2])


# The flags the guest runs the interpreter with: no site, no user site, no .pyc writes.
RUN_FLAGS = ("-s", "-S", "-B")


@functools.cache
def probe(executable: str) -> Interpreter:
    """Ask `executable` about itself (its sys.path as the app would see it with site)."""
    path = Path(executable)
    if not path.is_file():
        raise AppError(f"interpreter {executable} does not exist (apt-get install python3.11)")
    try:
        info = json.loads(_proc.run([path, "-s", "-E", "-c", _PROBE], what=f"probing {path}").stdout)
        startup = json.loads(_proc.run([path, *RUN_FLAGS, "-E", "-c", _STARTUP], what=f"probing {path}").stdout)
    except (KilnError, json.JSONDecodeError) as err:
        raise AppError(f"{executable} is not a usable Python interpreter: {err}") from None
    return Interpreter(**info, startup_modules=tuple(startup))
