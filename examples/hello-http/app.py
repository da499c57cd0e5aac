"""hello-http: the smallest useful web service, as a kiln unikernel.

GET /        -> a fixed greeting
GET /health  -> {"status": "ok"}
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = b"Hello from a kiln unikernel!\n"


class Handler(BaseHTTPRequestHandler):
    server_version = "hello-http/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/":
            self.reply(200, "text/plain; charset=utf-8", GREETING)
        elif self.path == "/health":
            self.reply(200, "application/json", json.dumps({"status": "ok"}).encode())
        else:
            self.reply(404, "text/plain; charset=utf-8", b"not found\n")

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    print(f"hello-http listening on {args.bind}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
