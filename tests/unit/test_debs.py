"""What a Debian package says about its service, read without running anything: its systemd unit, the
accounts its maintainer scripts and sysusers.d files make, and the service kiln puts together from them
(on a package tree made here)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from kiln.config import NativeConfig
from kiln.debs import accounts, hints, maintscripts, unit
from kiln.debs.fetch import Unpacked
from kiln.debs.service import IPV6_ADDRESS, describe
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


COMMON_POSTINST = """#!/bin/sh
set -e
logdir="/var/log/webd"
case "$1" in
  configure)
    if [ ! -e "$logdir/access.log" ]; then touch "$logdir/access.log"; fi
    if [ -z $2 ] && [ ! -e /etc/webd/sites-enabled/default ] &&
       [ -d /etc/webd/sites-enabled ]; then
      ln -s /etc/webd/sites-available/default /etc/webd/sites-enabled/default
    fi
    if [ ! -e /var/www/html/index.webd.html ]; then
      mkdir -p /var/www/html $logdir/old
      cp /usr/share/webd/html/index.html /var/www/html/index.webd.html
    fi
    install -d -o webd -m 750 /var/cache/webd
    setup_dir "$(cat /etc/webd/where)"
    ln -s $unknown /etc/webd/never
    ;;
esac
"""


def test_what_a_postinst_lays_out_is_read_where_it_is_plain() -> None:
    layout = maintscripts.read(COMMON_POSTINST)
    assert layout.links == {"/etc/webd/sites-enabled/default": "/etc/webd/sites-available/default"}
    assert layout.copies == {"/var/www/html/index.webd.html": "/usr/share/webd/html/index.html"}
    assert layout.dirs == ["/var/www/html", "/var/log/webd/old", "/var/cache/webd"]  # not $unknown, not $(cat)


UCF_POSTINST = """#!/bin/sh
set -e
CONFFILES="server.xml web.xml"
case "$1" in
    configure)
    for conffile in $CONFFILES;
    do
        ucf --debconf-ok --three-way /usr/share/webd/etc/$conffile /etc/webd/$conffile
    done
    if [ ! -d /var/lib/webd/webapps/ROOT ]; then
        cp -r /usr/share/webd-root/default_root /var/lib/webd/webapps/ROOT
    fi
    ;;
esac
"""


def test_a_postinst_that_installs_conffiles_from_templates_is_read() -> None:
    """tomcat10's: ucf over a loop on a variable's words, and a directory copied whole."""
    layout = maintscripts.read(UCF_POSTINST)
    assert layout.copies == {
        "/etc/webd/server.xml": "/usr/share/webd/etc/server.xml",
        "/etc/webd/web.xml": "/usr/share/webd/etc/web.xml",
        "/var/lib/webd/webapps/ROOT": "/usr/share/webd-root/default_root",
    }


def _family(tmp_path: Path) -> Unpacked:
    """webd, whose unit, configuration and postinst are in webd-common (built from the same source), and a
    library from another source whose directories are not the service's."""
    root = tmp_path / "root"
    files = {
        "webd": ("/usr/sbin/webd",),
        "webd-common": ("/lib/systemd/system/webd.service", "/etc/webd/webd.conf",
                        "/etc/webd/sites-available/default", "/usr/share/webd/html/index.html"),
        "libfoo1": ("/usr/lib/libfoo.so.1",),
    }  # fmt: skip
    dirs = {"webd": (), "webd-common": ("/var/lib/webd", "/var/log/webd"), "libfoo1": ("/var/lib/foo",)}
    for path in (p for fs in files.values() for p in fs):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (root / "usr/sbin/webd").write_bytes(b"\x7fELF")
    (root / "usr/lib/libfoo.so.1").write_bytes(b"\x7fELF")
    (root / "lib/systemd/system/webd.service").write_text(
        "[Service]\nExecStart=/usr/sbin/webd -f\nReadWritePaths=-/var/lib/webd/cache /var/spool/webd\n"
        "ReadWriteDirectories=-/etc/webd\nReadWritePaths=-/var/run/webd\n"
    )
    (root / "etc/webd/webd.conf").write_text("# listen [::]:8080 is off\nlisten 0.0.0.0:80\n")
    (root / "etc/webd/sites-available/default").write_text("server {\n  listen 80;\n  listen [::]:80;\n}\n")
    (root / "usr/share/webd/html/index.html").write_text("<h1>webd</h1>\n")
    for package in files:
        (tmp_path / "control" / package).mkdir(parents=True)
    common = tmp_path / "control" / "webd-common"
    (common / "postinst").write_text(
        COMMON_POSTINST.replace("install -d -o webd", "adduser --system webd\n    install -d -o webd")
    )
    (common / "conffiles").write_text("/etc/webd/webd.conf\n/etc/webd/sites-available/default\n")
    return Unpacked("webd", "1.0", root, tuple(files), 1, files["webd"], files, dirs,
                    {"webd": "webd", "webd-common": "webd", "libfoo1": "foo"})  # fmt: skip


