"""A Debian package's service, as its own files say it runs: what the native build needs from them.

`describe(unpacked, config)` reads the package's systemd unit (kiln.debs.unit),
the accounts its maintainer scripts and sysusers.d files make
(kiln.debs.accounts), the links, copies and directories its postinst makes
on a fresh install (kiln.debs.maintscripts), its conffiles and its private
directories, and kiln's knowledge of the package (kiln.debs.hints), into a
`Service`. All of these come from the package's family: the package and
those built from the same source (nginx's unit and configuration are in
nginx-common, the account redis-server runs as is made by redis-tools).

- the command: the unit's ExecStart (a `Type=forking` daemon with the
  foreground arguments its documentation gives), unless `exe`, `args` or
  arguments after `--` say otherwise; a unit whose ExecStart runs a script
  is refused, since a unikernel runs no interpreter it was not built around;
- the account: the unit's User= and Group=, in a generated /etc/passwd with
  the accounts the package makes; a service that starts as root and switches
  to its own account itself keeps setuid/setgid in the unix sandbox;
- what it writes: /run, the unit's RuntimeDirectory/LogsDirectory/
  CacheDirectory, its ReadWritePaths= and what ExecStartPre= makes, what the
  postinst makes, and the directories the packages ship under /var/log and
  /var/cache, as tmpfs owned by the service's account; StateDirectory= and
  /var/lib/NAME directories as declared volumes given to that account (a
  ReadWritePaths= elsewhere, such as /etc/redis, stays read-only: the note
  says so);
- what it reads: the conffiles of the packages it was fetched with (its
  dependencies' too: apache2 reads media-types' /etc/mime.types), and what it ships under
  /usr/share/NAME and /usr/lib/NAME (plugins, a runtime's data), with the
  ELF closure of any shared objects there.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kiln import _proc, sandbox
from kiln.analyze import elf
from kiln.analyze.native import imported_symbols
from kiln.config import NativeConfig
from kiln.debs import accounts as accounts_mod
from kiln.debs import maintscripts, tmpfiles
from kiln.debs import unit as unit_mod
from kiln.debs.fetch import Unpacked
from kiln.debs.hints import HINTS, PackageHint, Wrapper
from kiln.errors import AppError
from kiln.manifest import Account, Setup, SetupStep, Writable

# conffiles no service reads at run time
NOT_RUNTIME = ("/etc/init.d/", "/etc/logrotate.d/", "/etc/cron", "/etc/apparmor.d/", "/etc/ufw/", "/etc/systemd/",
               "/etc/bash_completion.d/", "/etc/insserv.conf.d/", "/etc/rc")  # fmt: skip
# programs that run code given to them: their runtime's data files are part of them
INTERPRETERS = frozenset({"node", "nodejs", "perl", "ruby", "php", "lua5.1", "lua5.3", "lua5.4", "tclsh", "guile"})
# what every Debian system has (base-files, initscripts): services name /run and /run/lock by their old names
DEBIAN_LINKS = {"/var/run": "/run", "/var/lock": "/run/lock"}
PRIVILEGE_CALLS = frozenset({"setuid", "setgid", "setgroups", "initgroups", "setresuid", "setresgid"})


@dataclass
class Service:
    package: str
    unit: str | None  # the unit file it came from
    argv: list[str]
    command_from: str  # "lighttpd.service ExecStart", "kiln.toml", ...
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: Account | None = None
    accounts: accounts_mod.Accounts = field(default_factory=accounts_mod.Accounts)
    writable: list[Writable] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)  # files and directories of the package tree to keep
    libraries: list[str] = field(default_factory=list)  # shared objects it loads by name (plugins)
    generated: dict[str, bytes] = field(default_factory=dict)  # files written into the image
    links: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    keep_caps: tuple[str, ...] = ()
    stop_signal: str | None = None
    notes: list[str] = field(default_factory=list)
    kernel: dict[str, str] = field(default_factory=dict)  # kernel features its configuration asks for, and why
    allow: dict[str, str] = field(default_factory=dict)  # calls the policy lets through for it (kiln.debs.hints)
    trees: dict[str, Path] = field(default_factory=dict)  # directories made at build time (initdb's), by path
    setup: Setup | None = None  # what its first start runs once the data volume is filled
    helpers: list[str] = field(default_factory=list)  # programs of the image it executes itself (kiln.debs.hints)
    memory_mib: int = 0  # the least guest RAM it runs in (kiln.debs.hints; 0: sized from the image)


def _expand(root: Path, value: str) -> str:
    """A hint's path with `*` for a version the tree decides (/usr/lib/erlang/erts-*/bin): the one path there."""
    if "*" not in value or not value.startswith("/"):
        return value
    found = sorted(root.glob(value.lstrip("/")))
    if len(found) != 1:
        raise AppError(f"kiln.debs.hints: {value} matches {len(found)} paths in the package tree, not one")
    return "/" + found[0].relative_to(root).as_posix()


