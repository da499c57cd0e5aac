"""A Node.js app's dependencies, installed by npm once per set, for the image's node.

An app directory with a `package.json` gets its dependencies as its author
installs them for production: `npm ci --omit=dev` when a `package-lock.json`
pins them (else `npm install --omit=dev`), with `--ignore-scripts` (a
package's install scripts run nothing at build time; what they would have
compiled must come prebuilt). npm runs on the build host, but only to fetch
and unpack into a scratch copy of the two files; the result is cached in
`$KILN_HOME/cache/npm/<key>/node_modules`, keyed by both files, and renamed
into place only when npm succeeded (kiln.atomic.staging_dir).

JavaScript is the same for any node; a native addon (`*.node`) is built for
one node's ABI, so one in the result fails the build in one line unless the
host's node is the image's own major version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln import _proc
from kiln.atomic import staging_dir
from kiln.errors import AppError
from kiln.paths import home_dir

LAYOUT = "1"


@dataclass(frozen=True)
class NodeModules:
    path: Path  # .../node_modules
    packages: int
    cached: bool


def declared(app: Path) -> bool:
    return (app / "package.json").is_file()


def install(app: Path, node_major: int | None, say: Callable[[str], None] | None = None) -> NodeModules:
    manifest = app / "package.json"
    lock = app / "package-lock.json"
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AppError(f"{manifest}: not a package.json: {err}") from None
    key = hashlib.sha256(
        (LAYOUT + "\0" + manifest.read_text() + "\0" + (lock.read_text() if lock.is_file() else "")).encode()
    ).hexdigest()[:32]
    final = home_dir("cache", "npm") / key
    if (final / "node_modules").is_dir():
        return NodeModules(final / "node_modules", _count(final / "node_modules"), cached=True)
    if not meta.get("dependencies"):
        with staging_dir(final) as tmp:
            (tmp / "node_modules").mkdir()
        return NodeModules(final / "node_modules", 0, cached=False)
    npm = shutil.which("npm")
    if npm is None:
        raise AppError(f"{manifest} declares dependencies and npm is not installed (apt-get install npm)")
    with staging_dir(final) as tmp:
        shutil.copyfile(manifest, tmp / "package.json")
        if lock.is_file():
            shutil.copyfile(lock, tmp / "package-lock.json")
        verb = "ci" if lock.is_file() else "install"
        argv = [npm, verb, "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        if say:
            say(f"npm {verb} --omit=dev ({len(meta['dependencies'])} dependencies in package.json)")
        proc = subprocess.run(
            argv, cwd=tmp, capture_output=True, text=True, check=False, env=_proc.tool_env(),
            preexec_fn=_proc.die_with_parent,
        )  # fmt: skip
        if proc.returncode != 0:
            last = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            reason = next((ln for ln in last if "ERR!" in ln and ("404" in ln or "notarget" in ln.lower())), None)
            raise AppError(f"npm {verb} failed for {manifest}: {(reason or (last[-1] if last else 'no output'))}")
        addons = sorted(str(p.relative_to(tmp)) for p in (tmp / "node_modules").rglob("*.node"))
        host = _host_major(shutil.which("node"))
        if addons and host != node_major:
            raise AppError(
                f"{manifest}: {addons[0]} is a native addon, built for this host's node {host}, and the image's "
                f"node is {node_major}: the image cannot load it"
            )
        for name in ("package.json", "package-lock.json"):
            (tmp / name).unlink(missing_ok=True)
    return NodeModules(final / "node_modules", _count(final / "node_modules"), cached=False)


def _count(modules: Path) -> int:
    return sum(1 for p in modules.rglob("package.json") if p.parent.parent.name in ("node_modules",) or
               p.parent.parent.name.startswith("@"))  # fmt: skip


def _host_major(node: str | None) -> int | None:
    if node is None:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return int(out.lstrip("v").split(".")[0]) if out.startswith("v") else None