def test_a_service_is_read_from_its_whole_family(tmp_path: Path) -> None:
    unpacked = _family(tmp_path)
    assert unpacked.family == ("webd", "webd-common")  # not the library from another source
    service = describe(unpacked, NativeConfig(deb="webd"))
    assert service.unit == "webd.service" and service.argv == ["/usr/sbin/webd", "-f"]
    assert {"/etc/webd/webd.conf", "/etc/webd/sites-available/default"} <= set(service.keep)
    assert "webd" in service.accounts.made  # its sibling's postinst makes the account
    assert service.links == {"/etc/webd/sites-enabled/default": "/etc/webd/sites-available/default",
                             "/var/run": "/run", "/var/lock": "/run/lock"}  # fmt: skip
    assert service.generated["/var/www/html/index.webd.html"] == b"<h1>webd</h1>\n"
    places = {w.path: w.kind for w in service.writable}
    assert places["/var/lib/webd"] == "volume" and service.volumes == ["/var/lib/webd"]
    assert places["/var/spool/webd"] == places["/run/webd"] == places["/var/cache/webd"] == "tmpfs"
    assert places["/var/log/webd/old"] == "tmpfs" and "/var/lib/webd/cache" not in places  # inside its volume
    assert "/var/lib/foo" not in places and "/etc/webd" not in places  # a library's; the sealed root
    assert any("ReadWritePaths=/etc/webd: stays read-only" in n for n in service.notes)
    assert service.kernel == {"ipv6": "/etc/webd/sites-available/default:3 names an IPv6 address ([::])"}


@pytest.mark.parametrize(
    ("line", "found"),
    [("listen [::]:80;", "[::]"), ("bind 127.0.0.1 -::1", "::1"), ("Listen [::1]:8080", "[::1]"),
     ("use Foo::Bar;", None), ("std::string", None), ("listen 0.0.0.0:80;", None), ("a::b", None)],
)  # fmt: skip
def test_an_ipv6_address_is_told_from_other_colons(line: str, found: str | None) -> None:
    match = IPV6_ADDRESS.search(line)
    assert (match.group(0) if match else None) == found


APACHE_POSTINST = """#!/bin/sh
enable_default_modules()
{
    if is_fresh_install $@; then
        for module in authz_host \\
                dir ; do
            a2enmod -m -q $module
        done
    fi
}
a2ensite -q 000-default
a2enconf -m -q $unknown
"""

ENVVARS = """unset HOME
if [ "${APACHE_CONFDIR##/etc/apache2-}" != "${APACHE_CONFDIR}" ] ; then
    SUFFIX="-${APACHE_CONFDIR##/etc/apache2-}"
else
    SUFFIX=
fi
export APACHE_RUN_USER=www-data
export APACHE_RUN_DIR=/var/run/apache2$SUFFIX
export APACHE_PID_FILE=${APACHE_RUN_DIR}/apache2.pid
export WHO=`id -un`
export LANG=C
export LANG
"""


