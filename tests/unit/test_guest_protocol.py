"""The guest protocol round-trips: what kiln.guest.protocol writes, guest init's own C reads back.

The harness links init's real sources (its main renamed) to a small main that loads a /kiln/config
and prints what init parsed, and decodes a kernel parameter with init's unhex. The names of the
kernel parameters and control requests are checked against the C that reads them.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path

import msgspec
import pytest

from kiln.guest import CFLAGS, INIT_DIR, protocol
from kiln.manifest import Account, Entry, Setup, SetupStep, Verity, Writable
from kiln.policy import policy

HARNESS = r"""
#include "init.h"
int main(int argc, char **argv) {
    int i;
    if (argc == 3 && !strcmp(argv[1], "config")) {
        load_config(argv[2]);
        for (i = 0; app_argv[i]; i++) printf("arg %s\n", app_argv[i]);
        for (i = 0; app_envp[i]; i++) printf("env %s\n", app_envp[i]);
        printf("workdir %s\nhostname %s\n", workdir, hostname);
        for (i = 0; i < nvolumes; i++) printf("volume %s %s\n", volumes[i].tag, volumes[i].path);
        for (i = 0; i < ntmpfs; i++)
            printf("tmpfs %s %u %u %o\n", tmpfs_dirs[i].path, tmpfs_dirs[i].uid, tmpfs_dirs[i].gid, tmpfs_dirs[i].mode);
        for (i = 0; i < nowners; i++)
            printf("owner %s %u %u %o\n", owners[i].path, owners[i].uid, owners[i].gid, owners[i].mode);
        for (i = 0; i < nrules; i++)
            printf("seccomp %s %d %s\n", rules[i].action == NOTIFY ? "notify" :
                   rules[i].action == ENOSYS_ ? "enosys" : "notify-unless-thread", rules[i].nr, rules[i].name);
        printf("keep_caps %lx\n", keep_caps);
        for (i = 0; i < nhelpers; i++) printf("exec %s\n", helpers[i]);
        for (i = 0; i < nsteps; i++) {
            int j;
            printf("setup-step %s\n", steps[i].when);
            for (j = 0; j < steps[i].nargs; j++) printf("setup-arg %s\n", steps[i].args[j]);
            if (steps[i].input_hex[0]) printf("setup-input %s\n", steps[i].input_hex);
            if (steps[i].file[0]) printf("setup-file %s\n", steps[i].file);
            if (steps[i].append[0]) printf("setup-append %s\n", steps[i].append);
        }
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "firststart")) { /* CONFIG IMAGE-DIR: its one volume's first start */
        int below;
        if (getpid() != 1) return 5; /* init ends every process it can see: only in a PID namespace of its own */
        load_config(argv[2]);
        below = open(argv[3], O_RDONLY | O_DIRECTORY);
        if (fill_volume(0, below) < 0) return 3;
        return run_setup() < 0 ? 4 : 0;
    }
    if (argc == 3 && !strcmp(argv[1], "run")) { /* CONFIG: the app, as init runs it (policy and all) */
        if (getpid() != 1) return 5;
        load_config(argv[2]);
        return run_app();
    }
    if (argc == 4 && !strcmp(argv[1], "probe")) { /* KIND PORT: init's readiness probe of a server */
        char why[160];
        int ready = probe(argv[2], (unsigned)atoi(argv[3]), why, sizeof why);
        printf("%d %s\n", ready, ready < 0 && !why[0] ? strerror(errno) : why);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "clients")) { /* GW: the forwarder of published ports' clients */
        if (client_forwarder(argv[2]) < 0) return 3;
        printf("ready\n");
        fflush(stdout);
        pause();
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "unhex")) {
        static char out[8192];
        if (unhex(argv[2], out, sizeof out) < 0) return 1;
        fputs(out, stdout);
        return 0;
    }
    return 2;
}
"""


@pytest.fixture(scope="module")
def init_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build guest init (make setup installs it)")
    work = tmp_path_factory.mktemp("init-harness")
    objects = []
    for source in sorted(INIT_DIR.glob("*.c")):
        obj = work / (source.stem + ".o")
        # init's own flags (warnings are errors, as when kiln builds it), less the strip
        flags = [f for f in CFLAGS if f != "-s"]
        subprocess.run([gcc, *flags, "-c", "-Dmain=kiln_init_main", "-o", obj, source], check=True)
        objects.append(obj)
    (work / "harness.c").write_text(HARNESS)
    subprocess.run([gcc, "-I", INIT_DIR, "-o", work / "reader", work / "harness.c", *objects], check=True)
    return work / "reader"


def test_config_lines_are_what_init_parses(init_reader: Path, tmp_path: Path) -> None:
    entry = Entry(
        argv=("/usr/bin/python3.11", "-m", "app", "a word with spaces"),
        env={"PATH": "/usr/bin", "GREETING": "hello world=yes"},
        workdir="/app",
        volumes=("/data", "/var/lib/db"),
        memory_mib=64,
        user=Account(name="app", uid=1000, gid=1000, groups=(27,)),
        writable=(Writable(path="/run/app", uid=1000, gid=1000, mode=0o750), Writable(path="/data", kind="volume")),
        helpers=("/usr/lib/erlang/erts-13.1.5/bin/erl_child_setup", "/usr/lib/erlang/erts-13.1.5/bin/inet_gethost"),
    )
    steps = (
        SetupStep(argv=("/bin/db", "--single"), input="SET '${PASSWORD}';\n"),
        SetupStep(argv=("/bin/db", "--single", "${DB:-db}"), input_file="/init.sql", when="DB!=db"),
        SetupStep(append_to="db.conf", input="auth ${METHOD}\n", when="!METHOD_OFF"),
    )
    entry = msgspec.structs.replace(entry, setup=Setup(steps=steps))
    rules = policy({})
    written = protocol.config_lines(entry, "web", rules.config_lines())
    (tmp_path / "config").write_bytes(written)

    parsed = subprocess.run([init_reader, "config", tmp_path / "config"], capture_output=True, text=True, check=True)
    lines = parsed.stdout.splitlines()
    assert [line for line in lines if line.startswith("arg ")] == [f"arg {a}" for a in entry.argv]
    assert [line for line in lines if line.startswith("env ")] == ["env PATH=/usr/bin", "env GREETING=hello world=yes"]
    assert "workdir /app" in lines and "hostname web" in lines
    assert [line for line in lines if line.startswith("volume ")] == ["volume vol0 /data", "volume vol1 /var/lib/db"]
    assert "tmpfs /run/app 1000 1000 750" in lines and "owner /data 0 0 755" in lines
    assert [line for line in lines if line.startswith("seccomp ")] == rules.config_lines()
    assert [line for line in lines if line.startswith("exec ")] == [f"exec {p}" for p in entry.helpers]
    assert [line for line in lines if line.startswith("setup-")] == [
        "setup-step -", "setup-arg /bin/db", "setup-arg --single", "setup-input " + b"SET '${PASSWORD}';\n".hex(),
        "setup-step DB!=db", "setup-arg /bin/db", "setup-arg --single", "setup-arg ${DB:-db}", "setup-file /init.sql",
        "setup-step !METHOD_OFF", "setup-input " + b"auth ${METHOD}\n".hex(), "setup-append db.conf",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="runs a program"):
        SetupStep(input="x")
    with pytest.raises(ValueError, match="not a file name"):
        SetupStep(append_to="../etc/passwd", input="x")
    # and the Python reader agrees, key for key
    assert {k for k, _ in protocol.read_config(written)} == set(protocol.CONFIG_KEYS) - {"caps"}


def test_the_app_executes_the_programs_the_image_names_and_no_other(init_reader: Path, tmp_path: Path) -> None:
    """With `exec` lines, init lets an execve through when its path is exactly a named program (the Erlang VM's
    erl_child_setup), from any of the app's processes, and refuses and names any other (a shell, a program with
    the same name elsewhere, one reached through a link)."""
    helper = tmp_path / "helper"
    shutil.copy("/bin/true", helper)
    (tmp_path / "link").symlink_to(helper)
    script = f"{helper} && echo named; /bin/true && echo unnamed; {tmp_path}/link && echo linked; echo done"
    entry = Entry(argv=("/bin/sh", "-c", script), memory_mib=64, helpers=(str(helper),))
    rules = policy({"clone": "the shell forks what it runs", "vfork": "dash runs a program so"})
    (tmp_path / "config").write_bytes(protocol.config_lines(entry, "t", rules.config_lines()))
    argv = ["unshare", "--pid", "--fork", "--mount-proc", init_reader, "run", tmp_path / "config"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["named", "done"], done.stdout + done.stderr
    assert "refused execve of /bin/true by pid" in done.stderr, done.stderr
    assert f"refused execve of {tmp_path}/link by pid" in done.stderr, done.stderr


def test_with_no_program_named_every_execve_but_the_apps_own_is_refused(init_reader: Path, tmp_path: Path) -> None:
    entry = Entry(argv=("/bin/sh", "-c", "/bin/true && echo ran; echo done"), memory_mib=64)
    rules = policy({"clone": "the shell forks what it runs", "vfork": "dash runs a program so"})
    (tmp_path / "config").write_bytes(protocol.config_lines(entry, "t", rules.config_lines()))
    argv = ["unshare", "--pid", "--fork", "--mount-proc", init_reader, "run", tmp_path / "config"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["done"], done.stdout + done.stderr
    assert "refused execve by pid" in done.stderr, done.stderr


def test_every_config_key_and_kernel_parameter_is_read_by_init() -> None:
    c = "\n".join(p.read_text() for p in INIT_DIR.glob("*.c"))
    for key in protocol.CONFIG_KEYS:
        assert f'!strcmp(line, "{key}")' in c, key
    boot = protocol.Boot(
        memory_mib=48,
        verity_table=protocol.dm_table(Verity(root_hash="a" * 64, salt="b" * 64, data_blocks=10, hash_offset=40960)),
        lan_addresses=("10.89.0.3/24", "10.89.1.2/24", "10.89.2.2/24", "10.89.3.2/24"),
        hosts=(("db", "10.89.0.2"),),
        env=(("A", "1"),),
        argv=("/bin/app",),
        secrets=("0 db-password -1 -1 400",),
        binds=("bind0 /etc/nginx/nginx.conf nginx.conf 1",),
        tmpfs=("/var/cache/nginx",),
        clients=True,
        extra=(protocol.SEED + "=" + "c" * 64, protocol.WAIT_SEED, protocol.PROBE, protocol.POWEROFF),
    )
    line = protocol.kernel_cmdline(boot)
    written = {w.split("=", 1)[0] for w in line.split() if w.startswith("kiln.")}
    read = set(re.findall(r'cmdline_param\("(kiln\.[a-z0-9-]+)"', c))
    assert written == read, written ^ read
    for request in protocol.REQUESTS:
        assert f'!strcmp(verb, "{request}")' in c, request


@pytest.mark.parametrize(
    "items",
    [["A=1", "B=two words"], ["/bin/app", "--flag=x y", "ünïcode"], ["10.89.0.2\tdb", "10.89.0.4\tweb"], []],
)
def test_hex_lines_round_trip_through_init(init_reader: Path, items: list[str]) -> None:
    word = protocol.hex_lines(items)
    assert protocol.unhex_lines(word) == items
    boot = protocol.Boot(memory_mib=32, argv=tuple(items))
    assert protocol.cmdline_param(protocol.kernel_cmdline(boot), "kiln.argv") == word
    decoded = subprocess.run([init_reader, "unhex", word], capture_output=True, check=True).stdout.decode()
    assert decoded.splitlines() == items


def test_init_words_the_out_of_memory_end_as_kiln_reads_it() -> None:
    stats = (INIT_DIR / "stats.c").read_text()
    sentence = protocol.out_of_memory(48, 41)
    fmt = re.search(r'say\("(the app ran out of memory: %lu MiB guest[^"]*)"', stats)
    assert fmt is not None
    assert fmt.group(1).replace("%lu", "{}").format(48, 41, 96) == sentence
    assert protocol.INIT_OOM.removeprefix(protocol.INIT_SAY) in stats
    assert protocol.KILLED_BY_SIGNAL.removeprefix(protocol.INIT_SAY) in stats
    assert f'dprintf(2, "{protocol.INIT_SAY}%s\\n"' in (INIT_DIR / "main.c").read_text()


def test_a_command_line_linux_would_cut_is_one_line() -> None:
    from kiln.errors import UsageError

    with pytest.raises(UsageError, match="kernel command line would be"):
        protocol.kernel_cmdline(protocol.Boot(memory_mib=32, env=(("BIG", "x" * 2000),)))


def _firststart(init_reader: Path, config: Path, image: Path) -> subprocess.CompletedProcess[str]:
    """Init's first start of the config's one volume over an image directory. Init runs each step as it runs the
    app, and then ends whatever is left (kill -1): in a PID namespace of its own."""
    argv = ["unshare", "--pid", "--fork", "--mount-proc", init_reader, "firststart", config, image]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _first_start(
    init_reader: Path, tmp_path: Path, env: str, template: bytes = b"ALTER USER db PASSWORD '${PASSWORD}';"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Init's first start of one volume over an image directory, with a setup that writes its input to a file."""
    image, volume = tmp_path / "image", tmp_path / "volume"
    if not image.exists():
        (image / "15" / "main").mkdir(parents=True)
        (image / "15" / "main").chmod(0o700)
        (image / "15" / "main" / "PG_VERSION").write_text("15\n")
        (image / "15" / "main" / "PG_VERSION").chmod(0o600)
        (image / "15" / "current").symlink_to("main")
        # a preallocated file (MariaDB's redo log): 8 MiB of zeros, a header, a zero tail that ends in a hole
        (image / "15" / "main" / "redo").write_bytes(bytes(8 << 20) + b"header" + bytes(100_000))
        volume.mkdir()
    config = tmp_path / "config"
    setup_input = template.hex()
    config.write_text(
        f"arg /bin/server\nvolume vol0 {volume}\n{env}setup-arg /usr/bin/tee\nsetup-arg {tmp_path}/seen\n"
        f"setup-input {setup_input}\n"
    )
    return _firststart(init_reader, config, image), volume


