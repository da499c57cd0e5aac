"""A compose file, read: validated against the Compose Specification's schema, then the subset
kiln runs, each key it does not run refused in one line that names the key and its service.

Supported (the rest of Compose is valid but refused):
    several files (-f, COMPOSE_FILE, compose.override.yaml), extends and profiles: merged and resolved as
    the Compose Specification says (kiln.compose.merge)
    name
    services.<s>.image          kiln's store, else a container image from its registry (`redis:7` as Docker
                                means it: docker.io/library/redis:7), built by kiln.oci
    services.<s>.build          a directory (or {context, dockerfile, target, args}): kiln builds a Python
                                app itself, else the Dockerfile (kiln.discover, kiln.oci.builder)
    services.<s>.command / entrypoint / working_dir / user / expose
                                over the container image's config, as `docker run` does (an image kiln
                                builds from a registry or a Dockerfile)
    services.<s>.env_file       KEY=VALUE files, under environment
    services.<s>.stop_signal    what a stop sends the app first
    services.<s>.container_name the instance's name
    services.<s>.labels         kept in the project's record (`kiln compose ps --json`)
    services.<s>.networks       a list, or {name: {aliases: [...]}}: a NIC on each (default: the project's
                                `default` network); a service reaches another only on a network they share,
                                and /etc/hosts names those only (network_mode: refused)
    services.<s>.ports          "[IP:]HOST:GUEST" or {target, published, host_ip}; TCP only
    services.<s>.environment    list of KEY=VALUE or a mapping
    services.<s>.depends_on     list, or {service: {condition: service_started | service_healthy |
                                service_completed_successfully}}
    services.<s>.healthcheck    test: ["HTTP", PORT, "/path"] or ["TCP", PORT], or the probe people write
                                (curl/wget, pg_isready, mysqladmin ping, healthcheck.sh --connect,
                                redis-cli ping, nc -z; CMD or CMD-SHELL), which init asks in the server's
                                own protocol (kiln.compose.health): a unikernel has no shell or second
                                program to run; interval, timeout, retries, start_period
    services.<s>.volumes        "NAME:/path" (a named volume, on a volume the image declares), or
                                "./host:/path[:ro]" (a host directory on such a volume, or a host file or
                                directory bound over one the image holds: the root's digest unchanged)
    services.<s>.restart        no | always | on-failure[:N] | unless-stopped (as always)
    services.<s>.mem_limit      e.g. 64m
    services.<s>.tmpfs          directories of the image under a fresh tmpfs; read_only: true (it always is)
    services.<s>.secrets        names, or {source, target, uid, gid, mode}: at /run/secrets (kiln.compose.secrets)
    volumes.<name>              named volumes ({} or null)
    secrets.<name>              {file: PATH} or {environment: VAR}
    networks.<name>             {} or {internal: true} (no way out: only the published ports reach in)
Variables are interpolated as Compose does: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, $$, from the
shell's environment over the project directory's .env.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kiln.compose import health, merge
from kiln.compose import secrets as secrets_mod
from kiln.errors import UsageError
from kiln.guest.protocol import MAX_LANS
from kiln.targets.portmap import PortMap
from kiln.units import parse_duration, parse_memory

SCHEMA = Path(__file__).parent / "schema" / "compose-spec.json"
SERVICE_KEYS = {
    "image",
    "build",
    "ports",
    "environment",
    "depends_on",
    "healthcheck",
    "volumes",
    "restart",
    "profiles",  # which profiles run the service (kiln.compose.merge): the services left are those that run
    "mem_limit",
    "command",
    "entrypoint",
    "env_file",
    "working_dir",
    "user",
    "stop_signal",
    "expose",
    "container_name",
    "labels",
    "networks",
    "secrets",
    "tmpfs",
    "read_only",
}
TOP_KEYS = {"name", "services", "volumes", "version", "networks", "secrets"}  # version: obsolete in Compose, ignored
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Healthcheck:
    kind: str  # http, tcp, postgres, mysql, redis (kiln.compose.health)
    port: int
    path: str = "/"
    interval: float = 1.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 0.0


@dataclass(frozen=True)
class Network:
    name: str
    internal: bool = False  # no way out of the project (QEMU's user network restricted)


@dataclass(frozen=True)
class Build:
    context: Path
    dockerfile: Path | None = None  # given: the Dockerfile is built, even for a Python app
    target: str | None = None
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None
    build: Build | None
    ports: tuple[PortMap, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    healthcheck: Healthcheck | None = None
    volumes: tuple[tuple[str, str, str, bool], ...] = ()  # (kind "volume" | "bind", source, guest path, read-only)
    restart: str = "no"
    memory_mib: int | None = None
    command: tuple[str, ...] | None = None
    entrypoint: str | None = None
    working_dir: str | None = None
    user: str | None = None
    stop_signal: str | None = None
    expose: tuple[int, ...] = ()
    container_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    secrets: tuple[secrets_mod.SecretUse, ...] = ()
    networks: tuple[tuple[str, tuple[str, ...]], ...] = (("default", ()),)  # (network, its aliases there)
    tmpfs: tuple[str, ...] = ()  # directories of the image under a fresh tmpfs

    @property
    def image_ref(self) -> str:
        return self.image or self.name

    @property
    def overrides(self) -> bool:
        """Does it change its image's config (what kiln applies when it builds the image for it)?"""
        return any(v is not None for v in (self.command, self.entrypoint, self.working_dir, self.user)) or bool(
            self.expose
        )


