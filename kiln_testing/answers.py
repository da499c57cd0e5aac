"""The one "wait until it answers": poll a loopback port (or a URL) in a protocol until it answers, the
server ends, or time runs out; then say why, with the server's own output.

    wait_for_answer(8080)                                  # any HTTP answer on 127.0.0.1:8080/
    wait_for_answer("http://127.0.0.1:8080/ready", status=200, timeout=30)
    wait_for_answer(6379, "redis")                         # PING answered +PONG
    wait_for_answer(5432, "tcp", alive=lambda: proc.poll() is None, context=lambda: console.read_text())
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Literal, overload

import httpx

Protocol = Literal["http", "redis", "tcp"]


class NoAnswerError(AssertionError):
    """No answer within the time, or the server ended first (an AssertionError: a test fails with it)."""


def _http(client: httpx.Client, url: str, status: int | None) -> httpx.Response | None:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return None
    return response if status is None or response.status_code == status else None


def _socket(port: int, protocol: Protocol, timeout: float) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if protocol == "tcp":
                return b""
            s.sendall(b"PING\r\n")
            said = s.recv(64)
            return said if said.startswith(b"+PONG") else None
    except OSError:
        return None


@overload
def wait_for_answer(
    target: int | str, protocol: Literal["http"] = "http", timeout: float = 120.0, *, path: str = "/",
    status: int | None = None, alive: Callable[[], bool] | None = None, context: Callable[[], str] | None = None,
    request_timeout: float = 5.0, poll: float = 0.2,
) -> httpx.Response: ...  # fmt: skip
@overload
def wait_for_answer(
    target: int | str, protocol: Literal["redis", "tcp"], timeout: float = 120.0, *, path: str = "/",
    status: int | None = None, alive: Callable[[], bool] | None = None, context: Callable[[], str] | None = None,
    request_timeout: float = 5.0, poll: float = 0.2,
) -> bytes: ...  # fmt: skip
def wait_for_answer(
    target: int | str,
    protocol: Protocol = "http",
    timeout: float = 120.0,
    *,
    path: str = "/",
    status: int | None = None,
    alive: Callable[[], bool] | None = None,
    context: Callable[[], str] | None = None,
    request_timeout: float = 5.0,
    poll: float = 0.2,
) -> httpx.Response | bytes:
    """The first answer from `target` (a loopback port, or a URL for http) in `protocol`: for http the
    response (with `status`: only one of that status counts), for redis what PING got, for tcp b"" once
    a connection is taken. NoAnswerError if none came within `timeout` seconds or `alive()` turned false
    first; its message ends with `context()` (a console, a log)."""
    where = target if isinstance(target, str) else f"127.0.0.1:{target}"
    url = target if isinstance(target, str) else f"http://127.0.0.1:{target}{path}"
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=request_timeout) as client:
        while True:
            if alive is not None and not alive():
                raise NoAnswerError(_why(f"the server ended before {where} answered", context))
            if protocol == "http":
                answer: httpx.Response | bytes | None = _http(client, url, status)
            else:
                answer = _socket(int(target), protocol, request_timeout)
            if answer is not None:
                return answer
            if time.monotonic() > deadline:
                raise NoAnswerError(_why(f"no {protocol} answer from {where} within {timeout:.0f} s", context))
            time.sleep(poll)


def _why(what: str, context: Callable[[], str] | None) -> str:
    return f"{what}:\n{context()[-3000:]}" if context is not None else what
