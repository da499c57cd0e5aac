"""kiln compose: examples/compose-counter (a Python web app and the redis unikernel) on a private
network, under real QEMU; and a second project from the same file that cannot see the first's redis."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from kiln_testing.answers import wait_for_answer
from kiln_testing.command import EXAMPLES, ROOT, kiln
from kiln_testing.ports import free_port

pytestmark = [pytest.mark.vm, pytest.mark.kernel]
COMPOSE = EXAMPLES / "compose-counter" / "compose.yaml"


def get(port: int, path: str = "/") -> str:
    return wait_for_answer(port, timeout=60, path=path, status=200, request_timeout=10).text.strip()


def compose(env: dict[str, str], project: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kiln("compose", "-f", str(COMPOSE), "-p", project, *args, env=env, check=check, timeout=900)


def test_counter_on_a_private_network(session_env: dict[str, str]) -> None:
    port_a, port_b = free_port(), free_port()
    env_a = {**session_env, "WEB_PORT": str(port_a)}
    env_b = {**session_env, "WEB_PORT": str(port_b)}
    try:
        compose(env_a, "one", "up", "-d")
        assert [get(port_a) for _ in range(10)][-1] == "visits: 10"
        rows = json.loads(compose(env_a, "one", "ps", "--json").stdout)
        assert {r["service"]: (r["state"], r["address"]) for r in rows} == {
            "redis": ("running", "10.89.0.2/24"),
            "web": ("running", "10.89.0.3/24"),
        }
        # redis is published nowhere: the host reaches only the web app's port
        assert all(r["ports"] == [] for r in rows if r["service"] == "redis")
        # health as init asks it: redis-cli ping (PING in redis's protocol) and the web app's HTTP check
        assert {r["service"]: r["health"] for r in rows} == {"redis": "healthy", "web": "healthy"}
        assert "running (healthy)" in compose(env_a, "one", "ps").stdout

        # the web service restarts alone; the count lives in redis and survives
        kiln("stop", "one-web", env=env_a, check=True)
        kiln("start", "one-web", env=env_a, check=True)
        assert get(port_a, "/count") == "visits: 10"

        # the same file under another name: its own network and its own redis, which starts from nothing
        compose(env_b, "two", "up", "-d")
        assert get(port_b) == "visits: 1"
        assert get(port_a, "/count") == "visits: 10"
        # without its own redis, project two's web finds none: project one's redis has the same name,
        # address and MAC address on its own network, and would answer if the networks were one
        kiln("stop", "two-redis", env=env_b, check=True)
        cut_off = httpx.get(f"http://127.0.0.1:{port_b}/", timeout=60)
        assert cut_off.status_code == 502, cut_off.text
        assert get(port_a, "/count") == "visits: 10"
        assert "web | counter listening" in compose(env_a, "one", "logs", "web").stdout
    finally:
        compose(env_a, "one", "down", check=False)
        compose(env_b, "two", "down", check=False)
    left = json.loads(kiln("ps", "-a", "--json", env=session_env, check=True).stdout)
    assert not [r for r in left if r["name"].startswith(("one-", "two-"))]
    assert not (Path(session_env["KILN_HOME"]) / "compose" / "one").exists()
    switches = subprocess.run(["pgrep", "-f", f"kiln.compose.switch {session_env['KILN_HOME']}"], capture_output=True)
    assert switches.returncode == 1, switches.stdout


def test_php_behind_nginx(session_env: dict[str, str]) -> None:
    """examples/compose-php: Debian's nginx passes a .php request to Debian's php8.2-fpm over FastCGI on the
    project's network; both built from their packages with no hand-written arguments (the pool's port is
    kiln.debs.hints'), php-fpm's workers forked by its master. Ten requests at once are all answered."""
    example = EXAMPLES / "compose-php" / "compose.yaml"
    port = free_port()
    env = {**session_env, "WEB_PORT": str(port)}

    def php(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kiln("compose", "-f", str(example), *args, env=env, check=check, timeout=900)

    try:
        php("up", "-d")
        assert get(port, "/index.php?x=1") == "hello from fpm-fcgi via CGI/1.1\nmethod GET, query x=1"
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda i: get(port, f"/index.php?n={i}"), range(10)))
        assert all(a.endswith(f"query n={i}") for i, a in enumerate(answers)), answers
        logs = php("logs", "php").stdout
        assert "ready to handle connections" in logs and "kiln-init: refused" not in logs, logs
    finally:
        php("down", check=False)


def test_compose_errors(session_env: dict[str, str], tmp_path: Path) -> None:
    def error(text: str) -> str:
        (tmp_path / "compose.yaml").write_text(text)
        proc = kiln("compose", "-f", str(tmp_path / "compose.yaml"), "up", "-d", env=session_env)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stderr.strip()

    assert "is not valid Compose: services.web.ports" in error("services:\n  web:\n    image: x\n    ports: 8080\n")
    assert "services.web.cap_add: valid Compose, but kiln does not support it" in error(
        "services:\n  web:\n    image: x\n    cap_add: [NET_ADMIN]\n"
    )
    assert "depends_on has a cycle: a -> b -> a" in error(
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n"
    )
    said = error("services:\n  web:\n    image: nothing-here\n")
    last = said.splitlines()[-1]
    assert last.startswith("kiln: error: service web: image nothing-here is not in the store, and building it "
                           "failed: registry docker.io is not reachable"), said  # fmt: skip
    assert said.count("kiln: error:") == 1
    assert "host port 8080 is published twice (services a and b)" in error(
        "services:\n  a:\n    image: x\n    ports: ['8080:80']\n  b:\n    image: x\n    ports: ['8080:81']\n"
    )


def test_a_service_that_never_becomes_healthy_stops_what_up_started(
    session_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(
        f"""
