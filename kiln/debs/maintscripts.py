"""What a package's postinst does to a fresh system's files, read without running it.

On a fresh install a postinst often finishes the package's layout: it enables a site (`ln -s
/etc/nginx/sites-available/default /etc/nginx/sites-enabled/default`), copies a placeholder page
(`cp /usr/share/nginx/html/index.html /var/www/html/index.nginx-debian.html`), makes the directories its
service writes (`mkdir -p`, `install -d`). kiln runs no maintainer script; it reads these four commands
where they are plain: literal paths, or variables given a literal value earlier in the script
(`logdir="/var/log/nginx"`). A command built from anything else (a function's arguments, a command's
output) is not guessed at; a unit's directories and kiln.debs.hints cover what matters of those.

Accounts are read from the same scripts by kiln.debs.accounts.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

ASSIGNMENT = re.compile(r"^\s*(?:local\s+|readonly\s+|export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*(?:#.*)?$")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
SEPARATORS = re.compile(r";|&&|\|\||\bthen\b|\bdo\b|\belse\b")
OPTIONS_WITH_VALUES = {"install": {"-o", "-g", "-m", "--owner", "--group", "--mode"}, "mkdir": {"-m", "--mode"}}


@dataclass
class Layout:
    """What the scripts make: links (link -> its target), copies (destination -> source), directories."""

    links: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)

    def add(self, other: Layout) -> None:
        self.links.update(other.links)
        self.copies.update(other.copies)
        self.dirs += [d for d in other.dirs if d not in self.dirs]


def _expand(word: str, variables: dict[str, str]) -> str | None:
    """A word (quotes already removed) with the known variables put in; None if anything else is left."""
    if "`" in word or "$(" in word:
        return None
    expanded = VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), "\0"), word)
    return None if "\0" in expanded or "$" in expanded else expanded


def _literal(value: str, variables: dict[str, str]) -> str | None:
    """An assignment's value if it is one literal word once known variables are put in (None: it is not)."""
    try:
        words = shlex.split(value)
    except ValueError:
        return None
    return _expand(words[0], variables) if len(words) == 1 else "" if not words else None


def _operands(command: str, args: list[str]) -> tuple[set[str], list[str]]:
    """(the flags, the operands) of a command's arguments; options that take a value consume it."""
    flags, operands, skip = set(), [], False
    valued = OPTIONS_WITH_VALUES.get(command, set())
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-") and len(arg) > 1:
            flags.add(arg)
            skip = arg in valued
        else:
            operands.append(arg)
    return flags, operands


def _apply(words: list[str], layout: Layout) -> None:
    command, (flags, paths) = words[0].rsplit("/", 1)[-1], _operands(words[0].rsplit("/", 1)[-1], words[1:])
    if not paths or not all(p.startswith("/") for p in paths):
        return
    letters = {c for f in flags if not f.startswith("--") for c in f[1:]}
    if command == "ln" and ("s" in letters or "--symbolic" in flags) and len(paths) == 2:
        layout.links[paths[1]] = paths[0]
    elif command == "cp" and len(paths) == 2:
        layout.copies[paths[1]] = paths[0]
    elif command == "mkdir" or (command == "install" and ("d" in letters or "--directory" in flags)):
        layout.dirs += [p.rstrip("/") or "/" for p in paths if p.rstrip("/") not in layout.dirs]


def read(script: str) -> Layout:
    """The links, copies and directories a postinst makes with plain commands."""
    layout = Layout()
    variables: dict[str, str] = {}
    for raw in script.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assigned = ASSIGNMENT.match(line)
        if assigned:
            value = _literal(assigned.group(2), variables)
            if value is None:
                variables.pop(assigned.group(1), None)
            else:
                variables[assigned.group(1)] = value
            continue
        for part in SEPARATORS.split(line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                continue
            while words and words[0] in ("if", "then", "else", "fi", "do", "done", "!", "{", "}", "("):
                words = words[1:]
            if not words or words[0].rsplit("/", 1)[-1] not in ("ln", "cp", "mkdir", "install"):
                continue
            values = [_expand(w, variables) for w in words]
            if all(v is not None for v in values):
                _apply([v for v in values if v is not None], layout)
    return layout
