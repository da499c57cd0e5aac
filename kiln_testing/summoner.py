"""A `kiln summon` running in the foreground of a subprocess: its log, read as it comes, and its instances."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from kiln_testing.command import KILN, interrupt, kiln


class Summoner:
    """A `kiln summon` running in the foreground of a subprocess."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.proc = subprocess.Popen(
            [KILN, "summon", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for("ready:", 120)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.log.count(text) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} (x{count}) in the summoner's log:\n{self.log}")
            time.sleep(0.05)

    def instances(self) -> list[dict[str, object]]:
        return json.loads(kiln("ps", "--json", env=self.env, check=True).stdout)  # type: ignore[no-any-return]

    def stop(self) -> None:
        interrupt(self.proc, grace=60)
        self._reader.join(5)
