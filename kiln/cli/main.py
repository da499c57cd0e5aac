"""`kiln`: the command group, and the one place errors become exit codes.

A KilnError prints one line (`kiln: error: ...`) and exits with its code;
a traceback is shown only with --debug. Ctrl-C exits 130.
"""

from __future__ import annotations

import errno
import importlib
import sys

import click

from kiln import __version__
from kiln.cli import ui
from kiln.errors import KilnError, NoSpaceError

# verb -> ("module:command", its one-line help). A verb's module is imported only when it runs,
# which keeps `kiln run` from paying for the build pipeline's imports, and `kiln --help` from
# importing every command (tests/unit/test_cli_help.py keeps the one-liners true).
COMMANDS: dict[str, tuple[str, str]] = {
    "kernel": ("kiln.cli.kernel:kernel", "Build and inspect guest kernels."),
    "build": ("kiln.cli.build:build", "Build an app into an image: ARGS is APP (a directory with..."),
    "run": ("kiln.cli.run:run", "Run IMAGE; the console streams here, Ctrl-C stops it, and..."),
    "images": ("kiln.cli.images:images", "List images: name, tag, digest, size, created, and their..."),
    "inspect": ("kiln.cli.inspect:inspect", "Show the manifest of IMAGE (name[:tag] or digest)."),
    "ps": ("kiln.cli.ps:ps", "List instances: name, image, target, state, ports,..."),
    "logs": ("kiln.cli.logs:logs", "Print the console output of instance NAME."),
    "stop": ("kiln.cli.stop:stop", "Stop running instances; they stay listed (kiln ps -a)..."),
    "start": ("kiln.cli.start:start", "Start stopped instances."),
    "rm": ("kiln.cli.rm:rm", "Remove instances (their console logs go with them)."),
    "stats": ("kiln.cli.stats:stats", "Guest memory (configured and resident on the host) and..."),
    "tag": ("kiln.cli.tag:tag", "Make TARGET name the same image as SOURCE."),
    "rmi": ("kiln.cli.rmi:rmi", "Untag IMAGES; their blobs are deleted by `kiln prune`..."),
    "prune": ("kiln.cli.prune:prune", "Delete unused blobs (kernels, root file systems,..."),
    "push": ("kiln.cli.push:push", "Push IMAGE (named registry/repository:tag) to its..."),
    "pull": ("kiln.cli.push:pull", "Pull IMAGE from its registry into the local store,..."),
    "trace": ("kiln.cli.trace:trace", "Run IMAGE under strace while you exercise it; report its..."),
    "snapshot": ("kiln.cli.snapshot:snapshot", "Boot IMAGE once, wait until it is ready, and save the..."),
    "stack": ("kiln.cli.stack:stack", "Print the Python stack of every thread of instance NAME's..."),
    "top": ("kiln.cli.top:top", "Live figures from inside instance NAME: memory, CPU,..."),
    "events": ("kiln.cli.events:events", "Show instance events: start, exit, restart, stop, oom,..."),
    "crash": ("kiln.cli.crash:crash", "Show the last crash report of instance NAME: why, when,..."),
    "debug": ("kiln.cli.debug:debug", "Attach gdb, with the kernel's symbols, to instance NAME..."),
    "compose": ("kiln.cli.compose:compose", "Run a compose file's services as unikernels on a private..."),
    "export": ("kiln.cli.export:export", "Export an image: to libvirt, KubeVirt, a bootable disk or..."),
    "summon": ("kiln.cli.summon:summon", "Serve images given as IMAGE=PORTS (or those of..."),
    "store": ("kiln.cli.store:store", "Check the local store."),
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
        module, attr = COMMANDS[cmd_name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the one-liners above, without importing a single command."""
        with formatter.section("Commands"):
            formatter.write_dl([(verb, COMMANDS[verb][1]) for verb in self.list_commands(ctx)])

    def invoke(self, ctx: click.Context) -> object:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except KilnError as err:
            if debug:
                raise
            ui.error(str(err))
            sys.exit(err.exit_code)
        except OSError as err:
            if debug or err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = err.filename2 or err.filename
            full = NoSpaceError.at(None if where is None else str(where))
            ui.error(str(full))
            sys.exit(full.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            ui.say("kiln: interrupted", err=True)
            sys.exit(130)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # not click.version_option, whose set-up imports `locale` on every start (~1 ms)
    if value and not ctx.resilient_parsing:
        click.echo(f"kiln, version {__version__}")
        ctx.exit()


@click.group(cls=KilnGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and exit.")  # fmt: skip
def cli(debug: bool) -> None:
    """kiln turns an application into a sealed, single-purpose VM image and runs it."""


def main() -> None:
    cli(prog_name="kiln")
