"""What a Debian package says about its service, read without running anything: its systemd unit, the
accounts its maintainer scripts and sysusers.d files make, and the service kiln puts together from them
(on a package tree made here)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from kiln.config import NativeConfig
from kiln.debs import accounts, unit
from kiln.debs.fetch import Unpacked
from kiln.debs.service import describe
from kiln.errors import AppError

UNIT = """\
[Unit]
Description=Example daemon
ExecStart=/not/in/service

[Service]
Type=simple
Environment=OPTS=-v "NAME=two words"
EnvironmentFile=-/etc/default/exampled
EnvironmentFile=-/etc/default/missing
ExecStartPre=/bin/mkdir -m 740 -p /run/exampled
ExecStartPre=/bin/chown exampled /run/exampled
ExecStartPre=/usr/sbin/exampled --check-config
ExecStart=-/usr/sbin/exampled \\
    $OPTS --state %S/exampled --port ${PORT}
User=exampled
Group=exampled
RuntimeDirectory=exampled
StateDirectory=exampled
LogsDirectory=exampled
KillSignal=SIGINT
"""


def test_a_unit_read_as_systemd_reads_it() -> None:
    u = unit.parse(UNIT, "exampled.service", PurePosixPath("/lib/systemd/system/exampled.service"))
    env = u.environment(lambda p: "PORT=8125\n# comment\n" if p == "/etc/default/exampled" else None)
    assert env == {"PORT": "8125", "OPTS": "-v", "NAME": "two words"}
    assert u.exec_start(env) == ["/usr/sbin/exampled", "-v", "--state", "/var/lib/exampled", "--port", "8125"]
    assert u.type == "simple" and u.get("User") == "exampled" and u.get("KillSignal") == "SIGINT"
    assert u.directories() == [("/run/exampled", "runtime"), ("/var/lib/exampled", "state"),
                               ("/var/log/exampled", "logs")]  # fmt: skip
    assert u.made_before_start() == [("/run/exampled", "exampled")]  # the config test is not a directory


def test_an_empty_assignment_resets_and_a_missing_environment_file_is_an_error() -> None:
    u = unit.parse("[Service]\nExecStart=/a\nExecStart=\nExecStart=/b x\nEnvironmentFile=/etc/x\n", "x.service",
                   PurePosixPath("/x.service"))  # fmt: skip
    assert u.exec_start({}) == ["/b", "x"]
    with pytest.raises(AppError, match="EnvironmentFile=/etc/x is not in the package"):
        u.environment(lambda _p: None)


POSTINST = """#!/bin/sh
set -e
if ! getent group exampled >/dev/null; then
    addgroup --quiet --system exampled
fi
if ! getent passwd exampled >/dev/null; then
    adduser --quiet --system --no-create-home --ingroup exampled --home /var/lib/exampled \\
        --shell /usr/sbin/nologin exampled
fi
adduser exampled www-data
"""


def test_accounts_from_maintainer_scripts_and_sysusers() -> None:
    found = accounts.Accounts()
    accounts.from_script(POSTINST, found)
    accounts.from_sysusers('u helper - "Helper" /var/lib/helper\nm helper exampled\ng extra -\n', found)
    found.user("www-data")
    assert found.made == ["exampled", "helper"]
    uid, gid, home = found.users["exampled"]
    assert (home, gid) == ("/var/lib/exampled", found.groups["exampled"]) and uid >= 100
    assert found.users["www-data"][:2] == (33, 33)  # base-passwd's fixed ids
    assert "exampled:x:" in "\n".join(found.passwd()) and f"exampled:x:{gid}:helper" in found.group_lines()
    again = accounts.Accounts()
    accounts.from_script(POSTINST, again)
    accounts.from_sysusers('u helper - "Helper" /var/lib/helper\nm helper exampled\ng extra -\n', again)
    again.user("www-data")
    assert again.passwd() == found.passwd()  # the same ids on any build host


def _tree(tmp_path: Path, service: str, program: bytes = b"\x7fELF") -> Unpacked:
    root = tmp_path / "root"
    for d in ("usr/sbin", "lib/systemd/system", "var/log/exampled", "var/lib/exampled", "etc/exampled",
              "usr/share/exampled"):  # fmt: skip
        (root / d).mkdir(parents=True)
    (root / "usr/sbin/exampled").write_bytes(program)
    (root / "lib/systemd/system/exampled.service").write_text(service)
    (root / "etc/exampled/exampled.conf").write_text("port 1\n")
    (root / "usr/share/exampled/data.txt").write_text("data\n")
    control = tmp_path / "control" / "exampled"
    control.mkdir(parents=True)
    (control / "postinst").write_text(POSTINST)
    (control / "conffiles").write_text("/etc/exampled/exampled.conf\n/etc/init.d/exampled\n")
    files = ("/usr/sbin/exampled", "/lib/systemd/system/exampled.service", "/etc/exampled/exampled.conf",
             "/usr/share/exampled/data.txt")  # fmt: skip
    dirs = ("/var/log/exampled", "/var/lib/exampled", "/etc/exampled")
    return Unpacked("exampled", "1.0", root, ("exampled",), 1, files, {"exampled": files}, {"exampled": dirs})


def test_a_service_as_its_package_says_it_runs(tmp_path: Path) -> None:
    service = describe(_tree(tmp_path, UNIT), NativeConfig(deb="exampled"))
    assert service.argv == ["/usr/sbin/exampled", "-v", "--state", "/var/lib/exampled", "--port"]  # no $PORT here
    assert service.command_from == "exampled.service ExecStart"
    assert service.user is not None and service.user.name == "exampled"
    assert "/var/lib/exampled" in service.volumes
    paths = {w.path: w for w in service.writable}
    assert {"/run", "/run/exampled", "/var/log/exampled", "/var/lib/exampled"} <= set(paths)
    assert paths["/var/log/exampled"].uid == service.user.uid  # it runs as its account: that account owns them
    assert "/etc/exampled/exampled.conf" in service.keep and "/etc/init.d/exampled" not in service.keep
    assert "/usr/share/exampled/data.txt" in service.keep
    assert service.stop_signal == "SIGINT"


def test_the_config_overrides_the_unit(tmp_path: Path) -> None:
    config = NativeConfig(deb="exampled", args=("--foreground", "--port", "9"))
    service = describe(_tree(tmp_path, UNIT), config)
    assert service.argv == ["/usr/sbin/exampled", "--foreground", "--port", "9"]
    assert service.command_from == "exampled.service ExecStart, arguments from the config"


@pytest.mark.parametrize(
    ("text", "program", "fragment"),
    [
        pytest.param("[Service]\nType=forking\nExecStart=/usr/sbin/exampled -d\n", b"\x7fELF",
                     "is Type=forking (the daemon forks into the background) and kiln knows no flag", id="forking"),
        pytest.param("[Service]\nExecStart=/usr/sbin/exampled\n", b"#!/bin/sh\nexec true\n",
                     "ExecStart runs /usr/sbin/exampled, a script (#!/bin/sh)", id="script"),
        pytest.param("[Service]\nExecStart=/usr/sbin/exampled $(cat /etc/args)\n", b"\x7fELF",
                     "needs a shell (a command substitution", id="shell"),
    ],
)  # fmt: skip
def test_units_kiln_cannot_run(text: str, program: bytes, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(AppError, match=None) as err:
        describe(_tree(tmp_path, text, program), NativeConfig(deb="exampled"))
    assert fragment in str(err.value)
