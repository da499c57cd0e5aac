"""A container image as kiln's builders see it: fetched and unpacked (`fetch` -> `Fetched`), what
`kiln build` says over its config (`Overrides`), and what every builder reads from it: programs on
its PATH, script interpreters, accounts, declared volumes, and the source-image record of the manifest.

kiln.oci.build (native programs) and kiln.oci.python (Python apps) both build from these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from kiln import __version__
from kiln.analyze import elf
from kiln.config import check_volume
from kiln.errors import AppError
from kiln.image.build import Step
from kiln.manifest import Account, BuildInputs, SourceImage
from kiln.oci import source as sources
from kiln.oci.config import ImageConfig
from kiln.oci.unpack import unpacked
from kiln.store import Store
from kiln.surface import scan_tree

ROOT_CAPS: tuple[Literal["setuid", "setgid", "chown"], ...] = ("setuid", "setgid", "chown")


@dataclass(frozen=True)
class Overrides:
    """What `kiln build` says over the image's config, as `docker run` flags do."""

    entrypoint: str | None = None
    args: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    libraries: tuple[str, ...] = ()
    username: str | None = None
    password: str | None = None
    user: str | None = None  # docker run --user
    workdir: str | None = None  # docker run --workdir


@dataclass(frozen=True)
class Fetched:
    source: sources.Source
    digest: str
    id: str  # the config's digest
    tree: Path
    config: ImageConfig


def fetch(reference: str, store: Store, overrides: Overrides, say: Step) -> Fetched:
    src = sources.Source.parse(reference)
    with store.staging() as scratch:
        layout = scratch / "layout"
        say(f"fetching {reference}")
        sources.copy(src, layout, overrides.username, overrides.password)
        digest, image_id, doc = sources.image_config(layout)
        say(f"image {image_id[:19]}: unpacking its layers")
        tree = unpacked(layout, image_id, doc)  # by its content: the same tree whichever transport carried it
    config = ImageConfig.from_document(doc)
    if overrides.user is not None or overrides.workdir is not None:
        config = dataclasses.replace(
            config, user=overrides.user or config.user, workdir=overrides.workdir or config.workdir
        )
    return Fetched(src, digest, image_id, tree, config)


def on_path(tree: Path, program: str, config: ImageConfig) -> str:
    if "/" in program:
        guest = program if program.startswith("/") else str(PurePosixPath(config.workdir) / program)
        if elf.resolve_in(tree, guest) is None:
            raise AppError(f"the image has no {program}")
        return guest
    for d in config.path:
        guest = f"{d.rstrip('/')}/{program}"
        host = elf.resolve_in(tree, guest)
        if host is not None and host.is_file():
            return guest
    raise AppError(f"the image has no program {program} on its PATH ({':'.join(config.path)})")


def shebang(host: Path) -> list[str] | None:
    with open(host, "rb") as f:
        head = f.read(256)
    if not head.startswith(b"#!"):
        return None
    return head[2:].split(b"\n", 1)[0].decode(errors="replace").split()


def accounts_of(tree: Path, user: str | None, where: str) -> tuple[list[str], list[str], Account | None]:
    """The image's own accounts (no login shell), and the account USER names."""
    passwd, groups = [], {}
    try:
        for line in (tree / "etc" / "group").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[2].isdigit():
                groups[parts[0]] = (int(parts[2]), parts[3] if len(parts) > 3 else "")
    except OSError:
        pass
    users: dict[str, tuple[int, int, str]] = {"root": (0, 0, "/root")}
    with contextlib.suppress(OSError):
        for line in (tree / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 6 and parts[2].isdigit() and parts[3].isdigit():
                users[parts[0]] = (int(parts[2]), int(parts[3]), parts[5])
    account = None
    if user and user not in ("root", "0", "0:0"):
        name, _, group = user.partition(":")
        if name in users:
            uid, gid, _home = users[name]
        elif name.isdigit():
            uid = int(name)
            gid = next((g for _n, (u, g, _h) in users.items() if u == uid), uid)
            name = next((n for n, (u, _g, _h) in users.items() if u == uid), f"uid{uid}")
            users.setdefault(name, (uid, gid, "/"))
        else:
            raise AppError(f"{where}: USER {user}: no such account in the image's /etc/passwd")
        if group:
            gid = groups[group][0] if group in groups else int(group) if group.isdigit() else gid
        extra = tuple(g for n, (g, members) in groups.items() if name in members.split(",") and g != gid)
        account = Account(name=name, uid=uid, gid=gid, groups=extra)
    groups.setdefault("root", (0, ""))
    for line_user, (uid, gid, home) in sorted(users.items(), key=lambda i: i[1][0]):
        passwd.append(f"{line_user}:x:{uid}:{gid}::{home}:/nonexistent")
    group_lines = [f"{n}:x:{g}:{m}" for n, (g, m) in sorted(groups.items(), key=lambda i: i[1][0])]
    return passwd, group_lines, account


def is_program(path: Path) -> bool:
    st = path.stat()
    return bool(st.st_mode & 0o111) or elf.is_elf(path)


def counts(tree: Path) -> tuple[int, int, list[str], int]:
    """(files, executables, shells, bytes) of a tree: what the container image held."""
    files, executables, shells, _setuid = scan_tree(tree)
    size = sum(os.lstat(os.path.join(d, f)).st_size for d, _s, names in os.walk(tree) for f in names)
    return files, len(executables), shells, size


def image_name(reference: str) -> str:
    """A kiln image name from a reference: docker://h:5000/demo/web:1 -> web."""
    path = re.sub(r"^(docker://|oci:|docker-archive:|oci-archive:)", "", reference)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    last = re.split(r"[:@]", last)[0]
    last = re.sub(r"\.(tar|tar\.gz|tgz)$", "", last)
    return re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("._-") or "image"


def volumes_of(config: ImageConfig, say: Step) -> tuple[str, ...]:
    kept = []
    for v in config.volumes:
        path = v.rstrip("/") or "/"
        try:
            check_volume(path)
        except ValueError as err:
            say(f"note: VOLUME {v} is not kept: {err}")
            continue
        kept.append(path)
    return tuple(kept)


def source_image(got: Fetched, python: str | None = None) -> SourceImage:
    files, executables, shells, size = counts(got.tree)
    reference = got.source.reference.removeprefix("docker://") if got.source.transport == "docker://" else None
    return SourceImage(
        reference=reference, digest=got.digest, id=got.id, files=files, executables=executables, shells=tuple(shells),
        size=size, python=python,
    )  # fmt: skip


def image_inputs(got: Fetched, image: SourceImage) -> BuildInputs:
    """What the image was built from: the container image, by its digest (a local layout's path is not named)."""
    return BuildInputs(
        source=f"container image {image.reference or got.source.transport.rstrip(':/')}",
        config_file=None,
        sources_digest=got.id,
        kiln_version=__version__,
        image=image,
    )
