"""What kiln knows about the servers Python apps are started with.

A command such as `gunicorn -w 2 -b 0.0.0.0:8000 app:app` says, to someone
who knows gunicorn, which module it will import by name (`app`), which port
it listens on (8000, on every address), and that it forks (a master and 2
workers). This module holds that knowledge for gunicorn, uvicorn,
hypercorn, waitress, daphne, Flask's and FastAPI's CLIs and Django's
`runserver`, read from the arguments (and the environment variables the
servers read) without running anything:

- `app_modules`: the app modules the server imports by a name in its
  arguments (`app.main:app` -> `app.main`), which the import analysis then
  follows as it follows the entry file;
- `listens`: the ports (and addresses) it will listen on, from `--port`,
  `--bind`/`-b`, `--listen`, Django's `ADDR:PORT`, or the server's default;
- `forks`: the worker processes it starts, and what the syscall policy must
  let through for them (`clone`; `execve` too for servers that start new
  interpreters);
- `adjust`: changes a unikernel needs: reloaders re-execute the program, so
  Django's `runserver` gets `--noreload` and `--reload` flags are dropped.

Options that take no value are listed per server, so that the positional
argument naming the app is found after any other option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class Server:
    name: str
    default_host: str
    default_port: int | None
    flags: frozenset[str] = frozenset()  # options that take no value
    port_options: tuple[str, ...] = ("--port",)
    host_options: tuple[str, ...] = ("--host",)
    bind_options: tuple[str, ...] = ()  # HOST:PORT
    port_env: tuple[str, ...] = ()  # variables the server reads its port from
    reload_flags: tuple[str, ...] = ("--reload",)
    workers_options: tuple[str, ...] = ()
    workers_env: tuple[str, ...] = ()
    min_processes: int = 1  # gunicorn: its master forks even one worker
    worker_calls: tuple[str, ...] = ("clone",)  # what its workers need from the policy
    app_dir_options: tuple[str, ...] = ()  # directories it puts on sys.path before importing the app


GUNICORN = Server(
    "gunicorn",
    "127.0.0.1",
    8000,
    flags=frozenset(
        [
            "--reload",
            "--spew",
            "--check-config",
            "--print-config",
            "--preload",
            "--no-sendfile",
            "--reuse-port",
            "--daemon",
            "-D",
            "--capture-output",
            "--enable-stdio-inheritance",
            "-R",
            "--disable-redirect-access-to-syslog",
            "--strip-header-spaces",
            "--suppress-ragged-eofs",
            "--do-handshake-on-connect",
            "--proxy-protocol",
            "-v",
            "--version",
            "-h",
            "--help",
        ]
    ),
    port_options=(),
    host_options=(),
    bind_options=("-b", "--bind"),
    port_env=("PORT",),
    workers_options=("-w", "--workers"),
    workers_env=("WEB_CONCURRENCY",),
    min_processes=2,
    app_dir_options=("--chdir", "--pythonpath"),
)
UVICORN = Server(
    "uvicorn",
    "127.0.0.1",
    8000,
    flags=frozenset(
        [
            "--reload",
            "--use-colors",
            "--no-use-colors",
            "--access-log",
            "--no-access-log",
            "--proxy-headers",
            "--no-proxy-headers",
            "--server-header",
            "--no-server-header",
            "--date-header",
            "--no-date-header",
            "--factory",
            "--version",
            "--help",
        ]
    ),
    workers_options=("--workers",),
    workers_env=("WEB_CONCURRENCY",),
    worker_calls=("clone", "execve"),  # multiprocessing's spawn starts a new interpreter per worker
    app_dir_options=("--app-dir",),
)
HYPERCORN = Server(
    "hypercorn",
    "127.0.0.1",
    8000,
    flags=frozenset(["--debug", "--reload", "--version", "-h", "--help"]),
    port_options=(),
    host_options=(),
    bind_options=("-b", "--bind"),
    workers_options=("-w", "--workers"),
    min_processes=2,  # one worker process unless -w 0
    worker_calls=("clone", "execve"),  # multiprocessing's spawn
)
WAITRESS = Server(
    "waitress-serve",
    "0.0.0.0",
    8080,
    flags=frozenset(
        [
            "--help",
            "--call",
            "--ipv4",
            "--no-ipv4",
            "--ipv6",
            "--no-ipv6",
            "--expose-tracebacks",
            "--no-expose-tracebacks",
            "--log-socket-errors",
            "--no-log-socket-errors",
        ]
    ),
    bind_options=("--listen",),
    reload_flags=(),
)
DAPHNE = Server(
    "daphne",
    "127.0.0.1",
    8000,
    flags=frozenset(["--proxy-headers", "--no-server-name", "-v", "--version", "-h", "--help"]),
    port_options=("-p", "--port"),
    host_options=("-b", "--bind"),
    reload_flags=(),
)
FLASK = Server(  # `flask run`
    "flask",
    "127.0.0.1",
    5000,
    flags=frozenset(
        [
            "--debug",
            "--no-debug",
            "--reload",
            "--no-reload",
            "--debugger",
            "--no-debugger",
            "--with-threads",
            "--without-threads",
            "--eager-loading",
            "--lazy-loading",
            "--help",
            "--version",
        ]
    ),
    port_options=("-p", "--port"),
    host_options=("-h", "--host"),
    port_env=("FLASK_RUN_PORT",),
    reload_flags=("--reload",),
)
FASTAPI = Server(  # `fastapi run` / `fastapi dev`
    "fastapi",
    "0.0.0.0",
    8000,
    flags=frozenset(["--reload", "--no-reload", "--proxy-headers", "--no-proxy-headers", "--help"]),
    workers_options=("--workers",),
    worker_calls=("clone", "execve"),
)
HTTP_SERVER = Server(  # python -m http.server [--bind ADDR] [PORT]
    "http.server",
    "0.0.0.0",
    8000,
    flags=frozenset({"--cgi", "-h", "--help"}),
    port_options=(),
    host_options=("-b", "--bind"),
    reload_flags=(),
)
DJANGO = Server(  # `manage.py runserver` / `django-admin runserver`
    "django",
    "127.0.0.1",
    8000,
    flags=frozenset(["--noreload", "--nothreading", "--ipv6", "-6", "--skip-checks", "--help"]),
    port_options=(),
    host_options=(),
    reload_flags=(),
)

AIOHTTP = Server(  # python -m aiohttp.web -H HOST -P PORT module:init_func
    "aiohttp.web",
    "localhost",
    8080,
    flags=frozenset(["-h", "--help"]),
    port_options=("-P", "--port"),
    host_options=("-H", "--hostname"),
    reload_flags=(),
)

# A command kiln does not know (`sanic server:app --port=8000`, `litestar run --port 8000`): the options most
# servers' CLIs take for where to listen. Nothing else is assumed of it: no app module, no default port.
GENERIC = Server(
    "the command",
    "0.0.0.0",
    None,
    port_options=("--port",),
    host_options=("--host",),
    bind_options=("--bind", "--listen"),
    reload_flags=(),
)

SERVERS: dict[str, Server] = {
    s.name: s for s in (GUNICORN, UVICORN, HYPERCORN, WAITRESS, DAPHNE, FLASK, FASTAPI, DJANGO, HTTP_SERVER, AIOHTTP)
}
SERVERS["waitress"] = WAITRESS  # python -m waitress


@dataclass
class Options:
    """A server's arguments, split into options (last value wins, all kept) and positionals."""

    values: dict[str, list[str]] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)

    def last(self, *names: str) -> str | None:
        found = [v for n in names for v in self.values.get(n, [])]
        return found[-1] if found else None

    def all(self, *names: str) -> list[str]:
        return [v for n in names for v in self.values.get(n, [])]


