"""`kiln build APP`: flags -> one call of the build API (kiln.build), and its result shown."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec
from pydantic import ValidationError

from kiln import build as api
from kiln.cli.kernel import ConsoleProgress
from kiln.cli.ui import console, err_console, human_size, print_json
from kiln.config import App, NativeConfig
from kiln.errors import AnalysisError, UsageError
from kiln.oci.image import Overrides
from kiln.store import Store

if TYPE_CHECKING:
    from kiln.check import CheckReport

EPILOG = """\b
Examples:
  kiln build examples/hello-http
  kiln build -t hello:dev app.py
  kiln build --check examples/flask-app    # run it once: what it imported, what the image lacks
  kiln build --exe /usr/bin/memcached --name memcached -p 11211 -- -u root -m 64 -p 11211
  kiln build --deb redis-server --name redis -p 6379 -- --port 6379 --protected-mode no --save ''
  kiln build --deb lighttpd                 # as its systemd unit runs it: ExecStart, User=, its directories
  kiln build docker://127.0.0.1:5000/demo/web:1    # a container image: its program, trimmed and sealed
  kiln build oci:./layout:latest -p 8080 -- --port 8080   # an OCI layout; -p, -e, --entrypoint, ARGS as docker run
  kiln build docker-archive:web.tar          # what docker save / podman save write
