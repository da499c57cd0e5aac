"""Command lines written for a shell, read without one.

Procfiles (`web: gunicorn app:app --bind 0.0.0.0:$PORT`), a Dockerfile's
shell-form `CMD`, an image's `["/bin/sh", "-c", "exec nginx -g 'daemon off;'"]`
and a systemd unit's `ExecStart=` all hold a command that something else
would have handed to a shell. A unikernel has no shell, so kiln reads the
line itself when it is one plain command: words split as POSIX sh splits them
(`shlex`), a leading `exec` dropped, `$VAR`, `${VAR}` and `${VAR:-default}`
taken from the environment the command would have had. Anything a shell
would have had to run (pipes, lists, redirections, substitutions, globs that
match files, assignments before the command) is refused with `ShellFormError`,
whose text says which part needs a shell. A glob that matches no file in the
directory the command starts in stays as it is, as sh leaves it
(`waitress-serve --listen=*:8080`).
"""

from __future__ import annotations

import glob
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from kiln.errors import AppError

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})

# What needs a shell, outside quotes. Order matters only for the message.
_OPERATORS = (
    ("&&", "a list (&&)"),
    ("||", "a list (||)"),
    (";", "a list (;)"),
    ("|", "a pipe (|)"),
    ("&", "a background job (&)"),
    (">", "a redirection (>)"),
    ("<", "a redirection (<)"),
    ("`", "a command substitution (`...`)"),
    ("$(", "a command substitution ($(...))"),
)
_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class ShellFormError(AppError):
    """A command line that only a shell could run."""


def _unquoted(line: str) -> str:
    """The line with every quoted part blanked out (what a shell would interpret is what is left)."""
    out, quote, escaped = [], "", False
    for ch in line:
        if escaped:
            out.append(" ")
            escaped = False
        elif ch == "\\" and quote != "'":
            out.append(" ")
            escaped = True
        elif quote:
            if ch == quote:
                quote = ""
            out.append(ch if quote == '"' and ch in "$`(" else " ")  # sh substitutes inside double quotes
        elif ch in "'\"":
            quote = ch
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def expand(text: str, env: Mapping[str, str], where: str, unset_is_empty: bool = False) -> str:
    """$VAR, ${VAR} and ${VAR:-default} from `env`, outside single quotes (as sh expands them);
    a variable `env` does not hold, with no default, is an error (or, as systemd has it, nothing)."""

    def one(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        if name in env:
            return env[name]
        if m.group("default") is not None:
            return m.group("default")
        if unset_is_empty:
            return ""
        raise ShellFormError(f"{where}: ${name} is not set in the environment the command would have")

    # single-quoted parts are kept as they are: split on them, expand the others
    parts = re.split(r"('[^']*')", text)
    return "".join(part if part.startswith("'") else _VAR.sub(one, part) for part in parts)


def split(
    line: str, env: Mapping[str, str], where: str, unset_is_empty: bool = False, cwd: Path | None = None
) -> list[str]:
    """The argv of `line` read as sh would read one plain command (see the module's docstring). `cwd`: the
    directory it starts in, where a glob is matched (without it, any glob is refused)."""
    bare = _unquoted(line)
    for token, what in _OPERATORS:
        if token in bare:
            raise ShellFormError(f"{where}: {line!r} needs a shell ({what}), and a unikernel has none")
    globbing = any(ch in bare for ch in "*?[")
    if (globbing and cwd is None) or (bare.split()[0:1] and bare.split()[0].startswith("~")):
        raise ShellFormError(f"{where}: {line!r} needs a shell (a glob or ~), and a unikernel has none")
    try:
        words = shlex.split(expand(line, env, where, unset_is_empty), comments=False, posix=True)
    except ValueError as err:
        raise ShellFormError(f"{where}: {line!r}: {err}") from None
    if globbing and cwd is not None:
        for word in words:
            if glob.has_magic(word) and glob.glob(word, root_dir=cwd):
                raise ShellFormError(
                    f"{where}: {line!r} needs a shell ({word} matches files, which sh would put in its place), "
                    "and a unikernel has none"
                )
    if words and words[0] == "exec":
        words = words[1:]
    if words and _ASSIGNMENT.match(words[0]):
        raise ShellFormError(f"{where}: {line!r} sets a variable before its command: set it in the environment")
    if not words:
        raise ShellFormError(f"{where}: the command is empty")
    return words


def unwrap(argv: list[str], env: Mapping[str, str], where: str) -> list[str]:
    """An exec-form argv, with `sh -c "LINE"` replaced by LINE's own argv when LINE is one plain command."""
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in SHELLS and argv[1] == "-c":
        return split(argv[2], env, where)
    if argv and argv[0].rsplit("/", 1)[-1] in SHELLS:
        raise ShellFormError(f"{where}: {shlex.join(argv)} runs a shell, and a unikernel has none")
    return argv
