"""The app's build configuration: kiln.toml, [tool.kiln] in pyproject.toml,
or the defaults for a single .py file, validated into frozen models.

    # kiln.toml
    name = "hello-http"
    entry = "app.py"            # the Python file that runs the app
    args = ["--port", "8080"]   # its arguments
    ports = [8080]              # ports the app listens on (TCP)
    memory = "48M"              # guest RAM; a number is MiB (default: sized from the image)
    ready = "/health"           # answers 200 once the app is ready (default: every port listens)
    include = ["encodings.idna"]  # modules imported dynamically
    exclude = ["watchdog"]      # imports that are never reached: not followed, never an error
    data = ["templates/**", "static/*"]  # the app's data files (default: every non-Python file)
    check = ["/", "/health"]    # paths `kiln build --check` requests on the declared ports
    sources = false             # also keep .py sources in the image
    volumes = ["/data"]         # writable directories (kiln run -v HOST:/data)
    [env]
    GREETING = "hello"
    [seccomp]
    allow = { clone = "forks worker processes" }   # relax the syscall policy, saying why
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from kiln.errors import AppError
from kiln.units import parse_memory

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


def _volume(path: str) -> str:
    if not re.match(r"^(/[A-Za-z0-9._-]+)+$", path) or path.split("/")[1] in RESERVED_DIRS:
        raise ValueError(f"{path!r} must be an absolute path outside {', '.join('/' + d for d in RESERVED_DIRS)}")
    return path


RESERVED_DIRS = ("app", "dev", "etc", "kiln", "lib", "lib64", "proc", "sys", "tmp", "usr")


class RunnableConfig(BaseModel):
    """What every app's config may say: how it runs and what it may do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    args: tuple[Line, ...] = ()
    env: dict[str, Line] = Field(default_factory=dict)
    ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = ()
    memory: MiB | None = None  # None: sized from the image (kiln.image.sizing)
    ready: Annotated[str, Field(pattern=r"^/[^\s]*$")] | None = None  # HTTP path: 200 once ready (snapshots)
    volumes: tuple[Annotated[str, BeforeValidator(lambda v: _volume(v) if isinstance(v, str) else v)], ...] = ()
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


class AppConfig(RunnableConfig):
    """What kiln.toml may say about a Python app."""

    entry: str = "app.py"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sources: bool = False
    python: str = "/usr/bin/python3.11"
    python_path: tuple[str, ...] = ()
    data: tuple[str, ...] | None = None  # globs relative to the app; None: every non-Python file
    check: tuple[Annotated[str, Field(pattern=r"^/[^\s]*$")], ...] = ("/",)

    @field_validator("include", "exclude")
    @classmethod
    def _include(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for mod in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", mod):
                raise ValueError(f"{mod!r} is not a module name")
        return v


class NativeConfig(RunnableConfig):
    """What kiln.toml may say about a native program (`exe = ...`), or `kiln build --exe` builds."""

    exe: str | None = None  # a path, or a name looked up on PATH (with deb: a path in the package)
    deb: str | None = None  # take the program from this Debian package (fetched, never installed)
    files: tuple[str, ...] = ()  # files it reads: PATH (kept at the same path) or SRC:DEST
    users: tuple[str, ...] = ()  # accounts it looks up or switches to (root is always there)
    libraries: tuple[str, ...] = ()  # libraries it loads with dlopen

    @model_validator(mode="after")
    def _program(self) -> NativeConfig:
        if not self.exe and not self.deb:
            raise ValueError("say which program: exe = ... or deb = ...")
        return self


class App(BaseModel):
    """An app on disk: its directory, its config, and where the config came from."""

    model_config = ConfigDict(frozen=True)

    root: Path
    config: AppConfig | NativeConfig
    config_file: Path | None
    single_file: bool = False  # a lone .py file: its directory is not the app's (no data, no dependencies)

    @property
    def name(self) -> str:
        if self.config.name:
            return self.config.name
        if isinstance(self.config, NativeConfig):
            return default_name(self.root if self.config_file else Path(self.config.exe or self.config.deb or "app"))
        return default_name(Path(self.config.entry) if self.single_file else self.root)

    @property
    def entry_path(self) -> Path:
        assert isinstance(self.config, AppConfig)
        return self.root / self.config.entry

    @property
    def native(self) -> bool:
        return isinstance(self.config, NativeConfig)


# What a directory without a config runs, in this order of preference.
DEFAULT_ENTRIES = ("app.py", "main.py", "__main__.py")


def default_name(path: Path) -> str:
    """An image name derived from a directory or file name."""
    stem = path.stem if path.suffix == ".py" else path.name
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("._-")
    return name or "app"


def _format_validation(err: ValidationError, source: Path) -> str:
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
        raise AppError(_format_validation(err, source)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise AppError(f"{path}: {err}") from None
    except UnicodeDecodeError:
        raise AppError(f"{path}: not a UTF-8 text file") from None


def load_app(path: Path) -> App:
    """Read an app from a directory (kiln.toml or pyproject.toml) or a single .py file."""
    if not path.exists():
        raise AppError(f"no such app: {path}")
    path = path.resolve()
    if path.is_file():
        if path.suffix != ".py":
            raise AppError(f"{path}: a Python app is a directory with kiln.toml or a .py file")
        return App(root=path.parent, config=AppConfig(entry=path.name), config_file=None, single_file=True)
    kiln_toml, pyproject = path / "kiln.toml", path / "pyproject.toml"
    if kiln_toml.is_file():
        config, source = parse_config(_read_toml(kiln_toml), kiln_toml), kiln_toml
    elif pyproject.is_file() and "kiln" in _read_toml(pyproject).get("tool", {}):
        config, source = parse_config(_read_toml(pyproject)["tool"]["kiln"], pyproject), pyproject
    elif entry := next((name for name in DEFAULT_ENTRIES if (path / name).is_file()), None):
        # A plain Python project (requirements.txt or pyproject dependencies, and an app.py): the defaults.
        return App(root=path, config=AppConfig(entry=entry), config_file=None)
    else:
        raise AppError(
            f"{path}: no kiln.toml, no [tool.kiln] in pyproject.toml, and none of {', '.join(DEFAULT_ENTRIES)}"
        )
    app = App(root=path, config=config, config_file=source)
    if not app.native and not app.entry_path.is_file():
        raise AppError(f"{source}: entry {config.entry!r} does not exist in {path}")
    return app
