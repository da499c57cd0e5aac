"""The compose file reader: interpolation, the Compose schema, kiln's subset, dependency order."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.compose.project import interpolate, load
from kiln.errors import UsageError

GOOD = """
name: demo
services:
  web:
    build: ./web
    ports: ["${PORT:-8080}:8080", {target: 81, published: 9091, host_ip: 127.0.0.1}]
    environment: [A=1, B=two words]
    depends_on:
      db: {condition: service_healthy}
    healthcheck: {test: ["HTTP", "8080", "/health"], interval: 500ms, retries: 5}
    volumes: ["data:/data", "./static:/static"]
    restart: unless-stopped
    mem_limit: 64m
  db:
    image: redis
    healthcheck: {test: ["TCP", "6379"]}
volumes:
  data: {}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "static").mkdir(exist_ok=True)
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    return path


def test_reads_the_subset(tmp_path: Path) -> None:
    project = load(write(tmp_path, GOOD), env={"PORT": "9000"})
    assert project.name == "demo" and project.order() == ["db", "web"]
    web = project.services["web"]
    assert [str(p) for p in web.ports] == ["0.0.0.0:9000->8080/tcp", "127.0.0.1:9091->81/tcp"]
    assert web.environment == {"A": "1", "B": "two words"} and web.memory_mib == 64 and web.restart == "always"
    assert (
        web.depends_on == {"db": "service_healthy"} and web.build is not None and web.build.context == tmp_path / "web"
    )
    assert web.healthcheck is not None and (web.healthcheck.kind, web.healthcheck.path) == ("http", "/health")
    assert web.healthcheck.interval == 0.5 and web.healthcheck.retries == 5
    assert web.volumes == (("volume", "data", "/data", False), ("bind", str(tmp_path / "static"), "/static", False))
    assert project.services["db"].healthcheck.kind == "tcp"  # type: ignore[union-attr]
    assert load(write(tmp_path, GOOD), name="other", env={}).services["web"].ports[0].host == 8080


