"""-p parsing, busy-port detection and the unix target's TCP proxy."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from kiln.errors import TargetError, UsageError
from kiln.targets.portmap import PortMap
from kiln.targets.ports import check_free
from kiln.targets.relay import PortProxy


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080", PortMap(host=8080, guest=8080)),
        ("9090:80", PortMap(host=9090, guest=80)),
        ("127.0.0.1:9090:80", PortMap(host_ip="127.0.0.1", host=9090, guest=80)),
    ],
)
def test_parse(spec: str, expected: PortMap) -> None:
    assert PortMap.parse(spec) == expected


@pytest.mark.parametrize("spec", ["", "a:b", "1.2.3:80:80", "0:80", "70000:80", "x:1:2"])
def test_parse_rejects(spec: str) -> None:
    with pytest.raises(UsageError):
        PortMap.parse(spec)


def test_check_free_detects_a_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(TargetError, match=f"host port {port} is already in use"):
            check_free([PortMap(host_ip="127.0.0.1", host=port, guest=80)])
    check_free([PortMap(host_ip="127.0.0.1", host=port, guest=80)])


def _server(backlog: int, delay: float = 0.0, accept_after: float = 0.0) -> tuple[socket.socket, int]:
    """An upper-casing server with a small backlog, slow to answer and slow to start accepting."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(backlog)

    def serve() -> None:
        time.sleep(accept_after)
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(1024)
                time.sleep(delay)
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _free() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_relay_relays_bytes() -> None:
    upstream, guest = _server(5)
    host = _free()
    relay = PortProxy(PortMap(host_ip="127.0.0.1", host=host, guest=guest), guest)
    try:
        with socket.create_connection(("127.0.0.1", host), timeout=5) as c:
            c.sendall(b"ping")
            assert c.recv(1024) == b"PING"
    finally:
        relay.close()
        upstream.close()


def test_a_burst_is_held_and_every_connection_answered() -> None:
    """100 simultaneous connections to an upstream with a backlog of 2, one answer at a time: all answered."""
    upstream, guest = _server(2, delay=0.005)
    host = _free()
    relay = PortProxy(PortMap(host_ip="127.0.0.1", host=host, guest=guest), guest)
    answers: list[bytes] = []

    def one(i: int) -> None:
        with socket.create_connection(("127.0.0.1", host), timeout=30) as c:
            c.sendall(f"hello {i}".encode())
            answers.append(c.recv(1024))

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(answers) == sorted(f"HELLO {i}".encode() for i in range(100))
    finally:
        relay.close()
        upstream.close()


def test_a_client_that_comes_before_the_app_listens_is_held_not_reset() -> None:
    """The upstream closes at once while nothing listens behind it (QEMU's forward, the app booting): the
    relay tries again, with what the client said, until the app answers."""
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    guest = upstream.getsockname()[1]
    upstream.close()  # nothing there yet: connections are refused
    host = _free()
    relay = PortProxy(PortMap(host_ip="127.0.0.1", host=host, guest=guest), guest)
    try:
        with socket.create_connection(("127.0.0.1", host), timeout=30) as c:
            c.sendall(b"early")
            time.sleep(1.0)
            server = socket.create_server(("127.0.0.1", guest))  # now the app listens

            def answer() -> None:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(conn.recv(1024).upper())

            threading.Thread(target=answer, daemon=True).start()
            assert c.recv(1024) == b"EARLY"
            server.close()
    finally:
        relay.close()


def test_a_half_closed_client_still_gets_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that has said all it will (shutdown of its write side) while the upstream has not answered:
    the relay, reachable then only from itself, is not collected mid-flight; the answer reaches the client,
    and nothing is reported as ignored at garbage collection."""
    import gc
    import sys

    ignored: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    upstream = socket.create_server(("127.0.0.1", 0))
    guest = upstream.getsockname()[1]
    host = _free()
    relay = PortProxy(PortMap(host_ip="127.0.0.1", host=host, guest=guest), guest)
    try:
        with socket.create_connection(("127.0.0.1", host), timeout=10) as c:
            c.sendall(b"ask")
            c.shutdown(socket.SHUT_WR)
            conn, _ = upstream.accept()
            with conn:
                assert conn.recv(16) == b"ask"
                time.sleep(0.2)
                gc.collect()
                conn.sendall(b"answer")
            assert c.recv(16) == b"answer"
    finally:
        relay.close()
        upstream.close()
    gc.collect()
    assert ignored == []
