"""A Dockerfile read, not built: the run-time settings its final stage gives an image.

`read(path, target=None)` parses the file with dockerfile-parse and follows
the chosen stage (the last one, or `--target`) back through the stages it is
built `FROM`, as the builder would: ENV, WORKDIR, USER, EXPOSE, VOLUME,
STOPSIGNAL, HEALTHCHECK, ENTRYPOINT and CMD carry over from a parent stage,
and a new ENTRYPOINT clears an inherited CMD. `ARG` defaults and ENV values
substitute into later instructions (`$VAR`, `${VAR:-default}`). A stage built
FROM an image starts with what every image's config has, Docker's default
PATH, so that `ENV PATH="$VIRTUAL_ENV/bin:$PATH"` extends it as the builder
would (the base image's own config is not fetched to read a Dockerfile).

`command()` is Entrypoint + Cmd as `docker run` puts them together: the
exec form as it is, the shell form read by kiln.shell_form (one plain
command, or an error saying why it needs a shell).

A directory without kiln.toml takes its command from here (kiln.discover);
everything from RUN and COPY is the builder's business (kiln.oci).
"""

from __future__ import annotations

import io
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kiln import shell_form
from kiln.errors import AppError

# What the builder gives a stage FROM an image whose config sets no PATH (moby's oci.DefaultPathEnv);
# the official images (python, node, debian) set the same, or this with their own directories first.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Stage:
    name: str | None
    base: str  # what its FROM names: an image, or an earlier stage
    image: str = ""  # the image at the root of its FROM chain
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)  # ARG defaults declared in the stage
    inherited: dict[str, str] = field(default_factory=dict)  # what its base image's config sets (PATH)
    workdir: str | None = None
    user: str | None = None
    expose: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str | None = None
    healthcheck: list[str] | None = None  # ["CMD", ...], ["CMD-SHELL", "..."], ["NONE"]
    entrypoint: tuple[list[str], bool] | None = None  # (words, shell form?)
    cmd: tuple[list[str], bool] | None = None
    line: int = 0  # where its FROM is (1-based)


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    stage: Stage  # the chosen stage, with what it inherits

    def command(self) -> list[str]:
        """Entrypoint + Cmd, as `docker run IMAGE` runs them (shell forms read without a shell)."""
        where = f"{self.path.name}:{self.stage.line}"
        words: list[str] = []
        for part, what in ((self.stage.entrypoint, "ENTRYPOINT"), (self.stage.cmd, "CMD")):
            if part is None:
                continue
            argv, shell = part
            if shell:  # /bin/sh -c "..." in an image: read it as sh would, if it is one plain command
                words += shell_form.split(argv[0], {**self.stage.inherited, **self.stage.env}, f"{where}: {what}")
            else:
                words += shell_form.unwrap(argv, {**self.stage.inherited, **self.stage.env}, f"{where}: {what}")
            if shell and what == "ENTRYPOINT":
                break  # a shell-form ENTRYPOINT ignores CMD, as Docker does
        return words

    @property
    def ports(self) -> tuple[int, ...]:
        out = []
        for spec in self.stage.expose:
            port, _, proto = spec.partition("/")
            if proto in ("", "tcp") and port.isdigit():
                out.append(int(port))
        return tuple(dict.fromkeys(out))


def _words(value: str) -> tuple[list[str], bool]:
    """An instruction's exec form (a JSON array) or shell form (one string)."""
    text = value.strip()
    if text.startswith("["):
        try:
            argv = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
                return argv, False
    return [text], True


def _pairs(value: str, where: str) -> dict[str, str]:
    """`ENV A=1 B="two words"` or the legacy `ENV A some value`."""
    try:
        words = shlex.split(value)
    except ValueError as err:
        raise AppError(f"{where}: {err}") from None
    if words and "=" not in words[0]:
        return {words[0]: value.split(None, 1)[1] if len(value.split(None, 1)) > 1 else ""}
    out = {}
    for w in words:
        key, eq, val = w.partition("=")
        if not eq:
            raise AppError(f"{where}: {w!r} is not KEY=VALUE")
        out[key] = val
    return out