def test_apache2s_helpers_and_their_module_dependencies(tmp_path: Path) -> None:
    layout = maintscripts.read(APACHE_POSTINST)
    assert layout.enabled == [("mods", "authz_host"), ("mods", "dir"), ("sites", "000-default")]
    available = tmp_path / "etc/apache2/mods-available"
    available.mkdir(parents=True)
    (available / "authz_host.load").write_text("# Depends: authz_core\nLoadModule authz_host_module x.so\n")
    (available / "authz_core.load").write_text("LoadModule authz_core_module y.so\n")
    (available / "dir.load").write_text("LoadModule dir_module z.so\n")
    (available / "dir.conf").write_text("DirectoryIndex index.html\n")
    (tmp_path / "etc/apache2/sites-available").mkdir()
    (tmp_path / "etc/apache2/sites-available/000-default.conf").write_text("<VirtualHost *:80>\n</VirtualHost>\n")
    assert maintscripts.enabled_links(tmp_path, layout.enabled) == {
        "/etc/apache2/mods-enabled/authz_host.load": "../mods-available/authz_host.load",
        "/etc/apache2/mods-enabled/dir.load": "../mods-available/dir.load",
        "/etc/apache2/mods-enabled/dir.conf": "../mods-available/dir.conf",
        "/etc/apache2/sites-enabled/000-default.conf": "../sites-available/000-default.conf",
        "/etc/apache2/mods-enabled/authz_core.load": "../mods-available/authz_core.load",  # a2enmod's Depends:
    }


def test_a_sourced_files_top_level_variables() -> None:
    assert maintscripts.exports(ENVVARS) == {
        "APACHE_RUN_USER": "www-data",
        "APACHE_RUN_DIR": "/var/run/apache2",  # SUFFIX is set only for another instance: empty here
        "APACHE_PID_FILE": "/var/run/apache2/apache2.pid",
        "LANG": "C",
    }  # not WHO: a command's output is not guessed


def test_a_wrapper_kiln_knows_runs_its_daemon_with_no_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unpacked = _tree(tmp_path, "[Service]\nType=forking\nExecStart=/usr/sbin/examplectl start\n")
    (unpacked.root / "usr/sbin/examplectl").write_text("#!/bin/sh\n. /etc/exampled/envvars\nexec exampled -d\n")
    (unpacked.root / "etc/exampled/envvars").write_text("export EXAMPLE_RUN_DIR=/var/run/exampled\n")
    wrapper = hints.Wrapper(
        script="/usr/sbin/examplectl", program="/usr/sbin/exampled", args=("-f",),
        env_file="/etc/exampled/envvars", dirs=("/var/run/exampled",), why="it runs exampled",
    )  # fmt: skip
    monkeypatch.setitem(hints.HINTS, "exampled", hints.PackageHint(wrapper=wrapper))
    service = describe(unpacked, NativeConfig(deb="exampled"))
    assert service.argv == ["/usr/sbin/exampled", "-f"] and service.env["EXAMPLE_RUN_DIR"] == "/var/run/exampled"
    assert service.command_from == "exampled.service ExecStart (examplectl, resolved by kiln.debs.hints)"
    assert (
        "/run/exampled" in {w.path for w in service.writable} and "exampled.service: it runs exampled" in service.notes
    )


def test_a_package_whose_unit_is_another_sources_starts_as_its_wrapper_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """postgresql-15 ships no unit: postgresql-common's starts it through pg_ctlcluster, as the cluster's owner.
    The programs beside the server (initdb, pg_dump) and what a setting kiln leaves off loads (JIT) stay out;
    the data the hint names comes from any fetched package (tzdata's /usr/share/zoneinfo)."""
    unpacked = _tree(tmp_path, "")
    (unpacked.root / "lib/systemd/system/exampled.service").unlink()
    lib = unpacked.root / "usr/lib/exampled"
    for path in ("bin/exampled-server", "bin/exampled-init", "lib/plugin.so", "lib/jit.so"):
        (lib / path).parent.mkdir(parents=True, exist_ok=True)
        (lib / path).write_bytes(b"\x7fELF")
        (lib / path).chmod(0o755)
    (lib / "bin/start.boot").write_bytes(b"boot")  # data beside programs (Erlang's boot files): kept
    (unpacked.root / "usr/share/zoneinfo").mkdir(parents=True)
    (unpacked.root / "usr/share/zoneinfo/UTC").write_bytes(b"TZif")
    family = ("/usr/sbin/exampled", "/etc/exampled/exampled.conf", "/usr/lib/exampled/bin/exampled-server",
              "/usr/lib/exampled/bin/exampled-init", "/usr/lib/exampled/lib/plugin.so",
              "/usr/lib/exampled/lib/jit.so", "/usr/lib/exampled/bin/start.boot")  # fmt: skip
    unpacked = Unpacked("exampled", "1.0", unpacked.root, ("exampled", "tzdata"), 1, family,
                        {"exampled": family, "tzdata": ("/usr/share/zoneinfo/UTC",)}, unpacked.dirs)  # fmt: skip
    wrapper = hints.Wrapper(
        script="/usr/bin/examplectlcluster", program="/usr/lib/exampled/bin/exampled-server", args=("-D", "/x"),
        user="exampled", dirs=("/run/exampled",), why="the cluster's owner runs it",
    )  # fmt: skip
    hint = hints.PackageHint(wrapper=wrapper, data=("zoneinfo",), skip=("/usr/lib/exampled/lib/jit.so",))
    monkeypatch.setitem(hints.HINTS, "exampled", hint)
    service = describe(unpacked, NativeConfig(deb="exampled"))
    assert service.argv == ["/usr/lib/exampled/bin/exampled-server", "-D", "/x"]
    assert service.command_from == "/usr/bin/examplectlcluster, which starts it (resolved by kiln.debs.hints)"
    assert service.user is not None and service.user.name == "exampled"
    assert "/usr/lib/exampled/lib/plugin.so" in service.keep and "/usr/share/zoneinfo/UTC" in service.keep
    assert not {"/usr/lib/exampled/lib/jit.so", "/usr/lib/exampled/bin/exampled-init"} & set(service.keep)
    assert "/usr/lib/exampled/bin/start.boot" in service.keep
    assert service.setup is None and service.trees == {}  # no initializer in this hint


