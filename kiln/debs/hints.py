"""What kiln knows about particular Debian packages' services that their units do not say.

A unit says how systemd starts a service on a full system; a few services
also count on what a full system has (a shell for their config, a package's
postinst having run, a listener on loopback being reachable). Each entry
here says what the package needs in a unikernel, and why; the build prints
the why. When a package is not here, its unit alone decides.

- `ports`: what the service listens on with the package's own config.
- `users`: the accounts its config switches to (lighttpd's server.username).
- `foreground`: arguments that keep a `Type=forking` daemon in the
  foreground, from the daemon's own documentation.
- `caps`: what a service that starts as root needs before it switches to
  its account, beside setuid and setgid (nginx gives www-data the
  temporary directories it makes: chown).
- `allow`: calls the syscall policy lets through for this server, and why:
  `clone` for a server that forks its workers (fork without exec), as with
  `[seccomp] allow` in kiln.toml.
- `wrapper`: what the script a unit's ExecStart runs does in the end
  (apachectl: apache2 -D FOREGROUND with /etc/apache2/envvars), so no shell
  runs at start-up; a script kiln knows no wrapper for is refused in one line.
- `args`: arguments added after the unit's, where the package's config
  only suits a full system (a server that listens on loopback alone), as the
  project's official container image runs it.
- `files`: files written into the image beside the package's (drop-in
  configuration its config includes).
- `links` and `copies`: what the package's postinst does on a fresh
  install (enable a conf, copy a placeholder page).
- `flatten`: a build-time run of the daemon itself, in the sandbox
  (kiln.sandbox) over the package tree, whose output replaces a config file
  that a unikernel could not read (lighttpd's `include_shell` runs
  programs through /bin/sh); `extra` names the packages that run needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


def _lighttpd_flat(printed: str) -> str:
    """`lighttpd -p` prints the parsed config inside `config { ... }`, with the variables it set itself; and
    the [::] listener that use-ipv6.pl adds when the build host has IPv6 goes (kiln's kernels have IPv4)."""
    text = re.sub(r'\n\s*\$SERVER\["socket"\] == "\[::\]:\d+" \{[^{}]*\}[^\n]*', "", printed.rstrip())
    lines = text.splitlines()
    if lines and lines[0].strip() == "config {" and lines[-1].strip() == "}":
        lines = lines[1:-1]
    return "".join(f"{ln}\n" for ln in lines if not ln.strip().startswith(("var.CWD", "var.PID")))


@dataclass(frozen=True)
class Flatten:
    argv: tuple[str, ...]
    output: str  # the file in the image its output replaces
    transform: Callable[[str], str]
    extra: tuple[str, ...]  # packages the build-time run needs in the tree
    why: str


@dataclass(frozen=True)
class Wrapper:
    """What a unit's ExecStart script does in the end, so that no shell runs it: the daemon it starts, in the
    foreground, with the variables the script sources and the directories it makes first."""

    script: str  # what ExecStart runs
    program: str
    args: tuple[str, ...]
    env_file: str | None = None  # a shell file the script sources (its top-level assignments)
    dirs: tuple[str, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class PackageHint:
    ports: tuple[int, ...] = ()
    users: tuple[str, ...] = ()
    foreground: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()  # kept beside setuid and setgid by a service that starts as root (kiln.manifest)
    allow: dict[str, str] = field(default_factory=dict)  # the syscall policy relaxed, and why (kiln.policy)
    wrapper: Wrapper | None = None
    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)  # path in the image -> path in the package tree
    flatten: Flatten | None = None
    why: tuple[str, ...] = ()


HINTS: dict[str, PackageHint] = {
    "mosquitto": PackageHint(
        ports=(1883,),
        files={"/etc/mosquitto/conf.d/kiln.conf": "listener 1883\nallow_anonymous true\n"},
        why=(
            "mosquitto: /etc/mosquitto/conf.d/kiln.conf listens on 1883 on every address, anonymous as in its "
            "own default (Debian's config names no listener, and mosquitto then listens on loopback only, "
            "which no published port reaches)",
        ),
    ),
    "lighttpd": PackageHint(
        ports=(80,),
        users=("www-data",),
        links={"/etc/lighttpd/conf-enabled/99-unconfigured.conf": "../conf-available/99-unconfigured.conf"},
        copies={"/var/www/html/index.lighttpd.html": "/usr/share/lighttpd/index.html"},
        flatten=Flatten(
            argv=("/usr/sbin/lighttpd", "-p", "-f", "/etc/lighttpd/lighttpd.conf"),
            output="/etc/lighttpd/lighttpd.conf",
            transform=_lighttpd_flat,
            extra=("perl-base", "dash"),
            why="its config runs include_shell scripts through /bin/sh, so lighttpd -p printed it at build time",
        ),
        why=("lighttpd: its placeholder page enabled, as its postinst does on a fresh install",),
    ),
    # why: nginx.service is Type=forking; nginx.conf switches to www-data (base-passwd's, made by no postinst), and
    # nginx, still root, gives www-data the temporary directories it makes under /var/lib/nginx (chown); its master
    # process forks its workers (no program is executed)
    "nginx": PackageHint(
        ports=(80,),
        users=("www-data",),
        foreground=("-g", "daemon off;"),
        caps=("chown",),
        allow={"clone": "nginx's master process forks its worker processes, as Debian runs it"},
    ),
    "memcached": PackageHint(ports=(11211,)),
    # why: apache2.service runs `apachectl start`, a shell script that sources /etc/apache2/envvars, makes the run
    # and lock directories, and starts apache2 (which forks into the background unless -D FOREGROUND); the event
    # MPM the postinst enables forks its child processes, and they switch to www-data
    "apache2": PackageHint(
        ports=(80,),
        users=("www-data",),
        wrapper=Wrapper(
            script="/usr/sbin/apachectl",
            program="/usr/sbin/apache2",
            args=("-D", "FOREGROUND"),
            env_file="/etc/apache2/envvars",
            dirs=("/run/apache2", "/var/lock/apache2"),
            why="apachectl start runs apache2 with /etc/apache2/envvars' variables; kiln runs apache2 -D FOREGROUND "
            "with them, and no shell",
        ),
        allow={"clone": "apache2's event MPM forks its child processes, as Debian runs it"},
    ),
    # why: redis.conf binds 127.0.0.1 and ::1 only, in protected mode, and logs to a file: as the official image
    # runs it, redis listens on every address, leaves protection to the network, and logs on the console
    "redis-server": PackageHint(
        ports=(6379,),
        args=("--bind", "* -::*", "--protected-mode", "no", "--logfile", ""),
        why=(
            "redis-server: listens on every address with protected mode off and logs on the console, as the "
            "official redis image runs it (Debian's redis.conf listens on loopback only)",
        ),
    ),
}
