"""The guest console, as the host sees it: streamed to the user, watched for
init's exit-status line, kernel panics and the OOM killer's kill record."""

from __future__ import annotations

import re
import threading
from typing import IO, BinaryIO

EXIT_LINE = re.compile(rb"^kiln-init: exit status (\d+)\s*$")
PANIC = re.compile(rb"Kernel panic - not syncing: (.*)$")
VERITY = re.compile(rb"device-mapper: verity: \S+: (.*)$")
# The OOM killer's record of what it killed (the figures are the victim's memory at that moment).
OOM_KILL_RECORD = (
    r"Out of memory: Killed process \d+ .*"
    r"anon-rss:(?P<anon>\d+)kB, file-rss:(?P<file>\d+)kB, shmem-rss:(?P<shmem>\d+)kB"
)
OOM_KILL = re.compile(OOM_KILL_RECORD.encode())
# A panic after the OOM killer has killed the app: the dying app waited on memory the kernel could
# not free (a page fault blocked on EROFS decompression, which needs memory itself); it is the app's
# out-of-memory end all the same, and kiln reports it as one.
OOM_PANIC = "System is deadlocked on memory"


class ConsoleReader:
    """Copy a pipe to a sink line by line, in a thread, remembering what matters."""

    def __init__(self, pipe: IO[bytes], sink: BinaryIO | None, keep: int = 200) -> None:
        self.pipe = pipe
        self.sink = sink
        self.keep = keep
        self.lines: list[bytes] = []
        self.exit_status: int | None = None
        self.panic: str | None = None
        self.verity: str | None = None  # the first block dm-verity refused
        self.oom_killed = False  # the kernel's OOM killer killed a process (in a kiln guest: the app)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        """Read to the end, then close the pipe: a long-lived caller (the summoner) must not keep one per VM."""
        try:
            self._read()
        finally:
            self.pipe.close()

    def _read(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            line = raw.replace(b"\r\n", b"\n")
            stripped = line.rstrip(b"\n")
            if m := EXIT_LINE.match(stripped):
                self.exit_status = int(m.group(1))
            elif m := PANIC.search(stripped):
                self.panic = m.group(1).decode(errors="replace")
            elif (m := VERITY.search(stripped)) and self.verity is None:
                self.verity = m.group(1).decode(errors="replace")
            elif OOM_KILL.search(stripped):
                self.oom_killed = True
            self.lines.append(stripped)
            del self.lines[: -self.keep]
            if self.sink is not None:
                self.sink.write(line)
                self.sink.flush()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def text(self) -> str:
        return b"\n".join(self.lines).decode(errors="replace")


def oom_then_panic(oom_killed: bool, panic: str | None) -> bool:
    """Whether a panic was the end of the app's running out of memory (see OOM_PANIC)."""
    return oom_killed and panic is not None and OOM_PANIC in panic
