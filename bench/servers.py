"""Real servers from Debian packages, built with no arguments: image bytes against the package and its
dependencies installed, boot to the first answer of each server's own client under QEMU and on the unix target
against the same package as the systemd service Debian makes of it in a traditional Debian VM under the same QEMU
(kiln.baselines.traditional: Debian's cloud kernel, systemd, the package installed by debootstrap), throughput
from a real load tool (pgbench, mariadb-slap, wrk, redis-benchmark, pika) under QEMU against the same binary as
a host process (the unix target: no VM), and whether a database keeps its rows across `kiln stop`
and a start with the same volume. All in one run.

    python bench/servers.py            # 3 runs each; rewrites its block in docs/benchmarks.md
    python bench/servers.py --quick    # one run, shorter loads
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import accelerator, example_args, machine, median, replace_section, stop, wrk
from kiln.baselines import traditional
from kiln.debs import fetch
from kiln.targets.portmap import PortMap
from kiln.targets.qemu_command import PcVmSpec, pc_command
from kiln_testing import clients
from kiln_testing.command import KILN
from kiln_testing.homes import isolated_home
from kiln_testing.ports import free_port

PASSWORD = "bench-s3cret"
RABBIT_USER = ("RABBITMQ_DEFAULT_USER=bench", f"RABBITMQ_DEFAULT_PASS={PASSWORD}")
VM_MEMORY_MIB = 1024  # the Debian VM's: a small cloud instance, room for the JVM and the Erlang VM
VM_TIMEOUT = 900.0  # seconds to its first answer: Debian's boot and systemd under TCG, then the server's own start

# What the Debian VM needs beside its package, as an administrator would write it, so that the host's client
# gets the answer kiln's image gives: the server on every address (QEMU's user network forwards to the guest's
# NIC) and the client's account. Each package's own unit starts it, as Debian enables it.
VM_FILES: dict[str, dict[str, str]] = {
    "postgresql-15": {
        "/etc/postgresql/15/main/conf.d/bench.conf": "listen_addresses = '*'\n",
        "/etc/postgresql/15/main/pg_hba.conf": "local all postgres peer\nhost all all all trust\n",
    },
    "mariadb-server": {
        "/etc/mysql/mariadb.conf.d/99-bench.cnf": "[mariadbd]\nbind-address = 0.0.0.0\nskip-name-resolve\n"
        "init-file = /etc/mysql/bench-init.sql\n",
        "/etc/mysql/bench-init.sql": f"CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '{PASSWORD}';\n"
        "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;\n",
    },
    "redis-server": {
        "/etc/redis/redis.conf": "bind 0.0.0.0\nprotected-mode no\nport 6379\ndir /var/lib/redis\n"
        "logfile /var/log/redis/redis-server.log\npidfile /run/redis/redis-server.pid\n",
    },
    "rabbitmq-server": {"/etc/rabbitmq/rabbitmq.conf": f"default_user = bench\ndefault_pass = {PASSWORD}\n"},
}


@dataclass(frozen=True)
class Server:
    package: str
    port: int
    data: str | None = None  # its data volume
    password: str | None = None  # the variable its first start reads
    env: tuple[str, ...] = ()  # more of the run's environment (RabbitMQ's first user)
    path: str = "/"  # an HTTP server's page

    def answers(self, port: int) -> bool:
        """One request of its own client: does it answer?"""
        if self.package == "rabbitmq-server":
            try:
                clients.amqp(port, "bench", PASSWORD, "bench-ready")
                return True
            except Exception:  # refused, held until it listens, or cut: not yet
                return False
        if self.package == "postgresql-15":
            return _sql(self, port, "select 1").returncode == 0
        if self.package == "mariadb-server":
            return _sql(self, port, "select 1").returncode == 0
        if self.package == "redis-server":
            return subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True,
                                  check=False).stdout.strip() == "PONG"  # fmt: skip
        url = f"http://127.0.0.1:{port}{self.path}"
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                             capture_output=True, text=True, check=False)  # fmt: skip
        return out.stdout == "200"


SERVERS = [
    Server("postgresql-15", 5432, "/var/lib/postgresql", "POSTGRES_PASSWORD"),
    Server("mariadb-server", 3306, "/var/lib/mysql", "MARIADB_ROOT_PASSWORD"),
    Server("nginx", 80),
    Server("apache2", 80),
    Server("redis-server", 6379),
    Server("rabbitmq-server", 5672, "/var/lib/rabbitmq", env=RABBIT_USER),
    Server("tomcat10", 8080),
]


def _publish(port: int, seconds: int) -> float:
    """Persistent messages published with confirms for `seconds` by pika, one connection: messages/s."""
    import pika

    params = pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("bench", PASSWORD))
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.queue_declare("bench", durable=True)
        channel.confirm_delivery()
        sent, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            channel.basic_publish("", "bench", b"x" * 100, pika.BasicProperties(delivery_mode=2))
            sent += 1
        return sent / (time.perf_counter() - start)
    finally:
        connection.close()


def _sql(server: Server, port: int, query: str) -> subprocess.CompletedProcess[str]:
    return clients.sql("postgres" if server.package == "postgresql-15" else "mariadb", port, query, PASSWORD)


def _load(server: Server, port: int, *, seconds: int) -> tuple[float, str]:
    """(rate, what it counts) from the server's load tool."""
    env = {**os.environ, "PGPASSWORD": PASSWORD, "MYSQL_PWD": PASSWORD}
    if server.package == "postgresql-15":
        base = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        subprocess.run(["pgbench", "-i", "-s", "1", "-q", *base, "postgres"], env=env, capture_output=True, check=True)
        out = subprocess.run(["pgbench", "-S", "-c", "4", "-j", "1", "-T", str(seconds), *base, "postgres"], env=env,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        found = re.search(r"tps = ([\d.]+)", out)
        return (float(found.group(1)) if found else 0.0), "pgbench -S, 4 clients (transactions/s)"
    if server.package == "mariadb-server":
        queries = 200 * seconds
        out = subprocess.run(
            ["mariadb-slap", "-h", "127.0.0.1", "-P", str(port), "-uroot", "--concurrency=4", "--iterations=1",
             "--auto-generate-sql", "--auto-generate-sql-load-type=read", f"--number-of-queries={queries}"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found = re.search(r"Average number of seconds to run all queries: ([\d.]+)", out)
        return (queries / float(found.group(1)) if found and float(found.group(1)) else 0.0), \
            "mariadb-slap reads, 4 clients (queries/s)"  # fmt: skip
    if server.package == "redis-server":
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(2000 * seconds), "-c", "10", "-t",
                              "set,get", "--csv"], capture_output=True, text=True, check=True).stdout  # fmt: skip
        rates = [float(line.split(",")[1].strip('"')) for line in out.splitlines()[1:] if line.count(",") >= 1]
        return sum(rates) / len(rates), "redis-benchmark SET+GET, 10 clients (requests/s)"
    if server.package == "rabbitmq-server":
        return _publish(port, seconds), "pika, persistent messages with confirms, 1 connection (messages/s)"
    rate = wrk(f"http://127.0.0.1:{port}{server.path}", seconds, connections=10).requests_per_second
    return rate, "wrk, 10 connections (requests/s)"


def _run(server: Server, target: str, env: dict[str, str], volume: Path | None,
         then: Callable[[int], object] | None = None) -> tuple[float, object]:  # fmt: skip
    """Start the image on a target; (seconds to its client's first answer, then(port))."""
    port = free_port()
    argv = [KILN, "run", "--target", target, "-p", f"127.0.0.1:{port}:{server.port}"]
    if volume is not None and server.data:
        argv += ["-v", f"{volume}:{server.data}"]
    if server.password:
        argv += ["-e", f"{server.password}={PASSWORD}"]
    for pair in server.env:
        argv += ["-e", pair]
    start = time.perf_counter()
    proc = subprocess.Popen([*argv, server.package], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        while not server.answers(port):
            if proc.poll() is not None or time.perf_counter() - start > 180:
                raise SystemExit(f"{server.package} on {target}: no answer")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        return elapsed, then(port) if then else None
    finally:
        stop(proc)


def _debian_vm(server: Server, scratch: Path) -> traditional.VmImage:
    """The package in a traditional Debian VM (cached: debootstrap with it, the first time)."""
    empty = scratch / "no-app"
    empty.mkdir(exist_ok=True)
    name = f"bench-{server.package}"
    files = {"/etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n", **VM_FILES.get(server.package, {})}
    return traditional.vm_image(name, empty, None, packages=(server.package,), files=files)


def _vm_first_answer(server: Server, image: traditional.VmImage, accel: str) -> float:
    """Seconds from QEMU's start to the first answer of the server's client, in the Debian VM."""
    port = free_port()
    spec = PcVmSpec(kernel=image.kernel, initrd=image.initrd, disk=image.disk, memory_mib=VM_MEMORY_MIB,
                    accel=accel, ports=(PortMap(host_ip="127.0.0.1", host=port, guest=server.port),))  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(pc_command(spec), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        while not server.answers(port):
            if proc.poll() is not None or time.perf_counter() - start > VM_TIMEOUT:
                raise SystemExit(f"{server.package} in the Debian VM: no answer")
            time.sleep(0.2)
        return time.perf_counter() - start
    finally:
        stop(proc, grace=5)


def _keeps_rows(server: Server, env: dict[str, str], volume: Path) -> bool:
    """A row written, `kiln stop` (SIGINT to kiln run), a start with the same volume: is the row there?"""
    table = "kept" if server.package == "postgresql-15" else "mysql.kiln_kept"
    _run(server, "qemu", env, volume, lambda p: _sql(server, p, f"create table {table} (n int); "
                                                      f"insert into {table} values (42)"))  # fmt: skip
    _, got = _run(server, "qemu", env, volume, lambda p: _sql(server, p, f"select n from {table}").stdout.strip())
    return got == "42"


def main(argv: list[str] | None = None) -> int:
    args = example_args(argv, __doc__.splitlines()[0], "one run, 3-second loads")
    seconds = 3 if args.quick else 10
    rows, loads, kept = [], [], []
    accel = ""
    with tempfile.TemporaryDirectory(prefix="kiln-bench-servers-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        for server in SERVERS:
            print(f"==> {server.package}", flush=True)
            built = json.loads(subprocess.run([KILN, "build", "--json", "--deb", server.package], env=env,
                                              capture_output=True, text=True, check=True).stdout)  # fmt: skip
            deb = fetch(server.package)
            accel = accel or accelerator(env, server.package)
            vm = _debian_vm(server, Path(tmp))
            boots: dict[str, list[float]] = {"qemu": [], "unix": [], "vm": []}
            rates: dict[str, list[float]] = {"qemu": [], "unix": []}
            what = ""
            for run in range(args.runs):
                for target in ("qemu", "unix"):
                    volume = Path(tmp) / f"{server.package}-{target}-{run}"
                    volume.mkdir()
                    took, _ = _run(server, target, env, volume)  # a first start: the data volume is filled
                    boots[target].append(took)
                    _, (rate, what) = _run(
                        server, target, env, volume, functools.partial(_load, server, seconds=seconds)
                    )  # type: ignore[misc]
                    rates[target].append(rate)
                boots["vm"].append(_vm_first_answer(server, vm, accel))
            rows.append((server.package, deb.version, built["size"], deb.installed_kib * 1024, len(deb.packages),
                         median(boots["qemu"]), median(boots["unix"]), median(boots["vm"])))  # fmt: skip
            loads.append((server.package, what, median(rates["qemu"]), median(rates["unix"])))
            if server.password:  # a database: its rows
                volume = Path(tmp) / f"{server.package}-kept"
                volume.mkdir()
                kept.append((server.package, _keeps_rows(server, env, volume)))
    body = _report(args.runs, accel.upper(), rows, loads, kept)
    replace_section(args.output, "servers", body)
    print(body)
    return 0


def _report(runs: int, accel: str, rows: list[tuple], loads: list[tuple], kept: list[tuple]) -> str:  # type: ignore[type-arg]
    lines = [
        "## Real servers from Debian packages (`bench/servers.py`)",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, accelerator: **{accel}**, medians of {runs} "
        "runs. `kiln build --deb PACKAGE` with no arguments; boot to the first answer of the server's own client "
        "(psql, mariadb, curl, redis-cli, pika) on a first start (a server with a data volume fills it first). "
        "The baseline is the same package as Debian runs it: its own systemd service in a traditional Debian VM "
        f"(Debian's cloud kernel and initramfs, systemd, {VM_MEMORY_MIB} MiB) under the same QEMU and accelerator, "
        "from QEMU's start to the same client's first answer.",
        "",
        "| server | image (kernel + root) | package + dependencies installed | image / installed | first answer, "
        "QEMU | first answer, unix target | first answer, Debian VM | Debian VM / kiln QEMU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for package, version, size, installed, count, qemu_s, unix_s, vm_s in rows:
        lines.append(f"| {package} {version} | {size / 1e6:.1f} MB | {installed / 1e6:.1f} MB ({count} packages) | "
                     f"{size / installed:.3f} | {qemu_s * 1000:.0f} ms | {unix_s * 1000:.0f} ms | "
                     f"{vm_s * 1000:.0f} ms | {vm_s / qemu_s:.1f}× |")  # fmt: skip
    lines += [
        "",
        "Throughput from real load tools, under QEMU against the same binary as a host process (the unix target, "
        "no VM):",
        "",
        "| server | load | QEMU | host process | QEMU / host |",
        "|---|---|---|---|---|",
    ]
    for package, what, qemu, unix in loads:
        lines.append(f"| {package} | {what} | {qemu:,.0f} | {unix:,.0f} | {qemu / unix if unix else 0:.2f}× |")
    lines += ["", "Rows across `kiln stop` and a start with the same volume (QEMU): "
              + ", ".join(f"{p}: {'kept' if ok else 'LOST'}" for p, ok in kept) + "."]  # fmt: skip
    lines += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
