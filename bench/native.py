"""Native programs as unikernels: image size and file count against the Debian
package with its dependencies, boot to first answer, and redis and memcached
throughput from real clients on the unikernel (QEMU) against the same program
run natively, in the same run. Besides the examples with a kiln.toml of their
own, mosquitto and lighttpd as their Debian units run them (no arguments), and
an Express app on Debian's node.

    python bench/native.py            # 3 runs each; rewrites its block in docs/benchmarks.md
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import accelerator, example_args, machine, median, replace_section, stop
from kiln.debs import fetch
from kiln.deps import npm
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home
from kiln_testing.ports import free_port

# image -> (Debian package, guest port, the app's directory)
EXAMPLES = {
    "memcached": ("memcached", 11211, ROOT / "examples" / "memcached"),
    "redis": ("redis-server", 6379, ROOT / "examples" / "redis"),
    "nginx-static": ("nginx", 8080, ROOT / "examples" / "nginx-static"),
    "mosquitto": ("mosquitto", 1883, ROOT / "examples" / "mosquitto"),
    "lighttpd": ("lighttpd", 80, ROOT / "examples" / "lighttpd"),
    "express-app": ("nodejs", 3000, ROOT / "tests" / "fixtures" / "apps" / "express-app"),
}
MQTT_CONNECT = bytes([0x10, 16]) + b"\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00\x04kiln"


def kiln(*args: str, env: dict[str, str]) -> str:
    return subprocess.run([KILN, *args], env=env, capture_output=True, text=True, check=True).stdout


def ready(name: str, port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if name == "redis":
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            if name == "memcached":
                s.sendall(b"version\r\n")
                return s.recv(64).startswith(b"VERSION")
            if name == "mosquitto":
                s.sendall(MQTT_CONNECT)
                return s.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return b" 200 " in s.recv(32).split(b"\r\n")[0]
    except OSError:
        return False


def boot(
    argv: list[str], name: str, port: int, env: dict[str, str], then: Callable[[], float] | None = None
) -> tuple[float, float | None]:
    """(seconds to the first answer, the `then` measurement) for one start of argv."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not ready(name, port):
            if proc.poll() is not None or time.perf_counter() - start > 120:
                raise SystemExit(f"{name}: no answer from {' '.join(argv[:3])}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        return elapsed, then() if then else None
    finally:
        stop(proc)


def redis_rps(port: int) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", "5000", "-c", "10", "-t", "set,get", "--csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = [float(line.split(",")[1].strip('"')) for line in out.splitlines()[1:] if line.count(",") >= 1]
    return sum(rates) / len(rates)


def memcached_ops(port: int) -> float:
    from pymemcache.client.base import Client

    client = Client(("127.0.0.1", port), timeout=10, no_delay=True)
    n, start = 500, time.perf_counter()
    for i in range(n):
        client.set(f"k{i}", b"v" * 100)
        client.get(f"k{i}")
    client.close()
    return 2 * n / (time.perf_counter() - start)


def native_argv(name: str, port: int, root: Path) -> list[str]:
    """The same program outside kiln: memcached from the host, the others from the unpacked packages."""
    libs = f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu"
    loader = [f"{root}/lib64/ld-linux-x86-64.so.2", "--library-path", libs]
    if name == "memcached":
        return ["/usr/bin/memcached", "-u", "root", "-m", "64", "-p", str(port), "-U", "0", "-l", "127.0.0.1"]
    if name == "redis":
        return [
            *loader,
            f"{root}/usr/bin/redis-server",
            "--port",
            str(port),
            "--protected-mode",
            "no",
            "--save",
            "",
            "--bind",
            "127.0.0.1",
        ]
    tmp = Path(tempfile.mkdtemp())
    if name == "mosquitto":
        (tmp / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        return [*loader, f"{root}/usr/sbin/mosquitto", "-c", str(tmp / "m.conf")]
    if name == "lighttpd":
        (tmp / "l.conf").write_text(
            f'server.modules = ("mod_indexfile", "mod_staticfile")\nserver.modules-path = "{root}/usr/lib/lighttpd"\n'
            f'server.document-root = "{root}/usr/share/lighttpd"\nserver.bind = "127.0.0.1"\nserver.port = {port}\n'
            'index-file.names = ("index.html")\n'
        )
        return [*loader, f"{root}/usr/sbin/lighttpd", "-D", "-f", str(tmp / "l.conf")]
    if name == "express-app":  # the host's node (Debian's finds its externalized builtins only under /usr/share)
        app = tmp / "app"
        shutil.copytree(EXAMPLES[name][2], app)
        (app / "node_modules").symlink_to(npm.install(app, None).path)  # what kiln's build installed (cached)
        return ["env", f"PORT={port}", "node", str(app / "app.js")]
    conf = tmp / "nginx.conf"
    text = (ROOT / "examples/nginx-static/nginx.conf").read_text()
    conf.write_text(
        text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        .replace("/srv/site", str(ROOT / "examples/nginx-static/site"))
        .replace("/etc/nginx/mime.types", f"{root}/etc/nginx/mime.types")
    )
    return [*loader, f"{root}/usr/sbin/nginx", "-e", "stderr", "-c", str(conf)]


def main(argv: list[str] | None = None) -> int:
    args = example_args(argv, __doc__.splitlines()[0], "one run per example")
    rows, speed = [], []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-native-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        for example, (package, guest_port, app) in EXAMPLES.items():
            print(f"==> {example}", flush=True)
            built = json.loads(kiln("build", "--json", str(app), env=env))
            deb = fetch(package)
            boots, rates, native_rates = [], [], []
            measure = {"redis": redis_rps, "memcached": memcached_ops}.get(example)
            for _ in range(args.runs):
                port = free_port()
                seconds, rate = boot(
                    [KILN, "run", "-p", f"127.0.0.1:{port}:{guest_port}", example],
                    example,
                    port,
                    env,
                    (lambda p=port, m=measure: m(p)) if measure else None,
                )
                boots.append(seconds)
                if rate:
                    rates.append(rate)
                port = free_port()
                _, native = boot(
                    native_argv(example, port, deb.root),
                    example,
                    port,
                    env,
                    (lambda p=port, m=measure: m(p)) if measure else None,
                )
                if native:
                    native_rates.append(native)
            rows.append(
                (
                    example,
                    package,
                    deb.version,
                    built["size"],
                    built["files"],
                    deb.installed_kib * 1024,
                    len(deb.packages),
                    median(boots),
                )
            )
            if rates:
                speed.append((example, median(rates), median(native_rates)))
            accel = accelerator(env, example).upper()
    lines = [
        "## Native programs (`bench/native.py`)",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, accelerator: **{accel}**, "
        f"medians of {args.runs} runs.",
        "",
        "| example | Debian package | image (kernel + root) | files | package + dependencies installed "
        "| image / installed | boot to first answer |",
        "|---|---|---|---|---|---|---|",
    ]
    for example, package, version, size, files, installed, count, boot_s in rows:
        lines.append(
            f"| {example} | {package} {version} | {size / 1e6:.2f} MB | {files} | "
            f"{installed / 1e6:.1f} MB ({count} packages) | {size / installed:.3f} | {boot_s * 1000:.0f} ms |"
        )
    lines += [
        "",
        "Throughput from real clients (redis-benchmark SET+GET, 10 connections; pymemcache set+get, one "
        "connection), unikernel under QEMU against the same program run natively on the host:",
        "",
        "| example | unikernel | native | unikernel / native |",
        "|---|---|---|---|",
    ]
    for example, uni, native in speed:
        lines.append(f"| {example} | {uni:,.0f} ops/s | {native:,.0f} ops/s | {uni / native:.2f}× |")
    lines += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()), ""]
    body = "\n".join(lines)
    replace_section(args.output, "native", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
