"""The corpus (tests/corpus): Python apps as their projects' docs start them, none with a kiln.toml.

For each app, in one run: the image's bytes against the same app in the Debian tree that
bench/python_apps.py measures against (the traditional VM's bookworm tree with python3, plus the app's
installed site-packages and its files), the build time (the first, which installs the dependencies unless a
cache holds them, and the same build again), and the first answer on the unix target against the same
command run by plain python3.11 on the host, with the same installed packages. Writes docs/compatibility.md.

    python bench/corpus.py            # every app
    python bench/corpus.py --quick    # three apps
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import example_args, machine, ratio, time_to_first_response
from bench.stacks import allocated
from kiln.deps.declared import read as read_declared
from kiln.deps.install import cache_key
from kiln.interpreter import probe
from kiln.paths import kiln_home
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home
from kiln_testing.ports import free_port

CORPUS = ROOT / "tests" / "corpus"
DOC = ROOT / "docs" / "compatibility.md"
QUICK = ("bottle-file", "uvicorn-standard", "httpbin-gunicorn")


def debian_tree_bytes() -> int:
    """The bookworm tree with python3 that the traditional VM and the container run (built once, cached)."""
    from kiln.baselines import traditional

    return allocated(traditional.tree())


def host_argv(entry: dict[str, object]) -> list[str]:
    """The image's command as plain python3.11 on the host runs it (kiln's start-up hook left out)."""
    argv = [str(a) for a in entry["argv"]]  # type: ignore[union-attr]
    rest = argv[int(str(entry["args_from"])) :]
    start = argv[: int(str(entry["args_from"]))]
    hook = next(i for i, a in enumerate(start) if a.endswith("/kiln/start.pyc"))
    how = start[hook + 1 :]
    if how[:1] == ["-e"]:  # a console script: module:attr, then the script's name
        module, attr = how[1].split(":")
        code = f"import sys; sys.argv[0] = {how[2]!r}; from {module} import {attr}; sys.exit({attr}())"
        return ["/usr/bin/python3.11", "-c", code, *rest]
    if how[:1] == ["-m"]:
        return ["/usr/bin/python3.11", "-m", how[1], *rest]
    return ["/usr/bin/python3.11", how[0].removeprefix("/app/"), *rest]  # the app's file, its source kept


def measure(app: str, env: dict[str, str], debian: int) -> dict[str, object]:
    spec = tomllib.loads((CORPUS / app / "corpus.toml").read_text())
    port, path = int(spec["port"]), str(spec["path"])
    row: dict[str, object] = {"app": app}
    start = time.perf_counter()
    proc = subprocess.run([KILN, "build", "--json", "-t", f"corpus-{app}", str(CORPUS / app)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "build failed"
        return row
    row["build_cold"] = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([KILN, "build", "--json", "-t", f"corpus-{app}", str(CORPUS / app)], env=env, capture_output=True,
                   check=True)  # fmt: skip
    row["build_cached"] = time.perf_counter() - start
    built = json.loads(proc.stdout)
    manifest = json.loads(subprocess.run([KILN, "inspect", "--json", f"corpus-{app}"], env=env, capture_output=True,
                                         text=True, check=True).stdout)["manifest"]  # fmt: skip
    row["image"] = int(built["size"])
    declared = read_declared(CORPUS / app)
    site = (
        Path(env["KILN_HOME"]) / "cache" / "deps" / cache_key(declared, probe("/usr/bin/python3.11")) / "site"
        if declared is not None
        else None
    )
    row["debian_tree"] = debian + (allocated(site) if site else 0) + allocated(CORPUS / app)
    host = free_port()
    timing = time_to_first_response([KILN, "run", "--target", "unix", "-p", f"127.0.0.1:{host}:{port}",
                                     f"corpus-{app}"], host, env, timeout=240, path=path)  # fmt: skip
    row["unix_first_answer"] = timing.seconds
    plain_env = {**os.environ, **manifest["entry"]["env"]}
    if site is not None:
        plain_env["PYTHONPATH"] = str(site)
    plain = time_to_first_response(host_argv(manifest["entry"]), port, plain_env, timeout=120, path=path,
                                   cwd=CORPUS / app)  # fmt: skip
    row["python3_first_answer"] = plain.seconds
    return row


def report(rows: list[dict[str, object]]) -> str:
    def mb(v: object) -> str:
        return f"{int(str(v)) / 1e6:.1f} MB" if v is not None else "-"

    def sec(v: object) -> str:
        return f"{float(str(v)):.2f} s" if v is not None else "no answer"

    info = machine()
    lines = [
        "# Compatibility: the corpus",
        "",
        "Generated by `bench/corpus.py`; do not edit by hand. Each app in `tests/corpus/` is written the way its",
        "project's docs start it, with **no kiln.toml**: the kiln.toml lines each one needed is **none** for every",
        "row below. The Debian tree is the traditional VM's bookworm tree with python3 (bench/python_apps.py's),",
        "plus the app's installed site-packages and its files: what a Debian VM or container running it holds.",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {info['cpu']} ({info['cores']} cores). The first build installs"
        " the dependencies unless pip's or kiln's cache holds them; the second is the same build again.",
        "",
        "| app | image | Debian tree | ratio | first build | build again | first answer (unix) | plain python3 |"
        " kiln.toml lines |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['app']} | build failed: {r['error']} | | | | | | | |")
            continue
        share = ratio(float(str(r["image"])), float(str(r["debian_tree"])))
        lines.append(
            f"| {r['app']} | {mb(r['image'])} | {mb(r['debian_tree'])} | {share:.3f} | {sec(r['build_cold'])} | "
            f"{sec(r['build_cached'])} | {sec(r['unix_first_answer'])} | {sec(r['python3_first_answer'])} | none |"
        )
    shares = sorted(float(str(r["image"])) / float(str(r["debian_tree"])) for r in rows if "error" not in r)
    if shares:
        lines += ["", f"Median image: {shares[len(shares) // 2]:.3f} of its Debian tree (the aim: at most 0.2)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = example_args(argv, __doc__ or "", "three apps")
    apps = sorted(p.parent.name for p in CORPUS.glob("*/corpus.toml"))
    if args.quick:
        apps = [a for a in apps if a in QUICK]
    debian = debian_tree_bytes()
    with tempfile.TemporaryDirectory(prefix="kiln-corpus-") as tmp:
        env = isolated_home(Path(tmp), kiln_home())
        rows = []
        for app in apps:
            print(f"corpus: {app}", file=sys.stderr, flush=True)
            rows.append(measure(app, env, debian))
    DOC.write_text(report(rows))
    print(DOC.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
