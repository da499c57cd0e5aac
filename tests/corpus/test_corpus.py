"""The corpus: Python apps written the way each project's own docs start them, none shaped for kiln.

Each directory holds an app with no kiln.toml, started as its docs say (a Procfile line, a Dockerfile's
CMD, a plain `python app.py`), its requirements as the docs give them and every distribution pinned
in constraints.txt (`-c`), and corpus.toml: the request that proves it answers, which is test data, not
configuration kiln reads. Every app builds from its directory and answers on the unix target; a few
answer under QEMU too. docs/compatibility.md lists them with their sizes (bench/python_apps.py).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from kiln_testing.command import kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port

CORPUS = Path(__file__).parent
APPS = sorted(p.parent.name for p in CORPUS.glob("*/corpus.toml"))
UNDER_QEMU = {"uvicorn-standard", "httpbin-gunicorn"}  # TCG boots are dear: two stand for the rest


def expectation(app: str) -> dict[str, object]:
    return tomllib.loads((CORPUS / app / "corpus.toml").read_text())


@pytest.fixture(scope="session")
def built(session_env: dict[str, str]) -> dict[str, str]:
    """The corpus apps built once in the session's store (by name: the build's stderr)."""
    return {}


def build(app: str, session_env: dict[str, str], built: dict[str, str]) -> str:
    if app not in built:
        assert not (CORPUS / app / "kiln.toml").exists(), f"{app} must build with no kiln.toml"
        proc = kiln("build", "-t", f"corpus-{app}", str(CORPUS / app), env=session_env, check=True, timeout=1200)
        # every build of an app with ports ran it once, audited: it answered, and imported nothing the image lacks
        assert "==> audit: GET " in proc.stderr and "none missing" in proc.stderr, proc.stderr
        built[app] = proc.stderr
    return built[app]


def answer(app: str, target: str, session_env: dict[str, str], instances: list[Instance]) -> str:
    want = expectation(app)
    port = free_port()
    inst = Instance(f"corpus-{app}", session_env, target, {port: int(str(want["port"]))})
    instances.append(inst)
    got = inst.wait_http(port, str(want["path"]), timeout=240)
    assert got.status_code == 200, f"{got.status_code} {got.text[:500]}\n{inst.output}"
    assert str(want["expect"]) in got.text, f"{got.text[:500]}\n{inst.output}"
    assert "ModuleNotFoundError" not in inst.output and "Traceback" not in inst.output, inst.output
    return inst.output


@pytest.mark.parametrize("app", APPS)
def test_the_app_answers_on_the_unix_target(
    app: str, session_env: dict[str, str], built: dict[str, str], instances: list[Instance]
) -> None:
    build(app, session_env, built)
    answer(app, "unix", session_env, instances)


@pytest.mark.vm
@pytest.mark.parametrize("app", sorted(UNDER_QEMU))
def test_the_app_answers_under_qemu(
    app: str, session_env: dict[str, str], built: dict[str, str], instances: list[Instance]
) -> None:
    build(app, session_env, built)
    answer(app, "qemu", session_env, instances)


def test_uvicorn_standard_runs_on_the_loop_the_user_asked_for(
    session_env: dict[str, str], built: dict[str, str]
) -> None:
    """uvicorn[standard] asks for uvloop and httptools, which uvicorn imports only optionally: both are in the
    image (the corpus request shows the loop is uvloop's), with the uvicorn modules that use them."""
    build("uvicorn-standard", session_env, built)
    manifest = json.loads(kiln("inspect", "--json", "corpus-uvicorn-standard", env=session_env, check=True).stdout)
    python = manifest["manifest"]["python"]
    names = {d["name"] for d in python["distributions"]}
    modules = {m["name"] for m in python["modules"]}
    assert {"uvloop", "httptools", "websockets", "watchfiles"} <= names
    assert {"uvicorn.protocols.http.httptools_impl", "uvicorn.loops.uvloop", "uvloop.loop"} <= modules


def test_fastapi_run_keeps_the_cli_the_user_installed(session_env: dict[str, str], built: dict[str, str]) -> None:
    """fastapi[standard]: `fastapi run` finds fastapi-cli, which fastapi imports inside try/except ImportError."""
    stderr = build("fastapi-run", session_env, built)
    assert "ports: 80" in stderr
    manifest = json.loads(kiln("inspect", "--json", "corpus-fastapi-run", env=session_env, check=True).stdout)
    names = {d["name"] for d in manifest["manifest"]["python"]["distributions"]}
    assert {"fastapi", "fastapi-cli", "pandas", "numpy", "uvicorn", "uvloop"} <= names
    modules = {m["name"] for m in manifest["manifest"]["python"]["modules"]}
    assert "fastapi_cli.cli" in modules and not any(".tests." in m for m in modules)


def test_a_pre_forking_server_from_a_procfile_records_its_process_model(
    session_env: dict[str, str], built: dict[str, str]
) -> None:
    stderr = build("httpbin-gunicorn", session_env, built)
    assert "gunicorn starts 2 processes (one worker by default)" in stderr
    manifest = json.loads(kiln("inspect", "--json", "corpus-httpbin-gunicorn", env=session_env, check=True).stdout)
    assert manifest["manifest"]["policy"]["relaxed"] == {"clone": "gunicorn forks its workers (one worker by default)"}
