"""The app's build configuration: kiln.toml, [tool.kiln] in pyproject.toml,
or the defaults for a single .py file, validated into frozen models.

    # kiln.toml
    name = "hello-http"
    entry = "app.py"            # the Python file that runs the app
    args = ["--port", "8080"]   # its arguments
    command = ["uvicorn", "main:app", "--host", "0.0.0.0"]  # or: the command, instead of entry + args
                                # (a console script, `python -m MODULE ...`, or `python FILE ...`)
    ports = [8080]              # ports the app listens on (TCP)
    memory = "48M"              # guest RAM; a number is MiB (default: sized from the image)
    ready = "/health"           # answers 200 once the app is ready (default: every port listens)
    include = ["encodings.idna"]  # modules imported dynamically
    exclude = ["watchdog"]      # imports that are never reached: not followed, never an error
    data = ["templates/**", "static/*"]  # the app's data files (default: every non-Python file)
    check = ["/", "/health"]    # paths `kiln build --check` requests on the declared ports
    sources = "app"             # .py sources kept beside their bytecode: "app" (the app's own, the
                                # default), "all" (true), or "none" (false: every module sourceless)
    volumes = ["/data"]         # writable directories (kiln run -v HOST:/data)
    trim = "distributions"      # what is kept of an installed distribution the app reaches: all of it
                                # (the default), or "modules": only the modules its imports reach (the
                                # build then runs the app once to prove it: `kiln build --check`)
    [env]
    GREETING = "hello"
    [seccomp]
    allow = { clone = "forks worker processes" }   # relax the syscall policy, saying why
    exec = { "/usr/lib/app/helper" = "the server starts it" }  # a native server's own helpers (only these)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from kiln import shell_form
from kiln.errors import AppError
from kiln.units import parse_memory

if TYPE_CHECKING:
    from kiln.analyze.command import Launch

NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


MiB = Annotated[int, BeforeValidator(parse_memory)]


def _no_newline(value: str) -> str:
    if "\n" in value or "\0" in value:
        raise ValueError("must not contain a newline or NUL")
    return value


Line = Annotated[str, BeforeValidator(lambda v: _no_newline(v) if isinstance(v, str) else v)]


class SeccompConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    allow: dict[str, str] = Field(default_factory=dict)
    # programs of the image a native server executes itself, by path, and why (kiln.debs.hints' helpers for a
    # server kiln does not know): init lets an execve of exactly these through
    exec: dict[str, str] = Field(default_factory=dict)

    @field_validator("exec")
    @classmethod
    def _programs(cls, value: dict[str, str]) -> dict[str, str]:
        for path, why in value.items():
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"exec: {path!r} must be an absolute path of a program in the image")
            if not why.strip():
                raise ValueError(f"exec: say why {path} is executed")
        return value


def check_volume(path: str) -> str:
    if not re.match(r"^(/[A-Za-z0-9._-]+)+$", path) or any(p in (".", "..") for p in path.split("/")):
        raise ValueError(f"{path!r} must be an absolute path, such as /data or /app/instance")
    top = path.split("/")[1]
    if top in RESERVED_DIRS or top.startswith("lib") or path in WHOLE_DIRS:
        raise ValueError(
            f"{path!r}: the system needs {'/' + top if path not in WHOLE_DIRS else path} "
            f"(volumes may not be on {', '.join('/' + d for d in RESERVED_DIRS)}, /lib*, or {', '.join(WHOLE_DIRS)} "
            "itself; /app/data, /var/lib/NAME, /srv are fine)"
        )
    return path


# Directories the system needs: a volume there would hide the interpreter, its libraries, init or the kernel's views.
RESERVED_DIRS = ("dev", "etc", "kiln", "proc", "sys", "tmp", "usr", "bin", "sbin", "boot", "run")
WHOLE_DIRS = ("/app", "/var", "/var/lib", "/var/log")  # below them is fine, not them


def _command(value: Any) -> Any:
    """command = "uvicorn main:app" (a string, read as sh would split it) or a list of words."""
    if isinstance(value, str):
        return tuple(shell_form.split(value, {}, "command"))
    return value


class RunnableConfig(BaseModel):
    """What every app's config may say: how it runs and what it may do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    args: tuple[Line, ...] = ()
    env: dict[str, Line] = Field(default_factory=dict)
    ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = ()
    memory: MiB | None = None  # None: sized from the image (kiln.image.sizing)
    ready: Annotated[str, Field(pattern=r"^/[^\s]*$")] | None = None  # HTTP path: 200 once ready (snapshots)
    volumes: tuple[Annotated[str, BeforeValidator(lambda v: check_volume(v) if isinstance(v, str) else v)], ...] = ()
    seccomp: SeccompConfig = Field(default_factory=SeccompConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError("must be lower-case letters, digits and . _ - (like a Docker image name)")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return v


def _sources(value: Any) -> Any:
    return {True: "all", False: "none"}.get(value, value) if isinstance(value, bool) else value


Command = Annotated[tuple[Line, ...], BeforeValidator(_command), Field(min_length=1)]


class AppConfig(RunnableConfig):
    """What kiln.toml may say about a Python app."""

    entry: str = "app.py"
    command: Command | None = None  # instead of entry + args (kiln.analyze.command)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sources: Annotated[Literal["app", "all", "none"], BeforeValidator(_sources)] = "app"
    python: str = "/usr/bin/python3.11"
    python_path: tuple[str, ...] = ()
    data: tuple[str, ...] | None = None  # globs relative to the app; None: every non-Python file
    check: tuple[Annotated[str, Field(pattern=r"^/[^\s]*$")], ...] = ("/",)
    trim: Literal["distributions", "modules"] = "distributions"

    @field_validator("include", "exclude")
    @classmethod
    def _include(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for mod in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", mod):
                raise ValueError(f"{mod!r} is not a module name")
        return v

    @model_validator(mode="after")
    def _one_command(self) -> AppConfig:
        if self.command is not None and {"entry", "args"} & self.model_fields_set:
            raise ValueError("command replaces entry and args: give command, or entry (and args)")
        if self.seccomp.exec:
            raise ValueError("[seccomp] exec names a native server's own programs (exe or deb); a Python app's "
                             "image holds none to execute")  # fmt: skip
        return self

    @property
    def words(self) -> tuple[str, ...]:
        """The command: as given, or `python ENTRY ARGS`."""
        return self.command if self.command is not None else ("python", self.entry, *self.args)


class NativeConfig(RunnableConfig):
    """What kiln.toml may say about a native program (`exe = ...`), or `kiln build --exe` builds."""

    command: Command | None = None  # instead of exe + args: the program and its arguments
    exe: str | None = None  # a path, or a name looked up on PATH (with deb: a path in the package)
    deb: str | None = None  # take the program from this Debian package (fetched, never installed)
    files: tuple[str, ...] = ()  # files it reads: PATH (kept at the same path) or SRC:DEST
    users: tuple[str, ...] = ()  # accounts it looks up or switches to (root is always there)
    libraries: tuple[str, ...] = ()  # libraries it loads with dlopen
    # the app's directory in the image at /app, where the program starts (None: when it has a package.json,
    # whose dependencies npm installs: kiln.deps.npm)
    app: bool | None = None

    @model_validator(mode="after")
    def _program(self) -> NativeConfig:
        if self.command is not None:
            derived = (self.exe, self.args) == (self.command[0], self.command[1:])
            if {"exe", "args"} & self.model_fields_set and not derived:
                raise ValueError("command replaces exe and args: give command, or exe (and args)")
            return self if derived else self.model_copy(update={"exe": self.command[0], "args": self.command[1:]})
        if not self.exe and not self.deb:
            raise ValueError("say which program: exe = ... or deb = ...")
        return self


@dataclass(frozen=True)
class App:
    """An app on disk: its directory, its config, where the config came from, and how it starts
    (kiln.discover.load_app makes one; the command is parsed once, there)."""

    root: Path
    config: AppConfig | NativeConfig
    config_file: Path | None
    single_file: bool = False  # a lone .py file: its directory is not the app's (no data, no dependencies)
    command_from: str | None = None  # where the command came from: "kiln.toml", "Procfile (web)", ...
    ports_from: str | None = None  # where the ports came from, when not from kiln.toml
    workdir: str | None = None  # a Dockerfile's WORKDIR: absolute paths in its command point there
    notes: tuple[str, ...] = ()  # what the build says about the command (kiln build prints them)
    parsed: Launch | None = None  # how the image starts the app (None: a native program)

    @property
    def name(self) -> str:
        if self.config.name:
            return self.config.name
        if isinstance(self.config, NativeConfig):
            return default_name(self.root if self.config_file else Path(self.config.exe or self.config.deb or "app"))
        return default_name(Path(self.config.entry) if self.single_file else self.root)

    @property
    def launch(self) -> Launch:
        """How the image starts a Python app (a console script's entry point is resolved by the analysis)."""
        assert self.parsed is not None, "a Python app's command is parsed when it is loaded (kiln.discover)"
        return self.parsed

    @property
    def entry_path(self) -> Path:
        """The file the app starts in (a module or console script: the app's directory)."""
        launch = self.launch
        return self.root / launch.target if launch.kind == "file" else self.root

    @property
    def native(self) -> bool:
        return isinstance(self.config, NativeConfig)

    def describe(self) -> list[str]:
        """What the build says first: the command and where it came from, the ports and theirs, notes."""
        import shlex

        if self.native:
            return []
        lines = [f"command: {shlex.join(self.launch.words)} (from {self.command_from or 'the file given'})"]
        if self.config.ports:
            ports = ", ".join(map(str, self.config.ports))
            lines.append(f"ports: {ports} (from {self.ports_from or self.command_from or 'the config'})")
        return lines + [f"note: {n}" for n in self.notes]


def default_name(path: Path) -> str:
    """An image name derived from a directory or file name."""
    stem = path.stem if path.suffix == ".py" else path.name
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("._-")
    return name or "app"


def format_validation(err: ValidationError, source: Path) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {where}: {first['msg']}{more}"


def parse_config(data: dict[str, Any], source: Path) -> AppConfig | NativeConfig:
    """A config table: a native program's if it names `exe`, a Python app's otherwise."""
    try:
        if "exe" in data or "deb" in data:
            return NativeConfig.model_validate(data)
        return AppConfig.model_validate(data)
    except ValidationError as err:
        raise AppError(format_validation(err, source)) from None
