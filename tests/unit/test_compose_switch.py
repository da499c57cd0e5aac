"""The compose project's switch, over real UNIX sockets, framed as QEMU's stream netdev frames."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from kiln.compose.switch import Switch

A, B, C = bytes.fromhex("525400890002"), bytes.fromhex("525400890003"), bytes.fromhex("525400890004")
BROADCAST = b"\xff" * 6


def frame(dst: bytes, src: bytes, payload: bytes) -> bytes:
    body = dst + src + b"\x08\x00" + payload
    return struct.pack(">I", len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 2))
    return await reader.readexactly(n)


def test_learns_floods_and_delivers(tmp_path: Path) -> None:
    async def scenario() -> None:
        switch = Switch()
        path = tmp_path / "s.sock"
        server = await asyncio.start_unix_server(switch.serve_port, path=str(path))
        async with server:
            ends = [await asyncio.open_unix_connection(str(path)) for _ in range(3)]
            (ra, wa), (rb, wb), (rc, wc) = ends
            await asyncio.sleep(0.05)
            wa.write(frame(BROADCAST, A, b"who has"))  # flooded to B and C; A learned
            assert (await read_frame(rb))[12:] == b"\x08\x00who has"
            assert (await read_frame(rc))[12:] == b"\x08\x00who has"
            wb.write(frame(A, B, b"B to A"))  # A is known: only A gets it
            assert (await read_frame(ra))[12:] == b"\x08\x00B to A"
            wc.write(frame(A, C, b"C to A"))
            assert (await read_frame(ra))[12:] == b"\x08\x00C to A"
            try:
                await asyncio.wait_for(rb.readexactly(1), 0.2)
                raise AssertionError("B received a frame addressed to A")
            except TimeoutError:
                pass
            for _, w in ends:
                w.close()

    asyncio.run(scenario())


def test_a_project_too_deep_for_a_socket_address_still_gets_its_switch(tmp_path: Path) -> None:
    """A project directory whose switch.sock would pass 107 bytes (a deep KILN_HOME: CI's pytest directories)
    gets its socket in a short directory of its own, which stopping the switch removes."""
    import socket

    from kiln.compose.lifecycle import SwitchProcess

    deep = tmp_path / ("d" * 60) / ("e" * 40) / "compose" / "work"
    deep.mkdir(parents=True)
    assert len(str(deep / "switch.sock")) > 107
    switch = SwitchProcess(deep)
    switch.start()
    path = switch.socket
    try:
        assert len(str(path)) <= 107 and path.exists()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
    finally:
        switch.stop()
    assert not path.parent.exists()
