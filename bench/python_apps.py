"""Real Python apps (examples/flask-app, examples/fastapi-app, and apps started as their authors start
them: FastAPI by uvicorn's command, Flask under gunicorn with two workers, Django's startproject site
with no kiln.toml): image size and files, build time cold and cached, and boot to first response,
against the same app with the same packages in a Debian tree (the traditional VM's bookworm tree with
python3, run under bubblewrap: the container of bench/hello_http.py) and plain `python3` on the host,
all in one run.

    python bench/python_apps.py           # 3 runs each; rewrites its block in docs/benchmarks.md
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import accelerator, example_args, machine, median, replace_section, time_to_first_response
from bench.stacks import HOST_PYTHON, allocated
from kiln import _proc
from kiln.baselines import traditional
from kiln.paths import kiln_home
from kiln.surface import scan_tree
from kiln_testing.command import KILN, ROOT
from kiln_testing.ports import free_port

FIXTURES = ROOT / "tests" / "fixtures" / "apps"
# app -> (its directory, the interpreter's arguments that start it outside kiln, its port, a path that answers 200)
APPS: dict[str, tuple[Path, tuple[str, ...], int, str]] = {
    "flask-app": (ROOT / "examples" / "flask-app", ("app.py",), 8080, "/api/info"),
    "fastapi-app": (ROOT / "examples" / "fastapi-app", ("main.py",), 8000, "/items/3"),
    "uvicorn-app": (FIXTURES / "uvicorn-app", ("-m", "uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"),
                    8000, "/items/3"),
    "gunicorn-flask": (FIXTURES / "gunicorn-flask", ("-m", "gunicorn", "-w", "2", "-b", "0.0.0.0:8000", "app:app"),
                       8000, "/"),
    "django-site": (FIXTURES / "django-site", ("manage.py", "runserver", "--noreload", "0.0.0.0:8000"), 8000,
                    "/admin/login/"),
}  # fmt: skip


def build(app: Path, env: dict[str, str]) -> tuple[dict[str, object], float]:
    start = time.perf_counter()
    out = subprocess.run([KILN, "build", "--json", str(app)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout), time.perf_counter() - start


def cold_home(base: Path) -> dict[str, str]:
    """A KILN_HOME with the shared kernel builds but its own, empty caches: dependencies installed anew."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "kernel").symlink_to(kiln_home() / "kernel")
    # what the host is (whether KVM works, QEMU's version) is no app's cache: a home that probed KVM afresh
    # would add the probe's 10 s timeout (KVM does not work here) to its first boot
    (base / "cache").mkdir(exist_ok=True)
    for fact in ("accel.json", "qemu-version.json"):
        if (kiln_home() / "cache" / fact).is_file():
            shutil.copyfile(kiln_home() / "cache" / fact, base / "cache" / fact)
    return {**os.environ, "KILN_HOME": str(base)}


def site_of(env: dict[str, str]) -> Path:
    """The installed dependencies kiln's build left in env's cache (one app per home)."""
    (entry,) = (Path(env["KILN_HOME"]) / "cache" / "deps").iterdir()
    return entry / "site"


def files_in(*trees: Path) -> int:
    return sum(scan_tree(t)[0] for t in trees)


STACKS = ("kiln (QEMU)", "kiln (unix target)", "Debian tree (bubblewrap)", "plain python3")


@dataclass(frozen=True)
class Started:
    """What starting one app on one stack needs."""

    image: str
    words: tuple[str, ...]  # the interpreter's arguments
    port: int  # the app's own port
    host_port: int  # where the host reaches it
    app: Path
    site: Path  # the installed packages
    tree: Path  # the Debian tree
    bwrap: str