def parse(server: Server, args: list[str]) -> Options:
    opts = Options()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            opts.positionals += args[i + 1 :]
            break
        if arg.startswith("-") and len(arg) > 1:
            name, eq, value = arg.partition("=")
            if eq:
                opts.values.setdefault(name, []).append(value)
            elif name in server.flags:
                opts.values.setdefault(name, []).append("")
            elif len(name) > 2 and not name.startswith("--") and name[:2] in server.flags | _short_value(server):
                opts.values.setdefault(name[:2], []).append(name[2:])  # -w3, -b0.0.0.0:80
            elif i + 1 < len(args):
                opts.values.setdefault(name, []).append(args[i + 1])
                i += 1
            else:
                opts.values.setdefault(name, []).append("")
        else:
            opts.positionals.append(arg)
        i += 1
    return opts


def _short_value(server: Server) -> set[str]:
    return {o for o in (*server.bind_options, *server.port_options, *server.workers_options) if len(o) == 2}


def server_args(server: Server, args: list[str]) -> list[str]:
    """The arguments the server itself reads: `flask run ...` and `manage.py runserver ...` after the verb."""
    if server is FLASK or server is FASTAPI or server is DJANGO:
        for i, arg in enumerate(args):
            if arg in ("run", "dev", "runserver"):
                return args[i + 1 :]
    return args