services:
  cache:
    image: redis
    build: {EXAMPLES / "redis"}
    healthcheck: {{test: ["HTTP", "6379", "/"], interval: 1s, retries: 2, start_period: 15s}}
  web:
    image: redis
    depends_on: {{cache: {{condition: service_healthy}}}}
"""
    )
    proc = kiln("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "sick", "up", "-d", env=session_env, timeout=900)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "service cache never became healthy (HTTP 6379/, 2 checks failed" in proc.stderr
    assert "its last console lines:" in proc.stderr and "stopped what this up started: sick-cache" in proc.stderr
    left = json.loads(kiln("ps", "-a", "--json", env=session_env, check=True).stdout)
    assert not [r for r in left if r["name"].startswith("sick-")]


def test_a_job_that_does_not_complete_successfully_stops_what_up_started(
    session_env: dict[str, str], tmp_path: Path
) -> None:
    """depends_on: condition: service_completed_successfully: a job (a migration, say) that exits 3 stops `up`
    in one line with its status, and what this up started goes."""
    (tmp_path / "compose.yaml").write_text(
        f"""
services:
  migrate:
    build: {ROOT / "tests" / "fixtures" / "apps" / "exit3"}
  web:
    image: redis
    build: {EXAMPLES / "redis"}
    depends_on: {{migrate: {{condition: service_completed_successfully}}}}
"""
    )
    proc = kiln("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "job", "up", "-d", env=session_env, timeout=900)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "waiting for migrate to complete" in proc.stderr
    assert "service migrate did not complete successfully (exit status 3)" in proc.stderr, proc.stderr
    assert "stopped what this up started: job-migrate" in proc.stderr
    left = json.loads(kiln("ps", "-a", "--json", env=session_env, check=True).stdout)
    assert not [r for r in left if r["name"].startswith("job-")]


def test_several_networks_reach_only_through_a_shared_one(session_env: dict[str, str], tmp_path: Path) -> None:
    """The samples' shape: the database on an internal backnet (under an alias), the backend on backnet and
    frontnet, a front service on frontnet only. The backend reaches the database by its alias; the front service
    reaches it neither by name nor by its address on backnet."""
    backend_port, front_port = free_port(), free_port()
    (tmp_path / "compose.yaml").write_text(f"""
