"""`kiln trace IMAGE`: run a program on the unix target under strace, then say what it used."""

from __future__ import annotations

import io
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from kiln import _proc
from kiln.cli.ui import console, err_console, interrupt_on, print_json
from kiln.store import Store
from kiln.targets.base import RunConfig
from kiln.targets.portmap import PortMap
from kiln.targets.unix import UnixTarget

if TYPE_CHECKING:
    from kiln.check import CheckReport
    from kiln.trace import Suggestions, Trace

EPILOG = """\b
Examples:
  kiln trace -p 8080:8080 nginx-static          # exercise it, then Ctrl-C
  kiln trace -t 10 --json memcached             # ten seconds, machine-readable
"""


@click.command(epilog=EPILOG)
@click.argument("image")
@click.option("-p", "--publish", "ports", multiple=True, metavar="[IP:]HOST:GUEST", help="Publish a port.")
@click.option("-t", "--time", "seconds", type=int, help="Stop after this many seconds (default: at Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def trace(image: str, ports: tuple[str, ...], seconds: int | None, as_json: bool) -> None:
    """Run IMAGE under strace while you exercise it; report its system calls and files, and
    suggest additions to its config (never removals). For a Python app, its imports are profiled
    too: modules it imported that the image lacks, and modules it never imported."""
    from kiln import check
    from kiln import trace as tracing
    from kiln.debs import fetch
    from kiln.image import unpack

    store = Store()
    img = store.image(image)
    target = UnixTarget(store)
    python = img.manifest.python is not None
    extra_env = check.PROFILE_ENV if python else {}
    plan = target.plan(img, RunConfig(ports=tuple(PortMap.parse(p) for p in ports), extra_env=extra_env))
    console_copy = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="kiln-trace-", dir=_proc.scratch()) as tmp:
        log = Path(tmp) / "strace.log"
        plan.argv = [_proc.require("strace"), "-f", "-qq", "-s", "256", "-o", str(log), *plan.argv]
        interrupt_on(signal.SIGTERM, signal.SIGALRM)
        if seconds:
            signal.alarm(seconds)
        err_console.print(f"tracing {img.ref}: exercise it, then Ctrl-C", highlight=False, markup=False)
        try:
            out = sys.stderr.buffer if as_json else sys.stdout.buffer  # keep --json clean
            target.run(plan, _Tee(out, console_copy))
        except KeyboardInterrupt:
            pass
        finally:
            signal.alarm(0)
        result = tracing.parse(log.read_text(errors="replace"), img.manifest.entry.argv[0])
    source = img.manifest.build.source
    root = fetch(source.split()[2]).root if source.startswith("Debian package ") else Path("/")
    tree = unpack.tree(store, img)
    in_image = {"/" + str(p.relative_to(tree)) for p in tree.rglob("*")}
    advice = tracing.suggest(result, in_image, root)
    imports = check.CheckReport(exit_status=None, output=console_copy.getvalue().decode(errors="replace"))
    if python:
        check.audit(img, imports)
    report: dict[str, object] = {
        "syscalls": dict(result.syscalls.most_common()),
        "files": result.files,
        "suggest": {"files": advice.files, "libraries": advice.libraries, "allow": advice.allow},
    }
    if python:
        report["python"] = {
            "imported": len(imports.imported),
            "missing": imports.missing,
            "never_imported": imports.never_imported,
        }
    if as_json:
        print_json(report)
    else:
        _say(result, advice, imports if python else None)


def _say(result: Trace, advice: Suggestions, imports: CheckReport | None) -> None:
    """The trace's report for a person: what it called and opened, then what to add (`imports`: a Python
    app's import profile, else None)."""
    from kiln import check

    console.print(
        f"{len(result.syscalls)} distinct system calls, {sum(result.syscalls.values())} in all; "
        f"{len(result.files)} paths opened or looked for",
        highlight=False,
    )
    console.print(
        "syscalls: " + ", ".join(f"{n} ({c})" for n, c in result.syscalls.most_common()), highlight=False, markup=False
    )
    if imports is not None:
        console.print(
            f"python: {len(imports.imported)} modules imported; {len(imports.never_imported)} app and "
            "third-party modules in the image never imported",
            highlight=False,
        )
        if imports.missing:
            console.print(
                f"add to kiln.toml: {check.toml_list('include', imports.missing)}",
                highlight=False,
                markup=False,
            )
    if not (advice.files or advice.libraries or advice.allow or (imports is not None and imports.missing)):
        console.print("nothing to add: the image has everything the program touched", highlight=False)
    for key, values in (("files", advice.files), ("libraries", advice.libraries)):
        if values:
            console.print(f"add to kiln.toml: {key} = {values!r}", highlight=False, markup=False)
    if advice.allow:
        console.print(
            "refused by the policy: " + ", ".join(advice.allow) + " (relax in [seccomp] allow, saying why)",
            highlight=False,
            markup=False,
        )


class _Tee(io.RawIOBase):
    """The console goes to the terminal and into a copy (for the import audit)."""

    def __init__(self, *sinks: BinaryIO) -> None:
        self.sinks = sinks

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        for sink in self.sinks:
            sink.write(data)
            sink.flush()
        return len(data)