def _expanded(root: Path, hint: PackageHint, wrapper: Wrapper | None) -> tuple[PackageHint, Wrapper | None]:
    if wrapper is not None:
        wrapper = dataclasses.replace(
            wrapper,
            program=_expand(root, wrapper.program),
            args=tuple(_expand(root, a) for a in wrapper.args),
            env={k: _expand(root, v) for k, v in wrapper.env.items()},
        )
    hint = dataclasses.replace(hint, helpers=tuple(_expand(root, p) for p in hint.helpers))
    return hint, wrapper


def _read(root: Path, path: str) -> str | None:
    """A file of the package tree, its links followed inside the tree (a unit's EnvironmentFile=/../etc/shadow,
    or a link to /etc/shadow, is the tree's, never the host's)."""
    host = elf.resolve_in(root, path)
    try:
        return host.read_text(errors="replace") if host is not None and host.is_file() else None
    except OSError:
        return None


def _is_script(root: Path, path: str) -> str | None:
    """The interpreter line of a script at `path` in the tree (None: not a script)."""
    host = elf.resolve_in(root, path)
    if host is None or not host.is_file():
        return None
    with open(host, "rb") as f:
        head = f.read(128)
    return head.split(b"\n", 1)[0][2:].decode(errors="replace").strip() if head.startswith(b"#!") else None


def _command(unpacked: Unpacked, config: NativeConfig, unit: unit_mod.Unit | None, env: dict[str, str],
             hint: PackageHint, wrapper: Wrapper | None, notes: list[str]) -> tuple[list[str], str]:  # fmt: skip
    given_args = _given_args(config)
    if config.exe and given_args:
        return [config.exe, *config.args], "the config"
    if unit is None and wrapper is not None and not config.exe:
        notes.append(f"{unpacked.package}: {wrapper.why}")
        argv = [wrapper.program, *(config.args if given_args else wrapper.args)]
        return argv, f"{wrapper.script}, which starts it (resolved by kiln.debs.hints)"
    if unit is None:
        from kiln.debs import default_exe

        notes.append(f"Debian package {unpacked.package} has no systemd service unit: its program runs as given")
        return [config.exe or default_exe(unpacked), *config.args], "the package's program"
    where = f"{unit.name} ExecStart"
    if wrapper is not None and not config.exe:  # the line is the wrapper's: not read as a command (sh -c "...")
        notes.append(f"{unit.name}: {wrapper.why}")
        argv = [wrapper.program, *(config.args if given_args else wrapper.args)]
        return argv, f"{where} ({PurePosixPath(wrapper.script).name}, resolved by kiln.debs.hints)"
    argv = unit.exec_start(env)
    if unit.type == "forking" and not given_args:
        if hint.foreground is None:
            raise AppError(
                f"{unit.name} is Type=forking (the daemon forks into the background) and kiln knows no flag that "
                f"keeps {PurePosixPath(argv[0]).name} in the foreground: give its arguments after -- "
                f"(or args in kiln.toml)"
            )
        argv = [argv[0], *hint.foreground]
        notes.append(f"{unit.name} forks into the background: run as {' '.join(argv)} (its foreground mode)")
        where = f"{unit.name} ExecStart, in the foreground"
    program = config.exe or argv[0]
    interpreter = _is_script(unpacked.root, program)
    if interpreter is not None:
        daemon = _daemon_program(unpacked)
        which = f"--exe {daemon}" if daemon else "--exe"
        raise AppError(
            f"{unit.name}: ExecStart runs {program}, a script (#!{interpreter}), and a unikernel runs no program "
            f"it was not built around: name the program with {which} (and its arguments after --)"
        )
    if given_args:
        return [program, *config.args], f"{where}, arguments from the config"
    if hint.args:
        return [program, *argv[1:], *hint.args], f"{where}, with kiln.debs.hints' arguments"
    return [program, *argv[1:]], where