def test_a_first_start_fills_an_empty_volume_from_the_image_then_sets_it_up(init_reader: Path, tmp_path: Path) -> None:
    first, volume = _first_start(init_reader, tmp_path, "env PASSWORD=it's\n")
    assert first.returncode == 0, first.stderr
    assert "volume " + str(volume) + ": empty: filled from the image (first start)" in first.stderr
    data = volume / "15" / "main"
    assert (data / "PG_VERSION").read_text() == "15\n"
    assert data.stat().st_mode & 0o7777 == 0o700 and (data / "PG_VERSION").stat().st_mode & 0o7777 == 0o600
    assert (volume / "15" / "current").readlink() == Path("main")
    redo = data / "redo"  # copied sparse: its zeros are holes, its bytes and length as they were
    assert redo.read_bytes() == (tmp_path / "image" / "15" / "main" / "redo").read_bytes()
    assert redo.stat().st_blocks * 512 < 1 << 20
    assert (tmp_path / "seen").read_text() == "ALTER USER db PASSWORD 'it''s';"  # quoted for SQL
    assert not (volume / ".kiln-first-start").exists()  # the first start finished
    (tmp_path / "seen").unlink()
    later, _ = _first_start(init_reader, tmp_path, "env PASSWORD=other\n")
    assert later.returncode == 0 and not (tmp_path / "seen").exists()  # not empty: neither filled nor set up


