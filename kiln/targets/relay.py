"""Published ports that hold a burst: connections accepted on the host, queued, handed to the app as it
takes them. The one mechanism for every target and for the summoner.

A VM's published port through QEMU's user networking alone loses most of a burst
(measured under TCG with hello-http, whose stdlib server listens with a backlog of
5: 36 of 50 and 40 of 100 simultaneous first connections answered within 20 s).
The guest drops the SYNs beyond its backlog, slirp retries them with a doubling
timeout, and clients give up. So kiln accepts on the host itself, with a deep
backlog, and relays each connection to the guest's forward on a loopback port:

- at most UNANSWERED_MAX connections are in flight to one upstream without an
  answer from it; the next goes when one is answered (its first byte), or after
  UNANSWERED_GRACE seconds for protocols where the client speaks and waits:
  the guest's backlog never overflows, and no SYN is dropped;
- until the app listens (`ready`: guest init says so over the control channel,
  kiln.guest.protocol), connections are accepted and held, not passed on: a VM still
  booting would leave them to slirp's doubling SYN retries;
- a connection the upstream closes before answering, at once (nothing listens
  behind it: the unix target's app still starting), is tried again, with what
  the client sent replayed, until RETRY_FOR seconds have passed: a client that
  connects before the app listens is held, not reset.

The client's own address reaches the app (docs/reliability.md says what each way costs):

- to a VM (`Upstream.guest_port`), each connection opens with a PROXY protocol v1
  line naming the client, and guest init's forwarder connects to the app from that
  address (kiln.guest.protocol.CLIENTS), not from QEMU's gateway;
- on the unix target (`Upstream.from_client`), the relay connects to the app from
  the client's address itself when it is one of the host's loopback addresses
  (127.0.0.0/8, any of which a process may bind); another client's address would
  take a route the host does not have, and the app sees 127.0.0.1.

`relay()` serves one connection (the summoner calls it from its own loop);
`PortProxy` is a listening port with its own event loop in a thread, for the
qemu and unix targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kiln.guest.protocol import proxy_line
from kiln.targets.portmap import PortMap

UNANSWERED_MAX = 4  # connections in flight to one upstream that it has not answered
UNANSWERED_GRACE = 0.5  # seconds before an unanswered connection stops holding its place
RETRY_FOR = 60.0  # seconds a connection is tried again while the upstream closes it unanswered
CLOSED_AT_ONCE = 0.5  # an upstream that closes within this, unanswered, was not listening
CHUNK = 1 << 16
BACKLOG = 1024

# Relays in progress, held strongly. asyncio holds a task only weakly; a relay whose client has half-closed
# (its transport no longer read) and whose upstream has not answered is otherwise reachable only from itself,
# and the garbage collector would end it mid-flight, answer unsent.
_RUNNING: set[asyncio.Task[None]] = set()


@dataclass
class Upstream:
    """Where a published port's connections go, and its gate."""

    host: str
    port: int
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(UNANSWERED_MAX))
    activity: Callable[[], None] = lambda: None  # called on every byte relayed (the summoner's idle clock)
    ready: threading.Event | None = None  # set once the app listens (None: it may listen already)
    guest_port: int | None = None  # a VM's app port: each connection opens with the client's PROXY line to init
    from_client: bool = False  # connect from the client's address when it is a loopback one (the unix target)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0): the client learns at once that nothing will answer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream,
                seen: asyncio.Event, keep: bytearray | None = None) -> None:  # fmt: skip
    """One direction until its end (then that end passed on). Towards the client, `seen` is set on the first
    byte; towards the upstream (`keep` given), what goes is kept too until `seen`, to be replayed on a retry."""
    try:
        while data := await reader.read(CHUNK):
            if keep is None:
                seen.set()
            elif not seen.is_set():
                keep += data
            writer.write(data)
            await writer.drain()
            up.activity()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()


async def _until_ready(up: Upstream, deadline: float) -> bool:
    while up.ready is not None and not up.ready.is_set():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, up: Upstream) -> None:
    """Serve one connection through `up` (see the module's docstring)."""
    task = asyncio.current_task()
    if task is not None:
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
    if not await _until_ready(up, time.monotonic() + RETRY_FOR * 3):
        reset(client_writer)
        return
    await up.gate.acquire()
    answered = asyncio.Event()

    async def release() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), UNANSWERED_GRACE)
        up.gate.release()

    releasing = asyncio.ensure_future(release())
    sent = bytearray()  # what the client said before the upstream answered: replayed on a retry
    deadline = time.monotonic() + RETRY_FOR
    upstream: asyncio.StreamWriter | None = None
    client = client_writer.get_extra_info("peername") or ("0.0.0.0", 0)
    opening = b""
    if up.guest_port is not None:
        opening = proxy_line(client, client_writer.get_extra_info("sockname") or ("0.0.0.0", 0), up.guest_port)
    source = (client[0], 0) if up.from_client and str(client[0]).startswith("127.") else None
    try:
        while True:
            try:
                up_reader, upstream = await asyncio.open_connection(up.host, up.port, local_addr=source)
            except OSError:
                if time.monotonic() > deadline:
                    reset(client_writer)
                    return
                await asyncio.sleep(0.1)
                continue
            opened = time.monotonic()
            if opening or sent:
                upstream.write(opening + bytes(sent))
            to_up = asyncio.ensure_future(_copy(client_reader, upstream, up, answered, keep=sent))
            to_client = asyncio.ensure_future(_copy(up_reader, client_writer, up, answered))
            await to_client
            if answered.is_set() or time.monotonic() - opened > CLOSED_AT_ONCE or time.monotonic() > deadline:
                await to_up
                return
            # closed at once, unanswered: not listening yet; try again, with what the client sent
            to_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await to_up
            upstream.close()
            await asyncio.sleep(0.1)
    finally:
        answered.set()
        await releasing
        client_writer.close()
        if upstream is not None:
            upstream.close()


class PortProxy:
    """A published port: listens on host_ip:host (backlog BACKLOG), relays to 127.0.0.1:upstream, in a thread.
    With `ready`, connections wait until it is set (the app listens) before any goes on. `header`: upstream
    is init's forwarder in a VM (the client's PROXY line first); `from_client`: the app on this host's loopback
    (the unix target)."""

    def __init__(
        self,
        port: PortMap,
        upstream: int,
        ready: threading.Event | None = None,
        header: bool = False,
        from_client: bool = False,
    ) -> None:
        self.port = port
        self.header = header
        self.from_client = from_client
        self.listener = socket.create_server((port.host_ip, port.host), backlog=BACKLOG)
        self.loop = asyncio.new_event_loop()
        self.upstream_port = upstream
        self.ready = ready
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"publish-{port.host}")
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(lambda _loop, _context: None)  # a relay cut short at close says nothing
        up = Upstream(
            "127.0.0.1",
            self.upstream_port,
            ready=self.ready,
            guest_port=self.port.guest if self.header else None,
            from_client=self.from_client,
        )

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await relay(reader, writer, up)

        async def main() -> None:
            server = await asyncio.start_server(handle, sock=self.listener)
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            self.loop.run_until_complete(main())
        # the relays still open end here, in this loop, not later at garbage collection
        left = asyncio.all_tasks(self.loop)
        for task in left:
            task.cancel()
        with contextlib.suppress(RuntimeError):
            self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self.loop.close()

    def close(self) -> None:
        def stop() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(stop)
        self.thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self.listener.close()
