"""What the official images' `docker-entrypoint.sh` scripts do, as kiln's own knowledge, so that no shell runs.

An official database image starts through a bash script: on a first start (an
empty data directory) it runs the server's initializer, sets the superuser's
password from the environment, makes the database the environment names, runs
the image's `/docker-entrypoint-initdb.d/*.sql` in it, and then `exec`s the
server. kiln recognizes such a script by the functions docker-library's script
defines (`marks`), and does what it does without it:

- the initializer runs at build time, in the build sandbox over the image's
  own tree, as the account the script drops to (`gosu postgres`); what the
  script then appends to the server's config (`host all all all scram-sha-256`)
  is appended; the image holds the result at the data directory, and guest init
  fills an empty data volume from it on first start (kiln.guest's firststart.c);
- the environment's part (the password, the database, the init files, all in
  the run's environment and the image) is the first start's set-up steps
  (kiln.manifest.Setup), run by the server's own single-user mode;
- the program is the image's Cmd (`postgres`) on its PATH, as the script's
  `exec "$@"` runs it, as that account.

A script that is not one of these gets one line naming it, as any script does.
An init file kiln cannot run without a shell (`*.sh`) gets one line too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kiln.errors import AppError
from kiln.manifest import SetupStep

INIT_DIR = "/docker-entrypoint-initdb.d"
INIT_SQL = "/kiln/initdb.sql"  # the init files, in order, as one file of the image


@dataclass(frozen=True)
class KnownEntrypoint:
    name: str
    marks: tuple[str, ...]  # what the script defines: all of them, or it is not this one
    server: str  # the Cmd it knows (what its `exec "$@"` runs in the end)
    account: str  # what it drops to before the server starts
    data_env: str | None  # the variable naming the data directory (None: the server's config does), and its default
    data_default: str
    database_env: str  # the variable naming the database its init files run in
    initialize: tuple[str, ...]  # the initializer, {data} for the directory
    appends: dict[str, str]  # what the script appends to files in the data directory after it
    # lines (a regular expression each) of files in the data directory the build takes out after the initializer
    drops: dict[str, str]
    steps: tuple[SetupStep, ...]  # the first start's set-up; {data} for the directory, {init} if init files
    needs: tuple[str, ...]
    run_dirs: tuple[str, ...]  # what it makes for the server before it starts (its socket's directory)
    libraries: str | None  # the server's modules, loaded by name (relative to its program's directory)
    skip: tuple[str, ...]  # of those, what only a setting left off loads (JIT)
    allow: dict[str, str]  # the syscall policy relaxed for the server, and why
    why: str


PG_PASSWORD = "ALTER USER postgres WITH PASSWORD '${POSTGRES_PASSWORD}';\n"
POSTGRES = KnownEntrypoint(
    name="the official postgres image's docker-entrypoint.sh",
    marks=("docker_init_database_dir", "docker_setup_env", "docker_process_init_files", "pg_setup_hba_conf"),
    server="postgres",
    account="postgres",
    data_env="PGDATA",
    data_default="/var/lib/postgresql/data",
    database_env="POSTGRES_DB",
    initialize=("initdb", "-D", "{data}", "--username=postgres", "--auth-local=trust", "--auth-host=scram-sha-256"),
    appends={},
    # initdb's own TCP lines for 127.0.0.1/32 and ::1/128 (trust, in the official image): a client on the host's
    # loopback reaches the server from its own loopback address (kiln.guest.protocol.CLIENTS), and must meet the
    # line below, as a host client does in Docker (from its bridge's gateway); the guest has no TCP client of its own
    drops={"pg_hba.conf": r"^host\s"},
    steps=(
        # pg_setup_hba_conf: every host by POSTGRES_HOST_AUTH_METHOD, scram-sha-256 unless the run says
        SetupStep(append_to="pg_hba.conf", input="\nhost all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}\n"),
        # docker_verify_minimum_env: a password, unless every host is trusted
        SetupStep(
            argv=("postgres", "--single", "-D", "{data}", "postgres"),
            input=PG_PASSWORD,
            when="!POSTGRES_HOST_AUTH_METHOD",
        ),
        SetupStep(
            argv=("postgres", "--single", "-D", "{data}", "postgres"),
            input=PG_PASSWORD,
            when="POSTGRES_HOST_AUTH_METHOD!=trust",
        ),
        SetupStep(
            argv=("postgres", "--single", "-D", "{data}", "postgres"),
            input=PG_PASSWORD,
            when="POSTGRES_HOST_AUTH_METHOD=trust,POSTGRES_PASSWORD",
        ),
        # initdb made postgres at build time; the script's initdb --username=$POSTGRES_USER makes that superuser
        # instead: here it is made beside postgres, with the same password
        SetupStep(
            argv=("postgres", "--single", "-D", "{data}", "postgres"),
            input='CREATE ROLE "${POSTGRES_USER}" WITH SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS LOGIN '
            "PASSWORD '${POSTGRES_PASSWORD:-}';\n",
            when="POSTGRES_USER!=postgres",
        ),
        # POSTGRES_DB, or POSTGRES_USER's name, as the script's file_env 'POSTGRES_DB' "$POSTGRES_USER"
        SetupStep(
            argv=("postgres", "--single", "-D", "{data}", "postgres"),
            input='CREATE DATABASE "${POSTGRES_DB|POSTGRES_USER}" OWNER "${POSTGRES_USER:-postgres}";\n',
            when="POSTGRES_DB|POSTGRES_USER!=postgres",
        ),
        SetupStep(
            argv=("postgres", "--single", "-j", "-D", "{data}", "${POSTGRES_DB|POSTGRES_USER:-postgres}"),
            input_file="{init}",
        ),
    ),
    needs=("POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_HOST_AUTH_METHOD"),
    run_dirs=("/run/postgresql",),
    libraries="../lib",
    skip=("llvmjit.so",),
    allow={"clone": "postgres forks a backend for each connection, and its background workers"},
    why="its first start (initdb, the password, POSTGRES_USER, POSTGRES_DB, /docker-entrypoint-initdb.d/*.sql) is "
    "kiln's: initdb "
    "ran at build time in the sandbox, the rest runs in postgres' single-user mode on first start; no shell",
)
# MariaDB's input: a backslash in a password is the password's own, as a quote doubled is
MARIADB_SQL = "SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');\n"
MARIADB_BOOTSTRAP = ("mariadbd", "--bootstrap", "--skip-networking", "--datadir={data}")
MARIADB_MARKS = ("docker_init_database_dir", "docker_setup_env", "docker_process_init_files", "docker_setup_db",
                 "_mariadb_file_env")  # fmt: skip
MARIADB_INSTALL = ("mariadb-install-db", "--user=mysql", "--datadir={data}", "--rpm",
                   "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
                   "--force")  # fmt: skip
MARIADB_EMPTY = "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD|MYSQL_ALLOW_EMPTY_PASSWORD"


def _mariadb_root(password: str) -> str:
    return (
        MARIADB_SQL + "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';\n"
        "FLUSH PRIVILEGES;\n"
        f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}';\n"
        f"CREATE USER 'root'@'${{MARIADB_ROOT_HOST|MYSQL_ROOT_HOST:-%}}' IDENTIFIED BY '{password}';\n"
        "GRANT ALL ON *.* TO 'root'@'${MARIADB_ROOT_HOST|MYSQL_ROOT_HOST:-%}' WITH GRANT OPTION;\n"
    )


MARIADB = KnownEntrypoint(
    name="the official mariadb image's docker-entrypoint.sh",
    marks=MARIADB_MARKS,
    server="mariadbd",
    account="mysql",
    data_env=None,  # the script reads datadir from the server's config
    data_default="/var/lib/mysql",
    database_env="MARIADB_DATABASE",
    initialize=MARIADB_INSTALL,
    appends={},
    drops={},
    steps=(
        # docker_setup_db: root's password, and root on MARIADB_ROOT_HOST ('%' unless it says otherwise); the
        # root@127.0.0.1, root@::1 and root@HOSTNAME mariadb-install-db made (no password) go, as the script drops
        # them: with skip-name-resolve a client on 127.0.0.1 would meet that one, not root@'%'
        # (docker_verify_minimum_env: a password, unless MARIADB_ALLOW_EMPTY_ROOT_PASSWORD says root has none)
        SetupStep(
            argv=MARIADB_BOOTSTRAP,
            input=_mariadb_root("${MARIADB_ROOT_PASSWORD|MYSQL_ROOT_PASSWORD}"),
            when=f"!{MARIADB_EMPTY}",
        ),
        SetupStep(
            argv=MARIADB_BOOTSTRAP,
            input=_mariadb_root("${MARIADB_ROOT_PASSWORD|MYSQL_ROOT_PASSWORD:-}"),
            when=MARIADB_EMPTY,
        ),
        SetupStep(
            argv=MARIADB_BOOTSTRAP,
            input="CREATE DATABASE IF NOT EXISTS `${MARIADB_DATABASE|MYSQL_DATABASE}`;\n",
            when="MARIADB_DATABASE|MYSQL_DATABASE",
        ),
        SetupStep(
            argv=MARIADB_BOOTSTRAP,
            input=MARIADB_SQL + "FLUSH PRIVILEGES;\n"
            "CREATE USER '${MARIADB_USER|MYSQL_USER}'@'%' IDENTIFIED BY '${MARIADB_PASSWORD|MYSQL_PASSWORD}';\n",
            when="MARIADB_USER|MYSQL_USER",
        ),
        SetupStep(
            argv=MARIADB_BOOTSTRAP,
            input="FLUSH PRIVILEGES;\n"
            "GRANT ALL ON `${MARIADB_DATABASE|MYSQL_DATABASE}`.* TO '${MARIADB_USER|MYSQL_USER}'@'%';\n",
            when="MARIADB_USER|MYSQL_USER,MARIADB_DATABASE|MYSQL_DATABASE",
        ),
        # docker_process_init_files: in MARIADB_DATABASE, as docker_exec_client's --database
        SetupStep(
            argv=MARIADB_BOOTSTRAP,
            input="USE `${MARIADB_DATABASE|MYSQL_DATABASE:-mysql}`;\n",
            input_file="{init}",
        ),
    ),
    needs=(
        "MARIADB_ROOT_PASSWORD",
        "MARIADB_DATABASE",
        "MARIADB_USER",
        "MARIADB_PASSWORD",
        "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD",
    ),
    run_dirs=("/run/mysqld",),
    libraries=None,  # its plugins load by a setting's name; none is set
    skip=(),
    allow={},  # mariadbd runs its connections on threads
    why="its first start (mariadb-install-db, root's password, MARIADB_DATABASE, MARIADB_USER, "
    "/docker-entrypoint-initdb.d/*.sql) is kiln's: mariadb-install-db ran at build time in the sandbox, the rest runs "
    "in mariadbd --bootstrap on first start; no shell",
)
KNOWN = (POSTGRES, MARIADB)


def recognize(script: bytes) -> KnownEntrypoint | None:
    """The known entrypoint this script is, if it is one."""
    text = script.decode(errors="replace")
    return next((k for k in KNOWN if all(f"{mark}()" in text or f"{mark} ()" in text for mark in k.marks)), None)


def init_files(tree: Path, where: str) -> list[str]:
    """The image's init files, in the order the script runs them (sorted, as bash's glob); a script among them
    is refused: it would need a shell at run time."""
    found = sorted(p.name for p in (tree / INIT_DIR.lstrip("/")).glob("*") if p.is_file() and not p.is_symlink())
    for name in found:
        if not name.endswith(".sql"):
            raise AppError(
                f"{where}: {INIT_DIR}/{name} is not SQL: kiln runs an official image's init files without a "
                "shell, so only *.sql files (run it yourself once the server is up, or make it SQL)"
            )
    return [f"{INIT_DIR}/{name}" for name in found]


def steps_for(known: KnownEntrypoint, data: str, server: str, has_init: bool) -> tuple[SetupStep, ...]:
    """Its set-up steps for this image: the server as found on PATH, its data directory, its init files."""
    out = []
    for step in known.steps:
        if step.input_file == "{init}" and not has_init:
            continue
        # the program, as found on PATH (an append step runs none)
        argv = (server, *(a.replace("{data}", data) for a in step.argv[1:])) if step.argv else ()
        out.append(
            SetupStep(
                argv=argv,
                input=step.input,
                when=step.when,
                input_file=INIT_SQL if step.input_file == "{init}" else step.input_file,
                append_to=step.append_to,
            )
        )
    return tuple(out)


def data_dir(known: KnownEntrypoint, env: dict[str, str]) -> str:
    path = (env.get(known.data_env) if known.data_env else None) or known.data_default
    if not path.startswith("/") or ".." in PurePosixPath(path).parts:
        raise AppError(f"{known.data_env}={path}: not an absolute path inside the image")
    return path