def test_a_value_is_quoted_for_the_sql_string_or_identifier_it_sits_in(init_reader: Path, tmp_path: Path) -> None:
    """POSTGRES_USER in "..." (an identifier) has its double quote doubled, a password in '...' its single quote: a
    value can close neither and add SQL of its own."""
    template = b"""CREATE ROLE "${USER}" PASSWORD '${PASSWORD}' -- ${PASSWORD|USER:-x};"""
    first, _ = _first_start(init_reader, tmp_path, "env USER=a\"b'c\nenv PASSWORD=p'q\"r\n", template)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "seen").read_text() == """CREATE ROLE "a""b'c" PASSWORD 'p''q"r' -- p''q"r;"""


def test_steps_run_when_all_their_conditions_hold_and_read_text_then_a_file(init_reader: Path, tmp_path: Path) -> None:
    """WHEN "A,B" needs both; a step with input text and a file reads the text first (MariaDB's USE `db`; then
    the image's init files)."""
    image, volume = tmp_path / "image", tmp_path / "volume"
    (image / "data").mkdir(parents=True)
    volume.mkdir()
    (tmp_path / "init.sql").write_text("CREATE TABLE t (n INT);\n")
    use = b"USE `${A}`;\n".hex()
    (tmp_path / "config").write_text(
        f"arg /bin/server\nvolume vol0 {volume}\nenv A=x`y\nenv C=2\n"
        f"setup-step A,B\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/both\nsetup-input {b'b'.hex()}\n"
        f"setup-step A,C!=2\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/other\nsetup-input {b'c'.hex()}\n"
        f"setup-step A,C\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/combined\nsetup-input {use}\n"
        f"setup-file {tmp_path}/init.sql\n"
    )
    done = _firststart(init_reader, tmp_path / "config", image)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "both").exists() and not (tmp_path / "other").exists()
    assert (tmp_path / "combined").read_text() == "USE `x``y`;\nCREATE TABLE t (n INT);\n"