def _given_args(config: NativeConfig) -> bool:
    """The config gives the program's arguments (args in kiln.toml, arguments after --, or a command)."""
    return "args" in config.model_fields_set or config.command is not None


def _wrapper(unit: unit_mod.Unit | None, hint: PackageHint) -> Wrapper | None:
    """The hint's wrapper, if the unit's ExecStart runs its script, or if the package's family has no unit
    (postgresql-common's unit starts postgresql-15's server through pg_ctlcluster)."""
    if hint.wrapper is None:
        return None
    if unit is None:
        return hint.wrapper
    return hint.wrapper if unit.program() == hint.wrapper.script else None


def _allowed(hint: PackageHint, users_command: bool, notes: list[str]) -> dict[str, str]:
    """What the policy lets through for the service as its unit (or the wrapper its unit runs) starts it; a
    command of the user's own is theirs to relax, with [seccomp] allow."""
    if not hint.allow or users_command:
        return {}
    notes += [f"the syscall policy lets {call} through: {why}" for call, why in sorted(hint.allow.items())]
    return dict(hint.allow)


def _daemon_program(unpacked: Unpacked) -> str | None:
    """The family's program named after the package (memcached, mariadbd for mariadb-server), if it has one."""
    stem = unpacked.package.removesuffix("-server").removesuffix("-daemon")
    names = (unpacked.package, stem, f"{stem}d")
    for f in unpacked.family_files():
        p = PurePosixPath(f)
        if p.name in names and str(p.parent) in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            host = elf.resolve_in(unpacked.root, f)
            if host is not None and elf.is_elf(host):
                return f
    return None


def _program_name(root: Path, program: str) -> str:
    """The program's own name, through its links (/usr/bin/nodejs -> node)."""
    host = elf.resolve_in(root, program)
    return host.name if host is not None else PurePosixPath(program).name


def _owner(accounts: accounts_mod.Accounts, name: str | None, fallback: tuple[int, int]) -> tuple[int, int]:
    """(uid, gid) of an account, if it is one of the service's."""
    if name and name in accounts.users:
        uid, gid, _home = accounts.users[name]
        return uid, gid
    return fallback


