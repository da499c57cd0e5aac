"""Container images in: a Debian bookworm base made here (debootstrap, imported with buildah), images FROM it
(Flask installed with pip, redis-server and nginx installed with apt) pushed to Debian's docker-registry on
loopback, each built by kiln from the registry, an OCI layout and a docker-archive, booted under QEMU and on
the unix target and asked by a real client; a Dockerfile built by kiln itself; every bad input in one line;
and hostile layers that never write outside their staging directory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import httpx
import pytest
import redis

from kiln_testing import clients, engines
from kiln_testing.checks import assert_one_line_error, store_state
from kiln_testing.command import KILN, ROOT, kiln
from kiln_testing.homes import SHARED_HOME
from kiln_testing.images import Buildah, oci_layout, tar_entry
from kiln_testing.instance import Instance
from kiln_testing.ports import free_port
from kiln_testing.registry import Registry

IMAGES = ROOT / "tests" / "fixtures" / "images"
STACKS = ROOT / "tests" / "fixtures" / "stacks"
TARGETS = ["qemu", "unix"]


@pytest.fixture(scope="session")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Buildah:
    return Buildah(tmp_path_factory.mktemp("buildah"))


@pytest.fixture(scope="session")
def base_image(registry: Registry, buildah: Buildah) -> str:
    """Debian bookworm minbase, from debootstrap (cached with the shared kernels), as an image in the registry."""
    os.environ.setdefault("KILN_HOME", str(SHARED_HOME))
    from kiln.baselines import debian

    tree = debian.rootfs("minbase")
    ref = f"{registry.host}/debian:bookworm"
    buildah.import_tree(tree, "localhost/kiln-test-debian:bookworm")
    buildah.push("localhost/kiln-test-debian:bookworm", f"docker://{ref}")
    return ref


@pytest.fixture(scope="session")
def sources(base_image: str, registry: Registry, buildah: Buildah, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each test image in the registry, as an OCI layout and as a docker-archive."""
    out = tmp_path_factory.mktemp("images")
    found = {}
    for name in ("flask", "redis", "nginx"):
        local = f"localhost/kiln-test-{name}:1"
        buildah.build(IMAGES / name, local, base_image)
        remote = f"{registry.host}/test/{name}:1"
        buildah.push(local, f"docker://{remote}")
        buildah.push(local, f"oci:{out / name}:1")
        buildah.push(local, f"docker-archive:{out / (name + '.tar')}:test/{name}:1")
        found[name] = {"docker": f"docker://{remote}", "oci": f"oci:{out / name}:1",
                       "archive": f"docker-archive:{out / (name + '.tar')}"}  # fmt: skip
    return found


@pytest.fixture(scope="session")
def built(sources: dict, session_env: dict[str, str]) -> dict[str, str]:
    """kiln images of the three, built from the registry."""
    names = {}
    for name, refs in sources.items():
        proc = kiln("build", "-t", f"ctr-{name}", refs["docker"], env=session_env, check=True, timeout=1800)
        assert "the container had" in proc.stderr
        names[name] = f"ctr-{name}"
    return names