def test_an_append_step_adds_a_line_to_the_filled_volume_and_conditions_may_ask_unset_or_equal(
    init_reader: Path, tmp_path: Path
) -> None:
    """The official postgres script's pg_hba.conf line, by POSTGRES_HOST_AUTH_METHOD: appended, each value one word;
    !NAME holds when NAME is not set, NAME=VALUE when it is set to that."""
    image, volume = tmp_path / "image", tmp_path / "volume"
    image.mkdir()
    (image / "pg_hba.conf").write_text("local all all trust\n")
    volume.mkdir()

    def start(env: str) -> subprocess.CompletedProcess[str]:
        for leftover in [*volume.iterdir(), *tmp_path.glob("ran-*")]:
            leftover.unlink()
        line = b"host all all all ${METHOD:-scram-sha-256}\n".hex()
        (tmp_path / "config").write_text(
            f"arg /bin/server\nvolume vol0 {volume}\n{env}"
            f"setup-step -\nsetup-append pg_hba.conf\nsetup-input {line}\n"
            f"setup-step !METHOD\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/ran-unset\n"
            f"setup-step METHOD=trust\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/ran-trust\n"
            # a file name with a / is no file of the volume: the line is ignored, the step runs nothing
            f"setup-step -\nsetup-append ../escape\nsetup-input {line}\n"
        )
        return _firststart(init_reader, tmp_path / "config", image)

    done = start("")
    assert done.returncode == 0, done.stderr
    assert (volume / "pg_hba.conf").read_text() == "local all all trust\nhost all all all scram-sha-256\n"
    assert (tmp_path / "ran-unset").exists() and not (tmp_path / "ran-trust").exists()
    assert not (tmp_path / "escape").exists()
    done = start("env METHOD=trust\n")
    assert done.returncode == 0, done.stderr
    assert (volume / "pg_hba.conf").read_text().endswith("host all all all trust\n")
    assert not (tmp_path / "ran-unset").exists() and (tmp_path / "ran-trust").exists()
    done = start("env METHOD=trust all\n")  # a second word would be a field of pg_hba.conf's line
    assert done.returncode != 0 and "METHOD must be one word here" in done.stderr
    assert not (volume / "pg_hba.conf").exists()  # refused before the volume was filled


