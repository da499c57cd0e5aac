"""Commands read without running anything: shell forms, Dockerfiles, Procfiles, what a server's arguments
say (its app module, its ports, its workers), Django's SQLite file, and what a directory without
kiln.toml runs."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from kiln.analyze import servers
from kiln.analyze.command import parse
from kiln.analyze.django_settings import sqlite_files
from kiln.discover import load_app
from kiln.dockerfile import read
from kiln.errors import AppError
from kiln.shell_form import ShellFormError, split, unwrap


@pytest.mark.parametrize(
    ("line", "env", "words"),
    [
        pytest.param(
            "gunicorn app:app -b 0.0.0.0:$PORT",
            {"PORT": "5000"},
            ["gunicorn", "app:app", "-b", "0.0.0.0:5000"],
            id="variable",
        ),
        pytest.param("exec nginx -g 'daemon off;'", {}, ["nginx", "-g", "daemon off;"], id="exec-and-quoted-semicolon"),
        pytest.param("redis-server --port ${P:-6379}", {}, ["redis-server", "--port", "6379"], id="default"),
        pytest.param("echo '$HOME' \"$X\"", {"X": "x"}, ["echo", "$HOME", "x"], id="single-quotes-keep-dollar"),
    ],
)
def test_shell_form_reads_one_plain_command(line: str, env: dict[str, str], words: list[str]) -> None:
    assert split(line, env, "t") == words


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        pytest.param("a && b", "a list (&&)", id="and"),
        pytest.param("a | b", "a pipe (|)", id="pipe"),
        pytest.param("a > log", "a redirection (>)", id="redirect"),
        pytest.param("run $(cat cmd)", "a command substitution ($(...))", id="substitution"),
        pytest.param('run "$(cat cmd)"', "a command substitution ($(...))", id="substitution-in-quotes"),
        pytest.param("X=1 prog", "sets a variable before its command", id="assignment"),
        pytest.param("rm *.log", "a glob", id="glob"),
        pytest.param("prog $UNSET", "$UNSET is not set", id="unset-variable"),
        pytest.param("a; b", "a list (;)", id="list"),
    ],
)
def test_shell_form_refuses_what_needs_a_shell(line: str, fragment: str) -> None:
    with pytest.raises(ShellFormError, match=None) as err:
        split(line, {}, "where")
    assert fragment in str(err.value) and str(err.value).startswith("where: ")


def test_a_glob_that_matches_no_file_stays_as_sh_leaves_it(tmp_path: Path) -> None:
    """`waitress-serve --listen=*:8080` (waitress' docs): sh leaves a glob that matches nothing as it is; one that
    matches files in the directory the command starts in would be replaced by them, which needs a shell."""
    assert split("waitress-serve --listen=*:8080 app:app", {}, "t", cwd=tmp_path) == [
        "waitress-serve", "--listen=*:8080", "app:app"]  # fmt: skip
    (tmp_path / "a.conf").write_text("")
    with pytest.raises(ShellFormError, match=r"needs a shell \(\*\.conf matches files"):
        split("server --config *.conf", {}, "t", cwd=tmp_path)
    with pytest.raises(ShellFormError, match=r"needs a shell \(a glob or ~\)"):
        split("waitress-serve --listen=*:8080 app:app", {}, "t")  # where it starts is not known


def test_sh_c_is_unwrapped_and_a_bare_shell_is_refused() -> None:
    assert unwrap(["/bin/sh", "-c", "exec memcached -u root"], {}, "t") == ["memcached", "-u", "root"]
    assert unwrap(["memcached"], {}, "t") == ["memcached"]
    with pytest.raises(ShellFormError, match="runs a shell"):
        unwrap(["/bin/bash", "/entrypoint.sh"], {}, "t")


def test_dockerfile_stages_inherit_and_args_substitute(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'ARG PY=3.11\nFROM python:${PY}-slim AS base\nWORKDIR /srv\nENV A=1 B="two words"\nEXPOSE 80 8000/tcp 53/udp\n'
        'ENTRYPOINT ["python3"]\nCMD ["manage.py", "runserver", "0.0.0.0:8000"]\nUSER app\nSTOPSIGNAL SIGINT\n'
        "HEALTHCHECK --interval=5s CMD curl -f http://localhost/ || exit 1\n"
        "FROM base AS dev\nARG P=9000\nENV PORT=$P\nCMD uvicorn x:y --port $PORT\n"
    )
    final = read(tmp_path / "Dockerfile")
    assert final.stage.image == "python:3.11-slim" and final.stage.workdir == "/srv" and final.stage.user == "app"
    assert final.command() == ["python3", "uvicorn", "x:y", "--port", "9000"]
    assert final.ports == (80, 8000) and final.stage.stop_signal == "SIGINT"
    assert final.stage.healthcheck == ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    base = read(tmp_path / "Dockerfile", target="base")
    assert base.command() == ["python3", "manage.py", "runserver", "0.0.0.0:8000"]
    with pytest.raises(AppError, match="no stage named 'nope' \\(stages: base, dev\\)"):
        read(tmp_path / "Dockerfile", target="nope")


def test_dockerfile_env_extends_the_base_images_path(tmp_path: Path) -> None:
    """Docker's nginx-wsgi-flask sample: `ENV PATH="$VIRTUAL_ENV/bin:$PATH"` extends the PATH every image
    has; a stage FROM scratch has none, and says so in one line."""
    (tmp_path / "Dockerfile").write_text(
        'FROM python:3.11-slim\nENV VIRTUAL_ENV=/opt/venv\nENV PATH="$VIRTUAL_ENV/bin:$PATH" FLASK_RUN_PORT=8000\n'
        'CMD ["gunicorn", "-b", "0.0.0.0:8000", "app:app"]\n'
    )
    stage = read(tmp_path / "Dockerfile").stage
    assert stage.env["PATH"] == "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert stage.env["FLASK_RUN_PORT"] == "8000"
    (tmp_path / "Dockerfile").write_text('FROM scratch\nENV PATH="/app:$PATH"\n')
    with pytest.raises(AppError, match=r"^Dockerfile:2: \$PATH is not set in the environment the command would have$"):
        read(tmp_path / "Dockerfile")


@pytest.mark.parametrize(
    ("words", "modules", "ports", "processes"),
    [
        pytest.param(["gunicorn", "-w", "3", "-b", "0.0.0.0:8000", "app:app"], ["app"], (8000,), 4, id="gunicorn-w3"),
        pytest.param(["gunicorn", "--workers=2", "--preload", "wsgi"], ["wsgi"], (8000,), 3, id="gunicorn-preload"),
        pytest.param(
            ["gunicorn", "-k", "gthread", "m:app"],
            ["m", "gunicorn.workers.gthread"],
            (8000,),
            2,
            id="gunicorn-named-worker",
        ),
        pytest.param(
            ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "80"], ["app.main"], (80,), None, id="uvicorn"
        ),
        pytest.param(["uvicorn", "--workers", "4", "main:app"], ["main"], (8000,), 5, id="uvicorn-workers"),
        pytest.param(["hypercorn", "-w", "0", "-b", "0.0.0.0:9000", "m:app"], ["m"], (9000,), None, id="hypercorn-w0"),
        pytest.param(["hypercorn", "m:app"], ["m"], (8000,), 2, id="hypercorn-default-worker"),
        pytest.param(["waitress-serve", "--listen=0.0.0.0:8081", "app:app"], ["app"], (8081,), None, id="waitress"),
        pytest.param(
            ["python", "-m", "flask", "--app", "hello", "run", "-p", "5001"], ["hello"], (5001,), None, id="flask-run"
        ),
        pytest.param(["python", "-m", "http.server", "5000"], [], (5000,), None, id="http-server"),
        pytest.param(
            ["python", "-m", "aiohttp.web", "-H", "0.0.0.0", "-P", "8081", "app:init_func"],
            ["app"],
            (8081,),
            None,
            id="aiohttp-web",
        ),
        pytest.param(["sanic", "server:app", "--host=0.0.0.0", "--port=8000"], [], (8000,), None, id="unknown-cli"),
    ],
)
def test_what_a_servers_arguments_say(
    words: list[str], modules: list[str], ports: tuple[int, ...], processes: int | None
) -> None:
    launch = parse(words, Path("/nonexistent"), {}, "t")
    assert list(launch.app_modules) == modules
    assert launch.listen is not None and launch.listen.ports == ports
    assert (launch.forks.processes if launch.forks else None) == processes


def test_reloaders_are_turned_off(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text("import django\n")
    django = parse(["python", "manage.py", "runserver", "0.0.0.0:8000"], tmp_path, {}, "t")
    assert django.args == ("runserver", "--noreload", "0.0.0.0:8000") and django.listen.ports == (8000,)  # type: ignore[union-attr]
    assert parse(["uvicorn", "m:app", "--reload"], tmp_path, {}, "t").args == ("m:app",)
    flask = parse(["flask", "--app", "m", "run", "--debug"], tmp_path, {}, "t")
    assert flask.args == ("--app", "m", "run", "--no-reload", "--debug")
    assert servers.loopback_only(parse(["uvicorn", "m:app"], tmp_path, {}, "t").listen)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("words", "kind", "target"),
    [
        pytest.param(["python3", "-u", "app.py", "--x"], "file", "app.py", id="python-file"),
        pytest.param(["app.py"], "file", "app.py", id="bare-file"),
        pytest.param(["/code/app.py"], "file", "app.py", id="workdir-absolute"),
        pytest.param(["python", "-m", "pkg.tool", "a"], "module", "pkg.tool", id="module"),
        pytest.param(["gunicorn", "app:app"], "console", "", id="console"),
    ],
)
def test_kinds_of_command(words: list[str], kind: str, target: str, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    launch = parse(words, tmp_path, {}, "t", workdir="/code")
    assert (launch.kind, launch.target) == (kind, target)


@pytest.mark.parametrize(
    ("words", "fragment"),
    [
        pytest.param(["python", "-c", "print(1)"], "python -c runs a command string", id="dash-c"),
        pytest.param(["python"], "starts an interactive interpreter", id="interactive"),
        pytest.param(["python", "-O", "app.py"], "cannot pass -O on", id="optimize"),
        pytest.param(["python", "missing.py"], "missing.py does not exist", id="missing-file"),
        pytest.param(["python", "../up.py"], "outside the app's directory", id="outside"),
    ],
)
def test_commands_kiln_cannot_start(words: list[str], fragment: str, tmp_path: Path) -> None:
    with pytest.raises(AppError, match=None) as err:
        parse(words, tmp_path, {}, "Procfile:1")
    assert fragment in str(err.value) and str(err.value).startswith("Procfile:1: ")


def test_django_sqlite_file_from_startproject_settings(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text(
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site1.settings')\n"
    )
    (tmp_path / "site1").mkdir()
    (tmp_path / "site1" / "settings.py").write_text(
        "import os\nfrom pathlib import Path\nBASE_DIR = Path(__file__).resolve().parent.parent\n"
        "DATABASES = {\n"
        "  'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': BASE_DIR / 'data' / 'db.sqlite3'},\n"
        "  'other': {'ENGINE': 'django.db.backends.sqlite3',\n"
        "            'NAME': os.path.join(BASE_DIR, os.environ.get('DB_DIR', 'var'), 'x.db')},\n"
        "  'pg': {'ENGINE': 'django.db.backends.postgresql', 'NAME': 'app'},\n}\n"
    )
    found = sqlite_files(tmp_path, {"DB_DIR": "state"})
    assert found == [
        (PurePosixPath("/app/data/db.sqlite3"), "site1/settings.py"),
        (PurePosixPath("/app/state/x.db"), "site1/settings.py"),
    ]
    app = load_app(tmp_path)  # no kiln.toml: Django's development server, the SQLite directories as volumes
    assert app.command_from == "manage.py" and app.config.volumes == ("/app/data", "/app/var")
    assert any("volume /app/data: Django's SQLite database" in n for n in app.notes)


def test_a_database_on_the_app_directory_itself_is_a_note_not_a_volume(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 's.settings')\n")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "settings.py").write_text(
        "from pathlib import Path\nBASE_DIR = Path(__file__).resolve().parent.parent\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': BASE_DIR / 'db.sqlite3'}}\n"
    )
    app = load_app(tmp_path)
    assert app.config.volumes == ()
    assert any("/app/db.sqlite3 (s/settings.py) would be on the read-only root" in n for n in app.notes)


def test_where_a_directory_without_kiln_toml_takes_its_command(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "manage.py").write_text("")
    (tmp_path / "Dockerfile").write_text('FROM python:3.11\nEXPOSE 9000\nCMD ["python", "app.py"]\n')
    app = load_app(tmp_path)
    assert (app.command_from, app.config.ports, app.ports_from) == (
        "Dockerfile CMD",
        (9000,),
        "the Dockerfile's EXPOSE",
    )
    (tmp_path / "Procfile").write_text("web: python app.py --port $PORT\n")
    app = load_app(tmp_path)  # a Procfile comes first
    assert app.command_from == "Procfile (web)" and app.config.command == ("python", "app.py", "--port", "5000")
    assert app.config.ports == (5000,) and app.ports_from == "$PORT"


def test_volumes_anywhere_a_user_would_mount_one(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    good = ["/app/instance", "/app/data", "/app/media", "/var/lib/app", "/var/log/app", "/srv", "/data"]
    (tmp_path / "kiln.toml").write_text(f"volumes = {good!r}\n".replace("'", '"'))
    assert load_app(tmp_path).config.volumes == tuple(good)
    for bad in ("/app", "/usr/local/data", "/lib/x", "/lib64", "/proc/x", "/kiln", "/dev/shm", "/sys", "/var"):
        (tmp_path / "kiln.toml").write_text(f'volumes = ["{bad}"]\n')
        with pytest.raises(AppError, match="the system needs"):
            load_app(tmp_path)


def test_an_app_file_that_starts_its_own_server_says_its_port(tmp_path: Path) -> None:
    from kiln.analyze.servers import listens_in_source

    app = tmp_path / "app.py"
    app.write_text('from flask import Flask\napp = Flask(__name__)\napp.run(host="0.0.0.0", port=5000)\n')
    listen = listens_in_source(app)
    assert listen is not None and (listen.ports, listen.hosts, listen.why) == ((5000,), ("0.0.0.0",), "app.py's port=")
    app.write_text("import tornado.web\napp = tornado.web.Application([])\napp.listen(8888)\n")
    assert listens_in_source(app) is not None and listens_in_source(app).ports == (8888,)  # type: ignore[union-attr]
    app.write_text('import cherrypy\ncherrypy.config.update({"server.socket_port": 8081, "engine.autoreload.on": 0})\n')
    assert listens_in_source(app) is not None and listens_in_source(app).ports == (8081,)  # type: ignore[union-attr]
    app.write_text("import os\nport = int(os.environ['PORT'])\nrun(port=port)\n")  # not a literal: not known
    assert listens_in_source(app) is None
