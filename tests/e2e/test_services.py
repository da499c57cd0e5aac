"""Debian packages' services with no arguments, as their own systemd units run them (mosquitto answers
an MQTT CONNECT with its CONNACK, lighttpd and nginx serve their placeholder pages, redis-server keeps what
redis-cli's SET wrote, postgresql-15 keeps psql's rows across a stop and a start), and runtimes taken from
Debian with their data files (a Node.js script, an Express app whose dependencies npm installed)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis

from kiln_testing import clients
from kiln_testing.answers import wait_for_answer
from kiln_testing.checks import assert_one_line_error, store_state
from kiln_testing.command import EXAMPLES, FIXTURES, kiln
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port

TARGETS = ["qemu", "unix"]


@pytest.fixture(scope="session")
def mosquitto_image(session_env: dict[str, str]) -> str:
    proc = kiln("build", "--deb", "mosquitto", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf (from mosquitto.service ExecStart)" in (
        proc.stderr
    )
    return "mosquitto"


@pytest.fixture(scope="session")
def lighttpd_image(session_env: dict[str, str]) -> str:
    proc = kiln("build", "--deb", "lighttpd", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf (from lighttpd.service ExecStart)" in (
        proc.stderr
    )
    return "lighttpd"


def _connect_once(port: int) -> int | None:
    """One MQTT CONNECT with paho-mqtt: the CONNACK's reason code, or None if nothing answered."""
    got = threading.Event()
    codes: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kiln-test")
    client.on_connect = lambda _c, _u, _f, reason, _p: (codes.append(reason.value), got.set())
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return None
    client.loop_start()
    got.wait(10)
    client.loop_stop()
    client.disconnect()
    return codes[0] if codes else None