def test_a_first_start_with_its_variable_missing_writes_nothing(init_reader: Path, tmp_path: Path) -> None:
    proc, volume = _first_start(init_reader, tmp_path, "")
    assert proc.returncode == 3
    assert "first start: PASSWORD is not set, and the server's setup needs it: give it with -e PASSWORD=... " \
        "(or PASSWORD_FILE)" in proc.stderr  # fmt: skip
    assert list(volume.iterdir()) == []
    (tmp_path / "secret").write_text("from a file\n")  # the official images' NAME_FILE convention (secrets)
    proc, volume = _first_start(init_reader, tmp_path, f"env PASSWORD_FILE={tmp_path}/secret\n")
    assert proc.returncode == 0 and (tmp_path / "seen").read_text() == "ALTER USER db PASSWORD 'from a file';"


def test_a_first_start_that_did_not_finish_is_named_and_left_alone(init_reader: Path, tmp_path: Path) -> None:
    _first_start(init_reader, tmp_path, "env PASSWORD=x\n")
    (tmp_path / "volume" / ".kiln-first-start").touch()
    (tmp_path / "seen").unlink()
    proc, volume = _first_start(init_reader, tmp_path, "env PASSWORD=x\n")
    assert proc.returncode == 3 and "its first start did not finish" in proc.stderr
    assert not (tmp_path / "seen").exists() and (volume / ".kiln-first-start").exists()


