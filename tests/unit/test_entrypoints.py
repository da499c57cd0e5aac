"""The official images' entrypoint scripts kiln knows (kiln.oci.entrypoints): which script is which, by the
functions it defines, and the first-start steps each gives, checked against guest init's own reading of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import AppError
from kiln.oci import entrypoints

IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@pytest.mark.parametrize(("image", "known"), [("postgres", entrypoints.POSTGRES), ("mariadb", entrypoints.MARIADB)])
def test_each_official_kind_of_script_is_recognized_as_itself(image: str, known: entrypoints.KnownEntrypoint) -> None:
    assert entrypoints.recognize((IMAGES / image / "docker-entrypoint.sh").read_bytes()) is known


def test_a_script_that_defines_only_some_of_the_functions_is_not_recognized() -> None:
    script = b'#!/bin/bash\ndocker_setup_env() { :; }\ndocker_init_database_dir() { :; }\nexec "$@"\n'
    assert entrypoints.recognize(script) is None


def test_mariadb_steps_name_the_image_s_data_and_server() -> None:
    steps = entrypoints.steps_for(entrypoints.MARIADB, "/var/lib/mysql", "/usr/sbin/mariadbd", has_init=True)
    assert [s.argv for s in steps] == [("/usr/sbin/mariadbd", "--bootstrap", "--skip-networking",
                                        "--datadir=/var/lib/mysql")] * 6  # fmt: skip
    # root's password: needed, unless MARIADB_ALLOW_EMPTY_ROOT_PASSWORD (or MySQL's name for it) says none
    empty = "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD|MYSQL_ALLOW_EMPTY_PASSWORD"
    assert (steps[0].when, steps[1].when) == (f"!{empty}", empty)
    assert "IDENTIFIED BY '${MARIADB_ROOT_PASSWORD|MYSQL_ROOT_PASSWORD}'" in steps[0].input
    assert "IDENTIFIED BY '${MARIADB_ROOT_PASSWORD|MYSQL_ROOT_PASSWORD:-}'" in steps[1].input
    # the user's grant only when both the user and the database are given; the init files in the database
    assert steps[4].when == "MARIADB_USER|MYSQL_USER,MARIADB_DATABASE|MYSQL_DATABASE"
    assert steps[5].input_file == entrypoints.INIT_SQL and steps[5].input.startswith("USE `")
    assert "NO_BACKSLASH_ESCAPES" in steps[0].input and "NO_BACKSLASH_ESCAPES" in steps[3].input
    without = entrypoints.steps_for(entrypoints.MARIADB, "/var/lib/mysql", "/usr/sbin/mariadbd", has_init=False)
    assert len(without) == 5


def test_postgres_steps_set_every_hosts_method_and_need_a_password_unless_it_is_trust() -> None:
    """The official script's pg_setup_hba_conf line, appended on the first start from POSTGRES_HOST_AUTH_METHOD
    (scram-sha-256 unless given); the password needed unless that method is trust, as docker_verify_minimum_env
    says; the role POSTGRES_USER names made with the password when there is one."""
    server = "/usr/lib/postgresql/15/bin/postgres"
    steps = entrypoints.steps_for(entrypoints.POSTGRES, "/var/lib/postgresql/data", server, has_init=True)
    assert steps[0].append_to == "pg_hba.conf" and steps[0].argv == ()
    assert steps[0].input == "\nhost all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}\n"
    assert [s.when for s in steps[1:4]] == ["!POSTGRES_HOST_AUTH_METHOD", "POSTGRES_HOST_AUTH_METHOD!=trust",
                                            "POSTGRES_HOST_AUTH_METHOD=trust,POSTGRES_PASSWORD"]  # fmt: skip
    assert all(s.input == entrypoints.PG_PASSWORD for s in steps[1:4])
    assert "PASSWORD '${POSTGRES_PASSWORD:-}'" in steps[4].input
    assert entrypoints.POSTGRES.appends == {} and len(steps) <= 12
    # initdb's own TCP lines go at build time: a client from the host's loopback meets the line above
    import re

    made = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all ::1/128 trust\n"
    pattern = entrypoints.POSTGRES.drops["pg_hba.conf"]
    kept = [line for line in made.splitlines() if not re.match(pattern, line)]
    assert kept == ["local all all trust"]


def test_the_data_directory_is_the_config_s_default_or_the_variable_s() -> None:
    assert entrypoints.data_dir(entrypoints.MARIADB, {"PGDATA": "/elsewhere"}) == "/var/lib/mysql"
    assert entrypoints.data_dir(entrypoints.POSTGRES, {"PGDATA": "/srv/pg"}) == "/srv/pg"
    with pytest.raises(AppError, match="not an absolute path inside the image"):
        entrypoints.data_dir(entrypoints.POSTGRES, {"PGDATA": "/srv/../../etc"})


def test_init_files_are_the_image_s_own_regular_files(tmp_path: Path) -> None:
    """An image is untrusted: a link among its init files (to the build host's /etc/shadow, or anywhere) is not
    read; a directory is not a file; a shell script is refused in one line."""
    init = tmp_path / entrypoints.INIT_DIR.lstrip("/")
    init.mkdir(parents=True)
    (init / "20-data.sql").write_text("INSERT INTO t VALUES (1);\n")
    (init / "10-schema.sql").write_text("CREATE TABLE t (n int);\n")
    (init / "15-secret.sql").symlink_to("/etc/shadow")
    (init / "30-dir.sql").mkdir()
    assert entrypoints.init_files(tmp_path, "image") == [f"{entrypoints.INIT_DIR}/10-schema.sql",
                                                         f"{entrypoints.INIT_DIR}/20-data.sql"]  # fmt: skip
    (init / "40-setup.sh").write_text("psql -c 'select 1'\n")
    with pytest.raises(AppError, match=r"40-setup.sh is not SQL: kiln runs an official image's init files without"):
        entrypoints.init_files(tmp_path, "image")