"""


# after the memory line, when the image sized it (kiln.image.sizing)
SIZED = " (sized from the image; memory in kiln.toml, or kiln run -m, sets another)"


@click.command(epilog=EPILOG)
@click.argument("args", nargs=-1)
@click.option("-t", "--tag", help="Name the image name[:tag] (default: the app's name, :latest).")
@click.option("--exe", help="Build a native program (a path, or a name on PATH); ARGS are its arguments.")
@click.option("--deb", help="Build the program of this Debian package (fetched, never installed); ARGS as --exe.")
@click.option("--name", help="The image name, as -t (default: the app's, or the program's).")
@click.option(
    "-p", "--port", "ports", type=int, multiple=True, help="With --exe or an image: a port the program listens on."
)
@click.option("--file", "files", multiple=True, help="With --exe: a host file or directory to keep (repeatable).")
@click.option(
    "--user",
    "users",
    multiple=True,
    help="With --exe: an account the program needs in /etc/passwd; with an image: the account it runs as "
    "(USER[:GROUP], as docker run --user).",
)
@click.option("--workdir", help="A container image: its working directory instead of the image's WorkingDir.")
@click.option(
    "--dockerfile",
    "dockerfile",
    is_flag=False,
    flag_value="Dockerfile",
    default=None,
    metavar="[FILE]",
    help="Build APP (a directory) by its Dockerfile, with buildah, then as a container image.",
)
@click.option("--target", help="With --dockerfile: the stage to build.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="With --dockerfile.")
@click.option("--entrypoint", help="A container image: its program instead of the image's Entrypoint (as docker run).")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="A container image: set a variable.")
@click.option("-u", "--username", help="A registry's user (else ~/.docker/config.json), as kiln pull.")
@click.option("--password-stdin", is_flag=True, help="Read the registry's password from stdin.")
@click.option("--no-kernel-build", is_flag=True, help="Fail instead of building a kernel that is not cached.")
@click.option(
    "--check/--no-check",
    default=None,
    help="Run the image once on the unix target with import profiling, GET the `check` paths on its ports, and "
    "report modules it imported that the image lacks (exit 1 if any) and modules it never imported. By default a "
    "Python app with ports is audited so (the build fails, the image undone, if it imports what the image lacks; "
    "an app that does not answer within 30 s is not audited); --no-check skips it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(
    args: tuple[str, ...],
    tag: str | None,
    exe: str | None,
    deb: str | None,
    name: str | None,
    ports: tuple[int, ...],
    files: tuple[str, ...],
    users: tuple[str, ...],
    workdir: str | None,
    dockerfile: str | None,
    target: str | None,
    build_args: tuple[str, ...],
    entrypoint: str | None,
    env: tuple[str, ...],
    username: str | None,
    password_stdin: bool,
    no_kernel_build: bool,
    check: bool | None,
    as_json: bool,
) -> None:
    """Build an app into an image: ARGS is APP (a directory with kiln.toml, or a .py
    file), a container image (docker://..., oci:DIR[:TAG], docker-archive:FILE) with
    its arguments after --, or with --exe, the native program's arguments (after --).

    The kernel is specialized for the app; if the one it needs is not cached yet,
    it is built first (minutes, with progress)."""
    from kiln.oci.source import is_reference

    image_like = bool(args and is_reference(args[0])) or bool(dockerfile)
    if len(users) > 1 and image_like:
        raise UsageError("--user: an image runs as one account")
    if (target or build_args) and not dockerfile:
        raise UsageError("--target and --build-arg go with --dockerfile")
    docker_run = bool(entrypoint or env or username or password_stdin or workdir)
    source: api.Source
    if image_like:
        overrides = _overrides(args, ports, entrypoint, env, username, password_stdin, users, workdir)
        source = (
            _dockerfile_source(args, dockerfile, target, build_args, overrides)
            if dockerfile
            else api.ImageSource(args[0], overrides)
        )
        tag = tag or name
    elif (exe or deb or not args) and docker_run:
        raise UsageError(api.DOCKER_RUN_FLAGS)
    elif exe or deb:
        source = api.NativeSource(_native_config(exe, deb, name, args, ports, files, users))
    elif not args:
        raise UsageError(api.ONE_APP)
    else:  # an app: docker run's flags are for one only its Dockerfile builds (kiln.build says)
        if name and tag:
            raise UsageError("--name and -t both name the image: give one (-t NAME[:TAG])")
        if files:
            raise UsageError(api.NATIVE_FLAGS)
        given = docker_run or ports or users or len(args) > 1
        overrides = (
            _overrides(args, ports, entrypoint, env, username, password_stdin, users, workdir) if given else None
        )
        source, tag = api.AppSource(Path(args[0]), overrides), tag or name
    options = api.BuildOptions(tag=tag, build_kernel=not no_kernel_build, check=check)
    result = api.build(source, options, Store(), ConsoleProgress())
    if result.app is None:
        show_image(result, as_json)
    else:
        show_app(result, result.app, as_json)


def _native_config(
    exe: str | None,
    deb: str | None,
    name: str | None,
    args: tuple[str, ...],
    ports: tuple[int, ...],
    files: tuple[str, ...],
    users: tuple[str, ...],
) -> NativeConfig:
    given = {"exe": exe, "name": name, "args": args, "ports": ports, "files": files, "users": users}
    try:  # only what was given: a Debian package's unit says the rest
        return NativeConfig(deb=deb, **{k: v for k, v in given.items() if v})
    except ValidationError as err:
        raise UsageError(f"--exe: {err.errors()[0]['msg']}") from None


def _overrides(
    args: tuple[str, ...],
    ports: tuple[int, ...],
    entrypoint: str | None,
    env: tuple[str, ...],
    username: str | None,
    password_stdin: bool,
    users: tuple[str, ...],
    workdir: str | None,
) -> Overrides:
    """What kiln build says over a container image's config, as docker run's flags."""
    bad = [e for e in env if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        raise UsageError(f"invalid -e {bad[0]!r} (expected KEY=VALUE)")
    return Overrides(
        entrypoint=entrypoint,
        args=args[1:] or None,
        env=dict(e.split("=", 1) for e in env),
        ports=ports,
        username=username,
        password=sys.stdin.readline().rstrip("\n") if password_stdin else None,
        user=users[0] if users else None,
        workdir=workdir,
    )


def _dockerfile_source(
    args: tuple[str, ...], dockerfile: str, target: str | None, build_args: tuple[str, ...], overrides: Overrides
) -> api.DockerfileSource:
    if not args:
        raise UsageError(api.ONE_APP)
    context = Path(args[0])
    file = Path(dockerfile) if Path(dockerfile).is_absolute() else context / dockerfile
    bad = [a for a in build_args if "=" not in a]
    if bad:
        raise UsageError(f"invalid --build-arg {bad[0]!r} (expected KEY=VALUE)")
    return api.DockerfileSource(context, file, target, dict(a.split("=", 1) for a in build_args), overrides)


def show_app(result: api.BuildResult, app: App, as_json: bool) -> None:
    """A Python app's or a native program's image, and the --check report if one was asked for."""
    m, report, audited = result.manifest, result.check, result.audit
    modules = len(m.python.modules) if m.python else 0
    if as_json:
        print_json(
            {
                "ref": str(result.ref),
                "digest": result.digest,
                "size": m.size,
                "kernel_size": m.kernel.size,
                "rootfs_size": m.rootfs.size,
                "files": m.rootfs.files,
                "modules": modules,
                "libraries": len(m.libraries),
                "memory_mib": m.entry.memory_mib,
                "distributions": {d.name: d.version for d in m.python.distributions} if m.python else {},
                "left_out": list(m.python.optional_left_out) if m.python else [],
                "excluded": list(m.python.excluded) if m.python else [],
                **({"check": check_json(report)} if report else {}),
                **({"audit": check_json(audited)} if audited else {}),
            }
        )
        check_verdict(report)
        return
    console.print(f"built {result.ref}", style="bold green", highlight=False)
    console.print(
        f"  digest   {result.digest}\n"
        f"  size     {human_size(m.size)} (kernel {human_size(m.kernel.size)}, "
        f"root {human_size(m.rootfs.size)})\n"
        f"  modules  {modules}, libraries {len(m.libraries)}, files {m.rootfs.files}\n"
        f"  memory   {m.entry.memory_mib} MiB{'' if app.config.memory is not None else SIZED}",
        highlight=False,
    )
    if m.python and m.python.distributions:
        dists = ", ".join(f"{d.name} {d.version}" for d in m.python.distributions)
        console.print(f"  packages {dists} (from {m.python.dependencies_from or 'python_path'})", highlight=False)
    if m.python and m.python.optional_left_out:
        left = ", ".join(m.python.optional_left_out[:8])
        more = f" and {len(m.python.optional_left_out) - 8} more" if len(m.python.optional_left_out) > 8 else ""
        console.print(
            f"  left out: imports that are optional, not required or for other platforms "
            f"(include= keeps one; kiln inspect lists all): {left}{more}",
            style="dim",
            highlight=False,
            markup=False,
        )
    if m.python and m.python.excluded:
        console.print(f"  excluded  {', '.join(m.python.excluded)}", style="dim", highlight=False, markup=False)
    if report is not None:
        show_check(report)
        check_verdict(report)


def show_image(result: api.BuildResult, as_json: bool) -> None:
    """A container image's (or a Dockerfile's) kiln image: what it keeps of the container."""
    m = result.manifest
    image = m.build.image
    if as_json:
        print_json({
            "ref": str(result.ref), "digest": result.digest, "size": m.size, "files": m.rootfs.files,
            "image": msgspec.to_builtins(image) if image else None,
        })  # fmt: skip
        return
    console.print(f"built {result.ref}", style="bold green", highlight=False)
    console.print(
        f"  digest   {result.digest}\n"
        f"  size     {human_size(m.size)} (kernel {human_size(m.kernel.size)}, root {human_size(m.rootfs.size)})\n"
        f"  files    {m.rootfs.files}\n"
        f"  from     {image.reference or 'a local image'} {image.digest[:19]} ({image.files} files, "
        f"{image.executables} executables, {human_size(image.size)})"
        if image
        else "",
        highlight=False,
    )


def check_json(report: CheckReport) -> dict[str, object]:
    return {
        "exit_status": report.exit_status,
        "requests": dict(report.requests),
        "ports_not_answering": report.not_ready,
        "imported": len(report.imported),
        "missing": report.missing,
        "never_imported": report.never_imported,
        "suggest_include": report.include,
        "consider_exclude": report.exclude,
    }


def show_check(report: CheckReport) -> None:
    from kiln.check import toml_list

    if report.not_ready:
        err_console.print(report.output.rstrip(), markup=False, highlight=False)  # why it never answered
    console.print("check", style="bold", highlight=False)
    for url, status in report.requests:
        console.print(f"  GET {url} -> {status}", highlight=False, markup=False)
    console.print(f"  imported at run time: {len(report.imported)} modules", highlight=False)
    console.print(
        f"  in the image, never imported (app and third-party): {len(report.never_imported)}",
        highlight=False,
    )
    if report.exclude:
        console.print(
            f"  never imported in this run; exclude only if never reached: {toml_list('exclude', report.exclude)}",
            style="dim",
            highlight=False,
            markup=False,
        )
    if report.missing:
        console.print(
            f"  imported but missing from the image: {', '.join(report.missing)}",
            style="red",
            highlight=False,
            markup=False,
        )
    if report.include:
        console.print(
            f"  add to kiln.toml: {toml_list('include', report.include)}",
            style="bold",
            highlight=False,
            markup=False,
        )


def check_verdict(report: CheckReport | None) -> None:
    if report is not None and report.not_ready and not report.missing:
        ports = ", ".join(map(str, report.not_ready))
        ended = f"it exited with status {report.exit_status}" if report.exit_status is not None else "it kept running"
        raise AnalysisError(f"--check: the app never answered on port {ports} ({ended}; the console is above)")
    if report is not None and report.missing:
        count = len(report.missing)
        raise AnalysisError(
            f"--check: {count} module{'s' if count > 1 else ''} imported at run time "
            f"{'are' if count > 1 else 'is'} not in the image: {', '.join(report.missing)}"
        )