def describe(unpacked: Unpacked, config: NativeConfig) -> Service:
    root, package = unpacked.root, unpacked.package
    hint = HINTS.get(package, PackageHint())
    notes: list[str] = list(hint.why)
    files = unpacked.family_files()  # the package's and its siblings' from the same source (nginx-common)
    unit = unit_mod.find(root, package, files)
    env = unit.environment(lambda p: _read(root, p)) if unit else {}
    hint, wrapper = _expanded(root, hint, _wrapper(unit, hint))
    if wrapper is not None and wrapper.env_file is not None:
        env.update(maintscripts.exports(_read(root, wrapper.env_file) or ""))
    if wrapper is not None:
        env.update(wrapper.env)
    helpers = _helpers(root, hint, users_command=config.exe is not None)
    argv, command_from = _command(unpacked, config, unit, env, hint, wrapper, notes)
    # arguments for the wrapper's program keep it the unit's
    users_command = _given_args(config) and (wrapper is None or config.exe is not None)
    controls = [unpacked.control(p) for p in unpacked.family]
    accounts = accounts_mod.read(controls, root, list(files))  # its family's, not its libraries'
    layout = maintscripts.Layout()
    for control in controls:
        if (control / "postinst").is_file():
            layout.add(maintscripts.read((control / "postinst").read_text(errors="replace")))
    user, owner, mode = _account(unit, accounts, hint, config, wrapper)
    trees, setup = _first_start(unpacked, hint, accounts, user if wrapper is not None else None, notes)
    # a data directory made at build time lives in its /var/lib/NAME volume
    made = [*layout.dirs, *(wrapper.dirs if wrapper else ()), *("/".join(p.split("/")[:4]) for p in trees)]
    booted = _boot_dirs(root, list(files), accounts, owner, user is None, notes)
    writable, volumes = _writable(unpacked, unit, made, owner, mode, notes, booted)
    keep, libraries = _kept(unpacked, files, argv[0], hint, notes)
    generated = {**_copies(root, layout, set(files)), **_generated(unpacked, hint, accounts, notes)}
    return Service(
        package=package,
        unit=unit.name if unit else None,
        argv=[_on_path(root, argv[0], package), *argv[1:]],
        command_from=command_from,
        env={**env, **config.env},
        workdir=(unit.get("WorkingDirectory") or "/").lstrip("-~") or "/" if unit else "/",
        user=user,
        accounts=accounts,
        writable=writable,
        volumes=volumes,
        keep=sorted(set(keep)),
        libraries=sorted(libraries),
        generated=generated,
        links={
            **{k: v for k, v in layout.links.items() if k not in set(files)},
            **maintscripts.enabled_links(root, layout.enabled),
            **hint.links,
            **DEBIAN_LINKS,
        },
        ports=config.ports or hint.ports,
        keep_caps=_privileges(root, argv[0], user, hint, notes),
        stop_signal=unit.get("KillSignal") if unit else None,
        notes=notes,
        kernel=_kernel_features(root, [*keep, *generated], [*argv, *config.args]),
        allow=_allowed(hint, users_command, notes),
        trees=trees,
        setup=setup,
        helpers=helpers,
        memory_mib=0 if config.exe is not None else hint.memory_mib,
    )


def _helpers(root: Path, hint: PackageHint, users_command: bool) -> list[str]:
    """The programs of the image the service executes itself, each in the tree; a program of the user's own
    (exe) names none."""
    if users_command:
        return []
    for path in hint.helpers:
        if elf.resolve_in(root, path) is None:
            raise AppError(f"kiln.debs.hints: {path} is not in the package tree")
    return list(hint.helpers)


# an IPv6 address where a server listens: [::]:80, [::1], ::, ::1, "-::1" (redis: if it exists)
IPV6_ADDRESS = re.compile(r"\[::[0-9A-Fa-f:.]*\]|(?<![\w:])::1?(?![\w:])")


def _kernel_features(root: Path, configs: list[str], argv: list[str]) -> dict[str, str]:
    """Kernel features the service's configuration asks for: IPv6 when it listens on an IPv6 address."""
    for arg in argv:
        if IPV6_ADDRESS.search(arg):
            return {"ipv6": f"its command names an IPv6 address ({arg})"}
    for path in sorted(c for c in configs if c.startswith("/etc/")):
        text = _read(root, path)
        for number, line in enumerate((text or "").splitlines()[:5000], 1):
            if line.lstrip().startswith(("#", ";")):
                continue
            found = IPV6_ADDRESS.search(line)
            if found:
                return {"ipv6": f"{path}:{number} names an IPv6 address ({found.group(0)})"}
    return {}


