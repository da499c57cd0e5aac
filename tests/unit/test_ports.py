"""-p parsing, busy-port detection and the unix target's TCP proxy."""

from __future__ import annotations

import socket
import threading

import pytest

from kiln.errors import TargetError, UsageError
from kiln.targets.portmap import PortMap
from kiln.targets.ports import Forwarder, check_free


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


def test_forwarder_relays_bytes() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    guest = upstream.getsockname()[1]

    def echo() -> None:
        conn, _ = upstream.accept()
        with conn:
            conn.sendall(conn.recv(1024).upper())

    threading.Thread(target=echo, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host = probe.getsockname()[1]
    fwd = Forwarder(PortMap(host_ip="127.0.0.1", host=host, guest=guest))
    try:
        with socket.create_connection(("127.0.0.1", host), timeout=5) as c:
            c.sendall(b"ping")
            assert c.recv(1024) == b"PING"
    finally:
        fwd.close()
        upstream.close()
