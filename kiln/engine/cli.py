"""`kiln-oci`: the runc command line, as podman (through conmon), Docker and containerd's runc shim call it.

    kiln-oci --root /run/kiln-oci create --bundle DIR --pid-file FILE [--console-socket SOCK] ID
    kiln-oci start ID
    kiln-oci state ID                 # the OCI state JSON: creating | created | running | stopped
    kiln-oci kill ID [SIGNAL]         # TERM reaches the app through init; KILL ends the VM
    kiln-oci delete [--force] ID      # nothing left behind: processes, sockets, files under --root
    kiln-oci features | ps ID | list

Global flags: --root (the containers' state), --log FILE and --log-format
json|text (errors as the engine reads them; also on stderr), --systemd-cgroup
(cgroupsPath names a systemd slice; kiln-oci joins no systemd cgroup and says
so), --debug. Options the engines pass that mean nothing to a VM (--no-pivot,
--no-new-keyring, --preserve-fds...) are accepted. `exec` is refused: a kiln
unikernel has no shell and runs no other program.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from kiln import __version__
from kiln.engine.state import (
    DEFAULT_ROOT,
    OCI_VERSION,
    Container,
    ContainerPlan,
    ContainerState,
    all_containers,
    make_fifo,
)
from kiln.errors import KilnError, UsageError

LENIENT = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}
DELETE_TIMEOUT = 10.0
SHIM_READY = 30.0  # seconds for the container's process to be in its network namespace


class Runtime:
    def __init__(self, root: Path, log: Path | None, log_format: str, systemd_cgroup: bool, debug: bool) -> None:
        self.root, self.log, self.log_format = root, log, log_format
        self.systemd_cgroup, self.debug = systemd_cgroup, debug

    def container(self, cid: str) -> Container:
        return Container(self.root, cid)

    def error(self, message: str) -> None:
        """One line, on stderr and in --log as the engine reads it."""
        sys.stderr.write(f"kiln-oci: {message}\n")
        if self.log is not None:
            with contextlib.suppress(OSError), open(self.log, "a") as f:
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                if self.log_format == "json":
                    f.write(json.dumps({"level": "error", "msg": message, "time": now}) + "\n")
                else:
                    f.write(f'time="{now}" level=error msg="{message}"\n')


@click.group(context_settings=LENIENT, epilog=__doc__.split("\n\n")[1] if __doc__ else None)
@click.option("--root", type=click.Path(path_type=Path), default=DEFAULT_ROOT, show_default=True)
@click.option("--log", type=click.Path(path_type=Path), default=None, help="Write errors here too.")
@click.option("--log-format", type=click.Choice(["json", "text"]), default="text")
@click.option("--systemd-cgroup", is_flag=True, help="cgroupsPath is a systemd slice:prefix:name.")
@click.option("--debug", is_flag=True)
@click.version_option(
    f"{__version__}\nspec: {OCI_VERSION}", prog_name="kiln-oci", message="%(prog)s version %(version)s"
)
@click.pass_context
def main(ctx: click.Context, root: Path, log: Path | None, log_format: str, systemd_cgroup: bool, debug: bool) -> None:
    """An OCI runtime that runs kiln images as VMs (kiln push --as-container)."""
    ctx.obj = Runtime(root, log, log_format, systemd_cgroup, debug)


def _fail(rt: Runtime, message: str, code: int = 1) -> None:
    rt.error(message)
    sys.exit(code)


@main.command(context_settings=LENIENT)
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=Path.cwd)
@click.option("--pid-file", type=click.Path(path_type=Path), default=None)
@click.option("--console-socket", type=click.Path(path_type=Path), default=None)
@click.argument("cid")
@click.pass_obj
def create(rt: Runtime, bundle: Path, pid_file: Path | None, console_socket: Path | None, cid: str) -> None:
    """Create container ID from the bundle: check it, then start its process, which waits for `start`."""
    from kiln.engine import bundle as bundles

    try:
        container = rt.container(cid)
        if container.exists():
            raise UsageError(f"container {cid} exists already")
        spec = bundles.read(bundle.resolve())
        plan = _plan(rt, container, spec)
        container.dir.mkdir(parents=True, exist_ok=True)
        container.save(ContainerState(id=cid, bundle=str(bundle.resolve()), annotations=spec.spec.annotations))
        container.save_plan(plan)
        make_fifo(container.fifo)
        stdio: dict[str, Any] = {"stdin": None, "stdout": None, "stderr": None}  # the engine's
        if spec.terminal:
            if console_socket is None:
                raise UsageError("process.terminal is set and no --console-socket was given")
            master, slave = os.openpty()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(console_socket))
                socket.send_fds(s, [b"kiln-oci"], [master])
            os.close(master)
            stdio = {"stdin": slave, "stdout": slave, "stderr": slave}
        shim = _start_shim(container, stdio)
        if spec.terminal:
            os.close(stdio["stdin"])
        from kiln.engine.bundle import run_hooks

        for stage in ("prestart", "createRuntime"):
            try:
                run_hooks(spec.spec, stage, {**container.oci(), "status": "creating"})
            except KilnError:
                shim.kill()
                raise
        if pid_file is not None:
            pid_file.write_text(str(shim.pid))
    except KilnError as err:
        with contextlib.suppress(KilnError):
            half = rt.container(cid)
            if half.dir.exists() and (not half.exists() or half.status() == "creating"):
                half.remove()  # nothing of a create that failed stays behind
        _fail(rt, str(err))


def _start_shim(container: Container, stdio: dict[str, Any]) -> subprocess.Popen[bytes]:
    """The container's process, started and waited for until it is in its network namespace (Docker's
    libnetwork configures the namespace of the pid it is given): it says `ok` or `no WHY` on a pipe."""
    import select

    ready_r, ready_w = os.pipe()
    said: list[str] = []

    def ready() -> bool:
        if not said and select.select([ready_r], [], [], 0)[0]:
            said.append(os.read(ready_r, 4096).decode(errors="replace"))
        return bool(said)

    try:
        shim = container.shim(ready_w).start(
            "the container's process", ready, SHIM_READY, stdio=stdio, pass_fds=(ready_w,)
        )
    finally:
        os.close(ready_r)
    if said[0] != "ok":
        shim.kill()
        raise KilnError(said[0].removeprefix("no ") or "the container's process ended before it was ready")
    return shim


def _plan(rt: Runtime, container: Container, spec: Any) -> ContainerPlan:
    """Everything the shim needs to boot the VM, decided now (errors are create's, not the shim's)."""
    import msgspec

    from kiln import _proc
    from kiln.engine.bundle import kernel_file
    from kiln.paths import socket_dir
    from kiln.targets.qemu import cold_plan, vm_spec

    short = socket_dir(container.dir)  # an engine's state directory may be too deep for a socket's address
    cfg = msgspec.structs.replace(spec.run, qmp_socket=short / "qmp.sock", control_socket=short / "ctl.sock")
    kernel = kernel_file(spec, rt.root / "cache")
    vm, notes = vm_spec(spec.manifest, spec.manifest.name, kernel, spec.rootfs, cfg)
    plan = cold_plan(vm, notes, spec.manifest.name, cfg, spec.manifest, _proc.require("qemu-system-x86_64"))
    for note in notes:
        sys.stderr.write(f"kiln-oci: {note}\n")
    return ContainerPlan(plan=plan, netns=spec.netns, rlimits=spec.rlimits, cgroup=spec.cgroup)


@main.command(context_settings=LENIENT)
@click.argument("cid")
@click.pass_obj
def start(rt: Runtime, cid: str) -> None:
    """Start a created container: its process boots the VM."""
    try:
        container = rt.container(cid)
        state = container.load()
        status = container.status(state)
        if status != "created":
            raise UsageError(f"container {cid} is {status}, not created")
        fd = os.open(container.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
        state.started = True
        container.save(state)
        _hooks_after(rt, container, "poststart")
    except OSError as err:
        _fail(rt, f"container {cid}: its process is not waiting to start ({err.strerror})")
    except KilnError as err:
        _fail(rt, str(err))


def _hooks_after(rt: Runtime, container: Container, stage: str) -> None:
    """poststart and poststop hooks: their failures are said, not fatal (as the spec has it)."""
    from kiln.engine import bundle

    try:
        spec = bundle.read_spec(Path(container.load().bundle))
        bundle.run_hooks(spec, stage, container.oci())
    except KilnError as err:
        rt.error(str(err))


@main.command(context_settings=LENIENT)
@click.argument("cid")
@click.pass_obj
def state(rt: Runtime, cid: str) -> None:
    """The container's state, as the OCI runtime spec's JSON."""
    try:
        click.echo(json.dumps(rt.container(cid).oci(), indent=2))
    except KilnError as err:
        _fail(rt, str(err))


def _signal(name: str) -> int:
    from kiln.targets.base import signal_number

    return signal_number(name, "kill")


@main.command(context_settings=LENIENT)
@click.option("--all", "-a", "all_", is_flag=True)
@click.argument("cid")
@click.argument("sig", default="SIGTERM")
@click.pass_obj
def kill(rt: Runtime, all_: bool, cid: str, sig: str) -> None:
    """Send SIGNAL (default TERM) to the container: TERM and the like reach the app through init."""
    del all_  # one process: the container's
    try:
        container = rt.container(cid)
        pid = container.pid()
        if not pid or container.status() not in ("created", "running"):
            raise UsageError(f"container {cid} is not running")
        os.kill(pid, _signal(sig))
    except ProcessLookupError:
        _fail(rt, f"container {cid} is not running")
    except KilnError as err:
        _fail(rt, str(err))


@main.command(context_settings=LENIENT)
@click.option("--force", "-f", is_flag=True)
@click.argument("cid")
@click.pass_obj
def delete(rt: Runtime, force: bool, cid: str) -> None:
    """Delete the container: its state, its sockets; with --force a running one is killed first."""
    try:
        container = rt.container(cid)
        if not container.exists():
            if force:
                return
            raise KilnError(f"container {cid} does not exist")
        status = container.status()
        if status in ("created", "running"):
            if not force:
                raise UsageError(f"container {cid} is {status}: stop it first, or delete --force")
            with contextlib.suppress(ProcessLookupError):
                os.kill(container.pid(), signal.SIGKILL)
            deadline = time.monotonic() + DELETE_TIMEOUT
            while container.status() in ("created", "running") and time.monotonic() < deadline:
                time.sleep(0.02)
        _hooks_after(rt, container, "poststop")
        container.remove()
    except KilnError as err:
        _fail(rt, str(err))


@main.command(context_settings=LENIENT)
@click.pass_obj
def features(rt: Runtime) -> None:
    """What this runtime supports, as `runc features` says it."""
    del rt
    click.echo(json.dumps({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw"],
        "linux": {"namespaces": ["network"], "capabilities": [], "cgroup": {"v1": True, "v2": True}},
        "annotations": {"org.kiln.runtime": "kiln-oci: kiln images as VMs (QEMU microvm)"},
    }, indent=2))  # fmt: skip


@main.command(context_settings=LENIENT)
@click.option("--format", "-f", "fmt", default="table")
@click.argument("cid")
@click.pass_obj
def ps(rt: Runtime, fmt: str, cid: str) -> None:
    """The container's processes on the host: its process and the VM."""
    try:
        container = rt.container(cid)
        container.load()  # one that does not exist is an error
        shim = container.pid()
        pids = [shim] if shim else []
        if shim:
            with contextlib.suppress(OSError):
                pids += [int(p) for p in Path(f"/proc/{shim}/task/{shim}/children").read_text().split()]
        if fmt == "json":
            click.echo(json.dumps(pids))
        else:
            click.echo("PID")
            for p in pids:
                click.echo(str(p))
    except KilnError as err:
        _fail(rt, str(err))


