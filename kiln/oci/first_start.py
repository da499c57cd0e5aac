"""An official database image's first start, done as its entrypoint script would do it (kiln.oci.entrypoints):
the initializer run at build time in the sandbox over the image's tree, its data directory laid out in the
kiln image, the image's init files as one file, and the set-up steps guest init runs on the first start.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kiln import sandbox
from kiln.analyze import elf
from kiln.errors import AppError
from kiln.image.build import Step
from kiln.image.rootfs import RootFS
from kiln.manifest import Account, Setup, Writable
from kiln.oci.config import ImageConfig
from kiln.oci.entrypoints import INIT_SQL, KnownEntrypoint, data_dir, init_files, steps_for
from kiln.oci.image import on_path


@dataclass(frozen=True)
class FirstStart:
    data: str  # the data directory (a volume)
    writable: tuple[Writable, ...]
    setup: Setup


def modules_of(tree: Path, server: str, known: KnownEntrypoint) -> list[str]:
    """The server's modules (shared objects it loads by name), less what only a setting left off loads."""
    if known.libraries is None:
        return []
    directory = PurePosixPath(server).parent / known.libraries
    host = elf.resolve_in(tree, str(directory))
    if host is None or not host.is_dir():
        return []
    guest = PurePosixPath("/") / host.relative_to(tree).as_posix()
    return [
        str(guest / p.name)
        for p in sorted(host.glob("*.so"))
        if p.is_file() and not p.is_symlink() and p.name not in known.skip and elf.is_elf(p)
    ]


def first_start(
    tree: Path,
    root: RootFS,
    known: KnownEntrypoint,
    server: str,
    config: ImageConfig,
    account: Account | None,
    say: Step,
) -> FirstStart:
    """Lay out what the entrypoint's first start would make, and the steps that finish it on the first start."""
    if account is None:
        raise AppError(f"{known.name} runs the server as {known.account}, and the image has no such account")
    data = data_dir(known, config.env)
    where = known.name
    initializer = on_path(tree, known.initialize[0], config)
    argv = [initializer, *known.initialize[1:]]
    say(f"first start: {PurePosixPath(initializer).name} at build time, in the sandbox, as {account.name}")
    what = f"{where}: {PurePosixPath(initializer).name}"
    with sandbox.made_directory(tree, argv, what, (account.uid, account.gid)) as made:
        for name in {*known.drops, *known.appends}:  # what the image's initializer made: untrusted, never a link
            if (made / name).is_symlink() or not (made / name).is_file():
                raise AppError(f"{what} made {name} something other than a file: kiln does not follow it")
        for name, pattern in known.drops.items():
            kept = [line for line in (made / name).read_text().splitlines(keepends=True) if not re.match(pattern, line)]
            (made / name).write_text("".join(kept))
        for name, text in known.appends.items():
            with open(made / name, "a") as f:
                f.write(text)
        dest = root.host(data)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(made, dest, symlinks=True, dirs_exist_ok=True)
    files = init_files(tree, where)
    if files:
        root.add_bytes(INIT_SQL, b"".join(_statements(tree, f) for f in files))
        say(f"first start: {', '.join(PurePosixPath(f).name for f in files)} run in {known.database_env}'s database")
    for link in ("/var/run", "/var/lock"):  # the server names its run directory by its old name, as Debian's do
        host = tree / link.lstrip("/")
        if host.is_symlink() and not root.host(link).is_symlink():
            root.add_symlink(link, str(Path(host).readlink()))
    steps = steps_for(known, data, server, bool(files))
    writable = (
        Writable(
            path=data,
            uid=account.uid,
            gid=account.gid,
            mode=0o700,
            kind="volume",
            why=f"{known.data_env or 'datadir'}: the data directory {known.name} makes",
        ),
        *(
            Writable(path=d, uid=account.uid, gid=account.gid, mode=0o2775, why=f"{known.name} makes it")
            for d in known.run_dirs
        ),
    )
    return FirstStart(data, writable, Setup(steps=steps, needs=known.needs, why=known.why))


def _statements(tree: Path, guest: str) -> bytes:
    """One init file as the single-user server reads it: with -j an entry ends at a semicolon and an empty line,
    so each file is one entry, its statements run as psql -f would run them, in order."""
    host = elf.resolve_in(tree, guest)
    assert host is not None
    text = host.read_bytes().rstrip()
    return text + (b"\n\n" if text.endswith(b";") else b";\n\n")
