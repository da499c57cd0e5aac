"""A Dockerfile, built by buildah (daemonless, in Debian) into an OCI layout kiln then reads as an image.

    buildah --root R --runroot RR bud --isolation chroot --layers -f FILE [--target T] [--build-arg K=V] DIR
    buildah push IMAGE oci:LAYOUT:image

kiln keeps its own buildah storage ($KILN_HOME/cache/buildah), so its builds
neither see nor change the host's podman images, and a base image pulled once
is reused. RUN steps run with `--isolation chroot`: no OCI runtime is involved
(on hosts like the development machine, buildah's default crun fails every
RUN step with "did not get container create message from subprocess", since
its cgroups are in hybrid mode), and the steps still get their own mount,
PID, IPC and UTS namespaces. A base image on a loopback registry is pulled
over plain HTTP, as `kiln pull` speaks to one.

A build's failure is one line: the step that failed and the last thing it said.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from kiln import _proc, shell_form
from kiln.errors import AppError, KilnError
from kiln.paths import home_dir
from kiln.registry import insecure

TIMEOUT = 1800.0


class DockerfileBuildError(KilnError):
    """buildah could not build the Dockerfile."""


def _storage() -> list[str]:
    base = home_dir("cache", "buildah")
    return ["--root", str(base / "root"), "--runroot", str(base / "runroot")]


def _loopback_bases(dockerfile: Path, build_args: dict[str, str]) -> bool:
    """Does a FROM name a registry on loopback (after ARG defaults and --build-arg values)?"""
    text = dockerfile.read_text(errors="replace")
    args = dict(re.findall(r"^\s*ARG\s+([A-Za-z_]\w*)=(\S+)", text, re.MULTILINE | re.IGNORECASE))
    args.update(build_args)
    bases = re.findall(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", text, re.MULTILINE | re.IGNORECASE)
    hosts = [shell_form.expand(b, args, str(dockerfile), unset_is_empty=True).split("/", 1)[0] for b in bases]
    return any(insecure(h) for h in hosts if "." in h or ":" in h or h == "localhost")


def build(
    context: Path,
    dockerfile: Path,
    layout: Path,
    target: str | None = None,
    build_args: dict[str, str] | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Build `dockerfile` in `context` and write the image to the OCI layout `layout` (tag `image`)."""
    buildah = _proc.require("buildah")
    if not context.is_dir():
        raise AppError(f"no such build context: {context}")
    if not dockerfile.is_file():
        raise AppError(f"no such Dockerfile: {dockerfile}")
    key = hashlib.sha256(f"{context.resolve()}\0{dockerfile.resolve()}\0{target}".encode()).hexdigest()[:12]
    tag = f"localhost/kiln-build-{key}:latest"
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "0")  # as kiln's own builds: the same inputs, the same layers
    argv = [buildah, *_storage(), "bud", "--isolation", "chroot", "--layers", "--timestamp", epoch]
    argv += ["-f", str(dockerfile), "-t", tag]
    if target:
        argv += ["--target", target]
    for key, value in sorted((build_args or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    if _loopback_bases(dockerfile, build_args or {}):
        argv.append("--tls-verify=false")
    argv.append(str(context))
    if say:
        say(f"buildah bud --isolation chroot -f {dockerfile.name}{f' --target {target}' if target else ''} {context}")
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_proc.tool_env(),
            preexec_fn=_proc.die_with_parent,
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if say and line.startswith("STEP "):
                say(f"  {line.rstrip()}")
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise DockerfileBuildError(f"{dockerfile}: the build did not finish within {TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        step = next((ln for ln in reversed(lines) if ln.startswith("STEP ")), "")
        said = [ln for ln in lines if ln.strip() and not ln.startswith(("STEP ", "time=", "subprocess exited"))]
        error = next((ln for ln in reversed(lines) if ln.startswith("Error:")), said[-1] if said else "no output")
        raise DockerfileBuildError(f"{dockerfile}: buildah failed{f' at {step}' if step else ''}: {error}")
    _proc.run([buildah, *_storage(), "push", "--quiet", tag, f"oci:{layout}:image"], what="writing the built image")