# "module.path:attribute", "module.path", "module:create_app()"
_APP_SPEC = re.compile(
    r"^(?P<module>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?::[A-Za-z_][\w.]*(?:\(.*\))?)?$"
)


def app_modules(server: Server, args: list[str], env: Mapping[str, str]) -> list[str]:
    """The modules the server imports by name from its arguments (or environment)."""
    if server is DJANGO:
        return []  # manage.py names its settings itself (kiln.analyze.hints follows Django's strings)
    if server is FLASK:
        spec = parse(server, _before_verb(args)).last("--app", "-A") or env.get("FLASK_APP")
        specs = [spec] if spec else []
    elif server is FASTAPI:
        return []  # a path: kiln.analyze.command turns it into a module
    else:
        opts = parse(server, server_args(server, args))
        specs = opts.positionals[:1]
        if server is WAITRESS:
            specs = [p for p in opts.positionals if ":" in p or "." in p][:1]
        if server is GUNICORN and (worker := opts.last("-k", "--worker-class")):
            worker = GUNICORN_WORKERS.get(worker, worker)  # a name of gunicorn's, or a class by its path
            if "." in worker:
                specs.append(worker.rpartition(".")[0])
        if server is UVICORN or server is HYPERCORN:
            specs += [v.rpartition(":")[0] or v.rpartition(".")[0] for v in opts.all("--loop", "--http", "--ws")
                      if ":" in v]  # fmt: skip
    found = []
    for spec in specs:
        m = _APP_SPEC.match(spec.removesuffix(".py").replace("/", "."))
        if m:
            found.append(m.group("module"))
    return found


# gunicorn.workers.SUPPORTED_WORKERS: -k NAME loads the class by its path
GUNICORN_WORKERS = {
    "sync": "gunicorn.workers.sync.SyncWorker",
    "gevent": "gunicorn.workers.ggevent.GeventWorker",
    "gevent_wsgi": "gunicorn.workers.ggevent.GeventPyWSGIWorker",
    "gevent_pywsgi": "gunicorn.workers.ggevent.GeventPyWSGIWorker",
    "tornado": "gunicorn.workers.gtornado.TornadoWorker",
    "gthread": "gunicorn.workers.gthread.ThreadWorker",
    "asgi": "gunicorn.workers.gasgi.ASGIWorker",
}


def _before_verb(args: list[str]) -> list[str]:
    """`flask --app hello run --port 80`: the group's own options (before `run`)."""
    for i, arg in enumerate(args):
        if arg in ("run", "dev", "routes", "shell"):
            return args[:i]
    return args


def app_dirs(server: Server, args: list[str]) -> list[str]:
    """Directories (relative to the working directory) the server puts on sys.path first."""
    opts = parse(server, server_args(server, args))
    return [d for d in opts.all(*server.app_dir_options) if d]


@dataclass(frozen=True)
class Listen:
    ports: tuple[int, ...]
    hosts: tuple[str, ...]
    why: str  # "the command's --port", "uvicorn's default"


def _host_port(value: str) -> tuple[str, int] | None:
    if value.startswith(("unix:", "fd://")):
        return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    if not port.isdigit():
        return None
    return host, int(port)


def listens(server: Server, args: list[str], env: Mapping[str, str]) -> Listen | None:
    """Where the server will listen, as its arguments and environment say (or its defaults)."""
    opts = parse(server, server_args(server, args))
    if server is HTTP_SERVER:
        port = next((p for p in opts.positionals if p.isdigit()), None)
        host = opts.last(*server.host_options) or server.default_host
        return Listen(
            (int(port) if port else 8000,), (host,), "the command's PORT" if port else "http.server's default"
        )
    if server is DJANGO:
        addrport = next((p for p in opts.positionals if _host_port(p)), None)
        if addrport:
            host, port = _host_port(addrport) or ("", 0)
            return Listen((port,), (host or server.default_host,), "runserver's ADDR:PORT")
        return Listen((8000,), (server.default_host,), "runserver's default")
    binds = [hp for v in opts.all(*server.bind_options) if (hp := _host_port(v))]
    if binds:
        names = "/".join(o for o in server.bind_options if o in opts.values)
        return Listen(tuple(p for _, p in binds), tuple(h or "0.0.0.0" for h, _ in binds), f"the command's {names}")
    port = opts.last(*server.port_options)
    host = opts.last(*server.host_options) or server.default_host
    if server is WAITRESS and "--unix-socket" in opts.values:
        return None
    if port and port.isdigit():
        return Listen(
            (int(port),), (host,), f"the command's {'/'.join(o for o in server.port_options if o in opts.values)}"
        )
    for var in server.port_env:
        if env.get(var, "").isdigit():
            host = "0.0.0.0" if server is GUNICORN else host  # gunicorn binds 0.0.0.0:$PORT
            return Listen((int(env[var]),), (host,), f"${var}")
    if server.default_port is None:
        return None
    return Listen((server.default_port,), (host,), f"{server.name}'s default")


