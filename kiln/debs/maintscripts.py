"""What a package's postinst does to a fresh system's files, read without running it.

On a fresh install a postinst often finishes the package's layout: it enables a site (`ln -s
/etc/nginx/sites-available/default /etc/nginx/sites-enabled/default`), copies a placeholder page
(`cp /usr/share/nginx/html/index.html /var/www/html/index.nginx-debian.html`), installs a conffile from
its template with ucf (`ucf /usr/share/tomcat10/etc/server.xml /etc/tomcat10/server.xml`), makes the directories its
service writes (`mkdir -p`, `install -d`), enables apache2's modules, configuration and sites (`a2enmod`,
`a2enconf`, `a2ensite`: `enabled_links` turns them into the links those helpers make). kiln runs no
maintainer script; it reads these commands where they are plain: literal paths, or variables given a
literal value earlier in the script (`logdir="/var/log/nginx"`), or a `for` loop over literal words. A
command built from anything else (a function's arguments, a command's output) is not guessed at; a unit's
directories and kiln.debs.hints cover what matters of those.

Accounts are read from the same scripts by kiln.debs.accounts.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ASSIGNMENT = re.compile(
    r"^\s*(?:local\s+|readonly\s+|export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S*)\s*(?:#.*)?$"
)
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
SEPARATORS = re.compile(r";|&&|\|\||\bthen\b|\bdo\b|\belse\b")
FOR = re.compile(r"^for\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\s+(.*?)\s*;?\s*(?:do)?\s*$")
APACHE_HELPERS = {"a2enmod": "mods", "a2enconf": "conf", "a2ensite": "sites"}
COMMANDS = ("ln", "cp", "ucf", "mkdir", "install", *APACHE_HELPERS)
OPTIONS_WITH_VALUES = {"install": {"-o", "-g", "-m", "--owner", "--group", "--mode"}, "mkdir": {"-m", "--mode"}}


@dataclass
class Layout:
    """What the scripts make: links (link -> its target), copies (destination -> source), directories."""

    links: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    enabled: list[tuple[str, str]] = field(default_factory=list)  # ("mods" | "conf" | "sites", name): a2enmod...

    def add(self, other: Layout) -> None:
        self.links.update(other.links)
        self.copies.update(other.copies)
        self.dirs += [d for d in other.dirs if d not in self.dirs]
        self.enabled += [e for e in other.enabled if e not in self.enabled]


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
    if command in APACHE_HELPERS:
        layout.enabled += [
            (APACHE_HELPERS[command], p) for p in paths if (APACHE_HELPERS[command], p) not in layout.enabled
        ]
        return
    if not paths or not all(p.startswith("/") and ".." not in p.split("/") for p in paths):
        return  # a relative path, or one that climbs: not plain
    letters = {c for f in flags if not f.startswith("--") for c in f[1:]}
    if command == "ln" and ("s" in letters or "--symbolic" in flags) and len(paths) == 2:
        layout.links[paths[1]] = paths[0]
    elif command in ("cp", "ucf") and len(paths) == 2:  # ucf NEW DEST: a fresh install gets the template
        layout.copies[paths[1]] = paths[0]
    elif command == "mkdir" or (command == "install" and ("d" in letters or "--directory" in flags)):
        layout.dirs += [p.rstrip("/") or "/" for p in paths if p.rstrip("/") not in layout.dirs]


def _lines(script: str) -> list[str]:
    """The script's lines, a trailing backslash joining a line to the next, comments and blanks gone."""
    out: list[str] = []
    pending = ""
    for raw in script.splitlines():
        line = raw.strip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


def read(script: str) -> Layout:
    """The links, copies and directories a postinst makes with plain commands, and what it enables with
    apache2's helpers; a `for NAME in WORDS` loop over literal words runs its body for each."""
    layout = Layout()
    variables: dict[str, str] = {}
    loop: tuple[str, list[str]] | None = None
    for line in _lines(script):
        looping = FOR.match(line)
        if looping:
            words = [_expand(w, variables) for w in shlex.split(looping.group(2), comments=True)]
            # an unquoted variable's value splits into words (CONFFILES="server.xml web.xml")
            split = [part for w in words if w is not None for part in w.split()]
            loop = (looping.group(1), split) if None not in words else ("", [])
            continue
        if loop is not None and re.match(r"^done\b", line):
            loop = None
            continue
        assigned = ASSIGNMENT.match(line)
        if assigned:
            value = _literal(assigned.group(2), variables)
            if value is None:
                variables.pop(assigned.group(1), None)
            else:
                variables[assigned.group(1)] = value
            continue
        for value in loop[1] if loop is not None else [None]:
            scope = {**variables, loop[0]: value} if loop is not None and value is not None else variables
            _commands(line, scope, layout)
    return layout


def _commands(line: str, variables: dict[str, str], layout: Layout) -> None:
    for part in SEPARATORS.split(line):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:
            continue
        while words and words[0] in ("if", "then", "else", "fi", "do", "done", "!", "{", "}", "("):
            words = words[1:]
        if not words or words[0].rsplit("/", 1)[-1] not in COMMANDS:
            continue
        values = [_expand(w, variables) for w in words]
        if all(v is not None for v in values):
            _apply([v for v in values if v is not None], layout)


def enabled_links(root: Path, enabled: list[tuple[str, str]], confdir: str = "/etc/apache2") -> dict[str, str]:
    """The links a2enmod, a2enconf and a2ensite make in the tree at `root` (link -> target), a module's
    `# Depends:` (in its .load file) enabled first, as a2enmod does."""
    links: dict[str, str] = {}
    todo = list(enabled)
    while todo:
        kind, name = todo.pop(0)
        available = f"{confdir}/{kind}-available"
        suffixes = (".load", ".conf") if kind == "mods" else (".conf",)
        for suffix in suffixes:
            source = root / available.lstrip("/") / f"{name}{suffix}"
            if not source.is_file():
                continue
            links[f"{confdir}/{kind}-enabled/{name}{suffix}"] = f"../{kind}-available/{name}{suffix}"
            if suffix == ".load":
                depends = re.search(r"^#\s*Depends:\s*(.*)$", source.read_text(errors="replace"), re.MULTILINE)
                todo += [(kind, d) for d in (depends.group(1).split() if depends else []) if (kind, d) not in enabled]
    return links


def exports(text: str) -> dict[str, str]:
    """The variables a sourced shell file sets at its top level (`export NAME=VALUE`, `NAME=VALUE`), `$NAME`
    and `${NAME}` put in from those before (an unset one is empty, as in sh). What is set inside an `if`
    (apache2's envvars for another instance's SUFFIX) is not taken: the fresh install's defaults are."""
    found: dict[str, str] = {}
    depth = 0
    for line in _lines(text):
        first = line.split(maxsplit=1)[0]
        if first in ("if", "case", "for", "while") and not re.search(r"\b(fi|esac|done)\s*;?$", line):
            depth += 1
        elif first in ("fi", "esac", "done"):
            depth = max(0, depth - 1)
        if depth or first in ("fi", "esac", "done"):
            continue
        assigned = ASSIGNMENT.match(line)
        if assigned is None:
            continue
        try:
            words = shlex.split(assigned.group(2))
        except ValueError:
            continue
        value = words[0] if len(words) == 1 else ""
        if "`" in value or "$(" in value:
            continue
        found[assigned.group(1)] = VARIABLE.sub(lambda m: found.get(m.group(1) or m.group(2), ""), value)
    return found
