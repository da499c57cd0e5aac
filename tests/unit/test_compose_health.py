"""Compose healthchecks as people write them (Docker's samples, the official images' docs), turned into the
checks guest init runs in the server's own protocol; what needs a shell or asks another host refused."""

from __future__ import annotations

import pytest

from kiln.compose.health import Probe, translate
from kiln.errors import UsageError


@pytest.mark.parametrize(
    ("test", "probe"),
    [
        # docker/awesome-compose's nginx-flask-mysql and react-express-mysql, after compose turned $$ into $
        (["CMD-SHELL", 'mysqladmin ping -h 127.0.0.1 --password="$(cat /run/secrets/db-password)" --silent'],
         Probe("mysql", 3306)),
        (["CMD", "mysqladmin", "ping", "-h", "localhost", "-uroot", "-p$MYSQL_ROOT_PASSWORD"], Probe("mysql", 3306)),
        (["CMD", "mysqladmin", "-p", "ping", "-P", "3307"], Probe("mysql", 3307)),  # -p alone: no value after it
        (["CMD", "healthcheck.sh", "--connect"], Probe("mysql", 3306)),
        (["CMD", "mariadb-admin", "ping", "--port=3310"], Probe("mysql", 3310)),
        # nginx-golang-postgres
        (["CMD", "pg_isready"], Probe("postgres", 5432)),
        ("pg_isready -U $${POSTGRES_USER} -d postgres -p 5433 || exit 1".replace("$$", "$"), Probe("postgres", 5433)),
        (["CMD-SHELL", "pg_isready -h /var/run/postgresql -q"], Probe("postgres", 5432)),
        (["CMD", "redis-cli", "ping"], Probe("redis", 6379)),
        (["CMD-SHELL", "redis-cli -a $(cat /run/secrets/r) --no-auth-warning -p 6380 PING"], Probe("redis", 6380)),
        (["CMD-SHELL", "redis-cli -h 127.0.0.1 ping"], Probe("redis", 6379)),
        (["CMD", "nc", "-z", "localhost", "11211"], Probe("tcp", 11211)),
        (["CMD", "curl", "-f", "http://localhost:8080/health"], Probe("http", 8080, "/health")),
        ("curl -fs http://127.0.0.1/ || exit 1", Probe("http", 80, "/")),
        (["CMD", "wget", "--spider", "-q", "http://0.0.0.0:3000/"], Probe("http", 3000, "/")),
        (["HTTP", "8080", "/ready"], Probe("http", 8080, "/ready")),
        (["TCP", "6379"], Probe("tcp", 6379)),
        (["NONE"], None),
    ],
)  # fmt: skip
def test_the_probes_people_write_become_init_checks(test: object, probe: Probe | None) -> None:
    assert translate(test, "services.db.healthcheck.test") == probe


@pytest.mark.parametrize(
    ("test", "message"),
    [
        (["CMD-SHELL", "redis-cli ping | grep PONG"], "needs a shell"),
        (["CMD-SHELL", "pg_isready && psql -c 'select 1'"], "needs a shell"),
        (["CMD-SHELL", "mysqladmin ping > /dev/null"], "needs a shell"),
        (["CMD-SHELL", "test -f /tmp/ready"], "kiln cannot run test in a unikernel"),
        (["CMD", "pg_isready", "-h", "db.example.com"], "asks host db.example.com"),
        (["CMD", "mysqladmin", "status"], "kiln runs mysqladmin ping only"),
        (["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"], "kiln runs its --connect test only"),
        (["CMD", "pg_isready", "--weird"], "--weird: an option kiln's check does not ask"),
        (["CMD", "redis-cli", "ping", "-p", "99999"], "'99999' is not a port"),
        (["CMD", "curl", "http://example.com/"], "curl of one URL on localhost only"),
        (["CMD"], "a unikernel has no shell"),
        (["PROBE", "x"], "a unikernel has no shell"),
    ],
)
def test_what_kiln_cannot_ask_is_refused_in_one_line_naming_the_check(test: object, message: str) -> None:
    with pytest.raises(UsageError) as err:
        translate(test, "services.db.healthcheck.test")
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("services.db.healthcheck.test")