def _redis_answers(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = redis.Redis(port=port, socket_timeout=5)
            assert client.ping()
            client.set("kiln", "unikernel")
            assert client.get("kiln") == b"unikernel"
            return
        except (redis.exceptions.ConnectionError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["flask", "redis", "nginx"])
def test_container_images_boot_and_answer(
    name: str, target: str, built: dict[str, str], session_env: dict[str, str], instances: list[Instance]
) -> None:
    port = free_port()
    guest = {"flask": 8080, "redis": 6379, "nginx": 8080}[name]
    inst = Instance(built[name], session_env, target, {port: guest})
    instances.append(inst)
    if name == "redis":
        _redis_answers(port)
    elif name == "nginx":
        page = inst.wait_http(port, "/")
        assert page.status_code == 200 and "hello from nginx in a container" in page.text
    else:
        seen = inst.wait_http(port, "/").json()
        # Env, WorkingDir and User, as the image's config says; a file a later layer deleted is gone
        assert seen == {"greeting": "hello-from-the-image", "cwd": "/srv/web", "uid": 990, "gid": 990,
                        "secret_exists": False, "data_writable": seen["data_writable"]}, inst.output  # fmt: skip
    inst.stop()


def test_what_the_image_says_and_keeps(built: dict[str, str], session_env: dict[str, str]) -> None:
    flask = json.loads(kiln("inspect", "--json", built["flask"], env=session_env, check=True).stdout)["manifest"]
    entry = flask["entry"]
    assert entry["ports"] == [8080] and entry["volumes"] == ["/srv/web/data"] and entry["workdir"] == "/srv/web"
    assert entry["user"]["name"] == "web" and entry["env"]["GREETING"] == "hello-from-the-image"
    image = flask["build"]["image"]
    assert image["digest"].startswith("sha256:") and image["python"] == "/usr/bin/python3"
    modules = {m["name"] for m in flask["python"]["modules"]}
    assert "flask.app" in modules and "pip" not in modules  # only what the app reaches
    # the aim: a tenth of the container's bytes or less, no shell, at most two executables
    assert flask["kernel"]["size"] + flask["rootfs"]["size"] <= image["size"] / 10
    surface = kiln("inspect", "--surface", "--json", built["flask"], env=session_env, check=True).stdout
    report = json.loads(surface)
    assert report["image"]["shells"] == [] and len(report["image"]["executables"]) <= 2
    assert report["container"]["files"] == image["files"] and report["container"]["shells"]  # it had a shell
    nginx = json.loads(kiln("inspect", "--json", built["nginx"], env=session_env, check=True).stdout)["manifest"]
    assert nginx["entry"]["argv"] == ["/usr/sbin/nginx", "-g", "daemon off; master_process off;"]
    assert nginx["entry"]["stop_signal"] == "SIGQUIT"
    redis_ = json.loads(kiln("inspect", "--json", built["redis"], env=session_env, check=True).stdout)["manifest"]
    # the Dockerfile's shell-form CMD (/bin/sh -c "..."), read without a shell
    assert redis_["entry"]["argv"] == ["/usr/bin/redis-server", "--protected-mode", "no", "--save", "",
                                       "--appendonly", "no"]  # fmt: skip


def test_every_source_of_one_image_gives_one_root(sources: dict, built: dict[str, str], env: dict[str, str]) -> None:
    roots = {}
    for kind in ("docker", "oci", "archive"):
        kiln("build", "-t", "redis-any", sources["redis"][kind], env=env, check=True, timeout=1800)
        m = json.loads(kiln("inspect", "--json", "redis-any", env=env, check=True).stdout)["manifest"]
        roots[kind] = (m["rootfs"]["digest"], m["build"]["image"]["id"])
    assert len(set(roots.values())) == 1, roots  # one root, one image id, whichever transport carried it
    kiln("build", "-t", "redis-twice", sources["redis"]["docker"], env=env, check=True, timeout=1800)
    first = json.loads(kiln("inspect", "--json", "redis-twice", env=env, check=True).stdout)["digest"]
    kiln("build", "-t", "redis-twice", sources["redis"]["docker"], env=env, check=True, timeout=1800)
    again = json.loads(kiln("inspect", "--json", "redis-twice", env=env, check=True).stdout)["digest"]
    assert first == again  # the same image gives the same kiln digest twice


def test_a_dockerfile_built_by_kiln(base_image: str, env: dict[str, str], instances: list[Instance]) -> None:
    proc = kiln("build", "--dockerfile", "--build-arg", f"BASE={base_image}", "-t", "df-nginx",
                str(IMAGES / "nginx"), env=env, check=True, timeout=1800)  # fmt: skip
    assert "buildah bud --isolation chroot" in proc.stderr
    port = free_port()
    inst = Instance("df-nginx", env, "unix", {port: 8080})
    instances.append(inst)
    assert "hello from nginx in a container" in inst.wait_http(port, "/").text
    inst.stop()


def test_a_directory_with_a_non_python_dockerfile_is_built_by_it(base_image: str, env: dict[str, str],
                                                                 tmp_path: Path) -> None:  # fmt: skip
    app = tmp_path / "web"
    app.mkdir()
    dockerfile = (
        (IMAGES / "redis" / "Dockerfile").read_text().replace("ARG BASE=debian:bookworm", f"ARG BASE={base_image}")
    )
    (app / "Dockerfile").write_text(dockerfile)
    proc = kiln("build", str(app), env=env, check=True, timeout=1800)
    assert "by its Dockerfile: its Dockerfile's command runs redis-server, not a Python program" in proc.stderr


def _layout(tmp: Path, name: str, layers: list, config: dict, **kw: object) -> str:
    oci_layout(tmp / name, layers, config, **kw)  # type: ignore[arg-type]
    return f"oci:{tmp / name}:latest"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        pytest.param("unreachable", "is not reachable", id="unreachable-registry"),
        pytest.param("missing-tag", "no such image or tag in the registry", id="missing-tag"),
        pytest.param("other-platform", "no image for linux/amd64", id="no-image-for-this-platform"),
        pytest.param("bad-digest", "fails its digest", id="layer-fails-its-digest"),
        pytest.param("shell-script", "is a script (#!/bin/sh)", id="entry-is-a-shell-script"),
        pytest.param("missing-program", "the image has no program nosuchd on its PATH", id="program-missing"),
    ],
)
def test_bad_images_get_one_line(
    case: str, fragment: str, registry: Registry, closed_port: int, tmp_path: Path, env: dict[str, str]
) -> None:
    script = tar_entry("entrypoint.sh", data=b"#!/bin/sh\nexec sleep 1\n", mode=0o755)
    ok = [tar_entry("etc/motd", data=b"hi\n")]
    refs = {
        "unreachable": f"docker://127.0.0.1:{closed_port}/nothing/here:1",
        "missing-tag": f"docker://{registry.host}/test/never-pushed:9",
        "other-platform": _layout(tmp_path, "arm", [ok], {"Cmd": ["/x"]}, architecture="arm64", as_index=True),
        "shell-script": _layout(tmp_path, "sh", [[script]], {"Cmd": ["/entrypoint.sh"]}),
        "missing-program": _layout(tmp_path, "none", [ok], {"Cmd": ["nosuchd", "--port", "1"]}),
    }
    if case == "bad-digest":
        refs[case] = _layout(tmp_path, "bad", [ok, [tar_entry("etc/more", data=b"x" * 4096)]], {"Cmd": ["/x"]})
        index = json.loads((tmp_path / "bad" / "index.json").read_text())
        manifest = json.loads((tmp_path / "bad/blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
        layer = tmp_path / "bad/blobs/sha256" / manifest["layers"][1]["digest"][7:]
        data = bytearray(layer.read_bytes())
        data[len(data) // 2] ^= 0xFF
        layer.write_bytes(bytes(data))
    before = store_state(env)
    caches = sorted((Path(env["KILN_HOME"]) / "cache" / "oci").glob("*")) if case != "shell-script" else None
    assert_one_line_error(kiln("build", refs[case], env=env, timeout=300), fragment)
    assert store_state(env) == before
    if caches is not None and case in ("unreachable", "missing-tag", "other-platform", "bad-digest"):
        assert sorted((Path(env["KILN_HOME"]) / "cache" / "oci").glob("*")) == caches  # nothing unpacked


def test_hostile_layers_stay_inside_their_staging_directory(tmp_path: Path, env: dict[str, str]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file\n")
    layers = [[
        tar_entry("ok.txt", data=b"fine\n"),
        tar_entry("../escape-dotdot", data=b"x"),
        tar_entry(f"{tmp_path}/escape-abs", data=b"x"),
        tar_entry("etc2", tarfile.SYMTYPE, link=str(outside)),
        tar_entry("etc2/pwned", data=b"x"),
        tar_entry("dev-null", tarfile.CHRTYPE, major=1, minor=3),
        tar_entry("suid", data=b"\x7fELF", mode=0o4755),
        tar_entry("sgid-dir", tarfile.DIRTYPE, mode=0o2755),
    ]]  # fmt: skip
    ref = _layout(tmp_path, "hostile", layers, {"Cmd": ["/ok.txt"]})
    index = json.loads((tmp_path / "hostile" / "index.json").read_text())
    manifest = json.loads((tmp_path / "hostile/blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    image_id = manifest["config"]["digest"].replace(":", "-")
    proc = kiln("build", ref, env=env, timeout=300)
    assert_one_line_error(proc, "is not an ELF executable")  # it got as far as its program, all layers applied
    assert sorted(p.name for p in outside.iterdir()) == ["keep"]  # nothing through the link
    assert not (tmp_path / "escape-dotdot").exists() and not (tmp_path.parent / "escape-dotdot").exists()
    assert not Path(f"{tmp_path}/escape-abs").exists()
    tree = Path(env["KILN_HOME"]) / "cache" / "oci" / image_id / "rootfs"
    assert (tree / "escape-dotdot").is_file() and (tree / str(tmp_path).lstrip("/") / "escape-abs").is_file()
    assert (tree / str(outside).lstrip("/") / "pwned").is_file()  # below the link, inside the tree
    assert (tree / "dev-null").is_file() and not (tree / "dev-null").is_char_device()  # no device node
    assert not (tree / "suid").stat().st_mode & 0o6000 and not (tree / "sgid-dir").stat().st_mode & 0o6000
    hard = _layout(tmp_path, "hard", [[tar_entry("hard", tarfile.LNKTYPE, link="/etc/hostname")]], {"Cmd": ["/x"]})
    before = store_state(env)
    assert_one_line_error(kiln("build", hard, env=env, timeout=300), "the image's layers cannot be applied")
    assert store_state(env) == before


def test_image_builds_accept_docker_run_overrides(built: dict[str, str], sources: dict, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [KILN, "build", "-t", "redis-custom", "-e", "EXTRA=1", "-p", "7000", sources["redis"]["docker"], "--",
         "redis-server", "--port", "7000", "--protected-mode", "no"],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(kiln("inspect", "--json", "redis-custom", env=env, check=True).stdout)["manifest"]["entry"]
    assert entry["argv"] == ["/usr/bin/redis-server", "--port", "7000", "--protected-mode", "no"]
    assert entry["ports"] == [7000] and entry["env"]["EXTRA"] == "1"
    proc = kiln("build", "--entrypoint", "/usr/bin/nosuch", sources["redis"]["docker"], env=env, timeout=600)
    assert_one_line_error(proc, "the image has no /usr/bin/nosuch")
    _ = httpx  # the HTTP client of the boot tests


@pytest.mark.vm
def test_a_compose_file_as_people_write_it(sources: dict, session_env: dict[str, str], tmp_path: Path) -> None:
    """image: from the registry (with command:), build:, env_file:, container_name:, one networks: entry,
    stop_signal: and a CMD-SHELL curl healthcheck: up, an answer through the private network, down."""
    port = free_port()
    registry_image = sources["redis"]["docker"].removeprefix("docker://")
    (tmp_path / "web.env").write_text("# where the counter keeps its count\nREDIS_HOST=cache\n")
    (tmp_path / "compose.yaml").write_text(f"""
services:
  web:
    build: {ROOT / "examples" / "compose-counter" / "web"}
    env_file: web.env
    container_name: ctr-counter-web
    networks: [backend]
    ports: ["127.0.0.1:{port}:8080"]
    stop_signal: SIGINT
    healthcheck:
      test: ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"]
      interval: 1s
  cache:
    image: {registry_image}
    command: ["redis-server", "--protected-mode", "no", "--save", ""]
    networks: [backend]
    depends_on:
      web: {{condition: service_healthy}}
networks:
  backend: {{}}
""")

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return kiln("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "ctrs", *args, env=session_env,
                    timeout=1800)  # fmt: skip

    try:
        up = compose("up", "-d")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "waiting for web to be healthy" in up.stdout + up.stderr
        deadline = time.monotonic() + 120
        while (answer := httpx.get(f"http://127.0.0.1:{port}/", timeout=60)).status_code == 502:
            assert time.monotonic() < deadline, answer.text  # redis still booting: the web app says 502
            time.sleep(1)
        assert answer.text.strip() == "visits: 1", answer.text  # redis, reached by its name on the network
        names = {r["name"] for r in json.loads(kiln("ps", "--json", env=session_env, check=True).stdout)}
        assert {"ctr-counter-web", "ctrs-cache"} <= names
        entry = json.loads(kiln("inspect", "--json", "ctrs-cache", env=session_env, check=True).stdout)
        assert entry["manifest"]["entry"]["argv"][1:] == ["--protected-mode", "no", "--save", ""]
    finally:
        down = compose("down")
    assert down.returncode == 0, down.stderr
    names = {r["name"] for r in json.loads(kiln("ps", "-a", "--json", env=session_env, check=True).stdout)}
    assert not {"ctr-counter-web", "ctrs-cache"} & names


# -- an official-style database image: its docker-entrypoint.sh as kiln's own knowledge -------------------------

PG_PASSWORD = "s3cret pass'word"


@pytest.fixture(scope="session")
def postgres_image(base_image: str, registry: Registry, buildah: Buildah) -> str:
    """PostgreSQL packaged as the official image packages it (tests/fixtures/images/postgres), in the registry."""
    local = "localhost/kiln-test-postgres:1"
    buildah.build(IMAGES / "postgres", local, base_image)
    remote = f"{registry.host}/test/postgres:1"
    buildah.push(local, f"docker://{remote}")
    return remote


@pytest.fixture(scope="session")
def kiln_postgres(postgres_image: str, session_env: dict[str, str]) -> str:
    proc = kiln("build", "-t", "ctr-postgres", f"docker://{postgres_image}", env=session_env, check=True,
                timeout=1800)  # fmt: skip
    assert "is the official postgres image's docker-entrypoint.sh" in proc.stderr, proc.stderr
    assert "first start: 10-schema.sql run in POSTGRES_DB's database" in proc.stderr
    return "ctr-postgres"


PG_ENV = ("-e", f"POSTGRES_PASSWORD={PG_PASSWORD}", "-e", "POSTGRES_USER=shopkeeper", "-e", "POSTGRES_DB=shop")


def _psql(port: int, sql: str, password: str = PG_PASSWORD) -> subprocess.CompletedProcess[str]:
    return clients.sql("postgres", port, sql, password, database="shop", user="shopkeeper")


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_an_official_style_postgres_image_starts_as_its_entrypoint_says(
    target: str, kiln_postgres: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    """POSTGRES_PASSWORD, POSTGRES_USER and POSTGRES_DB at run time, the init file's table in that database, owned
    by that user, with no shell."""
    port = free_port()
    inst = Instance(kiln_postgres, session_env, target, {port: 5432}, PG_ENV)
    instances.append(inst)
    clients.wait_sql("postgres", port, PG_PASSWORD, lambda: inst.proc.poll() is None, lambda: inst.output,
                     database="shop", user="shopkeeper")  # fmt: skip
    assert _psql(port, "select word from greetings").stdout.strip() == "unikernel"  # the init file ran in shop
    owner = "select pg_get_userbyid(datdba) from pg_database where datname = 'shop'"
    assert _psql(port, owner).stdout.strip() == "shopkeeper"
    assert _psql(port, "select 1", password="wrong").returncode != 0
    assert inst.output.count("sets the server up") == 4  # password, user, database, init files
    inst.stop()


@pytest.mark.vm
def test_the_same_image_under_podman_with_runc_answers_the_same(
    postgres_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The kiln image claims the official entrypoint's behaviour: the image itself, with its script, under podman
    and runc, gives the same answer to the same client."""
    podman = engines.podman(tmp_path_factory.mktemp("pgpodman"), runtime="runc")  # a short runroot: podman's limit
    # runc's setrlimit of podman's default nofile and nproc fails on this host without these (bench/engines.py)
    port, name = free_port(), "kiln-pg-compare"
    started = subprocess.run(
        [*podman, "run", "-d", "--tls-verify=false", "--name", name, "-p", f"127.0.0.1:{port}:5432",
         "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
         *PG_ENV, postgres_image],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        logs = lambda: subprocess.run([*podman, "logs", name], capture_output=True, text=True).stdout  # noqa: E731
        clients.wait_sql("postgres", port, PG_PASSWORD, lambda: True, logs, database="shop", user="shopkeeper")
        assert _psql(port, "select word from greetings").stdout.strip() == "unikernel"
        owner = "select pg_get_userbyid(datdba) from pg_database where datname = 'shop'"
        assert _psql(port, owner).stdout.strip() == "shopkeeper"
        assert _psql(port, "select 1", password="wrong").returncode != 0
    finally:
        subprocess.run([*podman, "rm", "-f", name], capture_output=True)


def test_an_official_style_image_keeps_no_shell(kiln_postgres: str, session_env: dict[str, str]) -> None:
    manifest = json.loads(kiln("inspect", "--json", kiln_postgres, env=session_env, check=True).stdout)["manifest"]
    entry = manifest["entry"]
    assert entry["argv"] == ["/usr/lib/postgresql/15/bin/postgres"] and entry["user"]["name"] == "postgres"
    assert [s["when"] for s in entry["setup"]["steps"]] == [
        "-", "!POSTGRES_HOST_AUTH_METHOD", "POSTGRES_HOST_AUTH_METHOD!=trust",
        "POSTGRES_HOST_AUTH_METHOD=trust,POSTGRES_PASSWORD", "POSTGRES_USER!=postgres",
        "POSTGRES_DB|POSTGRES_USER!=postgres", "-"
    ]  # fmt: skip
    assert entry["setup"]["steps"][0]["append_to"] == "pg_hba.conf"  # pg_setup_hba_conf's line
    assert set(manifest["policy"]["relaxed"]) == {"clone"}
    surface = json.loads(kiln("inspect", "--surface", "--json", kiln_postgres, env=session_env, check=True).stdout)
    assert surface["image"]["shells"] == []  # the script's bash stayed behind
    assert "/usr/local/bin/docker-entrypoint.sh" not in surface["image"]["executables"]


# -- the same for the official mariadb image's entrypoint ----------------------------------------------------------

MARIADB_ENV = ("-e", f"MARIADB_ROOT_PASSWORD={PG_PASSWORD}", "-e", "MARIADB_DATABASE=shop",
               "-e", "MARIADB_USER=shopkeeper", "-e", "MARIADB_PASSWORD=keeper's")  # fmt: skip


@pytest.fixture(scope="session")
def mariadb_image(base_image: str, registry: Registry, buildah: Buildah) -> str:
    """MariaDB packaged as the official image packages it (tests/fixtures/images/mariadb), in the registry."""
    local = "localhost/kiln-test-mariadb:1"
    buildah.build(IMAGES / "mariadb", local, base_image)
    remote = f"{registry.host}/test/mariadb:1"
    buildah.push(local, f"docker://{remote}")
    return remote


@pytest.fixture(scope="session")
def kiln_mariadb(mariadb_image: str, session_env: dict[str, str]) -> str:
    proc = kiln("build", "-t", "ctr-mariadb", f"docker://{mariadb_image}", env=session_env, check=True,
                timeout=1800)  # fmt: skip
    assert "is the official mariadb image's docker-entrypoint.sh" in proc.stderr, proc.stderr
    assert "first start: 10-schema.sql run in MARIADB_DATABASE's database" in proc.stderr
    return "ctr-mariadb"


def _mariadb(port: int, sql: str, user: str = "shopkeeper", password: str = "keeper's") -> str:
    done = clients.sql("mariadb", port, sql, password, database="shop", user=user)
    return done.stdout.strip() if done.returncode == 0 else f"failed: {done.stderr.strip()}"


@pytest.mark.vm
@pytest.mark.parametrize("target", TARGETS)
def test_an_official_style_mariadb_image_starts_as_its_entrypoint_says(
    target: str, kiln_mariadb: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    """MARIADB_ROOT_PASSWORD, MARIADB_DATABASE, MARIADB_USER and MARIADB_PASSWORD at run time: the user reaches
    its database and the init file's table there; root logs in with its password; no shell."""
    port = free_port()
    inst = Instance(kiln_mariadb, session_env, target, {port: 3306}, MARIADB_ENV)
    instances.append(inst)
    clients.wait_sql("mariadb", port, "keeper's", lambda: inst.proc.poll() is None, lambda: inst.output,
                     database="shop", user="shopkeeper")  # fmt: skip
    assert _mariadb(port, "select word from greetings") == "unikernel"  # the init file ran in shop
    assert _mariadb(port, "select count(*) from greetings", "root", PG_PASSWORD) == "1"
    assert _mariadb(port, "select 1", password="wrong").startswith("failed")
    assert inst.output.count("sets the server up") == 5  # root, database, user, grant, init files
    inst.stop()


@pytest.mark.vm
def test_the_same_mariadb_image_under_podman_with_runc_answers_the_same(
    mariadb_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    podman = engines.podman(tmp_path_factory.mktemp("mdbpodman"), runtime="runc")
    port, name = free_port(), "kiln-mariadb-compare"
    started = subprocess.run(
        [*podman, "run", "-d", "--tls-verify=false", "--name", name, "-p", f"127.0.0.1:{port}:3306",
         "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", *MARIADB_ENV, mariadb_image],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        logs = lambda: subprocess.run([*podman, "logs", name], capture_output=True, text=True).stdout  # noqa: E731
        clients.wait_sql("mariadb", port, "keeper's", lambda: True, logs, database="shop", user="shopkeeper")
        assert _mariadb(port, "select word from greetings") == "unikernel"
        assert _mariadb(port, "select count(*) from greetings", "root", PG_PASSWORD) == "1"
        assert _mariadb(port, "select 1", password="wrong").startswith("failed")
    finally:
        subprocess.run([*podman, "rm", "-f", name], capture_output=True)


@pytest.mark.vm
def test_official_style_databases_start_with_no_password_when_their_variables_say_so(
    kiln_postgres: str, kiln_mariadb: str, session_env: dict[str, str], instances: list[Instance]
) -> None:
    """POSTGRES_HOST_AUTH_METHOD=trust with no POSTGRES_PASSWORD (its pg_hba.conf line appended on the first
    start), and MARIADB_ALLOW_EMPTY_ROOT_PASSWORD: each server starts and lets its superuser in with no password,
    as the official images do; with neither, a start without a password is refused in one line. The unix target:
    the same init and steps as in a VM, with no boot."""
    pg_port, db_port = free_port(), free_port()
    pg = Instance(kiln_postgres, session_env, "unix", {pg_port: 5432}, ("-e", "POSTGRES_HOST_AUTH_METHOD=trust"))
    instances.append(pg)
    clients.wait_sql("postgres", pg_port, "any password", lambda: pg.proc.poll() is None, lambda: pg.output)
    assert clients.sql("postgres", pg_port, "select current_user", "").stdout.strip() == "postgres"
    assert "first start: a line added to /var/lib/postgresql/data/pg_hba.conf" in pg.output, pg.output
    pg.stop()
    empty = ("-e", "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1")
    mariadb = Instance(kiln_mariadb, session_env, "unix", {db_port: 3306}, empty)
    instances.append(mariadb)
    clients.wait_sql("mariadb", db_port, "", lambda: mariadb.proc.poll() is None, lambda: mariadb.output)
    assert clients.sql("mariadb", db_port, "select current_user()", "").stdout.strip() == "root@%"
    mariadb.stop()
    refused = Instance(kiln_postgres, session_env, "unix", {free_port(): 5432})
    instances.append(refused)
    assert refused.proc.wait(120) != 0
    said = "first start: POSTGRES_PASSWORD is not set, and the server's setup needs it"
    deadline = time.monotonic() + 10
    while said not in refused.output and time.monotonic() < deadline:  # the console's last lines, still being read
        time.sleep(0.1)
    assert said in refused.output, refused.output


# -- compose secrets: a database's passwords from /run/secrets, its healthcheck as people write it ---------------

ROOT_SECRET = "root-f1le-s3cret"
USER_SECRET = "user-env-s3cret"


@pytest.mark.vm
def test_a_compose_database_reads_its_passwords_from_secrets(
    kiln_mariadb: str, session_env: dict[str, str], tmp_path: Path
) -> None:
    """A file secret and an environment secret reach the official-style MariaDB at /run/secrets, through its
    *_FILE variables; its CMD-SHELL `mysqladmin ping --password="$$(cat /run/secrets/...)"` healthcheck holds
    before the service that depends on it starts; the passwords work from the host's client, and are in no
    record, log, `kiln inspect` or `ps`; `down` removes their files."""
    port = free_port()
    (tmp_path / "root-password.txt").write_text(ROOT_SECRET + "\n")
    (tmp_path / "compose.yaml").write_text(f"""
name: vault
secrets:
  root-password: {{file: ./root-password.txt}}
  user-password: {{environment: KILN_TEST_USER_PASSWORD}}
services:
  db:
    image: {kiln_mariadb}
    environment:
      MARIADB_ROOT_PASSWORD_FILE: /run/secrets/root-password
      MARIADB_DATABASE: shop
      MARIADB_USER: shopkeeper
      MARIADB_PASSWORD_FILE: /run/secrets/user-password
    secrets: [root-password, {{source: user-password, mode: 0440}}]
    ports: ["127.0.0.1:{port}:3306"]
    healthcheck:
      test: ["CMD-SHELL", "mysqladmin ping -h 127.0.0.1 --password=\\"$$(cat /run/secrets/root-password)\\" --silent"]
      interval: 2s
      retries: 3
      start_period: 170s
  web:
    build: {ROOT / "examples" / "hello-http"}
    depends_on:
      db: {{condition: service_healthy}}
""")
    env = {**session_env, "KILN_TEST_USER_PASSWORD": USER_SECRET}

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return kiln("compose", "-f", str(tmp_path / "compose.yaml"), *args, env=env, timeout=1800)

    home = Path(session_env["KILN_HOME"])
    try:
        up = compose("up", "-d")
        said = up.stdout + up.stderr
        assert up.returncode == 0, said
        assert "waiting for db to be healthy" in said and "web: started" in said, said
        assert _mariadb(port, "select word from greetings", password=USER_SECRET) == "unikernel"
        assert _mariadb(port, "select 1", "root", ROOT_SECRET) == "1"
        staged = home / "compose" / "vault" / "secrets" / "db"
        assert sorted(p.stat().st_mode & 0o777 for p in staged.iterdir()) == [0o400, 0o400]
        # nowhere else: the project's and the instances' records and logs, inspect, ps, the QEMU command line
        seen = [compose("logs").stdout, compose("ps", "--json").stdout,
                kiln("ps", "--json", env=env, check=True).stdout,
                kiln("inspect", "--json", kiln_mariadb, env=env, check=True).stdout,
                subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout]  # fmt: skip
        for directory in (home / "compose" / "vault", home / "instances"):
            for path in directory.rglob("*"):
                if path.is_file() and staged not in path.parents and "volumes" not in path.parts:
                    seen.append(path.read_text(errors="replace"))
        for secret in (ROOT_SECRET, USER_SECRET):
            assert not [text for text in seen if secret in text], secret
        assert "kiln-init: secrets: 2 in /run/secrets, read-only" in compose("logs", "db").stdout
    finally:
        down = compose("down", "-v")
    assert down.returncode == 0, down.stderr
    assert not (home / "compose" / "vault" / "secrets").exists()


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ("  pw: {file: ./missing.txt}\n", "secrets.pw: its file"),
        ("  pw: {environment: KILN_TEST_UNSET}\n", "secrets.pw: its variable KILN_TEST_UNSET is not set"),
    ],
)
def test_a_secret_kiln_cannot_read_stops_up_before_anything_starts(
    secrets: str, message: str, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(
        f"secrets:\n{secrets}services:\n  db:\n    image: nothing-built\n    secrets: [pw]\n"
    )
    before = store_state(env)
    proc = kiln("compose", "-f", str(tmp_path / "compose.yaml"), "up", "-d", env=env)
    assert_one_line_error(proc, message, code=2)
    assert store_state(env) == before and json.loads(kiln("ps", "-a", "--json", env=env, check=True).stdout) == []
    assert not (Path(env["KILN_HOME"]) / "compose").exists() or not any((Path(env["KILN_HOME"]) / "compose").iterdir())


def test_a_registry_mirror_in_registries_conf_serves_docker_hub_names(
    sources: dict, registry: Registry, buildah: Buildah, env: dict[str, str], tmp_path: Path
) -> None:
    """Behind a mirror, as podman, buildah and skopeo read registries.conf: `docker://redis:7` (Docker Hub's
    name) is fetched from the loopback mirror the test's own registries.conf names, never the host's file; with
    the mirror down, one line."""
    buildah.push("localhost/kiln-test-redis:1", f"docker://{registry.host}/library/redis:7")
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
                    f'[[registry.mirror]]\nlocation = "{registry.host}"\ninsecure = true\n')  # fmt: skip
    mirrored = {**env, "CONTAINERS_REGISTRIES_CONF": str(conf)}
    built = kiln("build", "-t", "mirrored", "docker://redis:7", env=mirrored, timeout=1800)
    assert built.returncode == 0, built.stderr
    assert json.loads(kiln("images", "--json", env=env, check=True).stdout)[0]["name"] == "mirrored"
    closed = free_port()
    conf.write_text(f'[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
                    f'[[registry.mirror]]\nlocation = "127.0.0.1:{closed}"\ninsecure = true\n')  # fmt: skip
    before = store_state(env)
    down = kiln("build", "-t", "again", "docker://redis:7", env=mirrored, timeout=600)
    assert_one_line_error(down, "docker://redis:7", code=down.returncode)
    assert down.returncode != 0 and store_state(env) == before


# -- the samples' stack as written: proxy, backend, database; secrets, two networks, a shell-form healthcheck ------


def _until_answered(url: str, timeout: float = 600) -> httpx.Response:
    """The proxy's answer once the backend behind it listens (until then nginx says 502)."""
    deadline = time.monotonic() + timeout
    while (answer := httpx.get(url, timeout=60)).status_code == 502:
        assert time.monotonic() < deadline, answer.text
        time.sleep(1)
    return answer


@pytest.mark.vm
@pytest.mark.parametrize(
    ("stack_name", "database"), [("nginx-flask-mysql", "mariadb"), ("nginx-flask-postgres", "postgres")]
)
def test_the_samples_stack_runs_as_written(
    stack_name: str,
    database: str,
    sources: dict,
    registry: Registry,
    buildah: Buildah,
    session_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """tests/fixtures/stacks/*, in the shape of Docker's awesome-compose samples, images named as on Docker Hub and
    served by a loopback registry set up as docker.io's mirror: `up -d` builds the backend's Dockerfile (its
    `target: builder`, FROM debian:bookworm through the mirror), pulls the proxy and the official-style database, and
    starts them in their order (the database healthy first: mysqladmin ping in shell form, or pg_isready). A post
    through the proxy lands in the database and comes back; the proxy's own log shows the client's address (a
    second loopback address); the proxy, on frontnet alone, cannot reach the database's address on backnet;
    `down` then `up` keeps the rows, and `down -v` removes the volume that held them."""
    request.getfixturevalue(f"{database}_image")  # built, as localhost/kiln-test-NAME
    # Docker Hub's names, served by the loopback registry as docker.io's mirror (the test's own registries.conf)
    hub = {"debian": ("bookworm", "library/debian:bookworm"), "nginx": ("1", "library/nginx:latest"),
           "mariadb": ("1", "library/mariadb:10.11"), "postgres": ("1", "library/postgres:15")}  # fmt: skip
    for name in ("debian", "nginx", database):
        tag, remote = hub[name]
        buildah.push(f"localhost/kiln-test-{name}:{tag}", f"docker://{registry.host}/{remote}")
    conf = tmp_path / "registries.conf"
    mirror = f'[[registry.mirror]]\nlocation = "{registry.host}"\ninsecure = true\n'
    conf.write_text(f'unqualified-search-registries = ["docker.io"]\n[[registry]]\nprefix = "docker.io"\n'
                    f'location = "docker.io"\n{mirror}')  # fmt: skip
    stack = tmp_path / stack_name  # the project's name: each stack its own images (compose keeps them by name)
    shutil.copytree(STACKS / stack_name, stack)
    port = free_port()
    env = {**session_env, "CONTAINERS_REGISTRIES_CONF": str(conf), "PROXY_PORT": str(port)}
    home = Path(session_env["KILN_HOME"])

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return kiln("compose", "-f", str(stack / "compose.yaml"), *args, env=env, timeout=1800)

    url = f"http://127.0.0.1:{port}/"
    try:
        config = compose("config")
        assert config.returncode == 0 and f"image: {hub[database][1].split('/')[1]}" in config.stdout, config.stderr
        up = compose("up", "-d")
        said = up.stdout + up.stderr
        assert up.returncode == 0, said
        assert "waiting for db to be healthy" in said, said
        assert _until_answered(url).text == ""  # the backend made its table: no post yet
        assert httpx.post(url + "posts", content="post #1", timeout=60).status_code == 201
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60) as client:
            assert client.get(url).text == "<div>Hello post #1</div>"
        rows = {r["service"]: r for r in json.loads(compose("ps", "--json").stdout)}
        assert rows["db"]["health"] == "healthy" and rows["db"]["addresses"] == ["10.89.0.3/24"]
        assert rows["backend"]["addresses"] == ["10.89.0.2/24", "10.89.1.2/24"]
        # the database's address on backnet, asked of the proxy: no way there. frontnet is not internal, so the
        # request leaves by the proxy's own way out, as from a container on a bridge; had it reached MariaDB,
        # nginx would say the server's greeting is no HTTP ("upstream sent no valid HTTP/1.0 header")
        cut_off = httpx.get(url + "database", timeout=60)
        assert cut_off.status_code != 200, cut_off.text
        proxy_log = compose("logs", "proxy").stdout
        assert "upstream sent" not in proxy_log and "upstream prematurely closed" not in proxy_log, proxy_log
        # nginx's access log, as the official image writes it (to /dev/stdout): the client's own address
        assert "127.0.0.2 - - [" in proxy_log and "10.0.2.2 - -" not in proxy_log, proxy_log
        assert "kiln-init: secrets: 1 in /run/secrets, read-only" in compose("logs", "backend").stdout

        assert compose("down").returncode == 0
        assert compose("up", "-d").returncode == 0
        assert _until_answered(url).text == "<div>Hello post #1</div>"  # the named volume kept the row
    finally:
        print(compose("logs").stdout)  # shown when the test fails
        down = compose("down", "-v")
    assert down.returncode == 0, down.stderr
    assert not (home / "compose" / stack_name).exists()
