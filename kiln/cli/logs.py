"""`kiln logs NAME`: an instance's console."""

from __future__ import annotations

import sys
import time

import click

from kiln.runtime.instance import get


@click.command(epilog="\b\nExamples:\n  kiln logs web\n  kiln logs -f web")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the instance stops.")
def logs(name: str, follow: bool) -> None:
    """Print the console output of instance NAME."""
    inst = get(name)
    out = sys.stdout.buffer
    inst.console_log.touch()
    with open(inst.console_log, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow or not inst.running():
                break
            time.sleep(0.2)
