"""`kiln run IMAGE`: boot an image on a target and exit with the app's status."""

from __future__ import annotations

import shlex
import signal
import sys
from typing import BinaryIO

import click

from kiln.cli import ui
from kiln.cli.ui import interrupt_on
from kiln.errors import UsageError
from kiln.store import Store
from kiln.targets import NAMES
from kiln.targets import target as target_class
from kiln.targets.base import Plan, RunConfig, Target, VolumeMap
from kiln.targets.portmap import PortMap
from kiln.units import parse_memory

EPILOG = """\b
Examples:
  kiln run -p 8080:8080 hello-http
  kiln run --target unix -p 8080:8080 hello-http
  kiln run -v ./data:/data notes        # a host directory on a declared volume
  kiln run -e GREETING=hi -p 8080:8080 hello-http
  kiln run -d --name web -p 8080:8080 --restart on-failure hello-http
  kiln run --dry-run hello-http        # print the QEMU command line
  kiln run --cold -p 8080:8080 hello-http   # boot, even if `kiln snapshot` saved one
  kiln run -v ./data:/app/data mysite -- migrate   # the app's arguments instead of the image's
"""


@click.command(epilog=EPILOG)
@click.argument("image")
@click.argument("args", nargs=-1)
@click.option(
    "-p",
    "--publish",
    "ports",
    multiple=True,
    metavar="[IP:]HOST:GUEST",
    help="Publish a guest TCP port on the host (repeatable).",
)
@click.option(
    "-t",
    "--target",
    type=click.Choice(sorted(NAMES)),
    default="qemu",
    show_default=True,
    help="Where to run the image.",
)
@click.option("-m", "--memory", help="Guest RAM, e.g. 64M (default: the image's).")
@click.option(
    "-e",
    "--env",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a variable in the app's environment, over the image's (repeatable; boots cold).",
)
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="QEMU accelerator; auto probes whether KVM works.",
)
@click.option(
    "-v",
    "--volume",
    "volumes",
    multiple=True,
    metavar="HOSTDIR:/PATH",
    help="Put a host directory on one of the image's declared volumes (repeatable).",
)
@click.option("--kernel-log", is_flag=True, help="Show the guest kernel's boot messages.")
@click.option(
    "--unsafe-skip-digest-check",
    "skip_digest_check",
    is_flag=True,
    hidden=True,
    help="Boot without checking the image's parts against its manifest (for testing dm-verity).",
)
@click.option("-d", "--detach", is_flag=True, help="Run in the background under a supervisor; print the name.")
@click.option("--name", help="Name the detached instance (default: the image's name and a random suffix).")
@click.option(
    "--restart",
    default="no",
    show_default=True,
    metavar="no|on-failure[:N]|always",
    help="Restart policy of a detached instance.",
)
@click.option("--cold", is_flag=True, help="Boot cold even if the image has a fitting snapshot.")
@click.option(
    "--gdb",
    "gdb",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="[PORT]",
    help="qemu target: QEMU's gdbstub on 127.0.0.1:PORT (a free port if none given); see kiln debug.",
)
@click.option("--gdb-wait", is_flag=True, help="With --gdb: start the guest paused until the debugger continues.")
@click.option(
    "--snapshot",
    "snapshot_use",
    type=click.Choice(["auto", "require"]),
    default="auto",
    show_default=True,
    help="qemu target: restore a fitting snapshot when there is one (auto), or fail without one (require).",
)
@click.option("--dry-run", is_flag=True, help="Print the command that would run, and exit.")
def run(
    image: str,
    args: tuple[str, ...],
    ports: tuple[str, ...],
    target: str,
    memory: str | None,
    env: tuple[str, ...],
    accel: str,
    volumes: tuple[str, ...],
    kernel_log: bool,
    skip_digest_check: bool,
    detach: bool,
    name: str | None,
    restart: str,
    cold: bool,
    gdb: str | None,
    gdb_wait: bool,
    snapshot_use: str,
    dry_run: bool,
) -> None:
    """Run IMAGE; the console streams here, Ctrl-C stops it, and kiln exits with the app's status.

    ARGS, after the image (and --), replace the app's arguments, as `docker run IMAGE ARGS` replaces
    its CMD: for `python manage.py runserver ...`, `kiln run IMAGE -- migrate` runs `manage.py migrate`."""
    cfg = _config(args, ports, target, memory, env, accel, volumes, kernel_log, skip_digest_check, cold, gdb,
                  gdb_wait, snapshot_use)  # fmt: skip
    gdb_port = cfg.gdb_port
    store = Store()
    if detach and not dry_run:
        from kiln.runtime.instance import RestartPolicy
        from kiln.runtime.manage import run_detached

        inst, notes = run_detached(store, image, target, cfg, RestartPolicy.parse(restart), name)
        for note in notes:
            ui.note(note)
        if gdb_port:
            ui.note(f"gdbstub on 127.0.0.1:{gdb_port}: kiln debug {inst.name}")
        ui.say(inst.name)
        return
    if name or restart != "no":
        raise UsageError("--name and --restart go with -d (a detached instance)")
    img = store.image(image)
    runner = target_class(target)(store)
    plan = runner.plan(img, cfg)
    if dry_run:
        for fwd, up in zip(plan.forwards, plan.upstreams, strict=True):
            ui.note(f"kiln relays {fwd.host_ip}:{fwd.host} to QEMU's forward 127.0.0.1:{up} (guest port {fwd.guest})")
        ui.say(shlex.join(plan.argv))
        return
    for note in plan.notes:
        ui.note(note)
    if gdb_port:
        from kiln.kernel.build import symbols

        sym = symbols(img.manifest.kernel.config_hash)
        ui.note(f"gdbstub on 127.0.0.1:{gdb_port}: gdb {sym} -ex 'target remote 127.0.0.1:{gdb_port}'")
    sys.exit(_foreground(runner, plan, str(img.ref)))


