"""An image's config, honoured as `docker run` honours it.

From the OCI image config (`config` in the config blob): Entrypoint and Cmd
(the program and its arguments), Env, WorkingDir, User, ExposedPorts (TCP
ports), Volumes, StopSignal, Healthcheck and Labels. `command()` puts
Entrypoint and Cmd together with the overrides of `kiln build`, as `docker run`
does with its own: `--entrypoint` replaces the Entrypoint and drops the image's
Cmd, arguments after `--` replace the Cmd. A shell form (`/bin/sh -c "..."`,
which a Dockerfile's shell-form CMD becomes) is read without a shell when it is
one plain command (kiln.shell_form), with the image's Env.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln import shell_form
from kiln.errors import AppError


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    ports: tuple[int, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str | None = None
    healthcheck: tuple[str, ...] | None = None  # ("CMD", ...), ("CMD-SHELL", "..."), ("NONE",)
    labels: dict[str, str] = field(default_factory=dict)
    architecture: str = ""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ImageConfig:
        c = doc.get("config") or {}
        env = {}
        for item in c.get("Env") or ():
            key, _, value = str(item).partition("=")
            env[key] = value
        ports = []
        for spec in c.get("ExposedPorts") or {}:
            port, _, proto = str(spec).partition("/")
            if proto in ("", "tcp") and port.isdigit():
                ports.append(int(port))
        health = (c.get("Healthcheck") or {}).get("Test")
        return cls(
            entrypoint=tuple(c.get("Entrypoint") or ()),
            cmd=tuple(c.get("Cmd") or ()),
            env=env,
            workdir=c.get("WorkingDir") or "/",
            user=c.get("User") or None,
            ports=tuple(sorted(set(ports))),
            volumes=tuple(sorted(c.get("Volumes") or {})),
            stop_signal=c.get("StopSignal") or None,
            healthcheck=tuple(health) if health else None,
            labels=dict(c.get("Labels") or {}),
            architecture=str(doc.get("architecture", "")),
        )

    def command(
        self, entrypoint: str | None = None, args: tuple[str, ...] | None = None, where: str = "the image"
    ) -> list[str]:
        """Entrypoint + Cmd with `kiln build`'s overrides, a plain `sh -c` unwrapped."""
        if entrypoint is not None:
            words = [entrypoint, *(args or ())]
        else:
            words = [*self.entrypoint, *(self.cmd if args is None else args)]
        if not words:
            raise AppError(f"{where} has no Entrypoint and no Cmd: give the program with --entrypoint")
        return shell_form.unwrap(words, self.env, f"{where}: {' '.join(words)}")

    @property
    def path(self) -> list[str]:
        return (self.env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":")