def test_a_setup_variable_may_go_by_either_of_its_names(init_reader: Path, tmp_path: Path) -> None:
    """MARIADB_ROOT_PASSWORD or MYSQL_ROOT_PASSWORD: the first that is set; the first is the one a refusal names."""
    template = b"SET PASSWORD = '${NEW|OLD}';"
    proc, _ = _first_start(init_reader, tmp_path, "", template)
    assert proc.returncode == 3 and "NEW is not set" in proc.stderr and "OLD" not in proc.stderr
    proc, _ = _first_start(init_reader, tmp_path, "env OLD=legacy\n", template)
    assert proc.returncode == 0 and (tmp_path / "seen").read_text() == "SET PASSWORD = 'legacy';"


def test_first_start_steps_run_in_order_when_their_condition_holds(init_reader: Path, tmp_path: Path) -> None:
    """The official images' way: the password always; a database only if POSTGRES_DB names another; its init
    files, as the image holds them, in that database (${POSTGRES_DB:-postgres} in the step's words)."""
    (tmp_path / "init.sql").write_text("CREATE TABLE t (n int);\n")

    def start(env: str, name: str) -> subprocess.CompletedProcess[str]:
        image, volume = tmp_path / "image", tmp_path / name
        (image / "data").mkdir(parents=True, exist_ok=True)
        volume.mkdir()
        config = tmp_path / f"{name}.config"
        password_sql = b"ALTER USER db PASSWORD '${PASSWORD}';".hex()
        config.write_text(
            f"arg /bin/server\nvolume vol0 {volume}\n{env}"
            f"setup-step -\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/{name}.password\n"
            f"setup-input {password_sql}\n"
            f"setup-step DB!=db\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/{name}.${{DB:-db}}\n"
            f"setup-file {tmp_path}/init.sql\n"
        )
        return _firststart(init_reader, config, image)

    plain = start("env PASSWORD=p\n", "plain")
    assert plain.returncode == 0, plain.stderr
    assert (tmp_path / "plain.password").read_text() == "ALTER USER db PASSWORD 'p';"
    assert not list(tmp_path.glob("plain.db*"))  # DB unset: the step does not hold
    same = start("env PASSWORD=p\nenv DB=db\n", "same")
    assert same.returncode == 0 and not (tmp_path / "same.db").exists()  # DB names the default: nothing to make
    shop = start("env PASSWORD=p\nenv DB=shop\n", "shop")
    assert shop.returncode == 0, shop.stderr
    assert (tmp_path / "shop.shop").read_text() == "CREATE TABLE t (n int);\n"  # the file as it is, in DB's name
    assert shop.stderr.count("sets the server up") == 2


def test_every_step_up_to_the_most_init_runs_runs_and_one_more_starts_nothing(
    init_reader: Path, tmp_path: Path
) -> None:
    """The official mariadb image's first start is five steps: each runs as itself (a step beyond init's room once
    had its words added to the one before it); a config with more steps than init runs is refused whole."""
    header = (INIT_DIR / "init.h").read_text()
    assert re.search(r"#define MAX_STEPS (\d+)", header)[1] == str(protocol.SETUP_STEPS_MAX)  # type: ignore[index]

    def start(count: int, name: str) -> subprocess.CompletedProcess[str]:
        image, volume = tmp_path / f"{name}.image", tmp_path / name
        (image / "data").mkdir(parents=True)
        volume.mkdir()
        steps = "".join(
            f"setup-step -\nsetup-arg /usr/bin/tee\nsetup-arg {tmp_path}/{name}.{i}\n"
            f"setup-input {str(i).encode().hex()}\n"
            for i in range(count)
        )
        config = tmp_path / f"{name}.config"
        config.write_text(f"arg /bin/server\nvolume vol0 {volume}\n{steps}")
        return _firststart(init_reader, config, image)

    most = start(protocol.SETUP_STEPS_MAX, "most")
    assert most.returncode == 0, most.stderr
    assert [(tmp_path / f"most.{i}").read_text() for i in range(protocol.SETUP_STEPS_MAX)] == [
        str(i) for i in range(protocol.SETUP_STEPS_MAX)
    ]
    over = start(protocol.SETUP_STEPS_MAX + 1, "over")
    assert over.returncode == 3 and "more set-up steps than this init runs" in over.stderr
    assert list((tmp_path / "over").iterdir()) == [] and not list(tmp_path.glob("over.[0-9]*"))


