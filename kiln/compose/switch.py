"""A compose project's private network: an Ethernet switch on a UNIX socket of the host.

Every VM of the project gets a second NIC whose QEMU backend is `-netdev stream` connected to
this socket (kiln.targets.qemu_command). QEMU's stream netdev sends each Ethernet frame as a
4-byte big-endian length and the frame; the switch learns which connection each source MAC
address came from, sends a frame to the one connection its destination was seen on, and
floods broadcasts, multicasts and unknown destinations to every other connection.

Why a switch process and not QEMU alone: `-netdev socket,mcast=` needs multicast on the
loopback device, which sandboxed hosts often lack; `-netdev dgram` and `stream` join two
ends, not N. One small process per project keeps projects apart by construction (a VM can
only reach the socket it was given), needs no privileges, bridges or tap devices, and the
host itself has no address on the segment, so it reaches only what is published.

    python -m kiln.compose.switch SOCKET     # serves until SIGTERM; removes SOCKET on the way out
                                             # (SOCKET's directory/switch.pid: its record, kiln.daemon)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
import sys
from pathlib import Path

MAX_FRAME = 65536 + 18  # the largest frame a virtio-net device sends (with a VLAN tag)


class Switch:
    def __init__(self) -> None:
        self.ports: set[asyncio.StreamWriter] = set()
        self.macs: dict[bytes, asyncio.StreamWriter] = {}

    async def serve_port(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.ports.add(writer)
        try:
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                if not 14 <= length <= MAX_FRAME:
                    break  # not QEMU's framing: drop this connection
                frame = await reader.readexactly(length)
                self.macs[frame[6:12]] = writer  # the source address lives behind this port
                self.forward(writer, struct.pack(">I", length) + frame, frame[0:6])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.ports.discard(writer)
            for mac in [m for m, w in self.macs.items() if w is writer]:
                del self.macs[mac]
            writer.close()

    def forward(self, source: asyncio.StreamWriter, data: bytes, destination: bytes) -> None:
        known = self.macs.get(destination)
        if known is not None and not destination[0] & 1:  # unicast to a known address
            targets = [known] if known is not source else []
        else:
            targets = [w for w in self.ports if w is not source]
        for w in targets:
            if w.transport.get_write_buffer_size() < 4 * MAX_FRAME:  # a stalled VM loses frames, as on a wire
                w.write(data)


async def serve(path: Path) -> None:
    from kiln import daemon

    switch = Switch()
    daemon.announce(path.parent, "switch")  # before it listens: a `compose up` killed now leaves one `down` finds
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = await asyncio.start_unix_server(switch.serve_port, path=str(path))
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m kiln.compose.switch SOCKET", file=sys.stderr)
        return 2
    asyncio.run(serve(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
