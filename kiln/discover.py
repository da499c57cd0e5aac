"""Where an app directory's command comes from when no kiln.toml says.

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

from dataclasses import dataclass, field
from pathlib import Path

from kiln import shell_form
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