def _answering(answer: bytes, greet: bool) -> tuple[socket.socket, list[bytes]]:
    """A loopback listener that answers one connection with `answer` (first, if `greet`: a MySQL server speaks
    first), after reading what the probe sends; what it read is kept."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            if greet:
                conn.sendall(answer)
            conn.settimeout(1)
            try:
                seen.append(conn.recv(4096))
            except OSError:
                seen.append(b"")
            if not greet:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener, seen


def _pg_error(code: str) -> bytes:
    body = b"SFATAL\0C" + code.encode() + b"\0Mno\0\0"
    return b"E" + struct.pack(">I", len(body) + 4) + body


@pytest.mark.parametrize(
    ("kind", "answer", "greet", "ready", "why"),
    [
        ("postgres", b"R" + struct.pack(">II", 8, 10), False, "1", ""),  # SASL asked: accepting connections
        ("postgres", _pg_error("28000"), False, "1", ""),  # no pg_hba.conf line for the probe: it answers
        ("postgres", _pg_error("57P03"), False, "0", "starting up"),  # cannot_connect_now: not yet
        ("mysql", b"\x4a\x00\x00\x00\x0a10.11.6-MariaDB\0", True, "1", ""),  # its greeting, protocol 10
        ("mysql", b"\x17\x00\x00\x00\xff\x10\x04Too many connections", True, "1", ""),
        ("redis", b"+PONG\r\n", False, "1", ""),
        ("redis", b"-NOAUTH Authentication required.\r\n", False, "1", ""),
        ("redis", b"-LOADING Redis is loading the dataset in memory\r\n", False, "0", "-LOADING"),
    ],
)
def test_init_asks_a_server_in_its_own_protocol(
    init_reader: Path, kind: str, answer: bytes, greet: bool, ready: str, why: str
) -> None:
    listener, seen = _answering(answer, greet)
    with listener:
        port = listener.getsockname()[1]
        out = subprocess.run([init_reader, "probe", kind, str(port)], capture_output=True, text=True, timeout=30)
    status, _, reason = out.stdout.strip().partition(" ")
    assert (status, why in reason) == (ready, True), out.stdout
    if kind == "postgres":  # a protocol 3.0 startup packet, as pg_isready's
        assert seen[0][4:8] == b"\x00\x03\x00\x00" and b"user\0kiln-probe\0" in seen[0]
    if kind == "redis":
        assert seen[0] == b"PING\r\n"


def test_a_probe_of_a_closed_port_or_an_unknown_kind_says_why(init_reader: Path) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    out = subprocess.run([init_reader, "probe", "postgres", str(port)], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "-1 Connection refused"
    out = subprocess.run([init_reader, "probe", "mongo", str(port)], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip().startswith("-1 no probe mongo")


# Run inside a network namespace of its own (unshare --net): eth0 as the guest's, the gateway's address on the
# other end of a veth pair, an app on port 8080, and init's forwarder; each case is a connection as QEMU's
# forward would make it, and what the app saw of it.
CLIENTS_CASES = r"""
import json, os, socket, subprocess, sys, threading, time
reader, port = sys.argv[1], int(sys.argv[2])
def sh(*words):
    subprocess.run(words, check=True)
sh("ip", "link", "set", "lo", "up")
sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "gw0")
sh("ip", "addr", "add", "10.0.2.15/24", "dev", "eth0")
sh("ip", "addr", "add", "10.0.2.2/24", "dev", "gw0")
sh("ip", "link", "set", "eth0", "up")
sh("ip", "link", "set", "gw0", "up")
app = socket.create_server(("0.0.0.0", 8080))
seen = []
def serve():
    while True:
        conn, peer = app.accept()
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        seen.append(peer[0])
        conn.sendall(peer[0].encode() + b" " + str(len(data)).encode() + b" " + data[-16:])
        conn.close()
