"""A package's systemd service unit, read as systemd reads the parts that say how the service runs.

The `[Service]` keys kiln honours: `ExecStart` (its `-@:+!` prefixes
stripped, `$VAR`/`${VAR}` from the unit's environment, `%`-specifiers),
`ExecStartPre` lines that only make directories (`mkdir -p`, `install -d`,
`chown`, `chmod`), `Type`, `User`, `Group`, `SupplementaryGroups`,
`WorkingDirectory`, `Environment`, `EnvironmentFile`, `RuntimeDirectory`,
`StateDirectory`, `LogsDirectory`, `CacheDirectory`, `ReadWritePaths`
(`ReadWriteDirectories`), `UMask`, `KillSignal`.
Lines continue with a trailing backslash, comments start with `#` or `;`,
and a key given twice keeps both values (an empty value clears the list),
as in systemd.unit(5).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kiln import shell_form
from kiln.errors import AppError

SPECIFIERS = {"%t": "/run", "%S": "/var/lib", "%L": "/var/log", "%C": "/var/cache", "%T": "/tmp", "%%": "%"}
DIR_KEYS = {  # key -> (base directory, what it is)
    "RuntimeDirectory": ("/run", "runtime"),
    "StateDirectory": ("/var/lib", "state"),
    "LogsDirectory": ("/var/log", "logs"),
    "CacheDirectory": ("/var/cache", "cache"),
}


@dataclass
class Unit:
    name: str  # "lighttpd.service"
    path: PurePosixPath  # where the package installs it
    service: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        values = self.service.get(key, [])
        return values[-1] if values else None

    def words(self, key: str) -> list[str]:
        return [w for v in self.service.get(key, []) for w in v.split()]

    @property
    def type(self) -> str:
        return self.get("Type") or ("simple" if self.get("ExecStart") else "oneshot")

    def specifiers(self, text: str) -> str:
        stem = self.name.removesuffix(".service")
        for spec, value in {**SPECIFIERS, "%n": self.name, "%N": stem, "%p": stem.split("@")[0]}.items():
            text = text.replace(spec, value)
        return text

    def environment(self, read: Callable[[str], str | None]) -> dict[str, str]:
        """Environment= and EnvironmentFile= (read through `read`, a path in the package tree -> its text)."""
        env: dict[str, str] = {}
        for item in self.service.get("EnvironmentFile", []):
            optional, path = item.startswith("-"), item.lstrip("-")
            text = read(self.specifiers(path))
            if text is None:
                if optional:
                    continue
                raise AppError(f"{self.path}: EnvironmentFile={path} is not in the package")
            env.update(_env_file(text))
        for item in self.service.get("Environment", []):
            for word in shlex.split(item):
                key, eq, value = word.partition("=")
                if eq:
                    env[key] = self.specifiers(value)
        return env

    def program(self) -> str | None:
        """The program ExecStart= runs, read without expanding the line (a `sh -c "..."` line's /bin/sh)."""
        lines = self.service.get("ExecStart", [])
        words = lines[-1].lstrip("-@:+!").split(maxsplit=1) if lines else []
        return words[0] if words else None

    def exec_start(self, env: dict[str, str]) -> list[str]:
        lines = self.service.get("ExecStart", [])
        if not lines:
            raise AppError(f"{self.path}: no ExecStart= (the unit starts no program)")
        if len(lines) > 1 and self.type != "oneshot":
            raise AppError(f"{self.path}: {len(lines)} ExecStart= lines; only a oneshot unit has several")
        line = lines[-1]
        prefixes = ""
        while line[:1] in ("-", "@", ":", "+", "!"):
            prefixes += line[0]
            line = line[1:]
        # an unset variable is nothing, as in systemd (a ":" prefix: no expansion at all)
        words = shell_form.split(
            self.specifiers(line), env if ":" not in prefixes else {}, f"{self.path}: ExecStart", unset_is_empty=True
        )
        if "@" in prefixes and len(words) >= 2:
            words = [words[0], *words[2:]]  # @PROGRAM ARGV0 ARGS: kiln keeps the program's own name
        return words

    def directories(self) -> list[tuple[str, str]]:
        """(directory, what it is) for RuntimeDirectory=, StateDirectory=, LogsDirectory=, CacheDirectory=."""
        out = []
        for key, (base, what) in DIR_KEYS.items():
            for name in self.words(key):
                out.append((str(PurePosixPath(base) / name.split(":")[0]), what))
        return out

    def read_write_paths(self) -> list[str]:
        """ReadWritePaths= (and its older name ReadWriteDirectories=): where a service that systemd runs with
        ProtectSystem= may still write. A `-` prefix (ignore it if missing) and `+` are dropped."""
        out = []
        for key in ("ReadWritePaths", "ReadWriteDirectories"):
            for word in self.words(key):
                path = self.specifiers(word.lstrip("-+"))
                if path.startswith("/") and path not in out:
                    out.append(path)
        return out

    def made_before_start(self) -> list[tuple[str, str | None]]:
        """(directory, owner) that ExecStartPre= lines make: `mkdir -p DIR`, `install -d [-o USER] DIR`, and
        `chown USER DIR`. Any other ExecStartPre= (a config test, a script) is not run, and not needed."""
        made: dict[str, str | None] = {}
        for line in self.service.get("ExecStartPre", []):
            try:
                words = shell_form.split(self.specifiers(line.lstrip("-@:+!")), {}, str(self.path))
            except AppError:
                continue
            prog, args = PurePosixPath(words[0]).name, words[1:]
            paths = [a for a in args if a.startswith("/")]
            if prog == "mkdir" or (prog == "install" and "-d" in args):
                owner = args[args.index("-o") + 1] if "-o" in args[:-1] else None
                made.update({p: owner for p in paths})
            elif prog == "chown" and len(args) >= 2:
                owner = args[-2].split(":")[0]
                for p in paths:
                    made[p] = owner
        return list(made.items())


def _env_file(text: str) -> dict[str, str]:
    out = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, eq, value = line.removeprefix("export ").partition("=")
        if eq:
            words = shlex.split(value, comments=True) if value.strip() else [""]
            out[key.strip()] = " ".join(words)
    return out


def parse(text: str, name: str, path: PurePosixPath) -> Unit:
    unit = Unit(name, path)
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value == "":
            unit.service[key] = []  # an empty assignment resets the list
        else:
            unit.service.setdefault(key, []).append(value)
    return unit


def find(root: Path, package: str, files: tuple[str, ...]) -> Unit | None:
    """The package's own service unit: PACKAGE.service, else its only .service file (none: None)."""
    units = sorted(
        f for f in files if f.endswith(".service") and "/systemd/system/" in f and "@" not in PurePosixPath(f).name
    )
    if not units:
        return None
    chosen = next((u for u in units if PurePosixPath(u).name == f"{package}.service"), None)
    if chosen is None:
        stem = package.removesuffix("-server").removesuffix("-daemon")
        chosen = next((u for u in units if PurePosixPath(u).name == f"{stem}.service"), None)
    if chosen is None:
        if len(units) > 1:
            names = ", ".join(PurePosixPath(u).name for u in units)
            raise AppError(f"Debian package {package} has {len(units)} service units ({names}): say which with exe")
        chosen = units[0]
    host = root / chosen.lstrip("/")
    return parse(host.read_text(), PurePosixPath(chosen).name, PurePosixPath(chosen))
