"""Real Python apps: dependencies installed by kiln from the package index, frameworks that build and
serve under QEMU and on the unix target, and every way installing dependencies can fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from kiln.image.sizing import FLOOR_MIB, default_memory_mib, root_bytes
from kiln.store import Store
from kiln_testing.checks import assert_one_line_error, store_state
from kiln_testing.command import EXAMPLES, FIXTURES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port

TARGETS = ["qemu", "unix"]


def deps_cache(env: dict[str, str]) -> list[str]:
    cache = Path(env["KILN_HOME"]) / "cache" / "deps"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture(scope="session")
def flask_image(session_env: dict[str, str]) -> str:
    kiln("build", str(EXAMPLES / "flask-app"), env=session_env, check=True, timeout=900)
    return "flask-app"


@pytest.fixture(scope="session")
def fastapi_image(session_env: dict[str, str]) -> str:
    kiln("build", str(EXAMPLES / "fastapi-app"), env=session_env, check=True, timeout=900)
    return "fastapi-app"


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_flask_app(target: str, flask_image: str, session_env: dict[str, str], instances: list[Instance]) -> None:
    port = free_port()
    inst = Instance(flask_image, session_env, target, {port: 8080})
    instances.append(inst)
    info = inst.wait_http(port, "/api/info")
    assert info.status_code == 200, inst.output
    assert info.json()["app"] == "flask-app" and info.json()["flask"].startswith("3.")  # dist-info is in the image
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert page.status_code == 200 and f"Hello from Flask {info.json()['flask']}" in page.text  # Jinja template
    css = httpx.get(f"http://127.0.0.1:{port}/static/style.css", timeout=10)
    assert css.status_code == 200 and "font-family" in css.text  # the app's static file
    echo = httpx.post(f"http://127.0.0.1:{port}/echo", data={"name": "kiln", "n": "3"}, timeout=10)
    assert echo.json() == {"form": {"name": "kiln", "n": "3"}}
    assert inst.stop() == 130


def test_flask_image_is_trimmed_and_records_its_packages(flask_image: str, session_env: dict[str, str]) -> None:
    manifest = json.loads(kiln("inspect", "--json", flask_image, env=session_env, check=True).stdout)["manifest"]
    python = manifest["python"]
    assert python["dependencies_from"] == "requirements.txt"
    names = {d["name"] for d in python["distributions"]}
    assert {"flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker"} <= names
    modules = {m["name"] for m in python["modules"]}
    assert "flask.app" in modules and "jinja2.environment" in modules
    # optional extras and other platforms are left out, listed, and not in the image
    assert {"dotenv", "msvcrt"} <= set(python["optional_left_out"])
    assert not {"dotenv", "msvcrt", "watchdog", "tkinter", "unittest.mock"} & modules
    site = "/usr/local/lib/python3.11/site-packages"
    assert manifest["entry"]["env"]["PYTHONPATH"] == site
    assert any(m["path"] == f"{site}/flask/app.pyc" for m in python["modules"])


def test_memory_is_sized_from_the_image(flask_image: str, session_env: dict[str, str], tmp_path: Path) -> None:
    """With no `memory` in its config, an app with dependencies gets room for its kernel and files
    (a guest short of it thrashes rather than fails): counted here from the files the image holds."""
    manifest = json.loads(kiln("inspect", "--json", flask_image, env=session_env, check=True).stdout)["manifest"]
    store = Store(Path(session_env["KILN_HOME"]) / "store")
    tree = tmp_path / "root"
    subprocess.run(["fsck.erofs", f"--extract={tree}", str(store.blob_path(manifest["rootfs"]["digest"]))],
                   check=True, capture_output=True)  # fmt: skip
    held = root_bytes(tree)
    held = held._replace(files=held.files - (tree / "kiln" / "config").stat().st_size)  # written after the sizing
    expected = default_memory_mib(manifest["kernel"]["uncompressed_size"], held)
    assert manifest["entry"]["memory_mib"] == expected > FLOOR_MIB
    built = json.loads(kiln("build", "--json", str(EXAMPLES / "hello-http"), env=session_env, check=True).stdout)
    assert built["memory_mib"] == FLOOR_MIB  # a stdlib app: 14 MiB of kernel, 14 of files, the floor


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_fastapi_app(target: str, fastapi_image: str, session_env: dict[str, str], instances: list[Instance]) -> None:
    port = free_port()
    inst = Instance(fastapi_image, session_env, target, {port: 8000})
    instances.append(inst)
    item = inst.wait_http(port, "/items/3?q=kiln")
    assert (item.status_code, item.json()) == (200, {"item_id": 3, "q": "kiln"}), inst.output
    created = httpx.post(f"http://127.0.0.1:{port}/items", json={"name": "pot", "price": 9.5}, timeout=10)
    assert created.json() == {"created": {"name": "pot", "price": 9.5}}
    invalid = httpx.post(f"http://127.0.0.1:{port}/items", json={"name": "", "price": -1}, timeout=10)
    assert invalid.status_code == 422  # pydantic validation
    assert {e["loc"][-1] for e in invalid.json()["detail"]} == {"name", "price"}
    assert httpx.get(f"http://127.0.0.1:{port}/items/three", timeout=10).status_code == 422
    assert inst.stop() == 130
    # the guest console is a terminal, so uvicorn colours its log
    assert "Uvicorn running on http://0.0.0.0:8000" in re.sub(r"\x1b\[[0-9;]*m", "", inst.output)


class _Jobs(BaseHTTPRequestHandler):
    results: ClassVar[list[dict[str, int]]] = []

    def do_GET(self) -> None:
        body = json.dumps({"numbers": list(range(1, 101))}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.results.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jobs_server() -> Iterator[tuple[int, list[dict[str, int]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Jobs)
    _Jobs.results = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Jobs.results
    server.shutdown()
    server.server_close()


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_worker_without_ports_talks_to_a_host_server(
    target: str,
    tmp_path: Path,
    session_env: dict[str, str],
    instances: list[Instance],
    jobs_server: tuple[int, list[dict[str, int]]],
) -> None:
    port, results = jobs_server
    app = tmp_path / "http-worker"
    shutil.copytree(EXAMPLES / "http-worker", app)
    # Under QEMU the host is the slirp gateway; the unix target shares the host's network.
    host = "10.0.2.2" if target == "qemu" else "127.0.0.1"
    toml = app / "kiln.toml"
    toml.write_text(toml.read_text().replace("http://10.0.2.2:8099", f"http://{host}:{port}"))
    kiln("build", "-t", f"http-worker:{target}", str(app), env=session_env, check=True, timeout=900)
    inst = Instance(f"http-worker:{target}", session_env, target)
    instances.append(inst)
    assert inst.wait() == 0, inst.output
    assert results == [{"sum": 5050}]
    assert "http-worker: got 100 numbers with requests" in inst.output


def test_unchanged_dependencies_are_served_from_the_cache(env: dict[str, str], tmp_path: Path) -> None:
    app = tmp_path / "flask-app"
    shutil.copytree(EXAMPLES / "flask-app", app)
    first = kiln("build", "--json", str(app), env=env, check=True, timeout=900)
    entries = deps_cache(env)
    entry = Path(env["KILN_HOME"]) / "cache" / "deps" / entries[0]
    stamp = (entry / "installed.json").stat().st_mtime_ns
    (app / "app.py").write_text((app / "app.py").read_text() + "\n# a change to the app, not to its dependencies\n")
    second = kiln("build", "--json", str(app), env=env, check=True, timeout=900)
    assert "cached, nothing installed" in second.stderr and "Collecting" not in second.stderr
    assert deps_cache(env) == entries and (entry / "installed.json").stat().st_mtime_ns == stamp
    assert json.loads(first.stdout)["distributions"] == json.loads(second.stdout)["distributions"]


@pytest.mark.parametrize(
    ("app", "fragment", "extra_env"),
    [
        pytest.param(
            "dep-missing",
            "dependency kiln-no-such-distribution-xyz==1.0 (from requirements.txt): no such package",
            {},
            id="no-such-package",
        ),
        pytest.param(
            "dep-conflict",
            "dependencies in requirements.txt conflict: The user requested werkzeug==2.0.0",
            {},
            id="version-conflict",
        ),
        pytest.param(
            "dep-needs-compiler",
            "dependency cext-demo ships only as source and cannot be built here: its C compiler /nonexistent/cc is not",
            {"CC": "/nonexistent/cc"},
            id="sdist-needs-a-compiler",
        ),
    ],
)
def test_dependency_errors(app: str, fragment: str, extra_env: dict[str, str], env: dict[str, str]) -> None:
    before, cached = store_state(env), deps_cache(env)
    proc = kiln("build", str(FIXTURES / app), env={**env, **extra_env}, timeout=900)
    assert_one_line_error(proc, fragment)
    assert store_state(env) == before and deps_cache(env) == cached


def test_check_finds_a_string_import_the_analysis_cannot_see(env: dict[str, str], tmp_path: Path) -> None:
    app = tmp_path / "string-import"
    shutil.copytree(FIXTURES / "string-import", app)
    proc = kiln("build", "--check", str(app), env=env, timeout=600)
    assert_one_line_error(proc, "--check: 1 module imported at run time is not in the image: encodings.cp1252")
    assert 'add to kiln.toml: include = ["encodings.cp1252"]' in proc.stdout
    assert "ModuleNotFoundError: No module named" not in proc.stderr  # the report, not the console
    # What the check suggests makes the next build pass, and the app answers.
    (app / "kiln.toml").write_text((app / "kiln.toml").read_text() + 'include = ["encodings.cp1252"]\n')
    fixed = kiln("build", "--check", "--json", str(app), env=env, timeout=600, check=True)
    report = json.loads(fixed.stdout)["check"]
    assert report["missing"] == [] and report["requests"] == {"http://127.0.0.1:8731/": "200"}
    assert report["imported"] > 50


def test_the_default_audit_undoes_an_image_that_lacks_what_the_app_imports(env: dict[str, str], tmp_path: Path) -> None:
    """A Python app with ports is run once by every build: a module it imports that the image lacks fails
    the build in one line naming the module and the fix, and the store is as it was; --no-check skips it."""
    app = shutil.copytree(FIXTURES / "string-import", tmp_path / "string-import")
    before = store_state(env)
    proc = kiln("build", str(app), env=env, timeout=600)
    assert_one_line_error(
        proc,
        'the audit run imported encodings.cp1252, which the image lacks: add include = ["encodings.cp1252"] to '
        "kiln.toml (kiln build --no-check skips the run)",
    )
    assert store_state(env) == before
    assert kiln("build", "--no-check", str(app), env=env, timeout=600).returncode == 0
    (app / "kiln.toml").write_text((app / "kiln.toml").read_text() + 'include = ["encodings.cp1252"]\n')
    passed = kiln("build", str(app), env=env, timeout=600, check=True)
    assert "audit: GET / -> 200" in passed.stderr and "none missing" in passed.stderr


def test_trim_modules_needs_the_audit(env: dict[str, str], tmp_path: Path) -> None:
    app = shutil.copytree(FIXTURES / "string-import", tmp_path / "string-import")
    (app / "kiln.toml").write_text((app / "kiln.toml").read_text() + 'trim = "modules"\n')
    proc = kiln("build", "--no-check", str(app), env=env)
    assert_one_line_error(proc, 'trim = "modules" keeps only what the imports reach, so the build runs the app', 2)


def test_check_is_for_python_apps(env: dict[str, str]) -> None:
    proc = kiln("build", "--check", "--exe", "/bin/true", env=env)
    assert_one_line_error(proc, "--check proves a Python app's imports; for a native program use kiln trace", 2)


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_wheel_with_vendored_libraries(target: str, session_env: dict[str, str], instances: list[Instance]) -> None:
    kiln("build", str(FIXTURES / "pillow-app"), env=session_env, check=True, timeout=900)
    manifest = json.loads(kiln("inspect", "--json", "pillow-app", env=session_env, check=True).stdout)["manifest"]
    vendored = [lib["path"] for lib in manifest["libraries"] if "pillow.libs" in lib["path"]]
    assert any("libjpeg" in p for p in vendored)
    assert all(p.startswith("/usr/local/lib/python3.11/site-packages/pillow.libs/") for p in vendored)
    inst = Instance("pillow-app", session_env, target)
    instances.append(inst)
    assert inst.wait() == 0, inst.output
    assert "pillow-app: JPEG (8, 8) jpeg=True" in inst.output


def test_trace_of_a_python_image_audits_its_imports(env: dict[str, str]) -> None:
    kiln("build", str(FIXTURES / "string-import-once"), env=env, check=True, timeout=600)
    proc = kiln("trace", "-t", "60", "--json", "string-import-once", env=env, timeout=180)
    report = json.loads(proc.stdout)["python"]
    assert report["missing"] == ["encodings.cp1252"], proc.stderr
    assert report["imported"] > 20
    assert "ModuleNotFoundError: No module named 'encodings.cp1252'" in proc.stderr  # the console, in full


def test_an_app_that_ends_before_answering_is_not_audited_and_says_why(env: dict[str, str], tmp_path: Path) -> None:
    """The audit is conclusive only once the app answers: one that exits first (here: on its first starts, as an
    app without its database would) is built, and the build says in one line that it was not audited and why;
    so does one whose port another process holds on the host (the unix target runs on the host's network)."""
    import socket

    port = free_port()
    app = shutil.copytree(FIXTURES / "flaky", tmp_path / "flaky")
    source = (app / "app.py").read_text().replace("8080", str(port))
    crash = '    raise ConnectionRefusedError("no database yet")'
    (app / "app.py").write_text(source.replace("    sys.exit(1)", crash))
    (app / "kiln.toml").write_text((app / "kiln.toml").read_text().replace("8080", str(port)))
    proc = kiln("build", str(app), env=env, timeout=600, check=True)
    assert (
        f"audit: the app did not answer on port {port} within 30 s (it exited with status 1: "
        "ConnectionRefusedError: no database yet): its imports were not checked" in proc.stderr
    ), proc.stderr
    with socket.create_server(("0.0.0.0", port)):
        held = kiln("build", str(app), env=env, timeout=600, check=True)
    assert f"audit: port {port} is in use on this host: the app was not run" in held.stderr, held.stderr
