"""Path -> App: an app's directory (or lone .py file) read into a config, its command parsed once, and
completed with what the command says (ports, volumes, the policy its server needs).

The config comes from kiln.toml or [tool.kiln] in pyproject.toml (kiln.config is its schema); and
when neither says, from the directory itself:

In this order, the first that the directory has:

1. a `Procfile`'s `web:` line (Heroku's, foreman's and honcho's format);
   `$PORT` there is 5000, as foreman gives it, and the app sees PORT=5000;
2. a `Dockerfile`'s ENTRYPOINT and CMD (read, not built: kiln.dockerfile),
   with its ENV, its EXPOSEd ports and its WORKDIR for absolute paths;
3. `manage.py`: Django's development server, `runserver 0.0.0.0:8000`;
4. `app.py`, `main.py` or `__main__.py`, run as a file.

Each gives a `Found`: the command's words, where they came from (for the
build's output), the environment and ports the source declares, and notes.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kiln import shell_form
from kiln.analyze.command import Launch, parse
from kiln.analyze.django_settings import sqlite_files
from kiln.analyze.servers import listens_in_source, loopback_only
from kiln.config import App, AppConfig, SeccompConfig, check_volume, format_validation, parse_config
from kiln.errors import AppError

DEFAULT_ENTRIES = ("app.py", "main.py", "__main__.py")
PROCFILE_PORT = "5000"  # foreman's and honcho's first $PORT
DJANGO_COMMAND = ("python", "manage.py", "runserver", "0.0.0.0:8000")


@dataclass(frozen=True)
class Found:
    command: tuple[str, ...]
    source: str  # "Procfile (web)", "Dockerfile CMD", ...
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    ports_from: str | None = None
    workdir: str | None = None  # the Dockerfile's WORKDIR: where absolute paths in its command point
    notes: tuple[str, ...] = ()


def procfile(path: Path) -> Found:
    processes: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().replace("-", "").replace("_", "").isalnum():
            raise AppError(f"{path}:{number}: not a process line (NAME: COMMAND)")
        processes.setdefault(name.strip(), (number, command.strip()))
    if "web" not in processes:
        have = ", ".join(processes) or "no processes"
        raise AppError(f"{path}: no web: line (it has {have}); kiln runs the web process")
    number, line = processes["web"]
    env = {"PORT": PROCFILE_PORT} if "PORT" in line else {}
    words = shell_form.split(line, env, f"{path.name}:{number}", cwd=path.parent)  # a Procfile runs in the app
    return Found(tuple(words), "Procfile (web)", env=env)


def dockerfile(path: Path) -> Found | None:
    from kiln import dockerfile as df

    parsed = df.read(path)
    words = parsed.command()
    if not words:
        return None
    parts = [p for p, v in (("ENTRYPOINT", parsed.stage.entrypoint), ("CMD", parsed.stage.cmd)) if v]
    notes = []
    notes.append(
        "kiln builds it as a Python app itself, with the Dockerfile's command (smaller, and no base image); "
        "kiln build --dockerfile builds the Dockerfile instead"
    )
    if parsed.stage.image.startswith(("python:", "docker.io/library/python:")):
        notes.append(
            f"its base image {parsed.stage.image} is not used: the image embeds the interpreter kiln builds with"
        )
    return Found(
        tuple(words),
        f"Dockerfile {' + '.join(parts)}",
        env=dict(parsed.stage.env),
        ports=parsed.ports,
        ports_from="the Dockerfile's EXPOSE" if parsed.ports else None,
        workdir=parsed.stage.workdir,
        notes=tuple(notes),
    )


def python_command(words: tuple[str, ...] | list[str], root: Path) -> bool:
    """Is this a command kiln can build as a Python app itself (no base image, no builder)?"""
    from kiln.analyze.command import PYTHON
    from kiln.analyze.servers import SERVERS

    if not words:
        return False
    program = words[0].rsplit("/", 1)[-1]
    python_files = any(root.glob("*.py")) or any(root.glob("*/*.py"))
    return bool(PYTHON.match(program) or program.endswith(".py") or (program in SERVERS and python_files))


def needs_builder(root: Path) -> str | None:
    """Why a directory with no kiln.toml, no Procfile and a Dockerfile must be built by the Dockerfile
    (kiln.oci.builder): its command is not one kiln can build as a Python app; None if it can."""
    if not root.is_dir() or (root / "kiln.toml").is_file() or (root / "Procfile").is_file():
        return None
    if not (root / "Dockerfile").is_file():
        return None
    from kiln import dockerfile as df

    words = df.read(root / "Dockerfile").command()
    if python_command(words, root):
        return None
    program = words[0] if words else "no program"
    return f"its Dockerfile's command runs {program}, not a Python program kiln builds itself"


def find(root: Path) -> Found | None:
    """The command of a directory without kiln.toml, or None if it has none of the above."""
    if (root / "Procfile").is_file():
        return procfile(root / "Procfile")
    if (root / "Dockerfile").is_file() and (found := dockerfile(root / "Dockerfile")) is not None:
        return found
    if (root / "manage.py").is_file():
        return Found(
            DJANGO_COMMAND,
            "manage.py",
            notes=("this is Django's development server (manage.py runserver), as Django's tutorial runs it; "
                   "kiln.toml's command names another, e.g. [\"waitress-serve\", \"PROJECT.wsgi:application\"]",),
        )  # fmt: skip
    entry = next((name for name in DEFAULT_ENTRIES if (root / name).is_file()), None)
    if entry is not None:
        return Found(("python", entry), entry)
    return None


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
        return complete(App(root=path.parent, config=AppConfig(entry=path.name), config_file=None, single_file=True))
    kiln_toml, pyproject = path / "kiln.toml", path / "pyproject.toml"
    if kiln_toml.is_file():
        config, source = parse_config(_read_toml(kiln_toml), kiln_toml), kiln_toml
    elif pyproject.is_file() and "kiln" in _read_toml(pyproject).get("tool", {}):
        config, source = parse_config(_read_toml(pyproject)["tool"]["kiln"], pyproject), pyproject
    else:
        return _discovered(path)
    app = App(root=path, config=config, config_file=source, command_from=source.name)
    if isinstance(config, AppConfig) and config.command is None and not (path / config.entry).is_file():
        raise AppError(f"{source}: entry {config.entry!r} does not exist in {path}")
    return complete(app)


def _discovered(path: Path) -> App:
    """A directory without kiln.toml: its command from a Procfile, a Dockerfile, manage.py or app.py."""
    found = find(path)
    if found is None:
        raise AppError(
            f"{path}: no kiln.toml, no [tool.kiln] in pyproject.toml, no Procfile, no Dockerfile with a command, "
            f"no manage.py, and none of {', '.join(DEFAULT_ENTRIES)}"
        )
    try:
        if found.source in DEFAULT_ENTRIES:  # a plain Python project: the defaults, with this entry
            config = AppConfig(entry=found.source)
        else:
            config = AppConfig(command=found.command, env=found.env, ports=found.ports)
    except ValidationError as err:
        raise AppError(format_validation(err, path / found.source.split()[0])) from None
    app = App(
        root=path,
        config=config,
        config_file=None,
        command_from=found.source,
        ports_from=found.ports_from,
        workdir=found.workdir,
        notes=found.notes,
    )
    return complete(app)


def parse_command(app: App) -> Launch:
    """How `app` starts: its command parsed, once (App.launch keeps it)."""
    assert isinstance(app.config, AppConfig)
    where = app.command_from or (str(app.config_file.name) if app.config_file else "the app")
    return parse(app.config.words, app.root, app.config.env, where, app.workdir)


def complete(app: App) -> App:
    """The app with its command parsed, and what the command says that the config did not: its ports,
    and whether the policy lets it run."""
    if app.native:
        return app
    parsed = app.parsed or parse_command(app)
    launch = parsed
    assert isinstance(app.config, AppConfig)
    config, ports_from, notes = app.config, app.ports_from, list(app.notes) + list(launch.notes)
    if launch.listen is None and launch.kind == "file" and not config.ports:
        launch = dataclasses.replace(launch, listen=listens_in_source(app.root / launch.target))
    if not config.ports and launch.listen is not None:
        config = config.model_copy(update={"ports": launch.listen.ports})
        ports_from = launch.listen.why
    elif not config.ports and config.env.get("PORT", "").isdigit():  # a Procfile's $PORT
        config = config.model_copy(update={"ports": (int(config.env["PORT"]),)})
        ports_from = "$PORT"
    config = _django_volumes(app.root, config, notes)
    if launch.listen is not None and config.ports and loopback_only(launch.listen):
        host = "--bind 0.0.0.0:PORT" if launch.listen.why.endswith(("bind", "-b")) else "--host 0.0.0.0"
        notes.append(
            f"{launch.server.name if launch.server else launch.name} listens on {launch.listen.hosts[0]} only "
            f"({launch.listen.why}): no published port of a VM reaches it; add {host} to the command"
        )
    if launch.forks is not None:
        # A server kiln knows forks its workers without exec (gunicorn's master and workers, uvicorn's and
        # hypercorn's --workers): the policy lets exactly that through, the reason recorded in the manifest.
        missing = [c for c in launch.forks.calls if c not in config.seccomp.allow]
        if missing:
            server = launch.server.name if launch.server else launch.name
            allow = {**config.seccomp.allow, **{c: f"{server} {_WHY[c]} ({launch.forks.how})" for c in missing}}
            config = config.model_copy(update={"seccomp": SeccompConfig(allow=allow)})
            notes.append(
                f"{server} starts {launch.forks.processes} processes ({launch.forks.how}): the syscall policy "
                f"lets {', '.join(missing)} through for its workers"
            )
    return dataclasses.replace(app, config=config, ports_from=ports_from, notes=tuple(notes), parsed=parsed)


def _django_volumes(root: Path, config: AppConfig, notes: list[str]) -> AppConfig:
    """A Django project's SQLite directory as a declared volume (kiln.analyze.django_settings)."""
    if not (root / "manage.py").is_file():
        return config
    for file, settings in sqlite_files(root, config.env):
        directory = str(file.parent)
        if any(directory == v or directory.startswith(v + "/") for v in config.volumes):
            continue
        try:
            check_volume(directory)
        except ValueError:
            notes.append(
                f"Django's SQLite database {file} ({settings}) would be on the read-only root: give it a directory "
                'of its own (BASE_DIR / "data" / "db.sqlite3"), which kiln makes a volume'
            )
            continue
        config = config.model_copy(update={"volumes": (*config.volumes, directory)})
        notes.append(f"volume {directory}: Django's SQLite database ({settings}); kiln run -v HOSTDIR:{directory}")
    return config


_WHY = {"clone": "forks its workers", "execve": "starts an interpreter per worker"}
