"""kiln under an engine: `podman run` to the first HTTP answer of hello-http with the kiln-oci runtime, beside
`podman run` of the same app as an ordinary container (Debian's python3 in an image FROM the Debian base,
with runc: podman's default crun cannot start containers on hosts in cgroup hybrid mode) and `kiln run`
itself, in one run; and each one's host memory (PSS of every process it takes: conmon, the runtime's
process and QEMU; conmon and python3; kiln and QEMU).

    python bench/engines.py           # 3 runs each; rewrites its block in docs/benchmarks.md
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import accelerator, answered, example_args, machine, median, replace_section, stop
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home
from kiln_testing.images import Buildah
from kiln_testing.ports import free_port
from kiln_testing.registry import Registry

RUNTIME = str(Path(KILN).parent / "kiln-oci")
STACKS = ("podman, kiln-oci", "podman, runc (a container)", "kiln run")
DOCKERFILE = """ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
COPY app.py /app/app.py
EXPOSE 8080
CMD ["python3", "/app/app.py", "--port", "8080"]
"""


def pss_kib(pids: list[int]) -> int:
    """The processes' proportional set size, and their children's."""
    seen, todo, total = set(), list(pids), 0
    while todo:
        pid = todo.pop()
        if pid in seen or pid <= 0:
            continue
        seen.add(pid)
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def podman_once(podman: list[str], ref: str, runtime: str, run_flags: list[str]) -> tuple[float, int]:
    port = free_port()
    start = time.perf_counter()
    argv = [*podman, "--runtime", runtime, "run", "-d", *run_flags, "-p", f"127.0.0.1:{port}:8080", ref]
    cid = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    try:
        if not answered(port, 180):
            raise SystemExit(f"no answer from {ref}")
        seconds = time.perf_counter() - start
        pids = subprocess.run([*podman, "inspect", cid, "--format", "{{.State.ConmonPid}} {{.State.Pid}}"],
                              capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        return seconds, pss_kib([int(p) for p in pids])
    finally:
        subprocess.run([*podman, "rm", "-f", "-t", "2", cid], capture_output=True, check=False)


def kiln_once(env: dict[str, str], image: str) -> tuple[float, int]:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([KILN, "run", "-p", f"127.0.0.1:{port}:8080", image], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        if not answered(port, 180, alive=lambda: proc.poll() is None):
            raise SystemExit("kiln run: no answer")
        return time.perf_counter() - start, pss_kib([proc.pid])
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    args = example_args(argv, __doc__.splitlines()[0], "one run per stack")
    with tempfile.TemporaryDirectory(prefix="kiln-bench-engines-") as tmp:
        base = Path(tmp)
        env = isolated_home(base / "home")
        registry = Registry(base / "registry")
        try:
            subprocess.run([KILN, "build", str(ROOT / "examples" / "hello-http")], env=env, check=True,
                           capture_output=True)  # fmt: skip
            kiln_ref = f"{registry.host}/bench/hello-kiln:1"
            subprocess.run([KILN, "tag", "hello-http", kiln_ref], env=env, check=True)
            subprocess.run([KILN, "push", "--as-container", kiln_ref], env=env, check=True, capture_output=True)
            from kiln.baselines import debian

            buildah = Buildah(base / "buildah")
            buildah.import_tree(debian.rootfs("minbase"), "localhost/bench-debian:bookworm")
            buildah.push("localhost/bench-debian:bookworm", f"docker://{registry.host}/debian:bookworm")
            context = base / "hello-container"
            context.mkdir()
            (context / "Dockerfile").write_text(DOCKERFILE)
            (context / "app.py").write_text((ROOT / "examples" / "hello-http" / "app.py").read_text())
            buildah.build(context, "localhost/hello-container:1", f"{registry.host}/debian:bookworm")
            plain_ref = f"{registry.host}/bench/hello-container:1"
            buildah.push("localhost/hello-container:1", f"docker://{plain_ref}")
            podman = ["podman", "--root", str(base / "podman"), "--runroot", str(base / "podman-run"),
                      "--cgroup-manager", "cgroupfs"]  # fmt: skip
            for ref in (kiln_ref, plain_ref):
                subprocess.run([*podman, "pull", "--tls-verify=false", ref], check=True, capture_output=True)
            results: dict[str, list[tuple[float, int]]] = {s: [] for s in STACKS}
            for _ in range(args.runs):
                results[STACKS[0]].append(podman_once(podman, kiln_ref, RUNTIME, []))
                # runc's setrlimit of podman's default nofile fails here without these (the issue's own finding)
                ulimits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
                results[STACKS[1]].append(podman_once(podman, plain_ref, "runc", ulimits))
                results[STACKS[2]].append(kiln_once(env, "hello-http"))
            accel = accelerator(env, "hello-http").upper()
        finally:
            registry.stop()
    times = {s: median([t for t, _ in r]) for s, r in results.items()}
    memory = {s: median([m for _, m in r]) / 1024 for s, r in results.items()}
    lines = [
        "## Under the engines (`bench/engines.py`)",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, accelerator: **{accel}**, medians of "
        f"{args.runs} runs: hello-http from `podman run -d -p` (or `kiln run -p`) to its first HTTP answer, and "
        "the host memory (PSS) of every process of the instance while it serves.",
        "",
        "| stack | first answer | vs kiln run | host memory (PSS) | vs kiln run |",
        "|---|---|---|---|---|",
    ]
    for s in STACKS:
        lines.append(
            f"| {s} | {times[s] * 1000:.0f} ms | {times[s] - times['kiln run']:+.2f} s | {memory[s]:.1f} MiB | "
            f"{memory[s] - memory['kiln run']:+.1f} MiB |"
        )
    lines += [
        "",
        "Aims under TCG: kiln-oci adds at most 0.5 s to kiln run's first answer, and at most 10 MiB of host memory "
        "per instance (conmon and the runtime's process, against kiln run's own process).",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()),
        "",
    ]
    body = "\n".join(lines)
    replace_section(args.output, "engines", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
