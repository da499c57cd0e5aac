"""Container images as unikernels: the tests' three images (Flask installed with pip, redis-server and
nginx installed with apt, FROM a Debian bookworm base made with debootstrap), each as a container image
(bytes, files, executables) beside the kiln image built from it, and the time to the first answer as a
container (bubblewrap over the image's own unpacked tree, with its Env, WorkingDir and command) against
the unikernel under QEMU and on the unix target, in one run.

    python bench/containers.py           # 3 runs each; rewrites its block in docs/benchmarks.md
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import accelerator, example_args, machine, median, replace_section, stop
from kiln import _proc
from kiln.oci.config import ImageConfig
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home
from kiln_testing.images import Buildah
from kiln_testing.ports import free_port
from kiln_testing.registry import Registry

IMAGES = ROOT / "tests" / "fixtures" / "images"
# image -> (guest port, what answers)
APPS = {"flask": (8080, "http"), "redis": (6379, "redis"), "nginx": (8080, "http")}
STACKS = ("container (bubblewrap)", "kiln (QEMU)", "kiln (unix target)")


def answers(kind: str, port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if kind == "redis":
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return b" 200 " in s.recv(32).split(b"\r\n")[0]
    except OSError:
        return False


def first_answer(argv: list[str], kind: str, port: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not answers(kind, port):
            if proc.poll() is not None or time.perf_counter() - start > 180:
                raise SystemExit(f"no answer from {' '.join(argv[:4])}")
            time.sleep(0.01)
        return time.perf_counter() - start
    finally:
        stop(proc)


def kiln_out(env: dict[str, str], *args: str) -> str:
    return subprocess.run([KILN, *args], env=env, capture_output=True, text=True, check=True).stdout


def container_argv(tree: Path, config: ImageConfig) -> list[str]:
    """The image's command over its own tree, as a container runs it (bubblewrap, the host's network; root
    stays root, as in a container without a user namespace)."""
    argv = [_proc.require("bwrap"), "--ro-bind", str(tree), "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--tmpfs", "/run", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session", "--clearenv", "--chdir", config.workdir]  # fmt: skip
    for key, value in config.env.items():
        argv += ["--setenv", key, value]
    return [*argv, *config.command()]


def main(argv: list[str] | None = None) -> int:
    args = example_args(argv, __doc__.splitlines()[0], "one run per stack")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-containers-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        registry = Registry(Path(tmp) / "registry")
        try:
            from kiln.baselines import debian

            buildah = Buildah(Path(tmp) / "buildah")
            buildah.import_tree(debian.rootfs("minbase"), "localhost/bench-debian:bookworm")
            base = f"{registry.host}/debian:bookworm"
            buildah.push("localhost/bench-debian:bookworm", f"docker://{base}")
            for name, (port, kind) in APPS.items():
                print(f"==> {name}", flush=True)
                buildah.build(IMAGES / name, f"localhost/bench-{name}:1", base)
                ref = f"{registry.host}/bench/{name}:1"
                buildah.push(f"localhost/bench-{name}:1", f"docker://{ref}")
                built = json.loads(kiln_out(env, "build", "--json", "-t", f"bench-{name}", f"docker://{ref}"))
                image = built["image"]
                tree = Path(env["KILN_HOME"]) / "cache" / "oci" / image["id"].replace(":", "-") / "rootfs"
                config = ImageConfig.from_document(json.loads((tree.parent / "config.json").read_text()))
                manifest = json.loads(kiln_out(env, "inspect", "--json", f"bench-{name}"))
                surface = json.loads(kiln_out(env, "inspect", "--surface", "--json", f"bench-{name}"))
                boots: dict[str, float] = {}
                for stack in STACKS:
                    times = []
                    for _ in range(args.runs):
                        if stack == "kiln (QEMU)":
                            host = free_port()
                            command = [KILN, "run", "-p", f"127.0.0.1:{host}:{port}", f"bench-{name}"]
                        elif stack == "kiln (unix target)":
                            host, command = port, [KILN, "run", "--target", "unix", f"bench-{name}"]
                        else:
                            host, command = port, container_argv(tree, config)
                        times.append(first_answer(command, kind, host, env))
                    boots[stack] = median(times)
                rows.append((name, image, manifest, surface["image"], boots))
                accel = accelerator(env, f"bench-{name}").upper()
        finally:
            registry.stop()
    lines = [
        "## Container images in (`bench/containers.py`)",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, accelerator: **{accel}**, medians of "
        f"{args.runs} runs. Each container image is FROM a Debian bookworm minbase (debootstrap), built by "
        "buildah; kiln builds from the registry copy.",
        "",
        "| image | container: bytes | files | executables | shell | kiln image (kernel + root) | files "
        "| executables | shell | kiln / container |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, image, manifest, mine, _ in rows:
        size = manifest["manifest"]["kernel"]["size"] + manifest["manifest"]["rootfs"]["size"]
        lines.append(
            f"| {name} | {image['size'] / 1e6:.1f} MB | {image['files']} | {image['executables']} | "
            f"{'yes' if image['shells'] else 'no'} | {size / 1e6:.2f} MB | {mine['files']} | "
            f"{len(mine['executables'])} | {'yes' if mine['shells'] else 'no'} | {size / image['size']:.3f} |"
        )
    lines += [
        "",
        "Time to the first answer (HTTP 200, or redis's PONG), the command started to the answer:",
        "",
        "| image | " + " | ".join(STACKS) + " |",
        "|---|" + "---|" * len(STACKS),
    ]
    for name, *_, boots in rows:
        base_s = boots["container (bubblewrap)"]
        lines.append(f"| {name} | " + " | ".join(f"{boots[s] * 1000:.0f} ms ({boots[s] / base_s:.1f}×)" for s in STACKS)
                     + " |")  # fmt: skip
    lines += [
        "",
        "The aim: the Flask container's kiln image at a tenth of its bytes or less, with no shell and at most "
        "two executables (the interpreter and guest init).",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()),
        "",
    ]
    body = "\n".join(lines)
    replace_section(args.output, "containers", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
