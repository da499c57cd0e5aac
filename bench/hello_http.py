"""hello-http: image size, file count, minimum guest memory, and time to the first
HTTP response on both targets, beside plain `python3.11 app.py` in the same run.

    python bench/hello_http.py            # 5 runs each, rewrites its block in docs/benchmarks.md
    python bench/hello_http.py --quick    # 3 runs, coarser memory search
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KILN,
    ROOT,
    bisect_min,
    free_port,
    isolated_home,
    machine,
    median,
    replace_section,
    time_to_first_response,
)

APP = ROOT / "examples" / "hello-http"
TARGET_MB = 8.0
PYTHON = "/usr/bin/python3.11"


def kiln(*args: str, env: dict[str, str]) -> str:
    return subprocess.run([KILN, *args], env=env, capture_output=True, text=True, check=True).stdout


def image_facts(env: dict[str, str], workdir: Path) -> dict[str, object]:
    built = json.loads(kiln("build", "--json", str(APP), env=env))
    manifest = json.loads(kiln("inspect", "--json", "hello-http", env=env))["manifest"]
    blob = Path(env["KILN_HOME"]) / "store" / "blobs" / "sha256" / manifest["rootfs"]["digest"].split(":")[1]
    tree = workdir / "tree"
    subprocess.run(["fsck.erofs", f"--extract={tree}", str(blob)], check=True, capture_output=True)
    files = [p for p in tree.rglob("*") if p.is_file() or p.is_symlink()]
    executables = [
        p
        for p in files
        if p.is_file()
        and not p.is_symlink()
        and os.access(p, os.X_OK)
        and p.read_bytes()[:4] == b"\x7fELF"
        and ".so" not in p.name
    ]
    shells = [s for s in ("bin/sh", "bin/bash", "usr/bin/sh", "usr/bin/bash", "bin/dash") if (tree / s).exists()]
    return {
        "size": built["size"],
        "kernel": built["kernel_size"],
        "rootfs": built["rootfs_size"],
        "files": len(files),
        "executables": sorted(str(p.relative_to(tree)) for p in executables),
        "shell": shells,
        "modules": built["modules"],
        "libraries": built["libraries"],
    }


def accelerator(env: dict[str, str]) -> str:
    argv = kiln("run", "--dry-run", "hello-http", env=env).split()
    return argv[argv.index("-accel") + 1].upper()


def serves(memory: int, env: dict[str, str], requests: int = 20) -> bool:
    """Does hello-http boot with `memory` MiB and then answer `requests` more requests?"""
    port = free_port()
    t = time_to_first_response(
        [KILN, "run", "-m", f"{memory}M", "-p", f"127.0.0.1:{port}:8080", "hello-http"],
        port,
        env=env,
        timeout=60,
        path="/health",
        extra_requests=requests,
    )
    ok = t.seconds is not None and t.served == requests
    print(f"  {memory} MiB: {'boots and serves' if ok else 'fails'}", flush=True)
    return ok


def boot_times(runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"kiln qemu": [], "kiln unix": [], "plain python3.11 app.py": []}
    for i in range(runs):
        for name in results:
            port = free_port()
            if name == "kiln qemu":
                argv = [KILN, "run", "-p", f"127.0.0.1:{port}:8080", "hello-http"]
            elif name == "kiln unix":
                argv = [KILN, "run", "--target", "unix", "-p", f"127.0.0.1:{port}:8080", "hello-http"]
            else:
                argv = [PYTHON, str(APP / "app.py"), "--port", str(port), "--bind", "127.0.0.1"]
            t = time_to_first_response(argv, port, env=env)
            if t.seconds is None:
                raise SystemExit(f"{name}: no answer in run {i + 1}:\n{t.output}")
            results[name].append(t.seconds)
            print(f"  run {i + 1}/{runs} {name}: {t.seconds * 1000:.0f} ms", flush=True)
    return results


def render(
    facts: dict[str, object],
    accel: str,
    min_mem: int | None,
    default_mem: int,
    times: dict[str, list[float]],
    runs: int,
) -> str:
    mb = int(facts["size"]) / 1e6  # type: ignore[arg-type]
    plain = median(times["plain python3.11 app.py"])
    lines = [
        "## hello-http (`bench/hello_http.py`)",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, accelerator: **{accel}**, "
        f"medians of {runs} runs.",
        "",
        "| figure | kiln | aim |",
        "|---|---|---|",
        f"| image size, kernel + root | {mb:.2f} MB (kernel {int(facts['kernel']) / 1e6:.2f} MB xz, "  # type: ignore[arg-type]
        f"root {int(facts['rootfs']) / 1e6:.2f} MB EROFS/lz4hc) | ≤ {TARGET_MB:.0f} MB "  # type: ignore[arg-type]
        f"({'met' if mb <= TARGET_MB else f'{mb / TARGET_MB:.2f}× the aim'}) |",
        f"| files in the image | {facts['files']} | ≤ 200 |",
        f"| executables | {len(facts['executables'])} ({', '.join(facts['executables'])}) | one |",  # type: ignore[arg-type]
        f"| shell present | {'yes: ' + ', '.join(facts['shell']) if facts['shell'] else 'no'} | no |",  # type: ignore[arg-type]
        f"| Python modules / shared libraries | {facts['modules']} / {facts['libraries']} | |",
        f"| lowest guest memory that boots and serves | {f'{min_mem} MiB' if min_mem else 'not found ≤ 128 MiB'}"
        f" (default: {default_mem} MiB) | ≤ 32 MiB |",
        "",
        "Time from the start command to the first successful `GET /` from the host:",
        "",
        "| stack | median | min | max | vs plain process |",
        "|---|---|---|---|---|",
    ]
    for name, values in times.items():
        lines.append(
            f"| {name} | {median(values) * 1000:.0f} ms | {min(values) * 1000:.0f} ms | "
            f"{max(values) * 1000:.0f} ms | {median(values) / plain:.2f}× |"
        )
    lines += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 runs and a coarser memory search")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        print("==> image facts", flush=True)
        facts = image_facts(env, Path(tmp))
        accel = accelerator(env)
        default_mem = json.loads(kiln("inspect", "--json", "hello-http", env=env))["manifest"]["entry"]["memory_mib"]
        print("==> lowest guest memory (bisection)", flush=True)
        min_mem = bisect_min(16, 128, lambda m: serves(m, env), step=8 if args.quick else 2)
        print(f"==> time to first response, {runs} runs", flush=True)
        times = boot_times(runs, env)
    body = render(facts, accel, min_mem, default_mem, times, runs)
    replace_section(args.output, "hello-http", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