def _config(
    args: tuple[str, ...], ports: tuple[str, ...], target: str, memory: str | None, env: tuple[str, ...], accel: str,
    volumes: tuple[str, ...], kernel_log: bool, skip_digest_check: bool, cold: bool, gdb: str | None,
    gdb_wait: bool, snapshot_use: str,
) -> RunConfig:  # fmt: skip
    """The run's flags, checked, as one RunConfig."""
    try:
        memory_mib = parse_memory(memory) if memory else None
    except ValueError as err:
        raise UsageError(f"--memory: {err}") from None
    if cold and snapshot_use == "require":
        raise UsageError("--cold and --snapshot=require contradict each other")
    if snapshot_use == "require" and target != "qemu":
        raise UsageError("snapshots are restored on the qemu target only")
    gdb_port = _gdb_port(gdb, gdb_wait, target)
    if any("\n" in a or "\0" in a for a in args):
        raise UsageError("the app's arguments may not contain a newline or NUL")
    bad = [e for e in env if "=" not in e or not e.split("=", 1)[0] or "\n" in e]
    if bad:
        raise UsageError(f"invalid -e {bad[0]!r} (expected KEY=VALUE)")
    return RunConfig(
        extra_env=dict(e.split("=", 1) for e in env),
        args=args or None,
        gdb_port=gdb_port,
        gdb_wait=gdb_wait,
        snapshot="never" if cold else snapshot_use,  # type: ignore[arg-type]
        ports=tuple(PortMap.parse(p) for p in ports),
        volumes=tuple(VolumeMap.parse(v) for v in volumes),
        memory_mib=memory_mib,
        accel=accel,
        kernel_log=kernel_log,
        skip_digest_check=skip_digest_check,
    )


def _foreground(runner: Target, plan: Plan, ref: str) -> int:
    """Run the plan with the console here; a failure's last line says why (an OOM kill, a panic, a status)."""
    interrupt_on(signal.SIGTERM)
    console = Remembering(sys.stdout.buffer)
    status = runner.run(plan, console)
    if status != 0:
        from kiln.runtime.failure import explain

        found = explain(console.tail(), status, plan.memory_mib)
        if found is not None and found.kind in ("oom", "panic"):
            ui.say(f"kiln: {found.reason}", err=True)  # the last line says why
        else:
            ui.say(f"kiln: {ref} exited with status {status}", err=True)
    return status


def _gdb_port(gdb: str | None, wait: bool, target: str) -> int | None:
    if gdb is None:
        if wait:
            raise UsageError("--gdb-wait goes with --gdb")
        return None
    if target != "qemu":
        raise UsageError("--gdb is for the qemu target (the unix target has no guest kernel to debug)")
    if gdb == "auto":
        from kiln.targets.ports import free_port

        return free_port()
    if not gdb.isdigit() or not 1 <= int(gdb) <= 65535:
        raise UsageError(f"--gdb {gdb}: not a port number (write --gdb=PORT, or --gdb followed by another option)")
    from kiln.targets.portmap import PortMap
    from kiln.targets.ports import check_free

    check_free([PortMap(host_ip="127.0.0.1", host=int(gdb), guest=1)])
    return int(gdb)


class Remembering:
    """The console on its way to stdout, its last 64 KiB kept to say why a run ended."""

    KEEP = 64 * 1024

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.kept = bytearray()

    def write(self, data: bytes) -> int:
        self.kept += data
        del self.kept[: -self.KEEP]
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()

    def tail(self) -> str:
        return self.kept.decode(errors="replace")