@dataclass(frozen=True)
class Project:
    name: str
    directory: Path  # where the compose file is: relative paths start here
    services: dict[str, Service]
    volumes: tuple[str, ...] = ()
    secrets: dict[str, secrets_mod.Secret] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=lambda: {"default": Network("default")})

    def order(self) -> list[str]:
        """Service names, every one after those it depends on (a cycle is an error)."""
        done: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                cycle = [*visiting[visiting.index(name) :], name]
                raise UsageError(f"depends_on has a cycle: {' -> '.join(cycle)}")
            visiting.append(name)
            for dep in sorted(self.services[name].depends_on):
                visit(dep)
            visiting.pop()
            done.append(name)

        for name in sorted(self.services):
            visit(name)
        return done


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation, in every string of the document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        have = env.get(name)
        if m.group(3) == ":-":
            return have or m.group(4)
        if m.group(3) == "-":
            return m.group(4) if have is None else have
        return have or ""

    return _VAR.sub(one, value)


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def schema_problems(doc: Any, source: str) -> list[str]:
    """Every error the Compose Specification's own schema finds, one line each, with the path of its key."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    return [f"{source} is not valid Compose: {_where(err.absolute_path)}: {err.message}" for err in errors]


def validate(doc: Any, source: str) -> None:
    """The Compose Specification's own schema; the first error, with the path of its key."""
    problems = schema_problems(doc, source)
    if problems:
        raise UsageError(problems[0])


def dotenv(directory: Path) -> dict[str, str]:
    """The project directory's .env, as Compose reads it for interpolation (KEY=VALUE lines; the shell's
    variables win over it)."""
    path = directory / ".env"
    return _env_lines(path) if path.is_file() else {}


