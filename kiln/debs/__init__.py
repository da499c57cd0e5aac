"""Debian packages as build input: fetched and unpacked privately (fetch), and what a package says
about how it runs as a service: its systemd unit (unit), the accounts its maintainer scripts and
sysusers.d files create (accounts), what its postinst lays out (maintscripts), the directories its
tmpfiles.d files make at boot (tmpfiles), and kiln's knowledge of particular packages (hints: wrappers,
a database's build-time initializer and first-start set-up); service puts them together for the
native build.
"""

from kiln.debs.fetch import Unpacked, candidate, default_exe, fetch

__all__ = ["Unpacked", "candidate", "default_exe", "fetch"]
