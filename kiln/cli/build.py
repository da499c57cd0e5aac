"""`kiln build APP`: build an app into an image in the local store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError
from rich.markup import escape

from kiln.cli.kernel import kernel_progress
from kiln.cli.ui import console, err_console, human_size, print_json
from kiln.config import App, AppConfig, NativeConfig
from kiln.discover import load_app
from kiln.errors import AnalysisError, KilnError, UsageError
from kiln.image.build import BuildResult, build_python
from kiln.image.native import build_native
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

    if len(users) > 1 and ((args and is_reference(args[0])) or dockerfile):
        raise UsageError("--user: an image runs as one account")
    run_as = {"user": users[0] if users else None, "workdir": workdir}
    if args and is_reference(args[0]):
        image_build(args, tag or name, ports, entrypoint, env, username, password_stdin, no_kernel_build, as_json,
                    run_as=run_as)  # fmt: skip
        return
    if args and not (exe or deb):
        from kiln.discover import needs_builder

        context = Path(args[0])
        why = None if dockerfile else needs_builder(context)
        if dockerfile or why:
            if why:
                err_console.print(f"[dim]==>[/] building {escape(str(context))} by its Dockerfile: {escape(why)}")
            file = (
                Path(dockerfile)
                if dockerfile and Path(dockerfile).is_absolute()
                else context / (dockerfile or "Dockerfile")
            )
            bad = [a for a in build_args if "=" not in a]
            if bad:
                raise UsageError(f"invalid --build-arg {bad[0]!r} (expected KEY=VALUE)")
            recipe = (context, file, target, dict(a.split("=", 1) for a in build_args))
            image_build(args, tag or name, ports, entrypoint, env, username, password_stdin, no_kernel_build,
                        as_json, recipe, run_as)  # fmt: skip
            return
    if target or build_args:
        raise UsageError("--target and --build-arg go with --dockerfile")
    if entrypoint or env or username or password_stdin or workdir:
        raise UsageError(
            "--entrypoint, -e, --workdir, -u and --password-stdin go with a container image (docker://, oci:...)"
        )
    if exe or deb:
        given = {"exe": exe, "name": name, "args": args, "ports": ports, "files": files, "users": users}
        try:  # only what was given: a Debian package's unit says the rest
            config = NativeConfig(deb=deb, **{k: v for k, v in given.items() if v})
        except ValidationError as err:
            raise UsageError(f"--exe: {err.errors()[0]['msg']}") from None
        app = App(root=Path.cwd(), config=config, config_file=None)
    elif len(args) == 1 and not (ports or files or users):
        app = load_app(Path(args[0]))
        if name and tag:
            raise UsageError("--name and -t both name the image: give one (-t NAME[:TAG])")
        tag = tag or name
    elif len(args) == 1:
        raise UsageError(
            "-p, --file and --user describe a native program (--exe, --deb); an app declares them in kiln.toml"
        )
    else:
        raise UsageError("give one APP, or --exe PROGRAM [options] -- ARGS (see kiln build --help)")
    if check and app.native:
        raise UsageError("--check proves a Python app's imports; for a native program use kiln trace")
    trims = isinstance(app.config, AppConfig) and app.config.trim == "modules"
    if trims and check is False:
        raise UsageError('trim = "modules" keeps only what the imports reach, so the build runs the app to prove it: '
                         "drop --no-check, or drop the trim line")  # fmt: skip
    audit = check is None and not app.native and (bool(app.config.ports) or trims)
    store = Store()
    previous = _tagged(store, tag or app.name)
    builder = build_native if app.native else build_python
    result = builder(
        app,
        store,
        tag,
        step=lambda msg: err_console.print(f"[dim]==>[/] {escape(msg)}"),
        build_kernel=not no_kernel_build,
        kernel_progress=kernel_progress,
    )
    m = result.manifest
    modules = len(m.python.modules) if m.python else 0
    report = run_check(app, result) if check else None
    audited = None
    if audit and (busy := _busy_ports(app.config.ports)):
        # the unix target runs on the host's network: the app's own ports must be free there
        err_console.print(
            f"[dim]==>[/] audit: port {', '.join(map(str, busy))} is in use on this host: the app was not run, "
            "its imports were not checked",
            highlight=False,
        )
    elif audit:
        from kiln.check import AUDIT_READY

        audited = run_check(app, result, AUDIT_READY)
        audit_verdict(audited, store, result, previous)
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


def image_build(
    args: tuple[str, ...],
    tag: str | None,
    ports: tuple[int, ...],
    entrypoint: str | None,
    env: tuple[str, ...],
    username: str | None,
    password_stdin: bool,
    no_kernel_build: bool,
    as_json: bool,
    dockerfile: tuple[Path, Path, str | None, dict[str, str]] | None = None,
    run_as: dict[str, str | None] | None = None,
) -> None:
    """kiln build REFERENCE [-- ARGS] (or a Dockerfile's context): a container image, with docker run's overrides."""
    import sys

    import msgspec

    from kiln.oci.build import build_dockerfile, build_image
    from kiln.oci.image import Overrides

    bad = [e for e in env if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        raise UsageError(f"invalid -e {bad[0]!r} (expected KEY=VALUE)")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    overrides = Overrides(
        entrypoint=entrypoint,
        args=args[1:] or None,
        env=dict(e.split("=", 1) for e in env),
        ports=ports,
        username=username,
        password=password,
        user=(run_as or {}).get("user"),
        workdir=(run_as or {}).get("workdir"),
    )
    step = lambda msg: err_console.print(f"[dim]==>[/] {escape(msg)}")  # noqa: E731
    if dockerfile is not None:
        context, file, target, build_args = dockerfile
        result = build_dockerfile(
            context, file, Store(), tag, step, not no_kernel_build, kernel_progress, overrides, target, build_args
        )
    else:
        result = build_image(args[0], Store(), tag, step, not no_kernel_build, kernel_progress, overrides)
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


def _busy_ports(ports: tuple[int, ...]) -> list[int]:
    """The ports another process on this host listens on (the audit's app would find them taken)."""
    from kiln.errors import TargetError
    from kiln.targets.portmap import PortMap
    from kiln.targets.ports import check_free

    busy = []
    for port in ports:
        try:
            check_free([PortMap(host_ip="0.0.0.0", host=port, guest=port)])
        except TargetError:
            busy.append(port)
    return busy


def _tagged(store: Store, name: str) -> str | None:
    """The image the tag names before this build, if any."""
    try:
        return store.resolve(name)[0]
    except KilnError:
        return None


def run_check(app: App, result: BuildResult, ready: float | None = None) -> CheckReport:
    from kiln import check
    from kiln.analyze.python import Resolver

    analysis = result.analysis
    assert analysis is not None and isinstance(app.config, AppConfig)
    resolver = Resolver(app, analysis.interp, tuple(analysis.place.sites))
    err_console.print(f"[dim]==>[/] checking: running {escape(str(result.ref))} on the unix target, imports profiled")
    store = Store()
    image = store.image(str(result.ref))
    return check.run(
        store, image, app.config.check, lambda n: resolver.find(n) is not None, ready or check.READY_TIMEOUT
    )


def audit_verdict(report: CheckReport, store: Store, result: BuildResult, previous: str | None) -> None:
    """The default audit: a module the app imported that the image lacks fails the build in one line, and the
    image is undone (the tag back where it was); an app that never answered is only not audited."""
    from urllib.parse import urlsplit

    from kiln.check import AUDIT_READY, toml_list

    if report.missing:
        store.discard(result.ref, result.digest, previous)
        fix = (
            f"add {toml_list('include', report.include)} to kiln.toml"
            if report.include
            else ("it is not installed where the app was built from: add its distribution to the requirements")
        )
        raise AnalysisError(
            f"the audit run imported {', '.join(report.missing)}, which the image lacks: {fix} "
            "(kiln build --no-check skips the run)"
        )  # fmt: skip
    if report.not_ready:
        ended = f"it exited with status {report.exit_status}" if report.exit_status is not None else "it kept starting"
        raised = [ln.strip() for ln in report.output.splitlines() if re.match(r"^\s*[\w.]*(Error|Exception)\b", ln)]
        if raised and report.exit_status is not None:
            ended += f": {raised[-1][:160]}"
        err_console.print(
            f"[dim]==>[/] audit: the app did not answer on port {', '.join(map(str, report.not_ready))} within "
            f"{AUDIT_READY:.0f} s ({ended}): its imports were not checked",
            highlight=False,
        )
    else:
        asked = ", ".join(f"GET {urlsplit(url).path or '/'} -> {status}" for url, status in report.requests)
        err_console.print(
            f"[dim]==>[/] audit: {asked}; {len(report.imported)} modules imported, none missing", highlight=False
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