def _account(
    unit: unit_mod.Unit | None, accounts: accounts_mod.Accounts, hint: PackageHint, config: NativeConfig,
    wrapper: Wrapper | None,
) -> tuple[Account | None, tuple[int, int], int]:  # fmt: skip
    """The account the service runs as (None: root), and the owner and mode of the directories it writes."""
    user_name = (unit.get("User") if unit else None) or (wrapper.user if wrapper else None)
    group_name = unit.get("Group") if unit else None
    user = None
    if user_name and user_name != "root":
        accounts.user(user_name, group_name)
        uid, gid, _home = accounts.users[user_name]
        if group_name:
            gid = accounts.group(group_name)
        groups = tuple(accounts.group(g) for g in (unit.words("SupplementaryGroups") if unit else ()))
        user = Account(name=user_name, uid=uid, gid=gid, groups=groups)
    for name in (*hint.users, *config.users):
        accounts.user(name)
    # the account the service writes as: its User=, else the one its package makes for it or its config names
    service_account = user_name or (accounts.made[0] if accounts.made else None) or next(iter(hint.users), None)
    owner = _owner(accounts, service_account, (0, 0))
    mode = 0o755
    if user is None and owner != (0, 0):
        # it starts as root and writes as its own account too: root owns, the account's group may write (root
        # keeps no CAP_DAC_OVERRIDE in the unix sandbox, so a directory of the account's alone would refuse it)
        owner, mode = (0, owner[1]), 0o770
    return user, owner, mode


def _current(path: str) -> str:
    """A path by its current name: /var/run/x is /run/x, /var/lock/x is /run/lock/x (DEBIAN_LINKS)."""
    for old, new in DEBIAN_LINKS.items():
        if path == old or path.startswith(old + "/"):
            return new + path.removeprefix(old)
    return path


def _place(path: str) -> str | None:
    """What a directory a service writes becomes: "volume" (its state, /var/lib/NAME), "tmpfs" (below /run,
    /var/log, /var/cache, /var/spool, /var/tmp, or deeper in /var/lib), or None (the sealed root: read-only)."""
    parts = PurePosixPath(path).parts
    if len(parts) >= 3 and parts[1] == "run":
        return "tmpfs"
    if len(parts) >= 4 and parts[1] == "var" and parts[2] in ("log", "cache", "spool", "tmp", "lib"):
        return "volume" if parts[2] == "lib" and len(parts) == 4 else "tmpfs"
    return None


def _boot_dirs(
    root: Path, files: list[str], accounts: accounts_mod.Accounts, owner: tuple[int, int], as_root: bool,
    notes: list[str],
) -> list[Writable]:  # fmt: skip
    """The directories the family's tmpfiles.d entries make at boot (haproxy's /run/haproxy), with their owners
    and modes, where a service may write (below /run, /var/log, /var/cache, ...). A service that starts as root
    finds them root's, its account's group keeping the group's rights (root keeps no CAP_DAC_OVERRIDE in the
    unix sandbox: a directory of the account's alone would refuse it, as in _account)."""
    out = []
    for source in tmpfiles.files_of(files):
        for d in tmpfiles.read(_read(root, source) or "", source):
            kind = _place(_current(d.path))
            if kind is None:
                continue
            uid = accounts.users[d.user][0] if d.user in accounts.users else owner[0] if d.user else 0
            mode = d.mode or 0o755
            if as_root and uid != 0:  # root owns it; the account's group gets the account's own rights
                uid, mode = 0, mode | (mode & 0o700) >> 3
            gid = accounts.groups.get(d.group or "", owner[1] if d.group else 0)
            why = f"{source} makes it at boot"
            out.append(Writable(path=_current(d.path), uid=uid, gid=gid, mode=mode, kind=kind, why=why))
    if out:
        notes.append(f"tmpfiles.d: {', '.join(w.path for w in out)} made as systemd-tmpfiles would")
    return out


