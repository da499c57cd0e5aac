"""The host end of the control channel against a guest that says anything at all (hypothesis):
answers come back, or a TargetError does; nothing else escapes, and nothing hangs."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.errors import TargetError
from kiln.guest import protocol as control
from kiln.guest.protocol import ControlChannel


def guest_saying(path: Path, said: bytes) -> threading.Thread:
    """A fake guest on a UNIX socket: whatever the host asks, it sends `said` ({tag}: the request's
    tag), then hangs up."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(2)
            try:
                tag = re.search(rb"@\d+", conn.recv(4096))
                conn.sendall(said.replace(b"{tag}", tag.group() if tag else b"@?"))
            except OSError:
                pass
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@settings(max_examples=60, deadline=None)
@given(said=st.binary(max_size=2048), verb=st.sampled_from(["ping", "meminfo", "stats", "http"]))
def test_garbage_from_the_guest_is_a_target_error(
    tmp_path_factory: pytest.TempPathFactory, said: bytes, verb: str
) -> None:
    path = tmp_path_factory.mktemp("ctl") / "c.sock"
    guest = guest_saying(path, said)
    old = control.RESEND
    control.RESEND = 0.05
    try:
        with ControlChannel(path, timeout=2) as channel:
            try:
                if verb == "ping":
                    assert isinstance(channel.ping(timeout=1), str)
                elif verb == "meminfo":
                    assert isinstance(channel.meminfo(timeout=1), dict)
                elif verb == "http":
                    channel.http_status(80, "/", timeout=1)
                else:
                    assert isinstance(channel.request("stats", timeout=1), str)
            except TargetError:
                pass
    finally:
        control.RESEND = old
    guest.join(5)


def test_a_tagged_answer_is_found_among_noise(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    guest_saying(path, b"\x00junk\n@0 ok ping stale\n{tag} ok meminfo MemTotal=35776 VmRSS=12\n")
    with ControlChannel(path, timeout=2) as channel:
        assert channel.meminfo(timeout=2) == {"MemTotal": 35776, "VmRSS": 12}


def test_an_unknown_request_names_an_older_init(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    guest_saying(path, b"{tag} err threads unknown request\n")
    with ControlChannel(path, timeout=2) as channel, pytest.raises(TargetError, match="built by an older kiln"):
        channel.request("threads", timeout=2)


def test_answers_meant_for_an_earlier_client_are_not_taken(tmp_path: Path) -> None:
    """`kiln top` asked for stats, resent, and left; init's late answers reach the next client, whose
    first request must not take "@1 ok stats ..." for its own."""
    path = tmp_path / "c.sock"
    guest_saying(path, b"@1 ok stats mem_total_kib=1\n@2 ok stats mem_total_kib=1\n{tag} ok stack\n")
    with ControlChannel(path, timeout=2) as channel:
        assert channel.request("stack", timeout=2) == "ok stack"
