"""Network misbehaviour on loopback: a TCP proxy that slows a transfer down so a test can cut it off part-way,
and a server that takes connections and never answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from kiln.targets.portmap import PortMap


class SlowProxy:
    """A TCP relay on a free loopback port towards `upstream`, sending towards the client at most `rate` bytes a
    second, and cutting every transfer short once closed: a registry on a slow link, to interrupt a pull."""

    def __init__(self, upstream: int, rate: int = 256 * 1024) -> None:
        self.rate, self.sent, self.upstream = rate, 0, upstream
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.5)
        self.port = PortMap(host_ip="127.0.0.1", host=self.listener.getsockname()[1], guest=upstream)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client, socket.create_connection(("127.0.0.1", self.upstream)) as up:
            t = threading.Thread(target=self._copy, args=(up, client, True), daemon=True)
            t.start()
            self._copy(client, up, False)
            t.join()

    def _copy(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        with contextlib.suppress(OSError):
            while not self.stopped.is_set() and (data := src.recv(16384)):
                dst.sendall(data)
                if to_client:
                    self.sent += len(data)
                    time.sleep(len(data) / self.rate)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


class SilentServer:
    """Accepts connections and never answers: a registry that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.conns.append(conn)

    def stop(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()
