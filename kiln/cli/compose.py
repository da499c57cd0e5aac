"""`kiln compose up|down|ps|logs|config`: many unikernels as one service (kiln.compose)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kiln.cli import ui
from kiln.cli.ui import columns, print_json
from kiln.errors import UsageError

FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

EPILOG = """\b
Examples:
  kiln compose up -d                    # compose.yaml here: build what is missing, start all
  kiln compose -f examples/compose-counter/compose.yaml -p demo up -d
  kiln compose ps
  kiln compose logs web
  kiln compose down                     # named volumes stay; down -v removes them
  kiln compose config                   # the file as kiln reads it, checked
  kiln compose -f compose.yaml -f prod.yaml --profile debug config
"""


def _files(given: tuple[Path, ...]) -> list[Path]:
    """-f FILE..., else COMPOSE_FILE (paths joined by the OS's separator), else compose.yaml (or another of
    FILES) and, beside it, its override file if there is one, as Docker Compose reads them."""
    import os

    if not given and (listed := os.environ.get("COMPOSE_FILE")):
        given = tuple(Path(p) for p in listed.split(os.environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)) if p)
    if given:
        for path in given:
            if not path.is_file():
                raise UsageError(f"no compose file {path}")
        return list(given)
    for name in FILES:
        if Path(name).is_file():
            stem, _, suffix = name.rpartition(".")
            override = Path(f"{stem}.override.{suffix}")
            return [Path(name), override] if override.is_file() else [Path(name)]
    raise UsageError(f"no compose file here (looked for {', '.join(FILES)}; give one with -f)")


def _project_name(ctx: click.Context) -> str:
    """-p, or the name the compose file gives (or its directory's name)."""
    obj = ctx.obj
    if obj["name"]:
        return str(obj["name"])
    from kiln.compose.project import load

    return load(_files(obj["files"]), profiles=obj["profiles"]).name


@click.group(epilog=EPILOG)
@click.option(
    "-f",
    "--file",
    "files",
    type=click.Path(path_type=Path),
    multiple=True,
    help="A compose file; several merge in order (default: compose.yaml and compose.override.yaml).",
)
@click.option("-p", "--project-name", "name", help="The project's name (default: the file's `name`, or its directory).")
@click.option("--profile", "profiles", multiple=True, help="Run this profile's services too (and COMPOSE_PROFILES).")
@click.pass_context
def compose(ctx: click.Context, files: tuple[Path, ...], name: str | None, profiles: tuple[str, ...]) -> None:
    """Run a compose file's services as unikernels on a private network."""
    ctx.obj = {"files": files, "name": name, "profiles": profiles}


@compose.command(epilog="\b\nExamples:\n  kiln compose up -d\n  kiln compose up -d --build web")
@click.argument("services", nargs=-1)
@click.option("-d", "--detach", is_flag=True, help="Start and return (default: follow the logs; Ctrl-C stops).")
@click.option("--build", "rebuild", is_flag=True, help="Build services that have `build` even if their image exists.")
@click.pass_context
def up(ctx: click.Context, services: tuple[str, ...], detach: bool, rebuild: bool) -> None:
    """Build what is missing, then start the services in dependency order."""
    from kiln.cli.kernel import ConsoleProgress
    from kiln.compose import lifecycle
    from kiln.compose.project import load
    from kiln.store import Store

    project = load(_files(ctx.obj["files"]), ctx.obj["name"], profiles=ctx.obj["profiles"])
    try:
        lifecycle.up(project, Store(), lambda text: ui.say(text, err=True), list(services), rebuild, ConsoleProgress())
    except KeyboardInterrupt:
        lifecycle.down(project.name, lambda text: ui.say(text, err=True))
        raise
    if detach:
        return
    ui.interrupt_on()
    try:
        _follow(project.name, list(services))
    except KeyboardInterrupt:
        ui.say("stopping", err=True)
        lifecycle.down(project.name, lambda text: ui.say(text, err=True))


def _follow(name: str, services: list[str]) -> None:
    """Print every service's console as it grows, each line after its service's name."""
    from kiln.compose import lifecycle

    offsets: dict[str, int] = {}
    while True:
        for service, text in lifecycle.logs(name, services):
            new = text[offsets.get(service, 0) :]
            offsets[service] = len(text)
            for line in new.splitlines():
                ui.say(f"{service} | {line}")
        time.sleep(0.2)


@compose.command(epilog="\b\nExamples:\n  kiln compose down\n  kiln compose -p demo down -v")
@click.option("-v", "--volumes", is_flag=True, help="Remove the named volumes too.")
@click.pass_context
def down(ctx: click.Context, volumes: bool) -> None:
    """Stop and remove the services and the project's network."""
    from kiln.compose import lifecycle

    lifecycle.down(_project_name(ctx), lambda text: ui.say(text, err=True), volumes)


@compose.command(epilog="\b\nExamples:\n  kiln compose ps\n  kiln compose ps --json")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def ps(ctx: click.Context, as_json: bool) -> None:
    """List the project's services: instance, state (and health, for one with a healthcheck), address, ports."""
    from kiln.compose import lifecycle

    rows = lifecycle.status(_project_name(ctx))
    if as_json:
        print_json(rows)
        return
    columns(
        ("SERVICE", "INSTANCE", "STATE", "ADDRESS", "PORTS"),
        [[str(r["service"]), str(r["instance"]), str(r["state"]) + (f" ({r['health']})" if r.get("health") else ""),
          str(r.get("address") or ""),
          ", ".join(map(str, r["ports"]))] for r in rows],  # type: ignore[call-overload]
    )  # fmt: skip


@compose.command(epilog="\b\nExamples:\n  kiln compose logs\n  kiln compose logs web")
@click.argument("services", nargs=-1)
@click.pass_context
def logs(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Print the services' console output, each line after its service's name."""
    from kiln.compose import lifecycle

    for service, text in lifecycle.logs(_project_name(ctx), list(services)):
        for line in text.splitlines():
            ui.say(f"{service} | {line}")


@compose.command(
    "config",
    epilog="\b\nExamples:\n  kiln compose config\n  kiln compose -f stack.yaml config --json\n"
    "  kiln compose config -q            # check only: exit 0 if kiln can run it",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Check only: print nothing.")
@click.pass_context
def config(ctx: click.Context, as_json: bool, quiet: bool) -> None:
    """Print the file as kiln reads it: variables filled in (the shell's, over .env), checked against the
    Compose Specification and against what kiln runs, as `docker compose config` does. A file with problems
    gets one line for each, and exit status 2."""
    import sys

    from kiln.compose.project import load, resolved, schema_problems

    paths = _files(ctx.obj["files"])
    doc = resolved(paths, profiles=ctx.obj["profiles"])
    problems = schema_problems(doc, " + ".join(map(str, paths)))
    if problems:
        for line in problems:
            ui.error(line)
        sys.exit(2)
    project = load(paths, ctx.obj["name"], profiles=ctx.obj["profiles"])  # kiln's own refusals, one line
    doc = {"name": project.name, **{k: v for k, v in doc.items() if k != "name"}}
    if quiet:
        return
    if as_json:
        print_json(doc)
        return
    import yaml

    click.echo(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False), nl=False)