def _writable(
    unpacked: Unpacked, unit: unit_mod.Unit | None, made: list[str], owner: tuple[int, int], mode: int,
    notes: list[str], booted: list[Writable] | None = None,
) -> tuple[list[Writable], list[str]]:  # fmt: skip
    """What the service writes (tmpfs or volume): what its unit names (its directories, ReadWritePaths=,
    what ExecStartPre= makes), what its tmpfiles.d entries and postinst make, what its packages ship below
    /var/log, /var/cache and /var/lib; and which of them are volumes."""
    writable = [Writable(path="/run", why="the service's runtime files (as systemd mounts /run)")]
    volumes: list[str] = []

    def add(path: str, why: str, kind: str | None = None) -> None:
        kind = kind or _place(path)
        if kind is None or any(w.path == path for w in writable):
            return
        if kind == "volume":
            volumes.append(path)
        writable.append(Writable(path=path, uid=owner[0], gid=owner[1], mode=mode, kind=kind, why=why))  # type: ignore[arg-type]

    for w in booted or ():  # their own owners and modes, first
        if w.path != "/run" and not any(x.path == w.path for x in writable):
            writable.append(w)
            if w.kind == "volume":
                volumes.append(w.path)

    if unit is not None:
        for path, what in unit.directories():
            add(path, f"{unit.name} {what}", "volume" if what == "state" else "tmpfs")
        for path, _who in unit.made_before_start():
            add(path, f"{unit.name} ExecStartPre makes it", _place(path) or "tmpfs")
        for path in map(_current, unit.read_write_paths()):
            if _place(path) is None:
                notes.append(f"{unit.name} ReadWritePaths={path}: stays read-only, the root is sealed (a volume "
                             "there makes it writable)")  # fmt: skip
            add(path, f"{unit.name} ReadWritePaths=")
    for path in made:
        add(_current(path), "its postinst makes it")
    for d in unpacked.family_dirs():
        parts = PurePosixPath(d).parts
        if len(parts) >= 4 and parts[1] == "var" and parts[2] in ("log", "cache", "lib"):
            add(d, "the package's state" if _place(d) == "volume" else f"the package's {parts[2]} directory")
    inside = [w for w in writable if w.kind == "tmpfs" and any(w.path.startswith(v + "/") for v in volumes)]
    return _merged([w for w in writable if w not in inside]), volumes  # what is inside a volume is kept there


def _copies(root: Path, layout: maintscripts.Layout, shipped: set[str]) -> dict[str, bytes]:
    """The files a postinst copies into place on a fresh install (not over one a package ships); a directory
    (`cp -r`, tomcat10's default webapp) with the files below it, links inside it not followed."""
    out = {}
    for dest, src in layout.copies.items():
        host = elf.resolve_in(root, src)  # inside the tree, whatever its links say
        if dest in shipped or host is None:
            continue
        if host.is_file():
            out[dest] = host.read_bytes()
        elif host.is_dir():
            for below in sorted(host.rglob("*")):
                if below.is_file() and not below.is_symlink():
                    out[str(PurePosixPath(dest) / below.relative_to(host).as_posix())] = below.read_bytes()
    return out


def _kept(
    unpacked: Unpacked, files: Iterable[str], program: str, hint: PackageHint, notes: list[str]
) -> tuple[list[str], list[str]]:
    """The package's files the image keeps (conffiles, its data under /usr/share and /usr/lib, /var/www,
    /srv), and the shared libraries among them (loaded by name: no ELF closure finds them). Programs there
    (/usr/lib/postgresql/15/bin, rabbitmq's scripts) are not data: the image holds the one it runs."""
    root, package = unpacked.root, unpacked.package
    keep = [f for f in _conffiles(unpacked) if not f.startswith(NOT_RUNTIME) and f not in hint.skip]
    libraries = []
    program_name = _program_name(root, program)
    names = {package, program_name, *hint.data}
    interpreter = bool(names & INTERPRETERS)
    if interpreter:
        notes.append(
            f"{program_name} is an interpreter: what its packages install under "
            f"{', '.join(f'/usr/share/{n}, /usr/lib/{n}' for n in sorted(names))} is kept (kiln trace shows what "
            "else a script reads)"
        )
    # an interpreter's runtime keeps its data in other packages too (Debian's node: /usr/share/nodejs/acorn, ...),
    # and the hint's names may be any fetched package's (tzdata's /usr/share/zoneinfo)
    for f in [f for fs in unpacked.files.values() for f in fs] if interpreter or hint.data else files:
        p = PurePosixPath(f)
        if len(p.parts) > 3 and p.parts[1] == "usr" and p.parts[2] in ("share", "lib") and p.parts[3] in names:
            if p.parts[2] == "share" and p.parts[4:5] in (("doc",), ("man",)):
                continue
            if any(f == s or f.startswith(s + "/") for s in hint.skip):
                continue
            found = elf.resolve_in(root, f)
            if found is None:
                continue  # a link into a package that was not fetched (nginx's modules: libnginx-mod-*)
            if _is_program(found, scripts=not interpreter):
                continue  # a program: the image holds the one it runs (Erlang's boot files in bin/ are data)
            keep.append(f)
            host = root / f.lstrip("/")
            if f.endswith(".so") and not host.is_symlink() and elf.is_elf(host):
                libraries.append(f)
    keep += [d for d in unpacked.family_dirs() if d.startswith(("/var/www", "/srv"))]
    # what its packages ship in their state directories (tomcat10's /var/lib/tomcat10/conf, a link to /etc/tomcat10):
    # the image holds it, and a first start fills the empty volume from it
    keep += [f for f in files if f.startswith("/var/lib/") and elf.resolve_in(root, f) is not None]
    return keep, libraries


