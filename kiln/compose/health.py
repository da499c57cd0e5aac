"""A compose healthcheck's `test`, as people write it, turned into a check guest init runs itself.

A unikernel has no shell and runs no second program, so the probe tools that compose files name become
the same question asked in the server's own protocol by init (its probes.c and control.c), through the
control channel:

    ["HTTP", PORT, "/path"], curl -f URL, wget --spider URL     -> http: GET, a 2xx or 3xx status
    ["TCP", PORT], nc -z localhost PORT                         -> tcp: a socket listens on PORT
    pg_isready [-h H] [-p PORT] [-U U] [-d D]                   -> postgres: a startup packet, as PQping
    mysqladmin ping, mariadb-admin ping, healthcheck.sh --connect -> mysql: the server's greeting
    redis-cli [-h H] [-p PORT] [-a PW] ping                     -> redis: PING, +PONG

each in the CMD and the CMD-SHELL form. In a shell form, `|| exit 1` is what a failed check means anyway,
and `$VAR`, `${VAR}` and `$(cat /run/secrets/NAME)` may only stand for a password, a user or a database
name: the probes authenticate as no one, so they are dropped. Anything else a shell would do (pipes,
`&&`, redirections, other commands), a host other than the guest itself, or an option the tool has
that changes the question, is refused in one line naming the check.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from kiln.errors import UsageError

LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"}
_URL = re.compile(r"^https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::(\d+))?(/[^\s]*)?$")
_SECRET = re.compile(r"\$\(\s*cat\s+[^()\s;|&]+\s*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_SHELL = re.compile(r"[;&|<>`]|\$\(|\$\{|\n")
USAGE = (
    'use ["HTTP", PORT, "/path"], ["TCP", PORT], curl/wget of a URL on localhost, pg_isready, mysqladmin ping, '
    "healthcheck.sh --connect or redis-cli ping (a unikernel has no shell to run another command in)"
)


@dataclass(frozen=True)
class Probe:
    kind: str  # http, tcp, postgres, mysql, redis
    port: int
    path: str = "/"


def translate(test: object, where: str) -> Probe | None:
    """The check `test` asks for (None: NONE, no check); UsageError in one line if kiln cannot run it."""
    words = [str(w) for w in test] if isinstance(test, list) else ["CMD-SHELL", str(test or "")]
    if not words:
        raise UsageError(f"{where}: an empty test: {USAGE}")
    form = words[0].upper()
    if form == "NONE":
        return None
    if form in ("HTTP", "TCP"):
        return _kiln_form(form, words[1:], where, test)
    if form not in ("CMD", "CMD-SHELL"):
        raise UsageError(f"{where}: {test!r}: {USAGE}")
    argv = _shell_words(" ".join(words[1:]), where, test) if form == "CMD-SHELL" else words[1:]
    if not argv:
        raise UsageError(f"{where}: {test!r}: {USAGE}")
    tool = argv[0].rsplit("/", 1)[-1]
    translate_tool = TOOLS.get(tool)
    if translate_tool is None:
        raise UsageError(f"{where}: {test!r}: kiln cannot run {tool} in a unikernel: {USAGE}")
    return translate_tool(argv[1:], f"{where}: {test!r}")


def _kiln_form(form: str, rest: list[str], where: str, test: object) -> Probe:
    if not rest or not rest[0].isdigit():
        raise UsageError(f"{where}: {test!r}: {USAGE}")
    path = rest[1] if form == "HTTP" and len(rest) > 1 else "/"
    if not path.startswith("/"):
        raise UsageError(f"{where}: {path!r} is not a path (it starts with /)")
    return Probe(form.lower(), _port(rest[0], where), path)


def _shell_words(line: str, where: str, test: object) -> list[str]:
    """A CMD-SHELL line as the words of one command, or a refusal naming what a shell would have done."""
    line = re.sub(r"\s*\|\|\s*exit(?:\s+1)?\s*$", "", line.strip())  # what a failed check means anyway
    plain = _SECRET.sub("kiln-dropped", line)  # a password, a user, a database: the probes use none
    if _SHELL.search(plain):
        raise UsageError(f"{where}: {test!r} needs a shell (pipes, &&, redirections, command substitution): "
                         f"{USAGE}")  # fmt: skip
    try:
        return shlex.split(plain)
    except ValueError as err:
        raise UsageError(f"{where}: {test!r}: {err}") from None


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"{where}: {text!r} is not a port")
    return int(text)


def _options(
    args: list[str], valued: dict[str, str], flags: set[str], where: str, attached: frozenset[str] = frozenset()
) -> tuple[dict[str, str], list[str]]:
    """Parse a tool's options: valued maps each spelling (-p, --port) to a key; -pVALUE, --port=VALUE and
    -p VALUE all work, but an `attached` one takes its value only in the same word (mysqladmin's -p alone
    asks for a password; the next word is not it). Returns (key -> value, the other words). An option not
    listed is refused."""
    found: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, value = word.partition("=")
        if word in attached:
            pass
        elif word.startswith("--") and name in valued:
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            found[valued[name]] = value
        elif word.startswith("--") and (word in flags or name in flags):
            pass
        elif word.startswith("-") and not word.startswith("--") and len(word) >= 2 and word[:2] in valued:
            value = word[2:]
            if not value and word[:2] not in attached:
                i += 1
                value = args[i] if i < len(args) else ""
            found[valued[word[:2]]] = value
        elif word.startswith("-") and word in flags:
            pass
        elif word.startswith("-"):
            raise UsageError(f"{where}: {word}: an option kiln's check does not ask (its own: {USAGE})")
        else:
            rest.append(word)
        i += 1
    return found, rest


def _local(found: dict[str, str], where: str) -> None:
    host = found.get("host")
    if host is not None and host not in LOCAL_HOSTS and not host.startswith("/"):  # /run/...: its socket here
        raise UsageError(f"{where}: asks host {host}: a service's healthcheck asks the service itself (localhost)")


def _pg_isready(args: list[str], where: str) -> Probe:
    valued = {"-h": "host", "--host": "host", "-p": "port", "--port": "port", "-U": "user", "--username": "user",
              "-d": "db", "--dbname": "db", "-t": "timeout", "--timeout": "timeout"}  # fmt: skip
    found, rest = _options(args, valued, {"-q", "--quiet"}, where)
    if rest:
        raise UsageError(f"{where}: pg_isready takes no words ({' '.join(rest)})")
    _local(found, where)
    return Probe("postgres", _port(found.get("port", "5432"), where))


MYSQL_VALUED = {"-h": "host", "--host": "host", "-P": "port", "--port": "port", "-u": "user", "--user": "user",
                "-p": "password", "--password": "password", "--protocol": "protocol",
                "--connect-timeout": "timeout", "--connect_timeout": "timeout"}  # fmt: skip


def _mysqladmin(args: list[str], where: str) -> Probe:
    found, rest = _options(args, MYSQL_VALUED, {"-s", "--silent", "--no-beep"}, where, frozenset({"-p", "--password"}))
    if rest != ["ping"]:
        raise UsageError(f"{where}: mysqladmin {' '.join(rest)}: kiln runs mysqladmin ping only")
    _local(found, where)
    return Probe("mysql", _port(found.get("port", "3306"), where))


def _mariadb_healthcheck(args: list[str], where: str) -> Probe:
    """The official mariadb image's healthcheck.sh: --connect only (its other tests read the server's state
    through SQL, as an account kiln's probe has not)."""
    if "--connect" not in args or set(args) - {"--connect", "--su-mysql"}:
        raise UsageError(f"{where}: healthcheck.sh: kiln runs its --connect test only")
    return Probe("mysql", 3306)