def resolved(
    paths: Path | Sequence[Path], env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The files read, interpolated (from `env`, else the first file's directory's .env and the shell's
    environment) and merged, their `extends` followed and the services of inactive profiles left out
    (kiln.compose.merge), as `kiln compose config` prints it; not yet validated."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    first = files[0]
    if env is None:
        env = {**dotenv(first.resolve().parent), **os.environ}
    docs = [_interpolated(path, env) for path in files]
    doc = merge.merge_files(docs)
    doc = merge.resolve_extends(doc, first.resolve().parent, lambda other: _interpolated(other, env))
    return merge.with_profiles(doc, merge.active_profiles(profiles, env))


def _interpolated(path: Path, env: dict[str, str]) -> dict[str, Any]:
    doc = interpolate(_yaml(path), env)
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: not a compose file (its top level is not a mapping)")
    return doc


def _ports(raw: list[Any], service: str) -> tuple[PortMap, ...]:
    out = []
    for item in raw:
        if isinstance(item, dict):
            if item.get("protocol", "tcp") != "tcp":
                raise UsageError(f"services.{service}.ports: kiln publishes TCP ports only")
            if "published" not in item:
                raise UsageError(f"services.{service}.ports: {item} publishes no host port (give published)")
            spec = f"{item.get('host_ip', '0.0.0.0')}:{item['published']}:{item['target']}"
        else:
            spec = str(item)
            if spec.endswith("/udp"):
                raise UsageError(f"services.{service}.ports: {spec}: kiln publishes TCP ports only")
            spec = spec.removesuffix("/tcp")
            if ":" not in spec:
                raise UsageError(f"services.{service}.ports: {spec} publishes no host port (expected HOST:GUEST)")
        try:
            out.append(PortMap.parse(spec))
        except UsageError as err:
            raise UsageError(f"services.{service}.ports: {err}") from None
    return tuple(out)


def _environment(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {k: "" if v is None else str(v) for k, v in raw.items()}
    out = {}
    for item in raw or []:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def _duration(text: Any, where: str) -> float:
    try:
        return parse_duration(str(text))
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None


def _healthcheck(raw: dict[str, Any], service: str) -> Healthcheck | None:
    where = f"services.{service}.healthcheck"
    for key in raw:
        if key not in ("test", "interval", "timeout", "retries", "start_period", "disable"):
            raise UsageError(f"{where}.{key}: valid Compose, but kiln does not support it")
    if raw.get("disable"):
        return None
    probe = health.translate(raw.get("test"), f"{where}.test")
    if probe is None:
        return None
    return Healthcheck(
        kind=probe.kind,
        port=probe.port,
        path=probe.path,
        interval=_duration(raw.get("interval", "1s"), f"{where}.interval"),
        timeout=_duration(raw.get("timeout", "5s"), f"{where}.timeout"),
        retries=int(raw.get("retries", 3)),
        start_period=_duration(raw.get("start_period", "0s"), f"{where}.start_period"),
    )


def _volumes(raw: list[Any], service: str, directory: Path, named: set[str]) -> tuple[tuple[str, str, str, bool], ...]:
    """NAME:/path (a named volume) and ./host:/path[:ro] (a bind: a directory on a volume the image declares,
    or a file or directory over one the image holds), short or long (type, source, target, read_only)."""
    out = []
    for item in raw:
        if isinstance(item, dict):
            kind, source, target = item.get("type", "volume"), str(item.get("source", "")), str(item["target"])
            read_only = bool(item.get("read_only", False))
            extra = sorted(set(item) - {"type", "source", "target", "read_only", "bind"})
            if extra:
                raise UsageError(f"services.{service}.volumes.{extra[0]}: valid Compose, but kiln does not support it")
        else:
            source, sep, rest = str(item).partition(":")
            target, _, mode = rest.partition(":")
            if not sep:
                raise UsageError(f"services.{service}.volumes: {item!r} names no source (NAME:/path or ./dir:/path)")
            if mode not in ("", "ro", "rw"):
                raise UsageError(f"services.{service}.volumes: {item!r}: mode {mode!r} (kiln knows ro and rw)")
            read_only = mode == "ro"
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        if not target.startswith("/"):
            raise UsageError(f"services.{service}.volumes: {target!r} is not an absolute path in the guest")
        if kind == "bind":
            host = (directory / os.path.expanduser(source)).resolve()
            if not host.exists():
                raise UsageError(f"services.{service}.volumes: {host} does not exist")
            if not (host.is_dir() or host.is_file()):
                raise UsageError(f"services.{service}.volumes: {host} is neither a file nor a directory")
            out.append(("bind", str(host), target, read_only))
        elif kind == "volume":
            if source not in named:
                raise UsageError(f"services.{service}.volumes: volume {source!r} is not declared under volumes")
            out.append(("volume", source, target, read_only))
        else:
            raise UsageError(f"services.{service}.volumes: type {kind!r}: kiln mounts volumes and binds only")
    return tuple(out)


def _tmpfs(raw: Any, service: str) -> tuple[str, ...]:
    """tmpfs: a path or a list of them (options after a colon are Docker's; kiln's tmpfs is mode 1777)."""
    items = [raw] if isinstance(raw, str) else list(raw or [])
    out = []
    for item in items:
        path = str(item).split(":", 1)[0]
        if not path.startswith("/") or " " in path:
            raise UsageError(f"services.{service}.tmpfs: {item!r} is not an absolute path in the guest")
        out.append(path)
    return tuple(out)


def _memory(raw: Any, service: str) -> int | None:
    if raw is None:
        return None
    try:
        return parse_memory(str(raw))
    except ValueError as err:
        raise UsageError(f"services.{service}.mem_limit: {err}") from None


def _words(raw: Any, where: str) -> tuple[str, ...] | None:
    """command/entrypoint: a list as it is, a string split as Compose splits it (no shell)."""
    if raw is None:
        return None
    if isinstance(raw, list):
        return tuple(str(w) for w in raw)
    import shlex

    try:
        return tuple(shlex.split(str(raw)))
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None


def _env_files(raw: Any, directory: Path, service: str) -> dict[str, str]:
    """env_file: one path or a list (of paths, or {path, required}); KEY=VALUE lines, later files win."""
    items = raw if isinstance(raw, list) else [raw]
    out: dict[str, str] = {}
    for item in items:
        path, required = (item.get("path"), item.get("required", True)) if isinstance(item, dict) else (item, True)
        file = (directory / str(path)).resolve()
        if not file.is_file():
            if required:
                raise UsageError(f"services.{service}.env_file: {file} does not exist")
            continue
        out.update(_env_lines(file))
    return out


def _env_lines(file: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments, blank lines and `export ` allowed; one pair of quotes taken off)."""
    out = {}
    for number, line in enumerate(file.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.removeprefix("export ").partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key.strip()):
            raise UsageError(f"{file}:{number}: not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def _networks(raw: Any, service: str, declared: dict[str, Network]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A service's networks (a list, or a mapping with aliases); none named: the project's default network."""
    where = f"services.{service}.networks"
    items = {str(n): None for n in raw} if isinstance(raw, list) else dict(raw or {})
    if not items:
        return (("default", ()),)
    out = []
    for name, spec in items.items():
        if name not in declared and name != "default":
            raise UsageError(f"{where}: {name} is not declared under networks")
        spec = spec or {}
        extra = sorted(set(spec) - {"aliases"})
        if extra:
            raise UsageError(f"{where}.{name}.{extra[0]}: valid Compose, but kiln does not support it")
        aliases = tuple(str(a) for a in spec.get("aliases") or ())
        for alias in aliases:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", alias):
                raise UsageError(f"{where}.{name}.aliases: {alias!r} is not a host name")
        out.append((name, aliases))
    if len(out) > MAX_LANS:
        raise UsageError(f"{where}: a service is on at most {MAX_LANS} networks (it has {len(out)})")
    return tuple(out)


def _declared_networks(raw: Any) -> dict[str, Network]:
    out = {"default": Network("default")}
    for name, spec in (raw or {}).items():
        spec = spec or {}
        where = f"networks.{name}"
        if spec.get("external"):
            raise UsageError(f"{where}: external networks are another project's: kiln makes each project's own")
        extra = sorted(set(spec) - {"internal", "driver", "name", "labels", "external"})
        if extra:
            raise UsageError(f"{where}.{extra[0]}: valid Compose, but kiln does not support it")
        if spec.get("driver", "bridge") != "bridge":
            raise UsageError(f"{where}.driver: {spec['driver']}: kiln's networks are bridges (a switch per network)")
        out[str(name)] = Network(str(name), internal=bool(spec.get("internal", False)))
    return out


def _restart(raw: str, service: str) -> str:
    mode, _, count = raw.partition(":")
    if mode == "unless-stopped":
        return "always"  # kiln has no daemon to outlive: a stop is the only stop
    if mode in ("no", "always", "on-failure") and (not count or (mode == "on-failure" and count.isdigit())):
        return raw
    raise UsageError(f"services.{service}.restart: {raw!r} (expected no, always, on-failure[:N], unless-stopped)")


def _build(raw: Any, directory: Path, service: str) -> Build | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        return Build(context=(directory / str(raw)).resolve())
    extra = sorted(set(raw) - {"context", "dockerfile", "target", "args"})
    if extra:
        raise UsageError(f"services.{service}.build.{extra[0]}: valid Compose, but kiln does not support it")
    context = (directory / str(raw.get("context", "."))).resolve()
    dockerfile = raw.get("dockerfile")
    args = raw.get("args") or {}
    if isinstance(args, list):
        args = dict(str(a).partition("=")[::2] for a in args)
    return Build(
        context=context,
        dockerfile=(context / str(dockerfile)).resolve() if dockerfile else None,
        target=raw.get("target"),
        args={str(k): str(v) for k, v in args.items()},
    )


def load(
    paths: Path | Sequence[Path],
    name: str | None = None,
    env: dict[str, str] | None = None,
    profiles: tuple[str, ...] = (),
) -> Project:
    """Read, interpolate, merge and validate compose files (relative paths are the first's); refuse what kiln
    does not run."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    path = files[0]
    if env is None:
        env = {**dotenv(path.resolve().parent), **os.environ}
    doc = resolved(files, env, profiles)
    validate(doc, str(path) if len(files) == 1 else " + ".join(map(str, files)))
    for key in doc:
        if key not in TOP_KEYS and not key.startswith("x-"):
            raise UsageError(f"{key}: valid Compose, but kiln does not support it")
    networks = _declared_networks(doc.get("networks"))
    project = name or doc.get("name") or path.resolve().parent.name
    project = re.sub(r"[^a-z0-9_-]", "", project.lower())
    if not NAME_RE.match(project):
        raise UsageError(f"invalid project name {project!r} (lower-case letters, digits, - and _)")
    named = set((doc.get("volumes") or {}).keys())
    services: dict[str, Service] = {}
    directory = path.resolve().parent
    declared = secrets_mod.declared(doc.get("secrets"), directory, env)
    published: dict[int, str] = {}
    for svc, raw in (doc.get("services") or {}).items():
        service = _service(svc, raw, directory, named, networks, declared)
        for p in service.ports:
            if p.host in published:
                raise UsageError(f"host port {p.host} is published twice (services {published[p.host]} and {svc})")
            published[p.host] = svc
        services[svc] = service
    _check_depends(services)
    used = {net for service in services.values() for net, _ in service.networks}
    if len(used) > 250:
        raise UsageError("a project has at most 250 networks")
    result = Project(name=project, directory=directory, services=services, volumes=tuple(sorted(named)),
                     secrets=declared, networks={n: v for n, v in networks.items() if n in used})  # fmt: skip
    result.order()  # a cycle is an error now, before anything starts
    return result


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{at}: not YAML: {getattr(err, 'problem', err)}") from None


def _service(
    svc: str, raw: dict[str, Any], directory: Path, named: set[str], networks: dict[str, Network],
    declared: dict[str, secrets_mod.Secret],
) -> Service:  # fmt: skip
    """One service of the file, checked (its keys, its networks, its dependencies' conditions)."""
    if not NAME_RE.match(svc):
        raise UsageError(f"services.{svc}: a service name is lower-case letters, digits, - and _")
    for key in raw:
        if key not in SERVICE_KEYS and not key.startswith("x-"):
            why = ": kiln's services are on the project's networks" if key == "network_mode" else ""
            raise UsageError(f"services.{svc}.{key}: valid Compose, but kiln does not support it{why}")
    build = _build(raw.get("build"), directory, svc)
    on = _networks(raw.get("networks"), svc, networks)
    depends = raw.get("depends_on") or {}
    if isinstance(depends, list):
        depends = {d: {"condition": "service_started"} for d in depends}
    conditions = {}
    for dep, how in depends.items():
        condition = how.get("condition", "service_started")
        if condition not in ("service_started", "service_healthy", "service_completed_successfully"):
            raise UsageError(f"services.{svc}.depends_on.{dep}.condition: {condition} is not supported by kiln")
        conditions[dep] = condition
    entrypoint = _words(raw.get("entrypoint"), f"services.{svc}.entrypoint")
    if entrypoint is not None and len(entrypoint) > 1:
        # as docker run --entrypoint: the program; the rest goes before the command's words
        raw["command"] = [*entrypoint[1:], *(_words(raw.get("command"), "") or ())]
    expose = tuple(int(str(p).split("/")[0]) for p in raw.get("expose") or () if str(p).split("/")[0].isdigit())
    service = Service(
        name=svc,
        image=raw.get("image"),
        build=build,
        ports=_ports(raw.get("ports") or [], svc),
        environment={**_env_files(raw["env_file"], directory, svc), **_environment(raw.get("environment"))}
        if raw.get("env_file")
        else _environment(raw.get("environment")),
        depends_on=conditions,
        healthcheck=_healthcheck(raw["healthcheck"], svc) if raw.get("healthcheck") else None,
        volumes=_volumes(raw.get("volumes") or [], svc, directory, named),
        restart=_restart(str(raw.get("restart", "no")), svc),
        memory_mib=_memory(raw.get("mem_limit"), svc),
        command=_words(raw.get("command"), f"services.{svc}.command"),
        entrypoint=entrypoint[0] if entrypoint else None,
        working_dir=raw.get("working_dir"),
        user=str(raw["user"]) if raw.get("user") is not None else None,
        stop_signal=raw.get("stop_signal"),
        expose=expose,
        container_name=raw.get("container_name"),
        labels=_environment(raw.get("labels")),
        secrets=secrets_mod.uses(raw.get("secrets"), svc, declared),
        networks=on,
        tmpfs=_tmpfs(raw.get("tmpfs"), svc),
    )
    if raw.get("read_only") is False:
        raise UsageError(f"services.{svc}.read_only: false: a kiln image's root is always read-only (give what the "
                         "app writes as volumes or tmpfs)")  # fmt: skip
    if service.container_name is not None and not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$",
                                                          service.container_name):  # fmt: skip
        raise UsageError(f"services.{svc}.container_name: {service.container_name!r} is not an instance name")
    return service


def _check_depends(services: dict[str, Service]) -> None:
    for svc, service in services.items():
        for dep in service.depends_on:
            if dep not in services:
                raise UsageError(f"services.{svc}.depends_on: no service named {dep}")
            if service.depends_on[dep] == "service_healthy" and services[dep].healthcheck is None:
                raise UsageError(f"services.{svc}.depends_on.{dep}: service_healthy, but {dep} has no healthcheck")
