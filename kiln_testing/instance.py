"""`Instance`: a running `kiln run` as the end-to-end tests boot it: its console, read as it comes, its
published ports, its exit status, and what it may have left running."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx

from kiln_testing.answers import wait_for_answer
from kiln_testing.command import KILN

BOOT_TIMEOUT = 120.0


class Instance:
    """A running `kiln run`: its console, its ports, its exit status."""

    def __init__(
        self,
        image: str,
        env: dict[str, str],
        target: str = "qemu",
        ports: dict[int, int] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.ports = ports or {}
        self.env = env
        argv = [KILN, "run", "--target", target, *extra]
        for host, guest in self.ports.items():
            argv += ["-p", f"127.0.0.1:{host}:{guest}"]
        self.proc = subprocess.Popen([*argv, image], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self._chunks.append(line)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def _console(self) -> str:
        code = self.proc.poll()
        return (f"(instance exited with {code})\n" if code is not None else "") + self.output

    def wait_http(self, host_port: int, path: str = "/", timeout: float = BOOT_TIMEOUT) -> httpx.Response:
        """Its first HTTP answer on a published port (AssertionError with its console if none, or if it ends)."""
        return wait_for_answer(
            host_port, "http", timeout, path=path, request_timeout=3,
            alive=lambda: self.proc.poll() is None, context=self._console,
        )  # fmt: skip

    def wait(self, timeout: float = BOOT_TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait(30)

    def leftovers(self, *patterns: str) -> list[str]:
        """Processes still running whose command line mentions this test's KILN_HOME (or a pattern)."""
        needles = [self.env["KILN_HOME"], *patterns]
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(n in cmdline for n in needles) and int(pid) != os.getpid():
                found.append(f"{pid}: {cmdline}")
        return found