def stack_argv(stack: str, s: Started) -> list[str]:
    if stack == "kiln (QEMU)":
        return [KILN, "run", "-p", f"127.0.0.1:{s.host_port}:{s.port}", s.image]
    if stack == "kiln (unix target)":
        return [KILN, "run", "--target", "unix", s.image]
    if stack == "plain python3":
        return [HOST_PYTHON, *s.words]
    return [
        s.bwrap, "--ro-bind", str(s.tree), "/", "--tmpfs", "/opt",
        "--ro-bind", str(s.site), "/opt/site", "--bind", str(s.app), "/opt/app",
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--unshare-all", "--share-net",
        "--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "PYTHONPATH", "/opt/site:/opt/app", "--chdir", "/opt/app",
        "/usr/bin/python3", *s.words,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = example_args(argv, __doc__.splitlines()[0], "one run per stack")
    bwrap, tree = _proc.require("bwrap"), traditional.tree()
    tree_size, tree_files = allocated(tree), files_in(tree)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-python-") as tmp:
        for name, (app, words, port, path) in APPS.items():
            print(f"==> {name}", flush=True)
            env = cold_home(Path(tmp) / name)
            built, cold = build(app, env)
            _, cached = build(app, env)
            site = site_of(env)
            # the baselines run a copy, with the data/ directory an app may write (Django's SQLite file):
            # kiln's image has it as a volume; nothing is written into the checkout
            work = Path(tmp) / name / "app"
            shutil.copytree(app, work, dirs_exist_ok=True)
            (work / "data").mkdir(exist_ok=True)
            app_size = sum(p.stat().st_size for p in app.rglob("*") if p.is_file())
            container_size = tree_size + allocated(site) + app_size
            container_files = tree_files + files_in(site) + sum(1 for p in app.rglob("*") if p.is_file())
            boots: dict[str, float | None] = {}
            for stack in STACKS:
                times = []
                for _ in range(args.runs):
                    host_port = free_port() if stack == "kiln (QEMU)" else port
                    run_env = {**env, "PYTHONPATH": f"{site}:{work}"} if stack == "plain python3" else env
                    command = stack_argv(stack, Started(name, words, port, host_port, work, site, tree, bwrap))
                    timing = time_to_first_response(command, host_port, run_env, path=path, cwd=work)
                    if timing.seconds is None:
                        raise SystemExit(f"{name} on {stack}: no answer\n{timing.output[-2000:]}")
                    times.append(timing.seconds)
                boots[stack] = median(times)
            rows.append((name, built, cold, cached, container_size, container_files, boots))
            accel = accelerator(env, name).upper()
    lines = [
        "## Python apps with dependencies (`bench/python_apps.py`)",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, accelerator: **{accel}**, "
        f"medians of {args.runs} runs. The Debian tree is the traditional VM's bookworm tree with python3 "
        "plus the same packages kiln installed, run under bubblewrap (the container of the hello-http "
        "comparison; the tree also holds systemd and the cloud kernel, so it is larger than a slim "
        "Python container image).",
        "",
        "| app | kiln image (kernel + root) | files | Debian tree + packages | files | image / tree "
        "| build, cold | build, cached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, built, cold, cached, csize, cfiles, _ in rows:
        size = int(built["size"])  # type: ignore[call-overload]
        lines.append(
            f"| {name} | {size / 1e6:.2f} MB | {built['files']} | {csize / 1e6:.1f} MB | {cfiles} | "
            f"{size / csize:.3f} | {cold:.1f} s | {cached:.1f} s |"
        )
    lines += [
        "",
        "Boot to first response (the command started → first 200), against plain python3 in the same run:",
        "",
        "| app | " + " | ".join(rows[0][6]) + " |",
        "|---|" + "---|" * len(rows[0][6]),
    ]
    for name, *_, boots in rows:
        plain = boots["plain python3"] or 1
        cells = [f"{s * 1000:.0f} ms ({s / plain:.1f}×)" for s in boots.values() if s is not None]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "A cold build installs the dependencies with pip (from pip's own download cache when it has them) and "
        "builds the guest init; a cached build reuses the installed set and only re-lays the image out.",
        "The Flask image aims at 12 MB or less with the kernel, the Django one under 30 MB, and every image at "
        "a tenth of the Debian tree's bytes or less. gunicorn forks its two workers in every stack (the "
        "unikernel with `[seccomp] allow = { clone = ... }`); Django's is its development server, "
        "`runserver --noreload`, as kiln runs it from manage.py.",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()),
        "",
    ]
    body = "\n".join(lines)
    replace_section(args.output, "python-apps", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