def connack(port: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = _connect_once(port)
        if code is not None:
            return code
        time.sleep(1)
    raise AssertionError(f"no CONNACK on port {port} within {timeout} s")


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_mosquitto_with_no_arguments(
    target: str, mosquitto_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(mosquitto_image, session_env, target, {port: 1883})
    instances.append(inst)
    assert connack(port) == 0, inst.output
    assert "Error setting groups" not in inst.output and "Unable to drop privileges" not in inst.output
    inst.stop()


def test_mosquittos_account_and_directories_come_from_its_package(
    mosquitto_image: str, session_env: dict[str, str]
) -> None:
    entry = json.loads(kiln("inspect", "--json", mosquitto_image, env=session_env, check=True).stdout)["manifest"][
        "entry"
    ]
    assert entry["user"] is None and entry["keep_caps"] == ["setuid", "setgid"]  # it drops to its account itself
    writable = {w["path"]: w for w in entry["writable"]}
    assert {"/run", "/run/mosquitto", "/var/log/mosquitto", "/var/lib/mosquitto"} <= set(writable)
    assert writable["/var/lib/mosquitto"]["kind"] == "volume" and entry["volumes"] == ["/var/lib/mosquitto"]
    assert writable["/var/log/mosquitto"]["gid"] != 0  # the account its postinst makes may write there


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_lighttpd_with_no_arguments(
    target: str, lighttpd_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(lighttpd_image, session_env, target, {port: 80})
    instances.append(inst)
    page = inst.wait_http(port, "/")
    assert page.status_code == 200 and "<title>Welcome page</title>" in page.text, inst.output
    inst.stop()


@pytest.fixture(scope="session")
def nginx_image(session_env: dict[str, str]) -> str:
    """nginx, whose unit and configuration are in nginx-common and whose default site its postinst enables."""
    proc = kiln("build", "--deb", "nginx", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/nginx -g 'daemon off;' (from nginx.service ExecStart, in the foreground)" in proc.stderr
    return "nginx"


@pytest.fixture(scope="session")
def apache2_image(session_env: dict[str, str]) -> str:
    """apache2, whose unit starts it through apachectl and whose modules and site its postinst enables."""
    proc = kiln("build", "--deb", "apache2", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/apache2 -D FOREGROUND (from apache2.service ExecStart (apachectl, resolved by " \
        "kiln.debs.hints))" in proc.stderr  # fmt: skip
    return "apache2"


def test_apache2_has_no_shell_and_its_modules_enabled(apache2_image: str, session_env: dict[str, str]) -> None:
    manifest = json.loads(kiln("inspect", "--json", apache2_image, env=session_env, check=True).stdout)["manifest"]
    entry = manifest["entry"]
    assert entry["argv"] == ["/usr/sbin/apache2", "-D", "FOREGROUND"]
    assert entry["env"]["APACHE_RUN_USER"] == "www-data" and entry["env"]["APACHE_RUN_DIR"] == "/var/run/apache2"
    assert "/run/lock/apache2" in {w["path"] for w in entry["writable"]}
    assert set(manifest["policy"]["relaxed"]) == {"clone"} and "execve" in manifest["policy"]["denied"]


@pytest.fixture(scope="session")
def redis_server_image(session_env: dict[str, str]) -> str:
    """redis-server, whose account and directories redis-tools' postinst and its unit's ReadWritePaths= make."""
    kiln("build", "--deb", "redis-server", env=session_env, check=True, timeout=1800)
    return "redis-server"


# server -> (its placeholder page says, its workers' command line ends with)
FORKING = {
    "nginx": ("<title>Welcome to nginx!</title>", "nginx: worker process"),
    "apache2": ("Apache2 Debian Default Page", "/usr/sbin/apache2 -D FOREGROUND"),  # the event MPM's children
}


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("server", FORKING)
def test_forking_servers_with_no_arguments(
    server: str, target: str, request: pytest.FixtureRequest, session_env: dict[str, str], instances: list[Instance]
) -> None:
    page_says, worker = FORKING[server]
    port = free_port()
    inst = Instance(request.getfixturevalue(f"{server}_image"), session_env, target, {port: 80})
    instances.append(inst)
    page = inst.wait_http(port, "/")
    assert page.status_code == 200 and page_says in page.text, inst.output
    with ThreadPoolExecutor(50) as pool:  # its workers, forked without exec, answer them all
        codes = list(pool.map(lambda _: httpx.get(f"http://127.0.0.1:{port}/", timeout=60).status_code, range(50)))
    assert codes == [200] * 50
    if target == "unix":  # the processes are the host's to see: workers, switched to www-data
        workers = [line for line in _processes() if line.endswith(worker)]
        assert any(line.startswith("www-data ") for line in workers), _processes()
    inst.stop()


def _processes() -> list[str]:
    return subprocess.run(["ps", "-eo", "user:20,args"], capture_output=True, text=True, check=True).stdout.splitlines()


def test_nginx_is_laid_out_as_its_family_says(nginx_image: str, session_env: dict[str, str]) -> None:
    manifest = json.loads(kiln("inspect", "--json", nginx_image, env=session_env, check=True).stdout)["manifest"]
    assert "ipv6" in manifest["kernel"]["features"]  # its default site listens on [::]:80 too
    assert set(manifest["policy"]["relaxed"]) == {"clone"}  # fork without exec: its workers
    assert {"execve", "execveat", "fork", "vfork"} <= set(manifest["policy"]["denied"])
    writable = {w["path"]: w["kind"] for w in manifest["entry"]["writable"]}
    assert writable["/var/lib/nginx"] == "volume" and writable["/var/log/nginx"] == "tmpfs"  # nginx-common's


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_redis_server_with_no_arguments(
    target: str, redis_server_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(redis_server_image, session_env, target, {port: 6379})
    instances.append(inst)
    wait_for_answer(port, "redis", timeout=120, alive=lambda: inst.proc.poll() is None, context=lambda: inst.output)
    client = redis.Redis(port=port, socket_timeout=10)
    assert client.set("kiln", "unikernel") and client.get("kiln") == b"unikernel"
    assert client.config_get("dir") == {"dir": "/var/lib/redis"}  # its state directory, writable
    inst.stop()
    assert "DB saved on disk" in inst.output, inst.output  # and it saved there on the way out


def test_a_unit_that_runs_a_script_is_refused_in_one_line(env: dict[str, str]) -> None:
    before = store_state(env)
    proc = kiln("build", "--deb", "memcached", env=env, timeout=600)
    assert_one_line_error(
        proc, "memcached.service: ExecStart runs /usr/share/memcached/scripts/systemd-memcached-wrapper"
    )
    assert "a script (#!/usr/bin/perl" in proc.stderr
    assert "name the program with --exe /usr/bin/memcached (and its arguments after --)" in proc.stderr
    assert store_state(env) == before


@pytest.fixture(scope="session")
def node_image(session_env: dict[str, str]) -> str:
    script = FIXTURES / "node-hello" / "server.js"
    kiln("build", "--deb", "nodejs", "--name", "node-hello", "--file", f"{script}:/app/server.js", "-p", "8080",
         "--", "/app/server.js", env=session_env, check=True, timeout=1800)  # fmt: skip
    return "node-hello"


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_a_node_script_on_debians_node(
    target: str, node_image: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    inst = Instance(node_image, session_env, target, {port: 8080})
    instances.append(inst)
    answer = inst.wait_http(port, "/", timeout=240)
    assert answer.text.startswith("hello from node v18."), inst.output  # Debian's own node, with its data files
    inst.stop()


@pytest.mark.vm
def test_an_express_app_with_npm_dependencies(session_env: dict[str, str], instances: list[Instance]) -> None:
    proc = kiln("build", str(FIXTURES / "express-app"), env=session_env, check=True, timeout=1800)
    assert "npm ci --omit=dev" in proc.stderr or "node_modules:" in proc.stderr
    port = free_port()
    inst = Instance("express-app", session_env, "qemu", {port: 3000})
    instances.append(inst)
    assert inst.wait_http(port, "/", timeout=240).text == "Hello World!"
    versions = httpx.get(f"http://127.0.0.1:{port}/json", timeout=30).json()
    assert versions["express"].startswith("4.") and versions["node"].startswith("v18.")
    inst.stop()
    files = json.loads(kiln("inspect", "--json", "express-app", env=session_env, check=True).stdout)["manifest"]
    assert files["entry"]["workdir"] == "/app"


def test_the_mosquitto_example_is_the_package_with_no_arguments(session_env: dict[str, str]) -> None:
    proc = kiln("build", str(EXAMPLES / "mosquitto"), env=session_env, check=True, timeout=1800)
    assert "(from mosquitto.service ExecStart)" in proc.stderr


@pytest.fixture(scope="session")
def postgresql_image(session_env: dict[str, str]) -> str:
    """postgresql-15, which ships no unit (postgresql-common's runs pg_ctlcluster) and whose cluster initdb makes."""
    proc = kiln("build", "--deb", "postgresql-15", env=session_env, check=True, timeout=1800)
    assert "command: /usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c " \
        "config_file=/etc/postgresql/15/main/postgresql.conf (from /usr/bin/pg_ctlcluster" in proc.stderr  # fmt: skip
    return "postgresql-15"


@pytest.fixture(scope="session")
def mariadb_image(session_env: dict[str, str]) -> str:
    """mariadb-server, whose unit runs mariadbd through sh -c, and whose system tables mariadb-install-db makes."""
    proc = kiln("build", "--deb", "mariadb-server", env=session_env, check=True, timeout=1800)
    assert "command: /usr/sbin/mariadbd --bind-address=0.0.0.0 (from mariadb.service ExecStart (sh, resolved" \
        in proc.stderr  # fmt: skip
    return "mariadb-server"


@pytest.fixture(scope="session")
def rabbitmq_image(session_env: dict[str, str]) -> str:
    """rabbitmq-server, whose unit runs a shell script that ends, through erl and erlexec, in beam.smp."""
    proc = kiln("build", "--deb", "rabbitmq-server", env=session_env, check=True, timeout=1800)
    assert "command: /usr/lib/erlang/erts-" in proc.stderr and "(rabbitmq-server, resolved by kiln.debs.hints)" in (
        proc.stderr
    )
    return "rabbitmq-server"


@pytest.fixture(scope="session")
def tomcat_image(session_env: dict[str, str]) -> str:
    """tomcat10, whose unit runs tomcat-start.sh through sh, which ends, through catalina.sh, in java."""
    proc = kiln("build", "--deb", "tomcat10", env=session_env, check=True, timeout=1800)
    assert "command: /usr/lib/jvm/default-java/bin/java " in proc.stderr and "org.apache.catalina.startup.Bootstrap " \
        "start (from tomcat10.service ExecStart (sh, resolved by kiln.debs.hints))" in proc.stderr  # fmt: skip
    return "tomcat10"


@dataclass(frozen=True)
class Database:
    """A database server as its own client reaches it."""

    image: str  # its fixture
    port: int
    data: str  # its volume
    password: str  # the variable its first start reads
    sessions: str  # SQL: how many client sessions are open
    shut_down: str  # its console, once it has shut down cleanly
    create: str  # SQL: what a table of the test's needs first
    table: str
    sleep: str  # its function that waits

    def sql(self, port: int, query: str, password: str) -> subprocess.CompletedProcess[str]:
        """Its real client (psql, mariadb), as a user would type it."""
        return clients.sql("postgres" if self.port == 5432 else "mariadb", port, query, password)


DATABASES = {
    "postgresql": Database(
        "postgresql_image", 5432, "/var/lib/postgresql", "POSTGRES_PASSWORD",
        "select count(*) from pg_stat_activity where backend_type = 'client backend'", "database system is shut down",
        "", "kiln", "pg_sleep",
    ),
    "mariadb": Database(
        "mariadb_image", 3306, "/var/lib/mysql", "MARIADB_ROOT_PASSWORD",
        "select count(*) from information_schema.processlist where user = 'root'", "mariadbd: Shutdown complete",
        "create database app;", "app.kiln", "sleep",
    ),
}  # fmt: skip
PASSWORD = "s3cret pass'wo\\rd"  # a quote and a backslash in it: quoted for SQL by init


def _wait_sql(db: Database, port: int, inst: Instance) -> None:
    server = "postgres" if db.port == 5432 else "mariadb"
    clients.wait_sql(server, port, PASSWORD, lambda: inst.proc.poll() is None, lambda: inst.output)


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("server", DATABASES)
def test_databases_with_no_arguments(
    server: str, target: str, request: pytest.FixtureRequest, session_env: dict[str, str], instances: list[Instance],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Built with no arguments, started with the official image's variable; its client writes a row, a second
    session runs beside the first, and the row is there after a stop and a start with the same volume."""
    db = DATABASES[server]
    image = request.getfixturevalue(db.image)
    volume = tmp_path / "data"
    volume.mkdir()
    port = free_port()
    run_with = ("-v", f"{volume}:{db.data}")
    inst = Instance(image, session_env, target, {port: db.port}, (*run_with, "-e", f"{db.password}={PASSWORD}"))
    instances.append(inst)
    _wait_sql(db, port, inst)
    assert f"volume {db.data}: empty: filled from the image (first start)" in inst.output
    done = db.sql(port, f"{db.create} create table {db.table} (word text); insert into {db.table} values "
                  "('unikernel')", PASSWORD)  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = threading.Thread(target=db.sql, args=(port, f"select {db.sleep}(4)", PASSWORD))
    first.start()
    time.sleep(2)
    both = db.sql(port, db.sessions, PASSWORD)  # a second session while the first is open
    first.join(30)
    assert both.stdout.strip() == "2", both
    assert db.sql(port, "select 1", "wrong").returncode != 0  # the password is the run's
    if server == "postgresql":  # the seal, as a superuser's SQL tries it: a shell, and a program on the volume
        shell = db.sql(port, "copy (select 1) to program 'id'", PASSWORD)
        assert shell.returncode != 0 and "could not execute command" in shell.stderr, shell
        wrote = db.sql(port, "copy (select 'x') to '/var/lib/postgresql/run-me'; "
                       "copy (select 1) to program '/var/lib/postgresql/run-me'", PASSWORD)  # fmt: skip
        assert wrote.returncode != 0 and "could not execute command" in wrote.stderr, wrote
    inst.stop()
    assert db.shut_down in inst.output, inst.output  # a clean shutdown on kiln's stop
    if server == "postgresql":
        # init names each attempt (popen's vfork, or the execve after it)
        assert inst.output.count("kiln-init: refused") >= 2, inst.output
        assert "database system is ready to accept connections" in inst.output  # and the server went on

    again = Instance(image, session_env, target, {port: db.port}, run_with)  # no password: it is set
    instances.append(again)
    _wait_sql(db, port, again)
    assert db.sql(port, f"select word from {db.table}", PASSWORD).stdout.strip() == "unikernel"
    assert "first start" not in again.output
    again.stop()


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_rabbitmq_with_no_arguments(
    target: str, rabbitmq_image: str, session_env: dict[str, str], instances: list[Instance], tmp_path: Path
) -> None:
    """Built with no arguments and started with the official image's variables for its first user: pika publishes
    a persistent message, and after a stop and a start with the same volume takes it off the durable queue. The
    Erlang VM executes its two helpers; nothing else is executed (no shell: rabbit's disk monitor says so)."""
    volume = tmp_path / "data"
    volume.mkdir()
    port = free_port()
    run_with = ("-v", f"{volume}:/var/lib/rabbitmq", "-e", "RABBITMQ_DEFAULT_USER=kiln")
    inst = Instance(rabbitmq_image, session_env, target, {port: 5672}, (*run_with, "-e", "RABBITMQ_DEFAULT_PASS=pw"))
    instances.append(inst)

    def alive(i: Instance) -> Callable[[], bool]:
        return lambda: i.proc.poll() is None

    clients.wait_amqp(port, "kiln", "pw", alive(inst), lambda: inst.output)
    clients.amqp(port, "kiln", "pw", "jobs", publish=b"sealed")
    with pytest.raises(Exception, match="ACCESS_REFUSED"):
        clients.amqp(port, "kiln", "wrong", "jobs")
    inst.stop()
    assert "kiln-init: refused" not in inst.output, inst.output  # its helpers ran; nothing else was tried

    again = Instance(rabbitmq_image, session_env, target, {port: 5672}, run_with)
    instances.append(again)
    clients.wait_amqp(port, "kiln", "pw", alive(again), lambda: again.output)
    assert clients.amqp(port, "kiln", "pw", "jobs") == b"sealed"
    again.stop()


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_tomcat_with_no_arguments(target: str, tomcat_image: str, session_env: dict[str, str],
                                  instances: list[Instance]) -> None:  # fmt: skip
    """Tomcat's default webapp (the one tomcat10's postinst copies into place, with the conffiles ucf installs from
    their templates) answers through the JVM, sized by kiln's hint, with no shell and no catalina.sh."""
    port = free_port()
    inst = Instance(tomcat_image, session_env, target, {port: 8080})
    instances.append(inst)
    got = inst.wait_http(port, "/", timeout=300)
    assert got.status_code == 200 and "It works !" in got.text, inst.output
    assert "Server startup in" in inst.output and "kiln-init: refused" not in inst.output
    inst.stop()


def test_rabbitmq_executes_only_what_its_image_names(rabbitmq_image: str, session_env: dict[str, str]) -> None:
    """The surface report names the two programs the image lets the VM execute; no shell is in it."""
    got = json.loads(kiln("inspect", "--surface", "--json", rabbitmq_image, env=session_env, check=True).stdout)
    surface = got["image"]
    assert "erl_child_setup" in surface["processes"] and "inet_gethost" in surface["processes"], surface
    assert surface["shells"] == [], surface
    programs = [p for p in surface["executables"] if not p.startswith("/etc/")]  # conffiles: libpam's is a script
    assert all(p == "/kiln/init" or p.endswith(("beam.smp", "erl_child_setup", "inet_gethost")) for p in programs), (
        programs
    )


def test_postgresql_first_start_needs_its_password(
    postgresql_image: str, session_env: dict[str, str], tmp_path: Path
) -> None:
    """As the official image refuses to start an uninitialized database with no superuser password: one line,
    and the volume is left empty, so the next start is a first start again."""
    volume = tmp_path / "data"
    volume.mkdir()
    proc = kiln("run", "--target", "unix", "-v", f"{volume}:/var/lib/postgresql", postgresql_image, env=session_env,
                timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "first start: POSTGRES_PASSWORD is not set, and the server's setup needs it: give it with -e " \
        "POSTGRES_PASSWORD=... (or POSTGRES_PASSWORD_FILE)" in proc.stdout  # fmt: skip
    assert list(volume.iterdir()) == []


def test_postgresql_a_first_start_that_did_not_finish_is_named(
    postgresql_image: str, session_env: dict[str, str], tmp_path: Path
) -> None:
    volume = tmp_path / "data"
    (volume / "15").mkdir(parents=True)
    (volume / ".kiln-first-start").touch()  # what a first start that stopped half way leaves
    proc = kiln("run", "--target", "unix", "-e", "POSTGRES_PASSWORD=x", "-v", f"{volume}:/var/lib/postgresql",
                postgresql_image, env=session_env, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "volume /var/lib/postgresql: its first start did not finish (/var/lib/postgresql/.kiln-first-start is " \
        "there)" in proc.stdout, proc.stdout  # fmt: skip
    assert sorted(p.name for p in volume.iterdir()) == [".kiln-first-start", "15"]  # as it was


def test_postgresql_a_data_directory_of_another_major_version_is_refused_as_it_is(
    postgresql_image: str, session_env: dict[str, str], tmp_path: Path
) -> None:
    """A volume holding a cluster of PostgreSQL 14: not a first start (the volume is not empty), so nothing is
    filled or set up; postgres refuses it in its own words and exits, and the files are as they were."""
    manifest = json.loads(kiln("inspect", "--json", postgresql_image, env=session_env, check=True).stdout)["manifest"]
    account = manifest["entry"]["user"]
    volume = tmp_path / "data"
    data = volume / "15" / "main"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("14\n")
    for path in (volume, volume / "15", data, data / "PG_VERSION"):
        os.chown(path, account["uid"], account["gid"])
    data.chmod(0o700)
    before = sorted((str(p.relative_to(volume)), p.stat().st_size) for p in volume.rglob("*"))
    proc = kiln("run", "--target", "unix", "-e", "POSTGRES_PASSWORD=x", "-v", f"{volume}:/var/lib/postgresql",
                postgresql_image, env=session_env, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "database files are incompatible with server" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "first start" not in proc.stdout
    assert sorted((str(p.relative_to(volume)), p.stat().st_size) for p in volume.rglob("*")) == before


def test_postgresql_is_laid_out_as_initdb_and_pg_ctlcluster_leave_it(
    postgresql_image: str, session_env: dict[str, str]
) -> None:
    manifest = json.loads(kiln("inspect", "--json", postgresql_image, env=session_env, check=True).stdout)["manifest"]
    entry = manifest["entry"]
    assert entry["user"]["name"] == "postgres" and entry["volumes"] == ["/var/lib/postgresql"]
    assert entry["setup"]["steps"][0]["argv"][:2] == ["/usr/lib/postgresql/15/bin/postgres", "--single"]
    assert "sysvipc" in manifest["kernel"]["features"]  # its interlock segment: shmget
    assert set(manifest["policy"]["relaxed"]) == {"clone"} and "execve" in manifest["policy"]["denied"]
    surface = json.loads(kiln("inspect", "--surface", "--json", postgresql_image, env=session_env, check=True).stdout)
    assert surface["image"]["shells"] == []  # initdb needed dash at build time; the image holds no shell
    programs = [p for p in surface["image"]["executables"] if p.startswith("/usr/lib/postgresql/")]
    assert programs == ["/usr/lib/postgresql/15/bin/postgres"]  # not initdb, pg_dump, pgxs' test programs