name: nets
services:
  db:
    image: redis
    build: {EXAMPLES / "redis"}
    networks:
      backnet: {{aliases: [database]}}
    healthcheck: {{test: ["CMD", "redis-cli", "ping"], interval: 1s}}
  backend:
    image: compose-counter-web
    build: {EXAMPLES / "compose-counter" / "web"}
    environment: {{REDIS_HOST: database}}
    networks: [backnet, frontnet]
    ports: ["127.0.0.1:{backend_port}:8080"]
    depends_on: {{db: {{condition: service_healthy}}}}
  front:
    image: compose-counter-web
    environment: {{REDIS_HOST: 10.89.0.3}}
    networks: [frontnet]
    ports: ["127.0.0.1:{front_port}:8080"]
networks:
  frontnet: {{}}
  backnet: {{internal: true}}
""")

    def nets(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kiln("compose", "-f", str(tmp_path / "compose.yaml"), *args, env=session_env, check=check, timeout=900)

    try:
        up = nets("up", "-d")
        assert "db: started (nets-db, 10.89.0.3 on backnet)" in up.stderr, up.stderr
        assert "backend: started (nets-backend, 10.89.0.2 on backnet, 10.89.1.2 on frontnet)" in up.stderr
        assert get(backend_port) == "visits: 1"  # the database, by its alias on backnet
        # db's address on backnet, from a guest with no NIC there: nothing answers (the web app says 502)
        cut_off = httpx.get(f"http://127.0.0.1:{front_port}/", timeout=60)
        assert cut_off.status_code == 502, cut_off.text
        rows = {r["service"]: r for r in json.loads(nets("ps", "--json").stdout)}
        assert rows["backend"]["addresses"] == ["10.89.0.2/24", "10.89.1.2/24"]
        assert rows["db"]["health"] == "healthy"
        assert get(backend_port, "/count") == "visits: 1"
    finally:
        nets("down", check=False)
    switches = subprocess.run(["pgrep", "-f", f"kiln.compose.switch {session_env['KILN_HOME']}/compose/nets"],
                              capture_output=True)  # fmt: skip
    assert switches.returncode == 1, switches.stdout


def test_a_bind_of_a_file_reaches_the_service_and_leaves_the_root_as_built(
    session_env: dict[str, str], tmp_path: Path
) -> None:
    """./index.html:/srv/site/index.html:ro, as people bind a config or a page: nginx serves the host's file, the
    image's digest is the one built, and the rest of the image's directory is still there."""
    port = free_port()
    (tmp_path / "index.html").write_text("bound from the host\n")
    (tmp_path / "compose.yaml").write_text(f"""
services:
  web:
    image: nginx-static
    build: {EXAMPLES / "nginx-static"}
    ports: ["127.0.0.1:{port}:8080"]
    volumes: ["./index.html:/srv/site/index.html:ro"]
""")

    def site(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kiln("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "bound", *args, env=session_env,
                    check=check, timeout=900)  # fmt: skip

    try:
        site("up", "-d")
        assert get(port, "/index.html") == "bound from the host"
        assert httpx.get(f"http://127.0.0.1:{port}/style.css", timeout=30).status_code == 200  # the image's own
        rows = {r["name"]: r for r in json.loads(kiln("ps", "--json", env=session_env, check=True).stdout)}
        image = json.loads(kiln("inspect", "--json", "nginx-static", env=session_env, check=True).stdout)
        assert rows["bound-web"]["digest"] == image["digest"], (rows["bound-web"], image["digest"])
        assert "kiln-init: bind /srv/site/index.html (read-only)" in site("logs", "web").stdout
    finally:
        site("down", check=False)
