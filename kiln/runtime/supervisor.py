"""The supervisor of one detached instance, the way conmon is for podman.

`python -m kiln.runtime.supervisor DIR` runs in its own session, outlives the
`kiln run -d` that started it, runs the instance's image on its target with
the console going to DIR/console.log, records every start and end in
DIR/state.json, and applies the restart policy with exponential backoff.
Each start, restarts included, restores the image's snapshot when one fits
(the qemu target decides; `kiln run -d --cold` never does).
SIGTERM (from `kiln stop`) stops the VM gracefully and ends the supervisor
without a restart.

It also writes the instance's events (kiln.runtime.events), keeps a crash report
when a run ends badly (kiln.runtime.failure: out of memory, a kernel panic, a
signal, an exit status), and watches a VM's guest init over the control channel:
a guest that stops answering is reported as hung, stopped, and the restart
policy decides what comes next.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import msgspec

from kiln import daemon
from kiln.daemon import alive, proc_start_time
from kiln.errors import KilnError
from kiln.runtime import events, failure
from kiln.runtime.instance import Instance, now
from kiln.store import Store
from kiln.targets import target as target_class
from kiln.targets.base import Plan

BACKOFF_START = 0.5  # seconds before the first restart; doubles each time
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0  # a run this long resets the backoff


WATCH_GRACE = 30.0  # seconds after a start before the watchdog asks (a TCG boot, a restore's own use)
WATCH_EVERY = 10.0
WATCH_MISSES = 3  # pings unanswered in a row that make a guest hung


class Watchdog(threading.Thread):
    """Pings guest init over the control channel; kills the VM once it stops answering."""

    def __init__(self, inst: Instance, pid: int) -> None:
        super().__init__(daemon=True, name="watchdog")
        self.inst, self.pid, self.start_time = inst, pid, proc_start_time(pid)
        self.stopped = threading.Event()
        self.hung = False

    def run(self) -> None:
        from kiln.errors import TargetError
        from kiln.guest.protocol import ControlChannel

        misses = 0
        if self.stopped.wait(WATCH_GRACE):
            return
        while not self.stopped.is_set() and alive(self.pid, self.start_time):
            try:
                with ControlChannel(self.inst.control_socket, timeout=5) as channel:
                    channel.ping(timeout=5)
                misses = 0
            except TargetError:
                misses += 1
            if misses >= WATCH_MISSES and not self.stopped.is_set() and alive(self.pid, self.start_time):
                self.hung = True
                os.kill(self.pid, signal.SIGKILL)
                return
            self.stopped.wait(WATCH_EVERY)


class StopRequestedError(Exception):
    """SIGTERM: stop the instance for good."""


def supervise(inst: Instance) -> int:
    cfg = inst.config
    store = Store()
    daemon.announce(inst.dir, "supervisor")
    state = inst.read_state()
    backoff = BACKOFF_START

    def on_term(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        stopping = inst.read_state()  # what `kiln ps` shows while the app is given its grace period
        if stopping.status in ("starting", "running", "restarting"):
            stopping.status = "stopping"
            inst.write_state(stopping)
        raise StopRequestedError

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        while True:
            target = target_class(cfg.target)(store)
            try:
                image = store.image_by_digest(cfg.digest, cfg.image)
                sockets = {"qmp_socket": inst.qmp_socket, "control_socket": inst.control_socket}
                plan = target.plan(image, msgspec.structs.replace(cfg.run, **sockets))
            except KilnError as err:
                state.status, state.error, state.finished_at = "exited", str(err), now()
                inst.write_state(state)
                return 1

            watchdogs: list[Watchdog] = []

            def started(pid: int, plan: Plan = plan, watchdogs: list[Watchdog] = watchdogs) -> None:
                state.status, state.vm_pid, state.vm_start = "running", pid, proc_start_time(pid)
                state.started_at, state.finished_at, state.exit_code, state.error = now(), None, None, None
                inst.write_state(state)
                events.record(inst.dir, "start", how="restore" if plan.restore else "boot", target=cfg.target)
                if cfg.target == "qemu" and plan.control_socket and not cfg.run.gdb_port:  # a debugger may hold it
                    watchdogs.append(Watchdog(inst, pid))
                    watchdogs[-1].start()

            began = time.monotonic()
            offset = inst.console_log.stat().st_size if inst.console_log.exists() else 0
            with open(inst.console_log, "ab") as console:
                try:
                    code = target.run(plan, console, on_start=started)
                except KilnError as err:
                    code, state.error = 1, str(err)
                except KeyboardInterrupt:
                    raise StopRequestedError from None
                finally:
                    for dog in watchdogs:
                        dog.stopped.set()
            hung = any(dog.hung for dog in watchdogs)
            code = (code or 1) if hung else code
            _report(inst, code, failure.tail(inst.console_log, offset), hung, plan.memory_mib)
            state.exit_code, state.finished_at, state.vm_pid, state.vm_start = code, now(), None, None
            if not cfg.restart.should_restart(code, state.restarts):
                state.status = "exited"
                inst.write_state(state)
                return 0
            if time.monotonic() - began > STABLE_AFTER:
                backoff = BACKOFF_START
            state.status = "restarting"
            inst.write_state(state)
            events.record(inst.dir, "restart", attempt=state.restarts + 1, after_seconds=backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            state.restarts += 1
    except StopRequestedError:
        # the target's run() has stopped the VM on its way out (QMP quit, or SIGTERM to the sandbox)
        state = inst.read_state()
        state.status, state.finished_at, state.vm_pid, state.vm_start = "exited", now(), None, None
        state.exit_code = state.exit_code if state.exit_code is not None else 143
        inst.write_state(state)
        events.record(inst.dir, "stop")
        return 0


def _report(inst: Instance, code: int, console: str, hung: bool, memory_mib: int | None) -> None:
    """The run's exit in the events; why, and the evidence, when it ended badly."""
    events.record(inst.dir, "exit", status=code)
    found = (
        failure.Failure("hang", f"the guest stopped answering its control channel ({WATCH_MISSES} pings): stopped")
        if hung
        else failure.explain(console, code, memory_mib)
    )
    if found is None:
        return
    if found.kind != "exit":
        events.record(inst.dir, found.kind, reason=found.reason)
    if found.kind == "oom" and failure.INIT_OOM not in console:
        # init could not say it (the kernel deadlocked on memory after killing the app): kiln does,
        # so that `kiln logs` ends with the reason as after any other out-of-memory end
        with open(inst.console_log, "ab") as log:
            log.write(f"kiln: {found.reason}\n".encode())
    failure.write_report(inst.dir, found, code, console)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m kiln.runtime.supervisor INSTANCE_DIR", file=sys.stderr)
        return 2
    return supervise(Instance(Path(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())
