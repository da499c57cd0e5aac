"""Servers' own clients, for the tests and benchmarks that ask them: psql and mariadb as a user types them, one
statement a call (the real client, never a driver that imitates it), and pika, RabbitMQ's Python client."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable


def sql(
    server: str, port: int, query: str, password: str, database: str | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`query` through the server's client on 127.0.0.1:port as `user`, by default its superuser ("postgres": psql
    as postgres, "mariadb": mariadb as root)."""
    if server == "postgres":
        argv = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", user or "postgres", "-AtX", "-v", "ON_ERROR_STOP=1"]
        argv += [*(["-d", database] if database else []), "-c", query]
        env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    else:
        argv = [
            "mariadb",
            "-h",
            "127.0.0.1",
            "-P",
            str(port),
            f"-u{user or 'root'}",
            "-N",
            "-B",
            "--connect-timeout=10",
        ]
        argv += [*([database] if database else []), "-e", query]
        env = {**os.environ, "MYSQL_PWD": password}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def wait_sql(
    server: str, port: int, password: str, alive: Callable[[], bool], context: Callable[[], str],
    timeout: float = 180, database: str | None = None, user: str | None = None,
) -> None:  # fmt: skip
    """Until the client connects (AssertionError with `context()` if the server ends or the time runs out)."""
    deadline = time.monotonic() + timeout
    while sql(server, port, "select 1", password, database, user).returncode != 0:
        assert alive(), context()
        assert time.monotonic() < deadline, f"its client did not connect within {timeout:.0f} s:\n{context()}"
        time.sleep(1)


def amqp(port: int, user: str, password: str, queue: str, publish: bytes | None = None) -> bytes | None:
    """One AMQP 0-9-1 session with pika (RabbitMQ's own Python client) on 127.0.0.1:port: declare a durable
    queue, publish `publish` to it as a persistent message if given, else take one message off it (None: empty)."""
    import pika

    params = pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials(user, password), socket_timeout=10,
        blocked_connection_timeout=30, connection_attempts=1,
    )  # fmt: skip
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        if publish is not None:
            channel.confirm_delivery()  # the broker has it, on disk, when this returns
            channel.basic_publish("", queue, publish, pika.BasicProperties(delivery_mode=2))
            return None
        _method, _props, body = channel.basic_get(queue, auto_ack=True)
        return body
    finally:
        connection.close()


def wait_amqp(port: int, user: str, password: str, alive: Callable[[], bool], context: Callable[[], str],
              timeout: float = 240) -> None:  # fmt: skip
    """Until a pika session opens (AssertionError with `context()` if the broker ends or the time runs out)."""
    import pika
    from pika.adapters.utils.connection_workflow import AMQPConnectorException

    deadline = time.monotonic() + timeout
    while True:
        try:
            amqp(port, user, password, "kiln-ready")
            return
        except (pika.exceptions.AMQPError, AMQPConnectorException, OSError):  # refused, or held until it listens
            assert alive(), context()
            assert time.monotonic() < deadline, f"no AMQP session within {timeout:.0f} s:\n{context()}"
            time.sleep(2)
