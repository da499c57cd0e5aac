"""`kiln summon`: serve images with nothing running, and summon an instance when a request arrives."""

from __future__ import annotations

from pathlib import Path

import click

from kiln import atomic
from kiln.cli import ui
from kiln.daemon import Daemon
from kiln.errors import UsageError
from kiln.paths import home_dir

EPILOG = """\b
Examples:
  kiln snapshot hello-http                     # once: summons then restore in a fraction of a boot
  kiln summon hello-http=8080:8080             # foreground; Ctrl-C stops it and its instances
  kiln summon -f summon.toml -d                # detached; its log is under $KILN_HOME/summon/
  kiln summon hello-http=8080:8080 --idle 10s --dns 127.0.0.1:5353 --domain kiln.test
  kiln summon --stop                           # stop the detached summoner
"""

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def _dir(name: str) -> Path:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"invalid summoner name {name!r} (letters, digits, - and _)")
    return home_dir("summon", name)


def _daemon(name: str) -> Daemon:
    directory = _dir(name)
    return Daemon(directory, "summoner", "kiln.summon.server", [str(directory)])


def _stop(name: str) -> None:
    if not _daemon(name).stop(STOP_TIMEOUT):
        raise UsageError(f"no summoner named {name} is running")
    ui.say(f"stopped summoner {name}")


def _detach(cfg_json: str, name: str) -> None:
    summoner = _daemon(name)
    if (record := summoner.running()) is not None:
        raise UsageError(f"summoner {name} is already running (pid {record.pid}); kiln summon --stop --name {name}")
    atomic.write_bytes(summoner.directory / "config.json", cfg_json.encode())
    ready = summoner.directory / "ready"
    ready.unlink(missing_ok=True)
    proc = summoner.start("the summoner", ready.exists, START_TIMEOUT)
    ui.say(f"summoner {name} running (pid {proc.pid}); log: {summoner.log}")


@click.command(epilog=EPILOG)
@click.argument("services", nargs=-1, metavar="[IMAGE=[IP:]HOST:GUEST[,...]]...")
@click.option("-f", "--file", "file", type=click.Path(path_type=Path), help="A summon.toml (default: ./summon.toml).")
@click.option("--idle", help="Stop an instance after this long without connections, e.g. 30s (default 30s).")
@click.option("--max-running", type=int, help="At most this many instances at once (default 8).")
@click.option("--ready-timeout", help="Reset held connections if the instance is not ready by then (default 60s).")
@click.option("--dns", "dns_listen", metavar="HOST:PORT", help="Answer DNS A queries for NAME.DOMAIN here.")
@click.option("--domain", default="kiln.test", show_default=True, help="The DNS domain of the services.")
@click.option("--metrics", metavar="HOST:PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics.")
@click.option("-d", "--detach", is_flag=True, help="Run in the background; --stop ends it.")
@click.option("--name", default="default", show_default=True, help="Name of a detached summoner.")
@click.option("--stop", "stop", is_flag=True, help="Stop the detached summoner --name.")
def summon(
    services: tuple[str, ...],
    file: Path | None,
    idle: str | None,
    max_running: int | None,
    ready_timeout: str | None,
    dns_listen: str | None,
    domain: str,
    metrics: str | None,
    detach: bool,
    name: str,
    stop: bool,
) -> None:
    """Serve images given as IMAGE=PORTS (or those of summon.toml) on their host ports; summon an instance
    on the first connection, restoring its snapshot when it has one, and stop it when idle."""
    if stop:
        _stop(name)
        return
    from kiln.summon.config import load

    if file is None and not services and Path("summon.toml").is_file():
        file = Path("summon.toml")
    if file is None and not services:
        raise UsageError("nothing to serve: give IMAGE=HOST:GUEST, or a summon.toml (-f)")
    dns = {"listen": dns_listen, "domain": domain} if dns_listen else None
    cfg = load(
        file, list(services), idle=idle, max_running=max_running, ready_timeout=ready_timeout, dns=dns, metrics=metrics
    )
    if detach:
        _detach(cfg.model_dump_json(), name)
        return
    from kiln.summon.server import run

    ui.say("kiln: summoning; Ctrl-C stops the summoner and its instances", err=True)
    run(cfg)