threading.Thread(target=serve, daemon=True).start()
fwd = subprocess.Popen([reader, "clients", "10.0.2.2"], stdout=subprocess.PIPE, start_new_session=True)
assert fwd.stdout.readline().strip() == b"ready"
def ask(opening, body=b"hello", source="10.0.2.2"):
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("10.0.2.15", port))
    try:
        s.sendall(opening + body)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out.decode()
    except OSError as err:
        return type(err).__name__
    finally:
        s.close()
def local_routes():
    return subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True, text=True).stdout
out = {
    "loopback": ask(b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 8080\r\n"),
    "remote": ask(b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 8080\r\n"),
    "own-network": ask(b"PROXY TCP4 10.0.2.99 10.0.2.15 40000 8080\r\n"),
    "ipv6": ask(b"PROXY TCP6 2001:db8::7 ::1 40000 8080\r\n"),
    "large": ask(b"PROXY TCP4 127.0.0.3 127.0.0.1 40000 8080\r\n", b"x" * 3_000_000 + b"end-of-the-body!"),
    "split": None,
}
s = socket.create_connection(("10.0.2.15", port), source_address=("10.0.2.2", 0), timeout=10)
s.sendall(b"PROXY TCP4 127.0.0.4 ")
time.sleep(0.3)
s.sendall(b"127.0.0.1 40000 8080\r\nafter")
s.shutdown(socket.SHUT_WR)
out["split"] = s.recv(100).decode()
s.close()
for _ in range(40):
    if "198.51.100.7" not in local_routes():
        break
    time.sleep(0.05)
out["route-left"] = "198.51.100.7" in local_routes()
accepted = len(seen)
out["not-the-gateway"] = ask(b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 8080\r\n", source="10.0.2.15")
out["not-proxy"] = ask(b"GET / HTTP/1.0\r\n\r\n", b"")
out["nothing-listens"] = ask(b"PROXY TCP4 127.0.0.6 127.0.0.1 40000 9999\r\n")
out["accepted-after"] = len(seen) - accepted
os.killpg(fwd.pid, 9)  # the harness and the forwarder it started
print(json.dumps(out))
"""


def test_init_forwards_a_published_ports_connection_from_the_clients_own_address(init_reader: Path) -> None:
    import json
    import sys

    if shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.fail("ip and unshare are needed (iproute2, util-linux)")
    argv = ["unshare", "--net", sys.executable, "-c", CLIENTS_CASES, str(init_reader), str(protocol.CLIENTS_PORT)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loopback"] == "127.0.0.2 5 hello"
    assert out["remote"] == "198.51.100.7 5 hello"  # given a local route while it was open
    assert out["route-left"] is False  # and the route went with the connection
    assert out["own-network"] == "127.0.0.1 5 hello"  # a route to it would cut the guest off its own network
    assert out["ipv6"] == "127.0.0.1 5 hello"
    assert out["large"] == "127.0.0.3 3000016 end-of-the-body!"
    assert out["split"] == "127.0.0.4 5 after"  # a PROXY line that comes in pieces
    # refused, the app never sees them: a peer that is not QEMU's forward, a line that is not PROXY, no app
    for case in ("not-the-gateway", "not-proxy", "nothing-listens"):
        assert out[case] in ("", "ConnectionResetError", "BrokenPipeError", "OSError"), (case, out[case])
    assert out["accepted-after"] == 0


def test_the_relays_proxy_line_names_the_client_and_the_apps_port() -> None:
    line = protocol.proxy_line(("127.0.0.2", 40000), ("127.0.0.1", 8080), 80)
    assert line == b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 80\r\n"
    assert protocol.proxy_line(("::1", 5, 0, 0), ("::1", 8080, 0, 0), 80) == b"PROXY TCP6 ::1 ::1 5 80\r\n"
    mapped = protocol.proxy_line(("::ffff:127.0.0.2", 5), ("::", 8080), 80)  # an IPv4 client of a dual-stack port
    assert mapped == b"PROXY TCP4 127.0.0.2 0.0.0.0 5 80\r\n"
    assert len(protocol.proxy_line(("f" * 39, 65535), ("f" * 39, 65535), 65535)) <= 107  # v1's longest line
    assert f"#define CLIENTS_PORT {protocol.CLIENTS_PORT} " in (INIT_DIR / "clients.c").read_text()