def read(path: Path, target: str | None = None) -> Dockerfile:
    from dockerfile_parse import DockerfileParser

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise AppError(f"{path}: cannot read: {err}") from None
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    stages: list[Stage] = []
    args: dict[str, str] = {}  # ARGs before the first FROM
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        where = f"{path.name}:{item['startline'] + 1}"
        env = {**args, **stages[-1].inherited, **stages[-1].args, **stages[-1].env} if stages else args
        if instruction == "FROM":
            words = value.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = shell_form.expand(words[0], args, where) if words else ""
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            parent = next((s for s in stages if s.name and s.name == base), None)
            stage = Stage(name, base, image=parent.image if parent else base, line=item["startline"] + 1)
            if parent is None and base != "scratch":
                stage.inherited = {"PATH": DEFAULT_PATH}
            if parent is not None:
                stage.inherited = dict(parent.inherited)
                for attr in ("env", "expose", "volumes"):
                    setattr(stage, attr, type(getattr(parent, attr))(getattr(parent, attr)))
                for attr in ("workdir", "user", "stop_signal", "healthcheck", "entrypoint", "cmd"):
                    setattr(stage, attr, getattr(parent, attr))
            stages.append(stage)
            continue
        if not stages:
            if instruction == "ARG":
                key, _, default = value.partition("=")
                args[key.strip()] = default.strip().strip('"')
            continue
        stage = stages[-1]
        if instruction == "ENV":
            stage.env.update({k: shell_form.expand(v, env, where) for k, v in _pairs(value, where).items()})
        elif instruction == "ARG":
            key, _, default = value.partition("=")
            stage.args[key.strip()] = (
                shell_form.expand(default.strip().strip('"'), env, where) if default else (args.get(key.strip(), ""))
            )
        elif instruction == "WORKDIR":
            wd = shell_form.expand(value.strip(), env, where)
            stage.workdir = str(PurePosixPath(stage.workdir or "/", wd))
        elif instruction == "USER":
            stage.user = shell_form.expand(value.strip(), env, where)
        elif instruction == "EXPOSE":
            stage.expose += shell_form.expand(value, env, where).split()
        elif instruction == "VOLUME":
            words, shell = _words(value)
            stage.volumes += words[0].split() if shell else words
        elif instruction == "STOPSIGNAL":
            stage.stop_signal = value.strip()
        elif instruction == "HEALTHCHECK":
            stage.healthcheck = _healthcheck(value)
        elif instruction == "ENTRYPOINT":
            stage.entrypoint = _words(value)
            stage.cmd = None  # a new ENTRYPOINT resets the CMD it inherited
        elif instruction == "CMD":
            stage.cmd = _words(value)
    if not stages:
        raise AppError(f"{path}: no FROM instruction: not a Dockerfile")
    if target is None:
        return Dockerfile(path, stages[-1])
    chosen = next((s for s in stages if s.name == target), None)
    if chosen is None:
        names = ", ".join(s.name for s in stages if s.name) or "none"
        raise AppError(f"{path}: no stage named {target!r} (stages: {names})")
    return Dockerfile(path, chosen)


def _healthcheck(value: str) -> list[str] | None:
    """HEALTHCHECK [OPTIONS] CMD ... | NONE -> ["CMD", ...] / ["CMD-SHELL", "..."] / ["NONE"]."""
    words = value.split()
    while words and words[0].startswith("--"):
        words.pop(0)
    if not words:
        return None
    if words[0].upper() == "NONE":
        return ["NONE"]
    rest = value[value.upper().index("CMD") + 3 :].strip() if "CMD" in value.upper() else ""
    argv, shell = _words(rest)
    return ["CMD-SHELL", argv[0]] if shell else ["CMD", *argv]
