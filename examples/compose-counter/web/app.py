"""Counts visits in redis, reached by its service name on the compose project's private network.

GET /        increments the counter and says its value
GET /count   says the value without changing it
GET /health  200 once the app serves (compose's healthcheck)
"""

from __future__ import annotations

import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REDIS = (os.environ.get("REDIS_HOST", "redis"), int(os.environ.get("REDIS_PORT", "6379")))


def redis(*words: str) -> str:
    """One command in RESP, redis's protocol; the reply's value (an integer or a bulk string)."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    with socket.create_connection(REDIS, timeout=5) as conn:
        conn.sendall(request.encode())
        answer = conn.makefile("rb")
        reply = answer.readline().decode().rstrip("\r\n")
        if reply.startswith(":"):
            return reply[1:]
        if reply.startswith("$"):
            return "0" if reply == "$-1" else answer.readline().decode().rstrip("\r\n")
        raise ConnectionError(f"redis answered {reply!r}")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            if self.path == "/":
                body = f"visits: {redis('INCR', 'visits')}\n"
            elif self.path == "/count":
                body = f"visits: {redis('GET', 'visits')}\n"
            elif self.path == "/health":
                body = "ok\n"
            else:
                self.send_error(404)
                return
        except OSError as err:
            self.send_error(502, f"redis at {REDIS[0]}:{REDIS[1]}: {err}")
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
    print("counter listening on 0.0.0.0:8080", flush=True)
    server.serve_forever()
