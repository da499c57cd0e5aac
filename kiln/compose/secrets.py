"""A compose file's `secrets:`: what the file declares, what each service asks for, and the private directory of
their files a service's VM gets.

    secrets:                               services:
      db-password: {file: ./db.txt}          db:
      api-key: {environment: API_KEY}          secrets: [db-password]        # /run/secrets/db-password
                                               # or {source, target, uid, gid, mode}

A secret reaches the guest as a file in $KILN_HOME/compose/<project>/secrets/<service>/ (0700, the file 0400),
shared read-only with the VM; guest init copies it to a tmpfs at /run/secrets/<target>, owned by the service's
account (or the uid/gid given) with mode 0400 unless one is given, and makes the tmpfs read-only
(init's secrets.c). Its content is in no image, manifest, run record, log or `kiln inspect`: records name
the file and its target only. `kiln compose down` removes the directory.

`external:` secrets live in a swarm's store, which kiln has not; they are refused in one line, as is a missing
file, an unset variable, a secret a service names but the file does not declare, and a target outside
/run/secrets.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kiln import atomic
from kiln.errors import UsageError
from kiln.targets.base import SecretFile, SecretShare

RUN_SECRETS = "/run/secrets"


@dataclass(frozen=True)
class Secret:
    name: str
    file: Path | None = None  # its content: this file's, as `up` finds it
    environment: str | None = None  # or this variable's, in `up`'s environment


@dataclass(frozen=True)
class SecretUse:
    source: str
    target: str  # its name under /run/secrets
    uid: int = -1  # -1: the service's account
    gid: int = -1
    mode: int = 0o400


def declared(raw: Any, directory: Path, env: dict[str, str]) -> dict[str, Secret]:
    """The file's top-level `secrets:`, each checked (its file is there, its variable is set)."""
    out = {}
    for name, spec in (raw or {}).items():
        spec = spec or {}
        where = f"secrets.{name}"
        if spec.get("external"):
            raise UsageError(f"{where}: external secrets live in a swarm's store: kiln reads file: and environment: "
                             "secrets")  # fmt: skip
        extra = sorted(set(spec) - {"file", "environment", "name", "external"})
        if extra:
            raise UsageError(f"{where}.{extra[0]}: valid Compose, but kiln does not support it")
        if "file" in spec:
            path = (directory / os.path.expanduser(str(spec["file"]))).resolve()
            if not path.is_file():
                raise UsageError(f"{where}: its file {path} does not exist")
            out[name] = Secret(name, file=path)
        elif "environment" in spec:
            variable = str(spec["environment"])
            if variable not in env:
                raise UsageError(f"{where}: its variable {variable} is not set")
            out[name] = Secret(name, environment=variable)
        else:
            raise UsageError(f"{where}: give its file: or its environment:")
    return out


def _number(value: Any, where: str, octal: bool = False) -> int:
    text = str(value)
    try:
        return int(text, 8) if octal and isinstance(value, str) else int(text)
    except ValueError:
        raise UsageError(f"{where}: {value!r} is not a number") from None


def uses(raw: Any, service: str, known: dict[str, Secret]) -> tuple[SecretUse, ...]:
    """A service's `secrets:`, short (a name) or long ({source, target, uid, gid, mode})."""
    out: list[SecretUse] = []
    for item in raw or []:
        where = f"services.{service}.secrets"
        if isinstance(item, dict):
            extra = sorted(set(item) - {"source", "target", "uid", "gid", "mode"})
            if extra:
                raise UsageError(f"{where}.{extra[0]}: valid Compose, but kiln does not support it")
            source = str(item.get("source", ""))
            target = str(item.get("target") or source)
            uid = _number(item["uid"], f"{where}.uid") if "uid" in item else -1
            gid = _number(item["gid"], f"{where}.gid") if "gid" in item else -1
            mode = _number(item["mode"], f"{where}.mode", octal=True) if "mode" in item else 0o400
        else:
            source = target = str(item)
            uid = gid = -1
            mode = 0o400
        if source not in known:
            raise UsageError(f"{where}: {source} is not declared under secrets")
        path = PurePosixPath(target if target.startswith("/") else f"{RUN_SECRETS}/{target}")
        if path.parent != PurePosixPath(RUN_SECRETS) or path.name.startswith("."):
            raise UsageError(f"{where}: target {target}: kiln puts a secret in {RUN_SECRETS}/NAME")
        if any(u.target == path.name for u in out):
            raise UsageError(f"{where}: two secrets at {RUN_SECRETS}/{path.name}")
        if not 0 <= mode <= 0o777:
            raise UsageError(f"{where}.mode: {mode:o} is not a file mode")
        out.append(SecretUse(source, path.name, uid, gid, mode))
    return tuple(out)


def stage(directory: Path, secrets: dict[str, Secret], wanted: tuple[SecretUse, ...]) -> SecretShare | None:
    """The service's secrets as files in `directory` (made afresh, private), and what its run record says of
    them (their names and targets, never their content)."""
    if not wanted:
        return None
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    files = []
    for i, use in enumerate(wanted):
        secret = secrets[use.source]
        if secret.file is not None:
            try:
                data = secret.file.read_bytes()
            except OSError as err:
                raise UsageError(f"secrets.{secret.name}: cannot read {secret.file}: {err.strerror}") from None
        else:
            assert secret.environment is not None
            value = os.environ.get(secret.environment)
            if value is None:
                raise UsageError(f"secrets.{secret.name}: its variable {secret.environment} is not set")
            data = value.encode()
        name = f"{i}"
        atomic.write_bytes(directory / name, data, mode=0o400)
        files.append(SecretFile(file=name, target=use.target, uid=use.uid, gid=use.gid, mode=use.mode))
    return SecretShare(directory=directory, files=tuple(files))
