"""The supervisor of one detached instance, the way conmon is for podman.

`python -m kiln.runtime.supervisor DIR` runs in its own session, outlives the
`kiln run -d` that started it, runs the instance's image on its target with
the console going to DIR/console.log, records every start and end in
DIR/state.json, and applies the restart policy with exponential backoff.
Each start, restarts included, restores the image's snapshot when one fits
(the qemu target decides; `kiln run -d --cold` never does).
SIGTERM (from `kiln stop`) stops the VM gracefully and ends the supervisor
without a restart.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from kiln.errors import KilnError
from kiln.runtime.instance import Instance, now, proc_start_time
from kiln.store import Store
from kiln.targets import target as target_class

BACKOFF_START = 0.5  # seconds before the first restart; doubles each time
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0  # a run this long resets the backoff


class StopRequestedError(Exception):
    """SIGTERM: stop the instance for good."""


def _on_term(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise StopRequestedError


def supervise(inst: Instance) -> int:
    cfg = inst.config
    store = Store()
    state = inst.read_state()
    state.supervisor_pid = os.getpid()
    state.supervisor_start = proc_start_time(os.getpid())
    inst.write_state(state)
    backoff = BACKOFF_START
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        while True:
            target = target_class(cfg.target)(store)
            try:
                image = store.image_by_digest(cfg.digest, cfg.image)
                sockets = {"qmp_socket": inst.qmp_socket, "control_socket": inst.control_socket}
                plan = target.plan(image, dataclasses.replace(cfg.run, **sockets))
            except KilnError as err:
                state.status, state.error, state.finished_at = "exited", str(err), now()
                inst.write_state(state)
                return 1

            def started(pid: int) -> None:
                state.status, state.vm_pid, state.vm_start = "running", pid, proc_start_time(pid)
                state.started_at, state.finished_at, state.exit_code, state.error = now(), None, None, None
                inst.write_state(state)

            began = time.monotonic()
            with open(inst.console_log, "ab") as console:
                try:
                    code = target.run(plan, console, on_start=started)
                except KilnError as err:
                    code, state.error = 1, str(err)
                except KeyboardInterrupt:
                    raise StopRequestedError from None
            state.exit_code, state.finished_at, state.vm_pid, state.vm_start = code, now(), None, None
            if not cfg.restart.should_restart(code, state.restarts):
                state.status = "exited"
                inst.write_state(state)
                return 0
            if time.monotonic() - began > STABLE_AFTER:
                backoff = BACKOFF_START
            state.status = "restarting"
            inst.write_state(state)
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            state.restarts += 1
    except StopRequestedError:
        # the target's run() has stopped the VM on its way out (QMP quit, or SIGTERM to the sandbox)
        state = inst.read_state()
        state.status, state.finished_at, state.vm_pid, state.vm_start = "exited", now(), None, None
        state.exit_code = state.exit_code if state.exit_code is not None else 143
        inst.write_state(state)
        return 0


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m kiln.runtime.supervisor INSTANCE_DIR", file=sys.stderr)
        return 2
    return supervise(Instance(Path(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())