def test_interpolation() -> None:
    env = {"A": "x", "E": ""}
    assert interpolate("$A ${A} ${B:-d} ${B-d} ${E:-d} ${E-d} $$A", env) == "x x d d d  $A"
    assert interpolate({"k": ["${A}"]}, env) == {"k": ["x"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services:\n  w:\n    image: x\n    ports: 80\n", "is not valid Compose: services.w.ports"),
        ("services:\n  w:\n    image: x\n    privileged: true\n", "services.w.privileged: valid Compose, but kiln"),
        ("services:\n  w:\n    image: x\nnetworks: {n: {external: true}}\n", "networks.n: external networks are"),
        ("services:\n  w:\n    image: x\nnetworks: {n: {driver: overlay}}\n", "networks.n.driver: overlay"),
        (
            "services:\n  w:\n    image: x\n    networks: {a: {ipv4_address: 1.2.3.4}}\nnetworks: {a: {}}\n",
            "services.w.networks.a.ipv4_address: valid Compose, but kiln",
        ),
        ("services:\n  w:\n    image: x\n    network_mode: host\n", "services.w.network_mode: valid Compose, but"),
        ("services:\n  w:\n    image: x\n    networks: [a, b]\nnetworks: {a: {}}\n", "b is not declared under"),
        (
            "services:\n  w:\n    image: x\n    networks: [a, b, c, d, e]\n"
            "networks: {a: {}, b: {}, c: {}, d: {}, e: {}}\n",
            "a service is on at most 4 networks",
        ),
        ("services:\n  w:\n    image: x\n    env_file: nope.env\n", "services.w.env_file: "),
        ("services:\n  w:\n    image: x\n    healthcheck: {test: [CMD, curl, x]}\n", "one URL on localhost only"),
        ("services:\n  w:\n    image: x\n    healthcheck: {test: [CMD, ls]}\n", "a unikernel has no shell"),
        ("services:\n  w:\n    image: x\n    depends_on: [v]\n", "services.w.depends_on: no service named v"),
        ("services:\n  w:\n    image: x\n    ports: ['53:53/udp']\n", "TCP ports only"),
        ("services:\n  w:\n    image: x\n    volumes: ['nope:/d']\n", "volume 'nope' is not declared"),
        ("services:\n  w:\n    image: x\n    volumes: ['./no.conf:/etc/x:ro']\n", "no.conf does not exist"),
        ("services:\n  w:\n    image: x\n    volumes: ['./:/srv:rx']\n", "mode 'rx' (kiln knows ro and rw)"),
        ("services:\n  w:\n    image: x\n    restart: sometimes\n", "services.w.restart: 'sometimes'"),
        ("services:\n  w:\n    image: x\n    mem_limit: 1k\n", "services.w.mem_limit"),
        (
            "services:\n  a:\n    image: x\n    depends_on: {b: {condition: service_healthy}}\n  b:\n    image: x\n",
            "service_healthy, but b has no healthcheck",
        ),
        ("services:\n  a:\n    image: x\n    depends_on: [a]\n", "depends_on has a cycle: a -> a"),
        ("services: [\n", "not YAML"),
    ],
)
def test_refuses_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=None) as err:
        load(write(tmp_path, text), env={})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_compose_files_as_written(tmp_path: Path) -> None:
    """The keys Docker's samples use: image from a registry, build with a target, command, env_file,
    container_name, one network, stop_signal, and a curl healthcheck as people write it."""
    (tmp_path / "web").mkdir()
    (tmp_path / "web.env").write_text("# comment\nFROM_FILE=1\nexport QUOTED='two words'\nBOTH=file\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  web:\n"
        "    build: {context: web, target: builder, args: {V: '1'}}\n"
        "    command: gunicorn -b 0.0.0.0:8000 app:app\n"
        "    env_file: web.env\n"
        "    environment: {BOTH: env}\n"
        "    container_name: my-web\n"
        "    networks: [backnet]\n"
        "    stop_signal: SIGINT\n"
        "    expose: ['8000']\n"
        "    labels: {team: a}\n"
        "    healthcheck:\n"
        "      test: ['CMD-SHELL', 'curl -f http://localhost:8000/health || exit 1']\n"
        "  cache:\n"
        "    image: redis:7\n"
        "    entrypoint: [redis-server, --save, '']\n"
        "    healthcheck: {test: [CMD, wget, --spider, 'http://127.0.0.1/']}\n"
        "networks:\n"
        "  backnet: {}\n"
    )
    project = load(tmp_path / "compose.yaml", env={})
    web, cache = project.services["web"], project.services["cache"]
    assert web.command == ("gunicorn", "-b", "0.0.0.0:8000", "app:app") and web.container_name == "my-web"
    assert web.environment == {"FROM_FILE": "1", "QUOTED": "two words", "BOTH": "env"}
    assert web.build is not None and (web.build.target, web.build.args) == ("builder", {"V": "1"})
    assert web.stop_signal == "SIGINT" and web.expose == (8000,) and web.labels == {"team": "a"}
    assert web.healthcheck is not None and (web.healthcheck.kind, web.healthcheck.port, web.healthcheck.path) == (
        "http",
        8000,
        "/health",
    )
    assert cache.entrypoint == "redis-server" and cache.command == ("--save", "")
    assert cache.healthcheck is not None and (cache.healthcheck.port, cache.healthcheck.path) == (80, "/")
    from kiln.compose.lifecycle import registry_reference

    assert registry_reference("redis:7") == "docker://docker.io/library/redis:7"
    assert registry_reference("127.0.0.1:5000/test/redis") == "docker://127.0.0.1:5000/test/redis:latest"
    assert registry_reference("ghcr.io/org/app@sha256:ab") == "docker://ghcr.io/org/app@sha256:ab"


def test_compose_config_prints_the_file_resolved_and_names_every_problem(tmp_path: Path) -> None:
    """As `docker compose config`: variables from .env under the shell's; a file with schema problems gets
    one line each and exit status 2; what kiln does not run, its one line."""
    import json
    import os
    import subprocess

    from kiln_testing.command import KILN

    (tmp_path / ".env").write_text("TAG=from-dotenv\nPORT=8080\n")
    (tmp_path / "compose.yaml").write_text(
        "name: shop\nservices:\n  web:\n    image: web:${TAG}\n    ports: ['${PORT}:80']\n"
        "    environment: {MODE: '${MODE:-plain}'}\n"
    )
    env = {**os.environ, "PORT": "9090"}
    env.pop("TAG", None)
    env.pop("MODE", None)

    def config(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KILN, "compose", *args, "config"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    done = config()
    assert done.returncode == 0, done.stderr
    assert "image: web:from-dotenv" in done.stdout and "- 9090:80" in done.stdout and "MODE: plain" in done.stdout
    doc = json.loads(subprocess.run([KILN, "compose", "-p", "other", "config", "--json"], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=60).stdout)  # fmt: skip
    assert doc["name"] == "other" and doc["services"]["web"]["ports"] == ["9090:80"]
    assert config().stdout == subprocess.run([KILN, "compose", "config"], cwd=tmp_path, env=env, capture_output=True,
                                             text=True, timeout=60).stdout  # fmt: skip

    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: 5\n    restart: 3\n    bogus: x\n")
    bad = config()
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) >= 2 and all(line.startswith("kiln: error: ") for line in lines)
    assert "Traceback" not in bad.stderr and bad.stdout == ""
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: x\n    privileged: true\n")
    refused = config()
    assert refused.returncode == 2 and "services.web.privileged: valid Compose, but kiln does not support it" in \
        refused.stderr and len(refused.stderr.strip().splitlines()) == 1  # fmt: skip