def _redis_cli(args: list[str], where: str) -> Probe:
    valued = {"-h": "host", "-p": "port", "-a": "password", "--pass": "password", "--user": "user"}
    found, rest = _options(args, valued, {"--no-auth-warning"}, where)
    if [w.lower() for w in rest] != ["ping"]:
        raise UsageError(f"{where}: redis-cli {' '.join(rest)}: kiln runs redis-cli ping only")
    _local(found, where)
    return Probe("redis", _port(found.get("port", "6379"), where))


def _nc(args: list[str], where: str) -> Probe:
    found, rest = _options(args, {"-w": "timeout"}, {"-z", "-v", "-zv", "-vz"}, where)
    if not any(a in ("-z", "-zv", "-vz") for a in args) or len(rest) != 2:
        raise UsageError(f"{where}: kiln runs nc -z HOST PORT only")
    _local({"host": rest[0]}, where)
    del found
    return Probe("tcp", _port(rest[1], where))


def _fetch(tool: str) -> Callable[[list[str], str], Probe]:
    def fetch(args: list[str], where: str) -> Probe:
        urls = [w for w in args if w.startswith(("http://", "https://"))]
        m = _URL.match(urls[0]) if len(urls) == 1 else None
        if m is None:
            raise UsageError(f"{where}: {tool} of one URL on localhost only")
        port = m.group(1) or ("443" if urls[0].startswith("https") else "80")
        return Probe("http", _port(port, where), m.group(2) or "/")

    return fetch


TOOLS: dict[str, Callable[[list[str], str], Probe]] = {
    "pg_isready": _pg_isready,
    "mysqladmin": _mysqladmin,
    "mariadb-admin": _mysqladmin,
    "healthcheck.sh": _mariadb_healthcheck,
    "redis-cli": _redis_cli,
    "nc": _nc,
    "curl": _fetch("curl"),
    "wget": _fetch("wget"),
}
