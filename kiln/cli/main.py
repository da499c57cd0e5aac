"""`kiln`: the command group, and the one place errors become exit codes.

A KilnError prints one line (`kiln: error: ...`) and exits with its code;
a traceback is shown only with --debug. Ctrl-C exits 130.
"""

from __future__ import annotations

import importlib
import sys

import click
from rich.markup import escape

from kiln import __version__
from kiln.cli.ui import err_console
from kiln.errors import KilnError

# verb -> "module:command"; a verb's module is imported only when it runs, which
# keeps `kiln run` from paying for the build pipeline's imports at start-up.
COMMANDS = {
    "kernel": "kiln.cli.kernel:kernel",
    "build": "kiln.cli.build:build",
    "run": "kiln.cli.run:run",
    "images": "kiln.cli.images:images",
    "inspect": "kiln.cli.inspect:inspect",
    "ps": "kiln.cli.ps:ps",
    "logs": "kiln.cli.logs:logs",
    "stop": "kiln.cli.stop:stop",
    "start": "kiln.cli.start:start",
    "rm": "kiln.cli.rm:rm",
    "stats": "kiln.cli.stats:stats",
    "tag": "kiln.cli.tag:tag",
    "rmi": "kiln.cli.rmi:rmi",
    "prune": "kiln.cli.prune:prune",
    "push": "kiln.cli.push:push",
    "pull": "kiln.cli.push:pull",
    "trace": "kiln.cli.trace:trace",
    "snapshot": "kiln.cli.snapshot:snapshot",
    "summon": "kiln.cli.summon:summon",
}

EPILOG = """\b
Examples:
  kiln kernel build
  kiln build examples/hello-http
  kiln run -p 8080:8080 hello-http
"""


class KilnGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: ARG002
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> object:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except KilnError as err:
            if debug:
                raise
            err_console.print(f"[bold red]kiln: error:[/] {escape(str(err))}", highlight=False)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            err_console.print("kiln: interrupted")
            sys.exit(130)


@click.group(cls=KilnGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="kiln")
def cli(debug: bool) -> None:
    """kiln turns an application into a sealed, single-purpose VM image and runs it."""


def main() -> None:
    cli(prog_name="kiln")
