"""A container image whose program is Python: the app analyzed with the image's own interpreter.

The program is the image's interpreter (`python3 app.py`, `python -m flask run`,
Debian's /usr/bin/python3 or the official images' /usr/local/bin/python3) or a
console script that interpreter runs (`gunicorn app:app`, found by its `#!`
line). kiln asks that interpreter for its paths inside the sandbox over the
image's tree (kiln.interpreter, kiln.sandbox), reads the app from the
image's WorkingDir and its packages from the image's site-packages, and keeps
only the modules the app reaches, compiled by that interpreter (in the
sandbox too), with the command model of kiln.analyze.command: ports, workers
and reloaders as for an app kiln builds itself.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import msgspec

from kiln.analyze import elf
from kiln.analyze.command import PYTHON
from kiln.config import App, AppConfig, default_name
from kiln.discover import complete
from kiln.errors import AppError
from kiln.image.build import Built, analyze_python, build_python
from kiln.image.etc import write_etc
from kiln.image.options import BuildOptions, Progress
from kiln.image.rootfs import RootFS
from kiln.interpreter import probe
from kiln.manifest import BuildInputs, Entry
from kiln.oci.image import (
    Fetched,
    Overrides,
    accounts_of,
    image_inputs,
    image_name,
    on_path,
    shebang,
    source_image,
    volumes_of,
)
from kiln.store import Store
from kiln.surface import scan_tree


def _interpreter_and_words(got: Fetched, argv: list[str]) -> tuple[str, list[str]]:
    """(the interpreter's path in the image, the command as kiln.analyze.command reads it)."""
    program = on_path(got.tree, argv[0], got.config)
    host = elf.resolve_in(got.tree, program)
    assert host is not None
    line = shebang(host)
    if line is None:
        return program, ["python", *argv[1:]]
    interpreter = line[0]
    if interpreter.endswith("/env") and len(line) > 1:  # #!/usr/bin/env python3
        interpreter = on_path(got.tree, line[1], got.config)
    if not PYTHON.match(interpreter.rsplit("/", 1)[-1]):
        raise AppError(f"{program}: its #! line names {interpreter}, not a Python interpreter")
    return interpreter, [PurePosixPath(program).name, *argv[1:]]  # a console script, by name


def build_python_image(
    got: Fetched,
    argv: list[str],
    store: Store,
    options: BuildOptions,
    progress: Progress,
    overrides: Overrides,
) -> Built:
    config = got.config
    say = progress.step
    interpreter, words = _interpreter_and_words(got, argv)
    workdir = PurePosixPath(config.workdir or "/")
    if workdir == PurePosixPath("/"):
        raise AppError(
            f"{got.source.reference}: its WorkingDir is /, and kiln takes a Python app from its WorkingDir "
            "(give the image one, as Dockerfiles do with WORKDIR /app)"
        )
    app_root = got.tree / workdir.relative_to("/")
    if not app_root.is_dir():
        raise AppError(f"{got.source.reference}: its WorkingDir {workdir} is not a directory in the image")
    say(f"python: {interpreter}, the image's own, asked for its paths in the sandbox")
    interp = probe(interpreter, got.tree)
    app_config = AppConfig(
        name=default_name(Path(image_name(got.source.reference))),
        command=tuple(words),
        env={**config.env, **overrides.env},
        ports=overrides.ports or config.ports,
        volumes=volumes_of(config, say),
        python=interpreter,
    )
    what = f"the image's {'Entrypoint + Cmd' if config.entrypoint else 'Cmd'}"
    ports_from = "-p" if overrides.ports else "the image's ExposedPorts" if config.ports else None
    app = complete(
        App(
            root=app_root,
            config=app_config,
            config_file=None,
            command_from=what,
            ports_from=ports_from,
            workdir=str(workdir),
        )
    )
    analysis = analyze_python(app, say, interp=interp, app_dir=workdir)
    passwd, group, account = accounts_of(got.tree, config.user, got.source.reference)
    image = source_image(got, python=interpreter)

    def finish_entry(root: RootFS, entry: Entry) -> tuple[Entry, BuildInputs]:
        write_etc(root, app.name, (), (passwd, group))
        kept = scan_tree(root.root)
        say(
            f"the container had {image.files} files and {image.executables} executables; the unikernel keeps "
            f"{kept[0]} files and {len(kept[1])} executables ({len(analysis.graph.modules)} modules)"
        )
        return msgspec.structs.replace(entry, user=account, stop_signal=config.stop_signal), image_inputs(got, image)

    return build_python(app, store, options, progress, analysis=analysis, image=finish_entry)
