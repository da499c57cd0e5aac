"""Start, stop, restart and remove detached instances (the library behind
`kiln run -d`, `kiln start`, `kiln stop` and `kiln rm`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from pathlib import Path

import msgspec

from kiln.errors import KilnError, TargetError, UsageError
from kiln.guest.protocol import volume_tag
from kiln.paths import forget_socket_dir
from kiln.runtime.instance import (
    NAME_RE,
    Instance,
    InstanceConfig,
    InstanceState,
    RestartPolicy,
    alive,
    create,
    instances_dir,
    now,
)
from kiln.store import Store
from kiln.targets import target as target_class
from kiln.targets.base import RunConfig, VolumeMap
from kiln.targets.ports import check_free

START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def _start_supervisor(inst: Instance) -> None:
    """Its supervisor, started detached (kiln.daemon); back once it has started the app, or failed to."""
    inst.write_state(InstanceState())

    def started() -> bool:
        return inst.state().status != "starting"

    inst.supervisor_daemon().start(f"the supervisor of {inst.name}", started, START_TIMEOUT)
    st = inst.state()
    if st.status == "exited" and st.error:
        raise TargetError(f"instance {inst.name} did not start: {st.error} (kiln logs {inst.name})")


def run_detached(
    store: Store, image: str, target: str, run: RunConfig, restart: RestartPolicy, name: str | None
) -> tuple[Instance, list[str]]:
    """Start a detached instance; return it and the plan's notices (KVM missing, snapshot not fitting...)."""
    img = store.image(image)
    plan = target_class(target)(store).plan(img, run)  # every error a run would meet, before anything is created
    check_free(run.ports)
    name = name or f"{img.ref.name.rsplit('/', 1)[-1]}-{secrets.token_hex(3)}"
    if not NAME_RE.match(name):
        raise UsageError(f"invalid instance name {name!r} (letters, digits, . _ -; at most 64)")
    run = anonymous_volumes(run, img.manifest.entry.volumes, instances_dir() / name)
    inst = create(
        InstanceConfig(
            name=name, image=str(img.ref), digest=img.digest, target=target, run=run, restart=restart, created=now()
        )
    )
    _start_supervisor(inst)
    return inst, plan.notes


def anonymous_volumes(run: RunConfig, declared: tuple[str, ...], directory: Path) -> RunConfig:
    """Every declared volume no -v names gets a directory of the instance's own, as Docker gives a container
    an anonymous volume: its data lives across `kiln stop` and `kiln start`, and `kiln rm` removes it."""
    given = {v.guest for v in run.volumes}
    made = []
    for i, guest in enumerate(declared):
        if guest in given:
            continue
        host = directory / "volumes" / volume_tag(i)
        host.mkdir(parents=True, exist_ok=True)
        made.append(VolumeMap(host=host, guest=guest))
    return msgspec.structs.replace(run, volumes=(*run.volumes, *made)) if made else run


def start(inst: Instance) -> None:
    if inst.running():
        raise UsageError(f"instance {inst.name} is already running")
    if inst.config.summoned_by is not None:
        raise UsageError(f"instance {inst.name} is summoned: its summoner starts it when a connection arrives")
    check_free(inst.config.run.ports)
    _start_supervisor(inst)


def stop(inst: Instance, timeout: float = STOP_TIMEOUT) -> None:
    """Graceful: the supervisor quits the VM through QMP (or TERMs the sandbox); a kill after `timeout`."""
    st = inst.state()
    if not inst.running():
        return
    if inst.config.summoned_by is not None:
        # The summoner's VM: end it; the summoner sees it go and summons it again on the next connection.
        if alive(st.vm_pid, st.vm_start):
            os.kill(st.vm_pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(st.vm_pid, st.vm_start):
            time.sleep(0.05)
        return
    # until the supervisor has exited, not only said so: it records the stop event after the state,
    # and `rm` removing the directory meanwhile failed with "Directory not empty"
    inst.supervisor_daemon().stop(timeout)  # TERM, then a kill after `timeout`
    if inst.running():  # the supervisor was killed and its VM lives on: kill what is left
        st = inst.state()
        if alive(st.vm_pid, st.vm_start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.vm_pid, signal.SIGKILL)  # type: ignore[arg-type]
        st.status, st.finished_at, st.exit_code = "exited", now(), 137
        inst.write_state(st)


def remove(inst: Instance, force: bool) -> None:
    if inst.running():
        if not force:
            raise UsageError(f"instance {inst.name} is running: stop it first, or use rm -f")
        stop(inst)
    forget_socket_dir(inst.dir)
    try:
        shutil.rmtree(inst.dir)
    except OSError as err:
        raise KilnError(f"cannot remove instance {inst.name}: {err.strerror}") from None
