"""Install an app's dependencies for the embedded interpreter, once per set.

pip does the resolving and installing, run as `pip --python <embedded
interpreter> install --target DIR`: pip then runs *under* that interpreter, so
wheels are chosen for its version, ABI and platform (not kiln's own venv), and
a source-only package is built with it. pip reads the machine's own
configuration (index, find-links, constraints), so no host is named here.

The result is cached in `$KILN_HOME/cache/deps/<key>/` where the key covers
the declared set (see kiln.deps.declared) and the interpreter. An entry is
installed in a scratch directory and renamed into place (kiln.atomic.staging_dir)
only when pip succeeded, so a failed or interrupted install leaves nothing
behind, and an unchanged set is never installed twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln import _proc
from kiln.atomic import staging_dir
from kiln.deps.declared import Declared
from kiln.errors import AnalysisError
from kiln.interpreter import Interpreter
from kiln.paths import home_dir

Progress = Callable[[str], None]
# Bumped when the layout of a cache entry changes.
LAYOUT = "2"  # 2: installed.json records what was requested (pip's report), extras included


@dataclass(frozen=True)
class Installed:
    site: Path  # the directory the packages are in (a sys.path entry)
    packages: tuple[tuple[str, str], ...]  # (name, version) of every distribution installed
    cached: bool  # True if nothing was installed this time
    # what the declarations asked for by name: (name, extras), as pip's report says (`uvicorn[standard]`)
    requested: tuple[tuple[str, tuple[str, ...]], ...] = ()


def cache_key(declared: Declared, interp: Interpreter) -> str:
    ident = json.dumps(
        [LAYOUT, declared.key, str(interp.executable), interp.version, interp.magic, interp.extension_suffixes[0]]
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def _explain(lines: list[str], declared: Declared) -> str:
    """One line saying why pip failed, naming the package."""
    text = "\n".join(lines)
    if m := re.search(r"No matching distribution found for (\S+)", text):
        return (
            f"dependency {m.group(1)} (from {declared.source}): no such package, or no version of it "
            "for this interpreter, on the package index"
        )
    if "ResolutionImpossible" in text or "conflicting dependencies" in text:
        cause = []
        if "The conflict is caused by:" in text:
            after = text.split("The conflict is caused by:", 1)[1].splitlines()[1:]
            for line in after:
                if not line.strip():
                    break
                cause.append(line.strip())
        return f"dependencies in {declared.source} conflict: " + ("; ".join(cause) or "pip found no set that fits")
    failed = re.search(r"Failed (?:to build|building wheel for) (\S+)", text)
    if failed or "metadata-generation-failed" in text:
        name = failed.group(1) if failed else "a dependency"
        if m := re.search(r"error: \[Errno 2\] No such file or directory: '([^']+)'", text):
            why = f"its C compiler {m.group(1)} is not installed"
        elif m := re.search(r"error: command '([^']+)' failed", text):
            why = f"its C compiler {m.group(1)} failed"
        elif m := re.search(r"fatal error: (\S+\.h): No such file", text):
            why = f"the header {m.group(1)} is missing"
        else:
            why = "building it failed"
        return (
            f"dependency {name} ships only as source and cannot be built here: {why} "
            "(install gcc and python3-dev, or pick a version with a wheel for this Python)"
        )
    tail = " | ".join(line.strip() for line in lines[-3:] if line.strip())
    return f"installing the dependencies in {declared.source} failed: {tail}"


_SHOWN = re.compile(r"^(Collecting|Downloading|Building wheel|Installing collected packages|Successfully installed)")


def _show(line: str, say: Progress) -> None:
    """Pass pip's progress on; its failures are summed up in one error line instead."""
    line = line.strip()
    if _SHOWN.match(line) and "error" not in line.lower():
        say(line)


def install(root: Path, declared: Declared, interp: Interpreter, progress: Progress | None = None) -> Installed:
    """The dependencies installed for `interp` (from the cache if this set was installed before)."""
    say = progress or (lambda _msg: None)
    cache = home_dir("cache", "deps")
    entry = cache / cache_key(declared, interp)
    if (entry / "installed.json").is_file():
        return _read(entry, cached=True)
    with staging_dir(entry) as scratch:
        req = declared.file
        if req is None:
            req = scratch / "requirements.txt"
            req.write_text(declared.requirements)
        argv: list[str | Path] = [
            sys.executable, "-m", "pip", "--python", interp.executable, "install",
            "--target", scratch / "site", "--no-compile", "--no-input", "--progress-bar", "off",
            "--disable-pip-version-check", "--no-warn-script-location", "--root-user-action", "ignore",
            "--report", scratch / "report.json", "-r", req,
        ]  # fmt: skip
        if declared.constraints:
            (scratch / "constraints.txt").write_text(declared.constraints)
            argv += ["-c", scratch / "constraints.txt"]
        status, lines = _proc.stream(argv, lambda line: _show(line, say), cwd=root)
        if status != 0:
            raise AnalysisError(_explain(lines, declared))
        report = json.loads((scratch / "report.json").read_text())
        items = report.get("install", [])
        packages = sorted((item["metadata"]["name"], item["metadata"]["version"]) for item in items)
        requested = sorted(
            (item["metadata"]["name"], sorted(item.get("requested_extras") or ()))
            for item in items
            if item.get("requested")
        )
        (scratch / "report.json").unlink()
        (scratch / "installed.json").write_text(
            json.dumps({"packages": packages, "requested": requested}, indent=1) + "\n"
        )
    return _read(entry, cached=False)


def _read(entry: Path, cached: bool) -> Installed:
    data = json.loads((entry / "installed.json").read_text())
    return Installed(
        entry / "site",
        tuple((n, v) for n, v in data["packages"]),
        cached,
        tuple((n, tuple(e)) for n, e in data.get("requested", ())),
    )