def _is_program(host: Path, scripts: bool) -> bool:
    """An executable file that is a program, not data: a script (unless `scripts` is False: an interpreter's
    runtime loads its modules' scripts too), or an ELF file that is not a shared object (a plugin or an Erlang NIF
    may be mode 0755 too)."""
    if not host.is_file() or not os.access(host, os.X_OK):
        return False
    with open(host, "rb") as f:
        head = f.read(4)
    if head.startswith(b"#!"):
        return scripts
    return head == b"\x7fELF" and ".so" not in host.name


def _generated(
    unpacked: Unpacked, hint: PackageHint, accounts: accounts_mod.Accounts, notes: list[str]
) -> dict[str, bytes]:
    """The files the package's hint writes, copies or flattens."""
    root = unpacked.root
    generated = {path: text.encode() for path, text in hint.files.items()}
    for dest, src in hint.copies.items():
        text = _read(root, src)
        if text is not None:
            generated[dest] = (root / src.lstrip("/")).read_bytes()
    if hint.flatten is not None:
        generated[hint.flatten.output] = _flatten(unpacked, hint, accounts).encode()
        notes.append(f"{hint.flatten.output}: {hint.flatten.why}")
    return generated


def _first_start(
    unpacked: Unpacked, hint: PackageHint, accounts: accounts_mod.Accounts, user: Account | None, notes: list[str]
) -> tuple[dict[str, Path], Setup | None]:
    """A database's data directory made at build time by its own initializer, and what its first start runs
    (kiln.debs.hints: initialize, first_start), when the service runs as the hint starts it."""
    if hint.initialize is None or user is None:
        return {}, None
    tree = _initialized(unpacked, hint, accounts, user)
    notes.append(f"{hint.initialize.data}: {hint.initialize.why}")
    first = hint.first_start
    if first is None:
        return {hint.initialize.data: tree}, None
    notes.append(first.why)
    setup = Setup(steps=(SetupStep(argv=first.argv, input=first.input),), needs=first.needs, why=first.why)
    return {hint.initialize.data: tree}, setup


def _privileges(root: Path, program: str, user: Account | None, hint: PackageHint, notes: list[str]) -> tuple[str, ...]:
    """The capabilities a service that starts as root and switches accounts itself keeps for that (and those
    kiln.debs.hints says it needs before it switches, such as chown)."""
    found = elf.resolve_in(root, program)
    symbols = imported_symbols(found) if user is None and found is not None else set()
    if not PRIVILEGE_CALLS & symbols:
        return ()
    caps = ("setuid", "setgid", *hint.caps)
    notes.append(
        f"{PurePosixPath(program).name} starts as root and switches to its own account itself: on the unix "
        f"target it keeps {', '.join(caps[:-1])} and {caps[-1]} for that (docs/security.md)"
    )
    return caps


def _on_path(root: Path, program: str, package: str) -> str:
    """A program named as on PATH, found in the package tree's PATH directories."""
    if "/" in program:
        return program
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if elf.resolve_in(root, f"{d}/{program}") is not None:
            return f"{d}/{program}"
    raise AppError(f"no program {program} in Debian package {package} or what it depends on")


