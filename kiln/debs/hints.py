"""What kiln knows about particular Debian packages' services that their units do not say.

A unit says how systemd starts a service on a full system; a few services
also count on what a full system has (a shell for their config, a package's
postinst having run, a listener on loopback being reachable). Each entry
here says what the package needs in a unikernel, and why; the build prints
the why. When a package is not here, its unit alone decides.

- `ports`: what the service listens on with the package's own config.
- `users`: the accounts its config switches to (lighttpd's server.username).
- `foreground`: arguments that keep a `Type=forking` daemon in the
  foreground, from the daemon's own documentation.
- `caps`: what a service that starts as root needs before it switches to
  its account, beside setuid and setgid (nginx gives www-data the
  temporary directories it makes: chown).
- `allow`: calls the syscall policy lets through for this server, and why:
  `clone` for a server that forks its workers (fork without exec), as with
  `[seccomp] allow` in kiln.toml.
- `wrapper`: what the script a unit's ExecStart runs does in the end
  (apachectl: apache2 -D FOREGROUND with /etc/apache2/envvars), so no shell
  runs at start-up; a script kiln knows no wrapper for is refused in one line.
- `args`: arguments added after the unit's, where the package's config
  only suits a full system (a server that listens on loopback alone), as the
  project's official container image runs it.
- `files`: files written into the image beside the package's (drop-in
  configuration its config includes).
- `links` and `copies`: what the package's postinst does on a fresh
  install (enable a conf, copy a placeholder page).
- `helpers`: programs of the image the server executes itself (the Erlang VM's
  erl_child_setup, through which it starts every port program): init lets
  an execve of exactly these paths through, and refuses and names any other.
- `memory_mib`: the least guest RAM the server runs in, where what the image
  holds does not say it (RabbitMQ blocks publishers once it uses 40% of RAM).
- `initialize` and `first_start`: a database's data directory made at build
  time by its own initializer (initdb), which guest init copies into an empty
  data volume on first start, then sets up with the run's variables
  (POSTGRES_PASSWORD) through the server's single-user mode.
- `skip`: files there that the server loads only when a setting asks for
  them, which the hint's config leaves off (PostgreSQL's JIT: llvmjit.so
  and the 130 MiB of LLVM behind it), and conffiles the image leaves out
  (rabbitmq-env.conf, which rabbit would source through /bin/sh).

A path in a hint may hold `*` for a version the package's tree decides
(/usr/lib/erlang/erts-*/bin): it must match exactly one path there.
- `data`: the names under /usr/share and /usr/lib whose files the server
  reads besides the package's own name (postgresql-15 reads /usr/share/postgresql);
  `packages`: packages fetched with it for such data that no dependency brings
  (php8.2-fpm reads tzdata's zoneinfo, which it only recommends).
- `flatten`: a build-time run of the daemon itself, in the sandbox
  (kiln.sandbox) over the package tree, whose output replaces a config file
  that a unikernel could not read (lighttpd's `include_shell` runs
  programs through /bin/sh); `extra` names the packages that run needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


def _lighttpd_flat(printed: str) -> str:
    """`lighttpd -p` prints the parsed config inside `config { ... }`, with the variables it set itself; and
    the [::] listener that use-ipv6.pl adds when the build host has IPv6 goes (kiln's kernels have IPv4)."""
    text = re.sub(r'\n\s*\$SERVER\["socket"\] == "\[::\]:\d+" \{[^{}]*\}[^\n]*', "", printed.rstrip())
    lines = text.splitlines()
    if lines and lines[0].strip() == "config {" and lines[-1].strip() == "}":
        lines = lines[1:-1]
    return "".join(f"{ln}\n" for ln in lines if not ln.strip().startswith(("var.CWD", "var.PID")))


@dataclass(frozen=True)
class Flatten:
    argv: tuple[str, ...]
    output: str  # the file in the image its output replaces
    transform: Callable[[str], str]
    extra: tuple[str, ...]  # packages the build-time run needs in the tree
    why: str


@dataclass(frozen=True)
class Wrapper:
    """What a unit's ExecStart script does in the end, so that no shell runs it: the daemon it starts, in the
    foreground, with the variables the script sources and the directories it makes first."""

    script: str  # what ExecStart runs
    program: str
    args: tuple[str, ...]
    env_file: str | None = None  # a shell file the script sources (its top-level assignments)
    dirs: tuple[str, ...] = ()
    user: str | None = None  # the account the script runs the program as (pg_ctlcluster: the cluster's owner)
    env: dict[str, str] = field(default_factory=dict)  # what the script exports (rabbitmq-env's ERL_LIBS, ...)
    why: str = ""


@dataclass(frozen=True)
class Initialize:
    """A server's data directory, made at build time by the server's own initializer (initdb) in the sandbox, as
    the service's account, over the package tree: the image holds it read-only, and guest init fills an empty
    data volume from it on first start. `argv` runs with {data} for a directory it makes; `extra` names packages
    that run needs (initdb runs postgres --boot through popen, so /bin/sh)."""

    argv: tuple[str, ...]
    data: str  # where the image holds it
    extra: tuple[str, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class FirstStart:
    """What the first start runs once the data volume is filled (kiln.manifest.Setup): the server's program in
    its single-user mode, with SQL on its standard input naming the run's variables as ${NAME}."""

    argv: tuple[str, ...]
    input: str
    needs: tuple[str, ...]
    why: str = ""


@dataclass(frozen=True)
class PackageHint:
    ports: tuple[int, ...] = ()
    users: tuple[str, ...] = ()
    foreground: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()  # kept beside setuid and setgid by a service that starts as root (kiln.manifest)
    allow: dict[str, str] = field(default_factory=dict)  # the syscall policy relaxed, and why (kiln.policy)
    wrapper: Wrapper | None = None
    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)  # path in the image -> path in the package tree
    flatten: Flatten | None = None
    initialize: Initialize | None = None
    first_start: FirstStart | None = None
    data: tuple[str, ...] = ()  # names under /usr/share and /usr/lib whose files the server reads (postgresql)
    skip: tuple[str, ...] = ()  # files there it loads only when a setting kiln's config leaves off asks for them
    helpers: tuple[str, ...] = ()  # programs of the image it executes itself (init lets these execve through)
    memory_mib: int = 0  # the least guest RAM it runs in (0: sized from the image alone)
    packages: tuple[str, ...] = ()  # fetched with it for data it reads that no dependency brings (tzdata)
    why: tuple[str, ...] = ()

    @property
    def extra(self) -> tuple[str, ...]:
        """Packages the build's runs of the package's programs need in the tree (kiln.debs.fetch)."""
        return (*(self.flatten.extra if self.flatten else ()), *(self.initialize.extra if self.initialize else ()),
                *self.packages)  # fmt: skip


TOMCAT_BASE = "/var/lib/tomcat10"
# what catalina.sh run ends with (Debian's tomcat10: its logging, the module openings Tomcat needs on Java 17)
TOMCAT_ARGS = (
    f"-Djava.util.logging.config.file={TOMCAT_BASE}/conf/logging.properties",
    "-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager",
    "-Djava.awt.headless=true", "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djava.protocol.handler.pkgs=org.apache.catalina.webresources", "-Dsun.io.useCanonCaches=false",
    "-Dorg.apache.catalina.security.SecurityListener.UMASK=0027",
    "--add-opens=java.base/java.lang=ALL-UNNAMED", "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED", "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED", "--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED",
    "-classpath", "/usr/share/tomcat10/bin/bootstrap.jar:/usr/share/tomcat10/bin/tomcat-juli.jar",
    f"-Dcatalina.base={TOMCAT_BASE}", "-Dcatalina.home=/usr/share/tomcat10", "-Djava.io.tmpdir=/tmp",
    "org.apache.catalina.startup.Bootstrap", "start",
)  # fmt: skip
PG = "/usr/lib/postgresql/15"
ERTS = "/usr/lib/erlang/erts-*"  # the Erlang runtime, by its version
RABBIT_HOME = "/var/lib/rabbitmq"
# what rabbitmq-server, erl and erlexec end with (the VM's flags, then the runtime's, then the node's), with the node's
# distribution on a fixed port and no epmd, and its name fixed (rabbit@localhost; RABBITMQ_NODENAME says the same): its
# data directory is named after it, and then does not change with the instance's hostname
RABBIT_ARGS = (
    "-W", "w", "-MBas", "ageffcbf", "-MHas", "ageffcbf", "-MBlmbcs", "512", "-MHlmbcs", "512",
    "-MMmcs", "30", "-P", "1048576", "-t", "5000000", "-stbt", "db", "-zdbbl", "128000",
    "-sbwt", "none", "-sbwtdcpu", "none", "-sbwtdio", "none", "-B", "i",
    "--", "-root", "/usr/lib/erlang", "-bindir", f"{ERTS}/bin", "-progname", "erl",
    "--", "-home", RABBIT_HOME,
    "--", "-noshell", "-noinput", "-s", "rabbit", "boot", "-boot", "start_sasl",
    "-syslog", "logger", "[]", "-syslog", "syslog_error_logger", "false",
    "-kernel", "prevent_overlapping_partitions", "false",
    "-start_epmd", "false", "-erl_epmd_port", "25672", "-sname", "rabbit@localhost",
)  # fmt: skip
PG_DATA = "/var/lib/postgresql/15/main"
PG_ETC = "/etc/postgresql/15/main"


HINTS: dict[str, PackageHint] = {
    "mosquitto": PackageHint(
        ports=(1883,),
        files={"/etc/mosquitto/conf.d/kiln.conf": "listener 1883\nallow_anonymous true\n"},
        why=(
            "mosquitto: /etc/mosquitto/conf.d/kiln.conf listens on 1883 on every address, anonymous as in its "
            "own default (Debian's config names no listener, and mosquitto then listens on loopback only, "
            "which no published port reaches)",
        ),
    ),
    "lighttpd": PackageHint(
        ports=(80,),
        users=("www-data",),
        links={"/etc/lighttpd/conf-enabled/99-unconfigured.conf": "../conf-available/99-unconfigured.conf"},
        copies={"/var/www/html/index.lighttpd.html": "/usr/share/lighttpd/index.html"},
        flatten=Flatten(
            argv=("/usr/sbin/lighttpd", "-p", "-f", "/etc/lighttpd/lighttpd.conf"),
            output="/etc/lighttpd/lighttpd.conf",
            transform=_lighttpd_flat,
            extra=("perl-base", "dash"),
            why="its config runs include_shell scripts through /bin/sh, so lighttpd -p printed it at build time",
        ),
        why=("lighttpd: its placeholder page enabled, as its postinst does on a fresh install",),
    ),
    # why: nginx.service is Type=forking; nginx.conf switches to www-data (base-passwd's, made by no postinst), and
    # nginx, still root, gives www-data the temporary directories it makes under /var/lib/nginx (chown); its master
    # process forks its workers (no program is executed)
    "nginx": PackageHint(
        ports=(80,),
        users=("www-data",),
        foreground=("-g", "daemon off;"),
        caps=("chown",),
        allow={"clone": "nginx's master process forks its worker processes, as Debian runs it"},
    ),
    "memcached": PackageHint(ports=(11211,)),
    # why: apache2.service runs `apachectl start`, a shell script that sources /etc/apache2/envvars, makes the run
    # and lock directories, and starts apache2 (which forks into the background unless -D FOREGROUND); the event
    # MPM the postinst enables forks its child processes, and they switch to www-data
    "apache2": PackageHint(
        ports=(80,),
        users=("www-data",),
        wrapper=Wrapper(
            script="/usr/sbin/apachectl",
            program="/usr/sbin/apache2",
            args=("-D", "FOREGROUND"),
            env_file="/etc/apache2/envvars",
            dirs=("/run/apache2", "/var/lock/apache2"),
            why="apachectl start runs apache2 with /etc/apache2/envvars' variables; kiln runs apache2 -D FOREGROUND "
            "with them, and no shell",
        ),
        allow={"clone": "apache2's event MPM forks its child processes, as Debian runs it"},
    ),
    # why: redis.conf binds 127.0.0.1 and ::1 only, in protected mode, and logs to a file: as the official image
    # runs it, redis listens on every address, leaves protection to the network, and logs on the console
    "redis-server": PackageHint(
        ports=(6379,),
        args=("--bind", "* -::*", "--protected-mode", "no", "--logfile", ""),
        why=(
            "redis-server: listens on every address with protected mode off and logs on the console, as the "
            "official redis image runs it (Debian's redis.conf listens on loopback only)",
        ),
    ),
    # why: postgresql-15 ships no unit: postgresql-common's postgresql@.service runs pg_ctlcluster, a Perl script,
    # over the cluster the postinst's pg_createcluster made with initdb. kiln runs initdb at build time (it runs
    # postgres --boot through /bin/sh, which no image holds), starts postgres as pg_ctlcluster does (as postgres,
    # Debian's config directory), and sets the superuser's password on first start, as the official image does
    "postgresql-15": PackageHint(
        ports=(5432,),
        wrapper=Wrapper(
            script="/usr/bin/pg_ctlcluster",
            program=f"{PG}/bin/postgres",
            args=("-D", PG_DATA, "-c", f"config_file={PG_ETC}/postgresql.conf"),
            dirs=("/run/postgresql",),
            user="postgres",
            why="pg_ctlcluster starts the cluster's postgres as its owner, with the cluster's config directory; kiln "
            "runs postgres so, in the foreground, with no Perl",
        ),
        files={
            f"{PG_ETC}/postgresql.conf": (
                f"data_directory = '{PG_DATA}'\n"
                f"hba_file = '{PG_ETC}/pg_hba.conf'\n"
                f"ident_file = '{PG_ETC}/pg_ident.conf'\n"
                "listen_addresses = '*'\n"
                "port = 5432\n"
                "max_connections = 100\n"
                "unix_socket_directories = '/run/postgresql'\n"
                "shared_buffers = 16MB\n"
                "dynamic_shared_memory_type = posix\n"
                "log_line_prefix = '%m [%p] '\n"
                "log_timezone = 'UTC'\n"
                "timezone = 'UTC'\n"
                "datestyle = 'iso, mdy'\n"
                "lc_messages = 'C.UTF-8'\n"
                "lc_monetary = 'C.UTF-8'\n"
                "lc_numeric = 'C.UTF-8'\n"
                "lc_time = 'C.UTF-8'\n"
                "default_text_search_config = 'pg_catalog.english'\n"
                "jit = off\n"
            ),
            f"{PG_ETC}/pg_hba.conf": ("local all all trust\nhost all all all scram-sha-256\n"),
            f"{PG_ETC}/pg_ident.conf": "",
        },
        initialize=Initialize(
            argv=(
                f"{PG}/bin/initdb",
                "-D",
                "{data}",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ),
            data=PG_DATA,
            extra=("dash",),
            why="initdb made the cluster at build time, in the sandbox; an empty data volume is filled from it on "
            "first start",
        ),
        first_start=FirstStart(
            argv=(
                f"{PG}/bin/postgres",
                "--single",
                "-D",
                PG_DATA,
                "-c",
                f"config_file={PG_ETC}/postgresql.conf",
                "postgres",
            ),
            input="ALTER USER postgres WITH PASSWORD '${POSTGRES_PASSWORD}';\n",
            needs=("POSTGRES_PASSWORD",),
            why="the first start sets the superuser postgres' password from POSTGRES_PASSWORD (or the file "
            "POSTGRES_PASSWORD_FILE names), as the official postgres image does; clients log in with it",
        ),
        data=("postgresql", "zoneinfo", "locale"),  # its extensions and timezone sets; tzdata's; C.UTF-8
        # JIT (jit = off: llvmjit.so, and LLVM behind it), and pgxs, the build system of extensions
        skip=(f"{PG}/lib/llvmjit.so", f"{PG}/lib/llvmjit_types.bc", f"{PG}/lib/bitcode", f"{PG}/lib/pgxs"),
        allow={"clone": "postgres forks a backend for each connection, and its background workers"},
    ),
    # why: mariadb.service starts mariadbd through /bin/sh -c (galera_recovery first, for a Galera cluster only),
    # and 50-server.cnf binds 127.0.0.1; kiln runs mariadbd itself on every address, as the official mariadb
    # image does, with the system tables mariadb-install-db made at build time and root's password set on first
    # start from MARIADB_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD), as that image's entrypoint does
    "mariadb-server": PackageHint(
        ports=(3306,),
        wrapper=Wrapper(
            script="/bin/sh",
            program="/usr/sbin/mariadbd",
            args=("--bind-address=0.0.0.0",),
            dirs=("/run/mysqld",),
            why="its ExecStart's sh -c runs galera_recovery (a Galera cluster's) and then mariadbd; kiln runs "
            "mariadbd, listening on every address as the official image does, with no shell",
        ),
        initialize=Initialize(
            argv=(
                "/usr/bin/mariadb-install-db",
                "--user=mysql",
                "--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                "--force",
            ),
            data="/var/lib/mysql",
            extra=("dash", "coreutils", "sed"),
            why="mariadb-install-db made the system tables at build time, in the sandbox; an empty data volume is "
            "filled from them on first start",
        ),
        first_start=FirstStart(
            argv=("/usr/sbin/mariadbd", "--bootstrap", "--skip-networking"),
            input=(
                "SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');\n"  # a backslash is a password's own
                "FLUSH PRIVILEGES;\n"
                "ALTER USER 'root'@'localhost' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD|MYSQL_ROOT_PASSWORD}';\n"
                "CREATE USER 'root'@'%' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD|MYSQL_ROOT_PASSWORD}';\n"
                "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
            ),
            needs=("MARIADB_ROOT_PASSWORD",),
            why="the first start sets root's password from MARIADB_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD, or the "
            "file a _FILE variable names), for root on every address, as the official mariadb image does",
        ),
    ),
    # why: rabbitmq-server.service runs rabbitmq-server, a shell script (rabbitmq-env, rabbitmq-defaults) that
    # execs erl, another, which execs erlexec, which execs beam.smp; rabbit then starts epmd through a throwaway erl
    # node and /bin/sh, and runs df through a /bin/sh port. kiln runs beam.smp with the arguments and variables the
    # scripts end with, starts the node's distribution itself on a fixed port with no epmd (rabbit's prelaunch
    # then leaves epmd alone, as for a node started with -sname), and lets the VM execute its own two helpers
    "rabbitmq-server": PackageHint(
        ports=(5672,),
        wrapper=Wrapper(
            script="/usr/lib/rabbitmq/bin/rabbitmq-server",
            program=f"{ERTS}/bin/beam.smp",
            args=RABBIT_ARGS,
            env={
                "HOME": RABBIT_HOME,
                "ROOTDIR": "/usr/lib/erlang",
                "BINDIR": f"{ERTS}/bin",
                "EMU": "beam",
                "PROGNAME": "erl",
                "ERL_LIBS": "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins",
                "ERL_MAX_PORTS": "65536",
                "ERL_MAX_ETS_TABLES": "50000",
                "PATH": "/usr/bin:/bin",
                "RABBITMQ_LOGS": "-",
                "RABBITMQ_NODENAME": "rabbit@localhost",
            },
            user="rabbitmq",
            why="rabbitmq-server, erl and erlexec are scripts and a launcher that end in beam.smp; kiln runs beam.smp "
            "with their arguments and variables, the node named rabbit@localhost with no epmd, and logs on the "
            "console, as the official rabbitmq image logs",
        ),
        helpers=(f"{ERTS}/bin/erl_child_setup", f"{ERTS}/bin/inet_gethost"),
        # measured: beam.smp holds 125 MiB once rabbit has started with no queues; rabbit blocks every publisher
        # once it uses vm_memory_high_watermark (0.4) of the RAM it sees, so it needs 320 MiB and some room
        memory_mib=384,
        data=("erlang", "rabbitmq"),
        skip=("/etc/rabbitmq/rabbitmq-env.conf",),  # comments only in Debian's; rabbit would source it through sh
        allow={"clone": "the Erlang VM forks erl_child_setup, which starts its port programs"},
        why=(
            "rabbitmq-server: the Erlang VM executes two programs of its own, erl_child_setup (which starts every "
            "port program) and inet_gethost (name lookups): init lets exactly these through",
            "rabbitmq-server: its disk monitor runs df through a /bin/sh port, which the image has not: rabbit logs "
            "once that the monitor could not start, and runs without it (the data volume's free space is the host's "
            "to watch)",
            "rabbitmq-server: 384 MiB of guest RAM at least: rabbit blocks publishers once it uses 40% of RAM, and "
            "it holds 125 MiB when idle",
        ),
    ),
    # why: tomcat10.service runs tomcat-start.sh through /bin/sh, which sources /etc/default/tomcat10, finds the Java
    # runtime and execs catalina.sh run, another script, which execs java with Tomcat's bootstrap class. kiln runs java
    # with the options catalina.sh ends with; the JVM sizes its heap from the RAM it sees, so the guest gets enough
    "tomcat10": PackageHint(
        ports=(8080,),
        wrapper=Wrapper(
            script="/bin/sh",
            program="/usr/lib/jvm/default-java/bin/java",  # default-jre-headless: what tomcat-locate-java.sh finds
            args=TOMCAT_ARGS,
            why="its ExecStart's sh runs tomcat-start.sh, then catalina.sh run, which execs java; kiln runs java with "
            "catalina.sh's options and Tomcat's bootstrap class, and no shell",
        ),
        data=("tomcat10", "tomcat10-root", "java", "jvm"),  # Tomcat's jars (in /usr/share/java) and the Java runtime
        # measured: tomcat10 with its default webapp holds 150 MiB once started under the JVM's defaults (its heap is a
        # quarter of the RAM it sees; its code cache, metaspace and thread stacks come beside it)
        memory_mib=512,
        why=(
            "tomcat10: 512 MiB of guest RAM at least: the JVM's heap is a quarter of the RAM it sees, and its code "
            "cache, metaspace and threads come beside it",
        ),
    ),
    # why: Debian's www pool listens on a UNIX socket in /run/php, which no other VM reaches, and php-fpm logs to
    # /var/log; its master, as root, forks the pool's workers, which switch to www-data. As the official php:fpm
    # image runs it: the pool listens on 9000 on every address, and the master and its workers log on the console
    "php8.2-fpm": PackageHint(
        ports=(9000,),
        users=("www-data",),
        files={
            "/etc/php/8.2/fpm/pool.d/zz-kiln.conf": (
                "[global]\n"
                "error_log = /proc/self/fd/2\n"
                "\n"
                "[www]\n"
                "listen = 9000\n"
                "clear_env = no\n"
                "catch_workers_output = yes\n"
                "decorate_workers_output = no\n"
            ),
        },
        allow={"clone": "php-fpm's master forks its pool's worker processes, as Debian runs it"},
        data=("zoneinfo",),  # date.timezone's names: PHP reads the system's tzdata (Debian's build)
        packages=("tzdata",),
        why=(
            "php8.2-fpm: its pool listens on 9000 on every address and logs on the console, as the official "
            "php:fpm image runs it (Debian's listens on a UNIX socket in /run/php)",
        ),
    ),
}