@main.command("list", context_settings=LENIENT)
@click.option("--format", "-f", "fmt", default="table")
@click.option("--quiet", "-q", is_flag=True)
@click.pass_obj
def list_(rt: Runtime, fmt: str, quiet: bool) -> None:
    """Every container under --root."""
    found = [c.oci() for c in all_containers(rt.root)]
    if fmt == "json":
        click.echo(json.dumps(found))
    elif quiet:
        for c in found:
            click.echo(str(c["id"]))
    else:
        click.echo(f"{'ID':<40} {'PID':<8} {'STATUS':<10} BUNDLE")
        for c in found:
            click.echo(f"{c['id']!s:<40} {c['pid']!s:<8} {c['status']!s:<10} {c['bundle']}")


@main.command(context_settings=LENIENT)
@click.pass_obj
def exec(rt: Runtime) -> None:
    """Refused: a kiln unikernel has no shell and runs no other program."""
    _fail(rt, "exec: a kiln unikernel has no shell and runs no other program (kiln stack, kiln top and the "
              "console are the ways in)")  # fmt: skip


for _verb in ("pause", "resume", "update", "checkpoint", "restore", "run"):

    @main.command(_verb, context_settings=LENIENT)
    @click.pass_obj
    def _unsupported(rt: Runtime, _verb: str = _verb) -> None:
        _fail(rt, f"{_verb}: not supported by kiln-oci (create, start, state, kill, delete, ps, list, features)")
