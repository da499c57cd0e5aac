"""kiln's start-up hook for Python apps (kiln/guest/start.py), run by the embedded interpreter on the
host in a mount namespace with a /tmp of its own: it runs the app as __main__ with the app's argv and
leaves nothing of its own there, writes nothing until asked, and answers SIGRTMIN+3 with fresh gc
figures in /tmp/.kiln-gc."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.runtime.guest_stats import _sandbox_gc

START = Path(__file__).resolve().parents[2] / "kiln" / "guest" / "start.py"
PYTHON = "/usr/bin/python3.11"

APP = """
import sys, time
sum = len = None  # the app's own names: the hook must not use them
print("argv", sys.argv, "path0", sys.path[0], flush=True)
print("leftover", sorted(n for n in dir() if "kiln" in n.lower() or n.startswith("GC_")), flush=True)
hold = [[] for _ in range(5000)]
print("ready", flush=True)
sys.stdin.readline()
hold += [[] for _ in range(5000)]
print("more", flush=True)
sys.stdin.readline()
"""

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or not Path(PYTHON).exists(), reason="needs unshare and python3.11"
)


@pytest.fixture
def app_dir() -> Iterator[Path]:
    """Outside /tmp, which the test covers with a tmpfs of its own."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="kiln-hook-") as tmp:
        yield Path(tmp)


def test_the_hook_runs_the_app_and_answers_with_gc_figures(app_dir: Path) -> None:
    app = app_dir / "app.py"
    app.write_text(APP)
    start = shutil.copy(START, app_dir / "start.py")  # the checkout may be under /tmp, which the tmpfs hides
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs tmpfs /tmp && exec {PYTHON} -s -S -B {start} "$@"', "sh", str(app), "one", "two"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0] == f"argv ['{app}', 'one', 'two'] path0 {app_dir}\n"
        assert lines[1] == "leftover []\n"  # nothing of the hook's in the app's __main__
        assert lines[2] == "ready\n"
        assert list(Path(f"/proc/{proc.pid}/root/tmp").iterdir()) == []  # nothing written until asked
        first = _sandbox_gc(proc.pid)  # signals the hook and reads what it writes
        assert set(first) == {
            "gc_gen0", "gc_gen1", "gc_gen2", "gc_tracked", "gc_collections", "gc_collected", "gc_uncollectable",
        }  # fmt: skip
        assert first["gc_tracked"] >= 5000  # the app's 5,000 lists
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "more\n"
        now = _sandbox_gc(proc.pid)
        # figures from now, not from the first time (a collection in between may free a few transient objects)
        assert now["gc_tracked"] >= first["gc_tracked"] + 5000 - 100
    finally:
        proc.stdin.write("\n\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0  # the signal did not disturb the app


def test_no_hook_no_figures_and_no_signal() -> None:
    """A native program has no hook: no figures, and no signal (SIGRTMIN+3 would end it)."""
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             "mount -t tmpfs tmpfs /tmp && exec sleep 30"])  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _sandbox_gc(proc.pid) == {}
        time.sleep(0.2)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("spec", ["tool:main", "tool.cli:entry.run", "tool:cli.entry.run"])
def test_a_console_script_starts_as_pips_launcher_starts_it(app_dir: Path, spec: str) -> None:
    """`-e MODULE:ATTR`: as pip's launcher, `from MODULE import FIRST` then attributes; FIRST may be a submodule
    nothing imported (granian's `granian:cli.entrypoint`)."""
    (app_dir / "tool").mkdir()
    (app_dir / "tool" / "__init__.py").write_text("def main():\n    print('ran main')\n")
    (app_dir / "tool" / "cli.py").write_text(
        "import sys\nclass entry:\n    @staticmethod\n    def run():\n        print('ran', sys.argv)\n"
    )
    proc = subprocess.run(
        [PYTHON, "-I", str(START), "-e", spec, "tool", "--flag"], cwd=app_dir, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("ran main", "ran ['tool', '--flag']")