def test_several_networks_each_service_on_its_own_with_aliases(tmp_path: Path) -> None:
    """The awesome-compose shape: a proxy on frontnet, the backend on both, the database on backnet (internal,
    with an alias); each network its own subnet, each service an address on each of its networks, and the names
    a guest resolves only those of the services it shares a network with."""
    from kiln.compose.lifecycle import _hosts, addresses

    path = write(
        tmp_path,
        """
services:
  proxy: {image: nginx, networks: [frontnet]}
  backend: {image: app, networks: [backnet, frontnet]}
  db:
    image: mariadb
    networks: {backnet: {aliases: [database]}}
  loner: {image: x}
networks:
  frontnet: {}
  backnet: {internal: true}
""",
    )
    project = load(path, env={})
    assert {n: v.internal for n, v in project.networks.items()} == {"default": False, "frontnet": False,
                                                                    "backnet": True}  # fmt: skip
    assert project.services["backend"].networks == (("backnet", ()), ("frontnet", ()))
    assert project.services["db"].networks == (("backnet", ("database",)),)
    addrs = addresses(project)
    assert addrs == {"backnet": {"backend": "10.89.0.2", "db": "10.89.0.3"}, "default": {"loner": "10.89.1.2"},
                     "frontnet": {"backend": "10.89.2.2", "proxy": "10.89.2.3"}}  # fmt: skip
    assert _hosts(project, addrs, "backnet") == (("backend", "10.89.0.2"), ("db", "10.89.0.3"),
                                                 ("database", "10.89.0.3"))  # fmt: skip
    assert "db" not in dict(_hosts(project, addrs, "frontnet"))  # the proxy cannot name the database


def test_tmpfs_and_a_read_only_root(tmp_path: Path) -> None:
    project = load(write(tmp_path, "services:\n  w:\n    image: x\n    read_only: true\n"
                                   "    tmpfs: [/var/cache/nginx, '/run:size=64k']\n"), env={})  # fmt: skip
    assert project.services["w"].tmpfs == ("/var/cache/nginx", "/run")
    with pytest.raises(UsageError, match="a kiln image's root is always read-only"):
        load(write(tmp_path, "services:\n  w:\n    image: x\n    read_only: false\n"), env={})


def test_several_files_merge_as_the_compose_specification_says(tmp_path: Path) -> None:
    """compose.yaml then an override: mappings merged, sequences appended, command replaced, ports, volumes and
    secrets unique by their key, short and long forms expanded before they merge; relative paths the first's."""
    from kiln.compose.project import resolved

    (tmp_path / "web").mkdir()
    (tmp_path / "pw.txt").write_text("pw")
    base = tmp_path / "compose.yaml"
    base.write_text("""
services:
  web:
    build: ./web
    command: ["serve", "--slow"]
    environment: [A=1, B=2]
    ports: ["8080:8080"]
    volumes: ["data:/data", "./web:/srv"]
    depends_on: [db]
    expose: ["8080"]
  db: {image: redis}
volumes: {data: {}}
""")
    (tmp_path / "other").mkdir()
    over = tmp_path / "other" / "prod.yaml"
    over.write_text("""
services:
  web:
    command: ["serve"]
    environment: {B: "3", C: "4"}
    ports: ["8080:8080", "9090:9090"]
    volumes: ["cache:/data"]
    depends_on: {cache: {condition: service_healthy}}
    expose: ["9090"]
  cache: {image: redis, healthcheck: {test: ["CMD", "redis-cli", "ping"]}}
volumes: {cache: {}}
""")
    doc = resolved([base, over], env={})
    web = doc["services"]["web"]
    assert web["command"] == ["serve"]  # replaced, not appended
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["ports"] == ["8080:8080", "9090:9090"]  # unique by the whole port
    assert web["volumes"] == ["./web:/srv", "cache:/data"]  # unique by target: the later /data wins
    assert web["depends_on"] == {"db": {"condition": "service_started"}, "cache": {"condition": "service_healthy"}}
    assert web["expose"] == ["8080", "9090"]  # other sequences appended
    assert set(doc["services"]) == {"web", "db", "cache"} and set(doc["volumes"]) == {"data", "cache"}
    project = load([base, over], env={})
    assert project.directory == tmp_path  # relative paths are the first file's
    assert project.services["web"].build is not None and project.services["web"].build.context == tmp_path / "web"