def test_a_packages_paths_never_reach_the_build_host(tmp_path: Path) -> None:
    """A postinst's cp source, or a unit's EnvironmentFile=, that climbs out with .. or through a link to an
    absolute path is read inside the package tree, never from the host (untrusted input)."""
    from kiln.debs import service as service_mod

    root = tmp_path / "root"
    (root / "usr/share/webd").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("the tree's\n")
    (root / "usr/share/webd/escape").symlink_to("/etc/hostname")  # absolute: the tree's /etc/hostname
    (root / "usr/share/webd/up").symlink_to("../../../../../../../../etc/hostname")
    layout = maintscripts.read(
        "cp /../../../../../../../../etc/hostname /var/www/climbed\n"
        "cp /usr/share/webd/escape /var/www/linked\ncp /usr/share/webd/up /var/www/up\n"
    )
    assert "/var/www/climbed" not in layout.copies  # a path that climbs is not plain
    copies = service_mod._copies(root, layout, set())
    assert copies == {"/var/www/linked": b"the tree's\n", "/var/www/up": b"the tree's\n"}
    assert service_mod._read(root, "/../../../../../../../etc/hostname") == "the tree's\n"
    assert service_mod._read(root, "/usr/share/webd/up") == "the tree's\n"


def test_tmpfiles_d_directories_are_made_as_systemd_tmpfiles_would(tmp_path: Path) -> None:
    """haproxy's /run/haproxy comes from its tmpfiles.d file, not its unit or postinst."""
    from kiln.debs import tmpfiles

    text = "d /run/exampled 2775 exampled exampled -\nD /var/log/exampled - - -\nL /run/x - - - - /y\n" \
        "d /run/%t/bad 0755\nd /run/../etc 0755\nf /run/file 0644\n"  # fmt: skip
    found = tmpfiles.read(text, "/usr/lib/tmpfiles.d/exampled.conf")
    assert [(d.path, d.mode, d.user, d.group) for d in found] == [
        ("/run/exampled", 0o2775, "exampled", "exampled"), ("/var/log/exampled", None, None, None)
    ]  # fmt: skip
    unpacked = _tree(tmp_path, UNIT)
    (unpacked.root / "usr/lib/tmpfiles.d").mkdir(parents=True)
    (unpacked.root / "usr/lib/tmpfiles.d/exampled.conf").write_text("d /run/exampled-boot 2770 exampled exampled -\n")
    files = (*unpacked.main_files, "/usr/lib/tmpfiles.d/exampled.conf")
    unpacked = Unpacked("exampled", "1.0", unpacked.root, ("exampled",), 1, files, {"exampled": files},
                        unpacked.dirs)  # fmt: skip
    service = describe(unpacked, NativeConfig(deb="exampled"))
    made = {w.path: w for w in service.writable}["/run/exampled-boot"]
    assert service.user is not None and (made.uid, made.gid, made.mode) == (service.user.uid, service.user.gid, 0o2770)
