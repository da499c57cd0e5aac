"""The guest protocol round-trips: what kiln.guest.protocol writes, guest init's own C reads back.

The harness links init's real sources (its main renamed) to a small main that loads a /kiln/config
and prints what init parsed, and decodes a kernel parameter with init's unhex. The names of the
kernel parameters and control requests are checked against the C that reads them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kiln.guest import INIT_DIR, protocol
from kiln.manifest import Account, Entry, Verity, Writable
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
        subprocess.run([gcc, "-c", "-Dmain=kiln_init_main", "-o", obj, source], check=True)
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
    )
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
    # and the Python reader agrees, key for key
    assert {k for k, _ in protocol.read_config(written)} == set(protocol.CONFIG_KEYS) - {"caps"}


def test_every_config_key_and_kernel_parameter_is_read_by_init() -> None:
    c = "\n".join(p.read_text() for p in INIT_DIR.glob("*.c"))
    for key in protocol.CONFIG_KEYS:
        assert f'!strcmp(line, "{key}")' in c, key
    boot = protocol.Boot(
        memory_mib=48,
        verity_table=protocol.dm_table(Verity(root_hash="a" * 64, salt="b" * 64, data_blocks=10, hash_offset=40960)),
        lan_address="10.89.0.3/24",
        hosts=(("db", "10.89.0.2"),),
        env=(("A", "1"),),
        argv=("/bin/app",),
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
