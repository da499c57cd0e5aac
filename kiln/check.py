"""The import audit: prove the import set at build time instead of guessing it.

`kiln build` runs it by default for a Python app with ports (`--no-check` skips
it): the audit is conclusive once the app answers within AUDIT_READY seconds,
and a module it imported that the image lacks fails the build, the image
undone. `--check` runs it for any Python app and is strict: an app that never
answers fails too. `trim = "modules"` needs it.

The built image runs on the unix target with Python's import profiling on
(`PYTHONPROFILEIMPORTTIME=1`, which guest init adds to the app's environment in
the sandbox only; the image is not changed). While it runs, every declared port
gets an HTTP GET on each path of `check = [...]` in kiln.toml; an app without
ports runs to its end. Then the report compares:

- modules the app imported at run time that the image lacks (the guest's
  `ModuleNotFoundError: No module named ...`), each with an `include` line if
  the module exists where the app was built from;
- modules the image holds that were never imported: facts from one run, shown
  for the app's and third-party packages. A package none of whose modules ran
  gets an `exclude` line to consider, never applied by kiln.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from kiln.store import Image, Store
from kiln.targets.base import RunConfig
from kiln.targets.portmap import PortMap
from kiln.targets.unix import UnixTarget

PROFILE_ENV = {"PYTHONPROFILEIMPORTTIME": "1"}
_IMPORT_TIME = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([A-Za-z_][\w.]*)\s*$")
_MISSING = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")
READY_TIMEOUT = 60.0
AUDIT_READY = 30.0  # the default audit's bound: an app that has not answered by then is not audited
RUN_TIMEOUT = 60.0


@dataclass
class CheckReport:
    exit_status: int | None
    imported: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)  # imported at run time, not in the image
    never_imported: list[str] = field(default_factory=list)  # app and third-party modules in the image, unused
    requests: list[tuple[str, str]] = field(default_factory=list)  # (url, status or error)
    not_ready: list[int] = field(default_factory=list)  # declared ports that never accepted a connection
    include: list[str] = field(default_factory=list)  # suggested lines
    exclude: list[str] = field(default_factory=list)  # packages to consider excluding
    output: str = ""


def toml_list(key: str, names: list[str]) -> str:
    """A kiln.toml line to suggest: `include = ["a", "b"]`."""
    return f"{key} = [" + ", ".join(f'"{n}"' for n in names) + "]"


def parse(text: str) -> tuple[set[str], list[str]]:
    """(modules imported, modules the guest could not find) from the console of a profiled run."""
    imported = {m.group(1) for line in text.splitlines() if (m := _IMPORT_TIME.match(line.strip()))}
    missing = list(dict.fromkeys(m.group(1) for m in _MISSING.finditer(text)))
    return imported, missing


def _wait_port(port: int, alive: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline and alive():
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return str(answer.status)
    except urllib.error.HTTPError as err:
        return str(err.code)
    except (urllib.error.URLError, OSError) as err:
        return f"error: {getattr(err, 'reason', err)}"


def run(
    store: Store,
    image: Image,
    paths: tuple[str, ...],
    exists: Callable[[str], bool],
    ready_timeout: float = READY_TIMEOUT,
) -> CheckReport:
    """Run `image` profiled on the unix target, exercise it, and compare imports with its contents.
    `exists(name)` says whether a module can be found where the app was built from."""
    ports = image.manifest.entry.ports
    cfg = RunConfig(ports=tuple(PortMap(host_ip="127.0.0.1", host=p, guest=p) for p in ports), extra_env=PROFILE_ENV)
    target = UnixTarget(store)
    plan = target.plan(image, cfg)
    sink = io.BytesIO()
    started: list[int] = []
    result: list[int] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            result.append(target.run(plan, sink, started.append))
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    report = CheckReport(exit_status=None)
    if ports:
        deadline = time.monotonic() + ready_timeout
        for port in ports:
            if _wait_port(port, thread.is_alive, deadline):
                for path in paths:
                    url = f"http://127.0.0.1:{port}{path}"
                    report.requests.append((url, _get(url)))
            else:
                report.not_ready.append(port)
        if thread.is_alive() and started:
            os.killpg(started[0], signal.SIGTERM)
    thread.join(RUN_TIMEOUT)
    if thread.is_alive() and started:
        os.killpg(started[0], signal.SIGKILL)
        thread.join(10)
    if errors:
        raise errors[0]
    report.exit_status = result[0] if result else None
    report.output = sink.getvalue().decode(errors="replace")
    audit(image, report)
    report.include = [name for name in report.missing if exists(name)]
    return report


def audit(image: Image, report: CheckReport) -> None:
    """Fill in what the profiled console `report.output` says against what `image` holds
    (`kiln build --check` and `kiln trace` of a Python image)."""
    report.imported, missing = parse(report.output)
    python = image.manifest.python
    kept = {m.name for m in python.modules} if python else set()
    report.missing = [name for name in missing if name not in kept]
    unused = [m for m in (python.modules if python else ()) if m.origin != "stdlib" and m.name != "__main__"]
    report.never_imported = sorted(m.name for m in unused if m.name not in report.imported)
    used_tops = {name.split(".")[0] for name in report.imported}
    report.exclude = sorted({m.name.split(".")[0] for m in unused if m.origin == "third-party"} - used_tops)