def _merged(writable: list[Writable]) -> list[Writable]:
    """One entry a path (the last one named wins), parents before children (init mounts them in order), and
    the directories between /run and one deeper in it (/run/lock for /run/lock/apache2: /run is empty)."""
    by_path = {w.path: w for w in writable}
    for path in list(by_path):
        for parent in PurePosixPath(path).parents:
            if str(parent) != "/run" and parent.is_relative_to("/run") and str(parent) not in by_path:
                by_path[str(parent)] = Writable(path=str(parent), why=f"holds {path}")
    return [by_path[p] for p in sorted(by_path)]


def _conffiles(unpacked: Unpacked) -> list[str]:
    """The conffiles of every package it was fetched with: its family's (nginx's are nginx-common's) and its
    dependencies' (apache2 reads media-types' /etc/mime.types)."""
    out = []
    for package in unpacked.packages:
        path = unpacked.control(package) / "conffiles"
        if path.is_file():
            lines = path.read_text().splitlines()
            out += [line.strip().removeprefix("remove-on-upgrade ") for line in lines if line.strip()]
    return out


def _sandbox_etc(tmp: Path, unpacked: Unpacked, hint: PackageHint, accounts: accounts_mod.Accounts) -> Path:
    """The package tree's /etc as the image will have it (the hint's links, the service's passwd and group), for
    a build-time run of the package's programs in the sandbox."""
    import shutil

    etc = tmp / "etc"
    shutil.copytree(unpacked.root / "etc", etc, symlinks=True)
    for link, target in hint.links.items():
        dest = tmp / link.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        dest.symlink_to(target)
    (etc / "passwd").write_text("\n".join(accounts.passwd()) + "\n")
    (etc / "group").write_text("\n".join(accounts.group_lines()) + "\n")
    return etc


def _missing(unpacked: Unpacked, extra: tuple[str, ...]) -> None:
    missing = [p for p in extra if p not in unpacked.packages]
    if missing:
        raise AppError(f"{unpacked.package}: the build needs {', '.join(missing)} in the package tree")


def _flatten(unpacked: Unpacked, hint: PackageHint, accounts: accounts_mod.Accounts) -> str:
    """Run the hint's build-time command in the sandbox over the package tree, with its /etc as the image
    will have it; its output, transformed."""
    import tempfile

    assert hint.flatten is not None
    flat = hint.flatten
    _missing(unpacked, flat.extra)
    with tempfile.TemporaryDirectory(prefix="kiln-flatten-", dir=_proc.scratch()) as tmp:
        etc = _sandbox_etc(Path(tmp), unpacked, hint, accounts)
        out = sandbox.run(unpacked.root, list(flat.argv), f"{unpacked.package}: {' '.join(flat.argv)}",
                          binds={"/etc": etc})  # fmt: skip
    return flat.transform(out.decode(errors="replace"))


def _initialized(unpacked: Unpacked, hint: PackageHint, accounts: accounts_mod.Accounts, user: Account) -> Path:
    """The data directory the hint's initializer makes, run in the sandbox as the service's account; kept beside
    the package tree, by what made it (the package's version, the command, the account)."""
    import hashlib
    import shutil
    import tempfile

    assert hint.initialize is not None
    init = hint.initialize
    _missing(unpacked, init.extra)
    key = hashlib.sha256(repr((unpacked.version, init.argv, user.uid, user.gid)).encode()).hexdigest()[:16]
    done = unpacked.root.parent / "initialized" / key
    if done.is_dir():
        return done
    done.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kiln-etc-", dir=_proc.scratch()) as tmp:
        etc = _sandbox_etc(Path(tmp), unpacked, hint, accounts)
        what = f"{unpacked.package}: {PurePosixPath(init.argv[0]).name}"
        with sandbox.made_directory(unpacked.root, list(init.argv), what, (user.uid, user.gid), {"/etc": etc}) as data:
            staged = Path(tempfile.mkdtemp(prefix=".initialized-", dir=done.parent))
            shutil.move(data, staged / "data")
        try:
            (staged / "data").rename(done)
        except OSError:  # another build made it first
            shutil.rmtree(staged / "data")
        staged.rmdir()
    return done
