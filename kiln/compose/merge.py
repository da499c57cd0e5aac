"""Several compose files, `extends` and `profiles` made into the one document kiln runs, by the Compose
Specification's own rules (its merge.md, extends.md and profiles.md), as `docker compose config` shows it.

- **Files** (`-f a.yaml -f b.yaml`, COMPOSE_FILE, or compose.yaml with its compose.override.yaml) merge in
  order: mappings entry by entry, sequences appended, scalars overridden. `command`, `entrypoint` and
  `healthcheck.test` are replaced, not appended. `ports`, `volumes`, `secrets` and `configs` are unique by
  their key (ports: the whole mapping; volumes: the target; secrets and configs: the target, else the source):
  a later entry replaces the earlier one with its key. Where one file writes the short form and another the
  long one (`environment`, `labels` and `depends_on` as a list or a mapping, `build` as a string or a mapping,
  a service's `networks` as a list or a mapping), both are expanded first. Relative paths are the first file's.
- **extends** (`{service, file?}`): the service named, from this document or from `file` (its own relative
  paths made the extending file's), is the base the extending service's own keys merge over, by the same
  rules; chains are followed, and a cycle is an error.
- **profiles**: a service that names profiles runs only when one of them is active (`--profile`,
  COMPOSE_PROFILES; `*` activates every one); one that names none always runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiln.errors import UsageError

REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}
UNIQUE = {"ports", "volumes", "secrets", "configs"}
EXPANDED = {"environment", "labels", "depends_on", "networks", "build"}


def _volume_key(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("target", ""))
    parts = str(item).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _named_key(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("target") or item.get("source", ""))
    return str(item)


def _port_key(item: Any) -> str:
    return repr(sorted(item.items())) if isinstance(item, dict) else str(item)


KEYS: dict[str, Callable[[Any], str]] = {
    "ports": _port_key,
    "volumes": _volume_key,
    "secrets": _named_key,
    "configs": _named_key,
}


def _expanded(key: str, value: Any) -> Any:
    """The long form of a service attribute written either way (a list as a mapping; build's string)."""
    if key == "build" and isinstance(value, str):
        return {"context": value}
    if not isinstance(value, list):
        return value
    if key in ("environment", "labels"):
        out: dict[str, Any] = {}
        for item in value:
            name, sep, text = str(item).partition("=")
            out[name] = text if sep else None
        return out
    if key == "depends_on":
        return {str(name): {"condition": "service_started"} for name in value}
    if key == "networks":
        return {str(name): None for name in value}
    return value


def merge(base: Any, over: Any, path: tuple[str, ...] = ()) -> Any:
    """`over` merged into `base` (neither changed), as the Compose Specification merges two files."""
    if len(path) >= 3 and path[0] == "services" and path[2:] in REPLACED:
        return copy.deepcopy(over)
    service_key = path[2] if len(path) == 3 and path[0] == "services" else None
    forms_differ = service_key in EXPANDED and type(base) is not type(over)
    keyed_lists = service_key in ("environment", "labels", "depends_on") and isinstance(base, list)
    if forms_differ or keyed_lists:  # merged by their keys, in the long form
        base, over = _expanded(str(service_key), base), _expanded(str(service_key), over)
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = merge(out[key], value, (*path, str(key))) if key in out else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(over, list):
        if service_key in UNIQUE:
            key_of = KEYS[service_key]
            later = {key_of(item) for item in over}
            return [copy.deepcopy(i) for i in base if key_of(i) not in later] + copy.deepcopy(over)
        return copy.deepcopy(base) + copy.deepcopy(over)
    return copy.deepcopy(over)


def merge_files(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The files' documents, merged in order."""
    out: dict[str, Any] = {}
    for doc in docs:
        out = merge(out, doc)
    return out


# ---- extends ---------------------------------------------------------------------------------------------


def _rebased(service: dict[str, Any], source: Path, target: Path) -> dict[str, Any]:
    """A service from a file in `source` made relative to `target`: its build context, env files, and the
    sources of its binds."""
    if source == target:
        return service
    out = copy.deepcopy(service)

    def moved(text: str) -> str:
        if text.startswith("/") or text.startswith("~") or "://" in text:
            return text
        return str((source / text).resolve())

    build = out.get("build")
    if isinstance(build, str):
        out["build"] = moved(build)
    elif isinstance(build, dict) and "context" in build:
        build["context"] = moved(str(build["context"]))
    env_file = out.get("env_file")
    if isinstance(env_file, str):
        out["env_file"] = moved(env_file)
    elif isinstance(env_file, list):
        out["env_file"] = [moved(e) if isinstance(e, str) else {**e, "path": moved(str(e.get("path", "")))}
                           for e in env_file]  # fmt: skip
    volumes = []
    for item in out.get("volumes") or []:
        if isinstance(item, str) and item.startswith("."):
            src, sep, rest = item.partition(":")
            item = moved(src) + sep + rest
        elif isinstance(item, dict) and item.get("type") == "bind" and not str(item.get("source", "/")).startswith("/"):
            item = {**item, "source": moved(str(item["source"]))}
        volumes.append(item)
    if volumes:
        out["volumes"] = volumes
    return out


def resolve_extends(doc: dict[str, Any], directory: Path, read: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Every service's `extends` resolved (`read`: another file's document, interpolated)."""
    services = doc.get("services") or {}
    out = copy.deepcopy(doc)
    done: dict[tuple[Path, str], dict[str, Any]] = {}
    files: dict[Path, dict[str, Any]] = {}  # each other file read once, however many services extend from it

    def resolve(name: str, file_doc: dict[str, Any], where: Path, seen: tuple[tuple[Path, str], ...]) -> dict[str, Any]:
        key = (where, name)
        if key in seen:
            chain = " -> ".join(n for _, n in (*seen, key))
            raise UsageError(f"services.{seen[0][1]}.extends: a cycle ({chain})")
        if key in done:
            return done[key]
        raw = (file_doc.get("services") or {}).get(name)
        if not isinstance(raw, dict):
            raise UsageError(f"services.{seen[-1][1] if seen else name}.extends: no service {name} to extend")
        own = {k: v for k, v in raw.items() if k != "extends"}
        ext = raw.get("extends")
        if ext is None:
            result = own
        else:
            base_name = ext if isinstance(ext, str) else str(ext.get("service", ""))
            base_file = None if isinstance(ext, str) else ext.get("file")
            if base_file:
                path = (where / str(base_file)).resolve()
                if path not in files:
                    files[path] = read(path)
                base_doc, base_dir = files[path], path.parent
            else:
                base_doc, base_dir = file_doc, where
            base = _rebased(resolve(base_name, base_doc, base_dir, (*seen, key)), base_dir, where)
            result = merge({"services": {name: base}}, {"services": {name: own}})["services"][name]
        done[key] = result
        return result

    for name in services:
        out["services"][name] = resolve(name, doc, directory, ())
    return out


# ---- profiles --------------------------------------------------------------------------------------------


def active_profiles(given: tuple[str, ...], env: dict[str, str]) -> set[str]:
    """--profile, and COMPOSE_PROFILES (comma-separated)."""
    listed = [p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()]
    return {*given, *listed}


def with_profiles(doc: dict[str, Any], active: set[str]) -> dict[str, Any]:
    """The document with only the services that run under these profiles."""
    out = copy.deepcopy(doc)
    services = out.get("services") or {}
    for name in list(services):
        named = (services[name] or {}).get("profiles") or []
        if named and "*" not in active and not active & {str(p) for p in named}:
            del services[name]
    return out
