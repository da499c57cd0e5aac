"""Apps as their authors run them: by a command (a console script, `python -m`, a file), by a Procfile,
by a Dockerfile's CMD, by Django's manage.py with no kiln.toml; pre-forking servers; the sourceless
layout's traps; volumes inside the app's directory; and each way a command can be wrong."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from kiln_testing.answers import wait_for_answer
from kiln_testing.checks import assert_one_line_error, store_state
from kiln_testing.command import FIXTURES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port


def build(app: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return kiln("build", str(FIXTURES / app), env=env, check=True, timeout=900)


@pytest.fixture(scope="session")
def uvicorn_image(session_env: dict[str, str]) -> str:
    build("uvicorn-app", session_env)
    return "uvicorn-app"


@pytest.mark.vm
@pytest.mark.parametrize("target", ["qemu", "unix"])
def test_fastapi_by_uvicorns_command(
    target: str, uvicorn_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(uvicorn_image, session_env, target, {port: 8000})
    instances.append(inst)
    assert inst.wait_http(port, "/").json() == {"message": "Hello World"}
    assert httpx.get(f"http://127.0.0.1:{port}/items/5?q=x", timeout=10).json() == {"item_id": 5, "q": "x"}
    manifest = json.loads(kiln("inspect", "--json", uvicorn_image, env=session_env, check=True).stdout)["manifest"]
    entry = manifest["entry"]
    start = entry["argv"].index("/kiln/start.pyc")
    # a console script, started where pip's launcher would: uvicorn's entry point, argv[0] "uvicorn"
    assert entry["argv"][start + 1 :] == ["-e", "uvicorn.main:main", "uvicorn", "main:app", "--host", "0.0.0.0",
                                          "--port", "8000"]  # fmt: skip
    assert entry["ports"] == [8000]
    assert inst.stop() in (0, 130)


def test_the_build_says_where_the_command_and_ports_came_from(session_env: dict[str, str]) -> None:
    proc = build("fastapi-sample", session_env)  # Docker's own FastAPI sample: a Dockerfile, no kiln.toml
    assert "command: uvicorn app.main:app --host 0.0.0.0 --port 80 (from Dockerfile CMD)" in proc.stderr
    assert "ports: 80 (from the command's --port)" in proc.stderr
    assert "its base image python:3.10-alpine is not used" in proc.stderr
    proc = build("procfile-app", session_env)
    assert "command: python -m http.server 5000 --bind 0.0.0.0 (from Procfile (web))" in proc.stderr
    assert "ports: 5000" in proc.stderr


@pytest.mark.vm
def test_dockerfile_and_procfile_apps_serve(session_env: dict[str, str], instances: list[Instance]) -> None:
    build("fastapi-sample", session_env)
    build("procfile-app", session_env)
    api, static = free_port(), free_port()
    a = Instance("fastapi-sample", session_env, "unix", {api: 80})
    b = Instance("procfile-app", session_env, "qemu", {static: 5000})  # python -m, from a Procfile
    instances += [a, b]
    assert a.wait_http(api, "/").json() == {"Hello": "World"}
    page = b.wait_http(static, "/")
    assert page.status_code == 200 and "served by python -m http.server from a Procfile" in page.text
    env = json.loads(kiln("inspect", "--json", "procfile-app", env=session_env, check=True).stdout)
    assert env["manifest"]["entry"]["env"]["PORT"] == "5000"  # as foreman gives it


@pytest.mark.vm
def test_gunicorn_prefork_workers_run_as_the_command_says(
    session_env: dict[str, str], instances: list[Instance]
) -> None:
    """`gunicorn -w 2` with no [seccomp] line: kiln knows gunicorn's master forks its workers without exec,
    lets exactly that through, and records why in the manifest and the surface."""
    proc = build("gunicorn-flask", session_env)
    assert "ports: 8000 (from the command's -b)" in proc.stderr
    assert "gunicorn starts 3 processes (-w 2): the syscall policy lets clone through for its workers" in proc.stderr
    manifest = json.loads(kiln("inspect", "--json", "gunicorn-flask", env=session_env, check=True).stdout)["manifest"]
    assert manifest["policy"]["relaxed"] == {"clone": "gunicorn forks its workers (-w 2)"}
    assert "execve" in manifest["policy"]["denied"]
    surface = json.loads(kiln("inspect", "--surface", "--json", "gunicorn-flask", env=session_env, check=True).stdout)
    assert surface["image"]["processes"] == "forks workers without exec (gunicorn forks its workers (-w 2))"
    port = free_port()
    inst = Instance("gunicorn-flask", session_env, "qemu", {port: 8000})
    instances.append(inst)
    answer = inst.wait_http(port, "/").json()
    assert answer["master"] != answer["worker"]  # a forked worker answered
    deadline = time.monotonic() + 60
    while inst.output.count("Booting worker with pid") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert inst.output.count("Booting worker with pid") >= 2, inst.output  # -w 2
    assert "refused clone" not in inst.output
    inst.stop()


@pytest.fixture(scope="session")
def django_image(session_env: dict[str, str]) -> str:
    proc = build("django-site", session_env)
    assert "command: python manage.py runserver --noreload 0.0.0.0:8000 (from manage.py)" in proc.stderr
    assert "Django's development server" in proc.stderr
    assert "volume /app/data: Django's SQLite database (mysite/settings.py)" in proc.stderr
    return "django-site"


@pytest.mark.vm
def test_django_site_with_no_kiln_toml_keeps_its_rows(
    django_image: str, session_env: dict[str, str], tmp_path: Path
) -> None:
    """startproject + one app, python-dotenv's load_dotenv(find_dotenv()) in the settings (it walks the
    stack to a frame whose file exists), SQLite in /app/data: migrate, serve, stop, start, rm, run -v."""
    data = tmp_path / "data"
    data.mkdir()
    migrate = kiln("run", "--target", "unix", "-v", f"{data}:/app/data", django_image, "--", "migrate", "--noinput",
                   env=session_env, timeout=300)  # fmt: skip
    assert migrate.returncode == 0 and "Applying notes.0001_initial... OK" in migrate.stdout, migrate.stdout
    port = free_port()
    name = "django-test"
    kiln("run", "-d", "--name", name, "-v", f"{data}:/app/data", "-p", f"127.0.0.1:{port}:8000", django_image,
         env=session_env, check=True)  # fmt: skip
    try:
        first = wait_for_answer(port, timeout=180, request_timeout=10, poll=0.5).json()
        assert first == {"greeting": "hello from .env", "notes": []}  # the .env was found: find_dotenv worked
        assert httpx.post(f"http://127.0.0.1:{port}/", data={"text": "kept"}, timeout=30).json()["notes"] == ["kept"]
        # a page from templates: the engine's loaders and the admin's templates, all found by name
        login = httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=60)
        assert login.status_code == 200 and "Django" in login.text, login.text[-500:]
        kiln("stop", name, env=session_env, check=True)
        kiln("start", name, env=session_env, check=True)
        assert wait_for_answer(port, timeout=180, request_timeout=10, poll=0.5).json()["notes"] == ["kept"]
        kiln("rm", "-f", name, env=session_env, check=True)
        kiln("run", "-d", "--name", name, "--target", "unix", "-v", f"{data}:/app/data",
             "-p", f"127.0.0.1:{port}:8000", django_image, env=session_env, check=True)  # fmt: skip
        assert wait_for_answer(port, timeout=180, request_timeout=10, poll=0.5).json()["notes"] == ["kept"]
    finally:
        kiln("rm", "-f", name, env=session_env)


def test_the_app_sources_are_kept_for_tracebacks_and_find_dotenv(
    django_image: str, session_env: dict[str, str]
) -> None:
    manifest = json.loads(kiln("inspect", "--json", django_image, env=session_env, check=True).stdout)["manifest"]
    paths = {m["name"]: m["path"] for m in manifest["python"]["modules"]}
    assert paths["mysite.settings"] == "/app/mysite/__pycache__/settings.cpython-311.pyc"  # the source beside it
    assert paths["django.conf"] == "/usr/local/lib/python3.11/site-packages/django/conf/__init__.pyc"  # sourceless
    # migrate's modules, which Django lists and imports by name
    assert {"django.contrib.auth.migrations.0001_initial", "notes.migrations.0001_initial"} <= set(paths)


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        pytest.param(
            {"kiln.toml": 'command = ["nosuchserver", "app:app"]\n', "app.py": "", "requirements.txt": "idna\n"},
            "nosuchserver is not a file in the app, and no installed distribution provides a console script",
            id="no-such-console-script",
        ),
        pytest.param(
            {"Procfile": "worker: python jobs.py\n", "jobs.py": ""},
            "Procfile: no web: line (it has worker)",
            id="procfile-without-web",
        ),
        pytest.param(
            {"kiln.toml": 'volumes = ["/usr/share/data"]\n', "app.py": ""},
            "'/usr/share/data': the system needs /usr",
            id="volume-on-usr",
        ),
        pytest.param(
            {"kiln.toml": 'command = "gunicorn app:app && echo done"\n', "app.py": ""},
            "needs a shell (a list (&&)), and a unikernel has none",
            id="shell-command",
        ),
        pytest.param(
            {"kiln.toml": 'command = ["uvicorn", "nowhere:app"]\n', "app.py": "", "requirements.txt": "uvicorn\n"},
            "uvicorn imports nowhere (named in its arguments), and there is no such module",
            id="server-names-a-missing-module",
        ),
        pytest.param(
            {"kiln.toml": 'command = ["python", "-m", "nosuchmodule"]\n', "app.py": ""},
            "python -m nosuchmodule cannot be found",
            id="missing-module",
        ),
        pytest.param(
            {"kiln.toml": 'entry = "app.py"\ncommand = ["python", "app.py"]\n', "app.py": ""},
            "command replaces entry and args",
            id="command-and-entry",
        ),
    ],
)
def test_bad_commands_get_one_line(files: dict[str, str], fragment: str, tmp_path: Path, env: dict[str, str]) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for name, text in files.items():
        (app / name).write_text(text)
    before = store_state(env)
    assert_one_line_error(kiln("build", str(app), env=env, timeout=600), fragment)
    assert store_state(env) == before