def test_extends_takes_a_service_from_this_file_or_another_with_its_paths(tmp_path: Path) -> None:
    from kiln.compose.project import resolved

    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "app").mkdir()
    (tmp_path / "common" / "base.yaml").write_text("""
services:
  app:
    build: ./app
    environment: {MODE: base, LEVEL: "1"}
    healthcheck: {test: ["CMD", "curl", "-f", "http://localhost:8080/"], interval: 5s}
""")
    path = write(
        tmp_path,
        """
services:
  web:
    extends: {file: common/base.yaml, service: app}
    environment: {MODE: web}
    healthcheck: {test: ["CMD", "curl", "-f", "http://localhost:8080/health"]}
  worker:
    extends: web
    command: ["work"]
""",
    )
    doc = resolved(path, env={})
    web, worker = doc["services"]["web"], doc["services"]["worker"]
    assert "extends" not in web and "extends" not in worker
    assert web["build"] == str(tmp_path / "common" / "app")  # the other file's path, made this one's
    assert web["environment"] == {"MODE": "web", "LEVEL": "1"}
    assert web["healthcheck"] == {"test": ["CMD", "curl", "-f", "http://localhost:8080/health"], "interval": "5s"}
    assert worker["command"] == ["work"] and worker["environment"]["MODE"] == "web"  # a chain, followed
    assert load(path, env={}).services["worker"].build.context == tmp_path / "common" / "app"  # type: ignore[union-attr]

    write(tmp_path, "services:\n  a: {image: x, extends: b}\n  b: {image: x, extends: a}\n")
    with pytest.raises(UsageError, match=r"services\.a\.extends: a cycle \(a -> b -> a\)"):
        resolved(tmp_path / "compose.yaml", env={})
    write(tmp_path, "services:\n  a: {image: x, extends: nowhere}\n")
    with pytest.raises(UsageError, match="no service nowhere to extend"):
        resolved(tmp_path / "compose.yaml", env={})


def test_a_service_in_a_profile_runs_only_when_the_profile_is_active(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
services:
  web: {image: web}
  debugger: {image: tools, profiles: [debug]}
  seeder: {image: tools, profiles: [setup, debug]}
""",
    )
    assert set(load(path, env={}).services) == {"web"}
    assert set(load(path, env={}, profiles=("setup",)).services) == {"web", "seeder"}
    assert set(load(path, env={"COMPOSE_PROFILES": "debug"}).services) == {"web", "debugger", "seeder"}
    assert set(load(path, env={"COMPOSE_PROFILES": "*"}).services) == {"web", "debugger", "seeder"}
    write(tmp_path, "services:\n  web: {image: web, depends_on: [tools]}\n  tools: {image: t, profiles: [debug]}\n")
    with pytest.raises(UsageError, match="tools"):
        load(tmp_path / "compose.yaml", env={})  # a service it needs is in an inactive profile


def test_compose_reads_its_override_file_and_compose_file_as_docker_compose_does(tmp_path: Path) -> None:
    import os
    import subprocess

    from kiln_testing.command import KILN

    (tmp_path / "compose.yaml").write_text("services:\n  web: {image: web, ports: ['8080:80']}\n")
    (tmp_path / "compose.override.yaml").write_text("services:\n  web: {environment: {DEBUG: '1'}}\n")
    (tmp_path / "prod.yaml").write_text("services:\n  web: {environment: {DEBUG: '0'}, profiles: [prod]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}

    def config(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KILN, "compose", *args, "config", "--json"], cwd=tmp_path, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    import json

    assert json.loads(config().stdout)["services"]["web"]["environment"] == {"DEBUG": "1"}
    chosen = config("-f", "compose.yaml", "-f", "prod.yaml", "--profile", "prod")
    assert json.loads(chosen.stdout)["services"]["web"]["environment"] == {"DEBUG": "0"}, chosen.stderr
    named = config(COMPOSE_FILE=f"compose.yaml{os.pathsep}prod.yaml", COMPOSE_PROFILES="prod")
    assert json.loads(named.stdout)["services"]["web"]["environment"] == {"DEBUG": "0"}, named.stderr
    missing = config("-f", "compose.yaml", "-f", "nope.yaml")
    assert missing.returncode != 0 and missing.stderr.strip() == "kiln: error: no compose file nope.yaml"