@dataclass(frozen=True)
class Forks:
    processes: int
    how: str  # "-w 3", "its master and 1 worker"
    calls: tuple[str, ...]  # what the syscall policy must let through


def forks(server: Server, args: list[str], env: Mapping[str, str]) -> Forks | None:
    """The worker processes the server will start (None: it serves in one process)."""
    opts = parse(server, server_args(server, args))
    given = opts.last(*server.workers_options)
    how = f"{next(o for o in server.workers_options if o in opts.values)} {given}" if given else ""
    if given is None:
        given = next((env[v] for v in server.workers_env if v in env), None)
        how = f"${next(v for v in server.workers_env if v in env)}={given}" if given is not None else ""
    workers = int(given) if given and given.isdigit() else None
    if server.min_processes > 1:  # a master and its workers, one by default
        if workers == 0 and server is HYPERCORN:
            return None  # -w 0: hypercorn serves in its own process
        n = workers or 1
        return Forks(n + 1, how or "one worker by default", server.worker_calls)
    if workers and workers > 1:
        return Forks(workers + 1, how, server.worker_calls)
    return None


def adjust(server: Server, args: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments a unikernel can run, one note per change)."""
    notes = []
    verb = next((v for v in ("runserver", "run", "dev") if v in args), None)
    off = {DJANGO: "--noreload", FLASK: "--no-reload", FASTAPI: "--no-reload"}.get(server)
    if off and verb and off not in args:
        i = args.index(verb)
        args = [*args[: i + 1], off, *args[i + 1 :]]
        notes.append(f"{verb} {off}: {server.name}'s reloader re-executes the program, and a unikernel runs one")
    dropped = [a for a in args if a in server.reload_flags]
    if dropped:
        args = [a for a in args if a not in server.reload_flags]
        notes.append(f"{' '.join(dropped)} dropped: a reloader re-executes the program, and an image never changes")
    return args, notes


_PORT_KEYS = frozenset({"port", "server.socket_port", "socket_port"})


def listens_in_source(path: Path) -> Listen | None:
    """Where an app file that starts its own server listens, as its source says: a call with a literal
    `port=5000` (Flask's and Flask-SocketIO's `run`, Bottle's `run`, `uvicorn.run`, aiohttp's `run_app`,
    waitress' `serve`), `.listen(8888)` (Tornado) or a settings dict's "port" (CherryPy's "server.socket_port"),
    with the `host=` beside it. Nothing is run."""
    import ast

    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return None
    ports: list[int] = []
    hosts: list[str] = []
    for node in ast.walk(tree):
        found: list[tuple[ast.expr | None, ast.expr | None]] = []  # (port, host)
        if isinstance(node, ast.Call):
            words = {k.arg: k.value for k in node.keywords if k.arg}
            port = words.get("port")
            func = node.func
            if port is None and isinstance(func, ast.Attribute) and func.attr == "listen" and len(node.args) == 1:
                port = node.args[0]
            found.append((port, words.get("host")))
        elif isinstance(node, ast.Dict):  # a server's settings as a dict: CherryPy's {"server.socket_port": 8080}
            found += [
                (v, None) for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value in _PORT_KEYS
            ]  # fmt: skip
        for port, host in found:
            if isinstance(port, ast.Constant) and isinstance(port.value, int) and 0 < port.value < 65536:
                ports.append(port.value)
                shown = host.value if isinstance(host, ast.Constant) and isinstance(host.value, str) else "0.0.0.0"
                hosts.append(shown)
    if not ports:
        return None
    return Listen(tuple(dict.fromkeys(ports)), tuple(dict.fromkeys(hosts)), f"{path.name}'s port=")


def loopback_only(listen: Listen) -> bool:
    return all(h in LOOPBACK for h in listen.hosts)
