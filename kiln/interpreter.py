"""Facts about the Python interpreter that will run inside the image.

kiln runs with its own Python, but the image embeds another one (by default
Debian's /usr/bin/python3.11). Everything the analysis resolves must be
resolved against *that* interpreter, so we ask it once, in a subprocess.

A container image's own interpreter (kiln.oci) lives in the image's tree,
not on the host: `probe(executable, sysroot=TREE)` asks it inside the
bubblewrap sandbox over that tree (kiln.sandbox), never as a host process,
and every path it answers with is rebased onto the tree, so the analysis
reads the tree's files. `executable` stays the path inside the image.
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
    sysroot: Path | None = None  # the tree it lives in (a container image's); None: the host

    @property
    def host_executable(self) -> Path:
        """The interpreter's file, as kiln reads it."""
        return self.sysroot / self.executable.relative_to("/") if self.sysroot else self.executable

    def guest(self, path: Path) -> Path:
        """A path the analysis holds (rebased onto the tree), as the image names it."""
        return (
            Path("/") / path.relative_to(self.sysroot) if self.sysroot and path.is_relative_to(self.sysroot) else path
        )

    def run(
        self,
        args: list[str],
        what: str,
        binds: dict[str, Path] | None = None,
        writable: dict[str, Path] | None = None,
        input: bytes | None = None,
    ) -> bytes:
        """Run the interpreter: on the host, or inside the sandbox over its tree."""
        if self.sysroot is None:
            return _proc.run([self.executable, *args], what=what, input=input).stdout
        from kiln import sandbox

        return sandbox.run(self.sysroot, [str(self.executable), *args], what, binds=binds, writable=writable,
                           input=input)  # fmt: skip

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
def probe(executable: str, sysroot: Path | None = None) -> Interpreter:
    """Ask `executable` about itself (its sys.path as the app would see it with site); with `sysroot`,
    the interpreter of that tree, asked inside the sandbox."""
    path = Path(executable)
    host = sysroot / path.relative_to("/") if sysroot else path
    if not host.is_file() and not host.is_symlink():
        raise AppError(f"interpreter {executable} does not exist (apt-get install python3.11)")
    shell = Interpreter.model_construct(executable=path, sysroot=sysroot)
    try:
        info = json.loads(shell.run(["-s", "-E", "-c", _PROBE], f"probing {path}"))
        startup = json.loads(shell.run([*RUN_FLAGS, "-E", "-c", _STARTUP], f"probing {path}"))
    except (KilnError, json.JSONDecodeError) as err:
        raise AppError(f"{executable} is not a usable Python interpreter: {err}") from None
    if sysroot is not None:  # what it names is in the tree
        for key in ("stdlib", "platstdlib"):
            info[key] = str(sysroot / Path(info[key]).relative_to("/"))
        info["path"] = [str(sysroot / Path(p).relative_to("/")) for p in info["path"] if p.startswith("/")]
        info["executable"] = executable
    return Interpreter(**info, startup_modules=tuple(startup), sysroot=sysroot)
