"""The fault harness: kill kiln with SIGKILL at each step where it writes, fill its disk part way, and check
what is left.

Kill points are found, not guessed. A first run of an operation under strace records every system call by
which kiln itself changes the file system (an openat for writing, mkdir, rename, unlink, fsync...), and
which programs it starts (mkfs.erofs, skopeo, make, QEMU...) and when. Its writes fall into steps
(consecutive writes to one place: staging a root, blobs going in, a tag); the first write of each step,
one half-way through it, and every rename and fsync are kill points, injected by strace
(`-e inject=SYSCALL:signal=KILL:when=N`, the Nth such call by kiln), and so is the moment half-way
through each program's run (kiln is killed while the program it started writes).

After each kill:
- the store is consistent (`kiln store check`: what a killed command left half-written is reported as a
  leftover, not as damage) and the operation's own results are whole (`Operation.verify`);
- the next run of the same command succeeds;
- then no temporary file, held lock, socket or process of the run is left.

A full disk: the operation runs with its whole KILN_HOME on a tmpfs that holds only part of what it
writes (the peak measured in the first run). It must fail with one line (`kiln: error: ...`, no
traceback), and leave the store as it was.

tests/faults samples the points of each operation; bench/faults.py (`make faults`) tries them all and
writes docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kiln.daemon import proc_start_time
from kiln.runtime.instance import children_map
from kiln_testing.command import KILN

WRITES = (
    "openat", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir",
    "fsync", "fdatasync", "linkat", "symlinkat", "ftruncate",
)  # fmt: skip
MARKER = "KILN_FAULTS_RUN"  # every process a trial starts inherits it: how its leftovers are found
GONE_WITHIN = 30.0  # seconds the processes of a killed run have to end (a make recipe in flight finishes)
_OWNER = re.compile(r"\.\d+_\d+\.|-\d+_\d+-")  # kiln.atomic's owner tag in a temporary name
Programs = dict[str, tuple[float, float]]  # program -> (first seen, last seen), in seconds after the start


# ---- homes -----------------------------------------------------------------------------------
@dataclass
class Home:
    """One trial's world: KILN_HOME, TMPDIR and a work directory, all under `root`."""

    root: Path
    shared_kernel: Path  # the developer's kernel cache (builds, source, object tree)
    private_kernel_builds: bool = False  # the kernel operation builds into a cache of its own
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def store(self) -> Path:
        return self.home / "store"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KILN_HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            MARKER: self.run_id,
            "PYTHONHASHSEED": "0",  # the same run, the same calls in the same order: kill points repeat
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_COLOR": "1",
        }

    def make(self) -> Home:
        for d in (self.home, self.tmp, self.work):
            d.mkdir(parents=True, exist_ok=True)
        kernel = self.home / "kernel"
        if self.private_kernel_builds:
            (kernel / "builds").mkdir(parents=True, exist_ok=True)
            for part in ("src", "work"):
                if not (kernel / part).exists():
                    (kernel / part).symlink_to(self.shared_kernel / part)
        elif not kernel.exists():
            kernel.symlink_to(self.shared_kernel)
        probe = self.shared_kernel.parent / "cache" / "accel.json"  # whether KVM works here: known already
        if probe.is_file() and not (self.home / "cache" / "accel.json").exists():
            (self.home / "cache").mkdir(exist_ok=True)
            shutil.copy(probe, self.home / "cache" / "accel.json")
        return self

    def copy_to(self, root: Path) -> Home:
        """A fresh trial home holding what this one holds (a template's prepared state)."""
        root.mkdir(parents=True, exist_ok=True)
        for d in ("home", "tmp", "work"):
            if (self.root / d).exists():
                shutil.copytree(self.root / d, root / d, symlinks=True, dirs_exist_ok=True)
        return Home(root, self.shared_kernel, self.private_kernel_builds).make()

    def kiln(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KILN, *args], env=self.env(), cwd=self.work, capture_output=True, text=True, timeout=timeout
        )


@dataclass(frozen=True)
class Operation:
    """A long kiln command to kill: its arguments, the state it starts from, what ends what it leaves
    running on purpose (compose down), and its own checks of what a killed run left (a list of problems)."""

    name: str
    args: tuple[str, ...] | Callable[[Home], tuple[str, ...]]  # kiln's arguments (from the trial's home)
    template: str = "empty"  # the state every trial starts from (kiln_testing.faults.operations.template)
    each: Callable[[Home], None] = lambda _h: None  # in each trial's home, before it runs
    finish: tuple[str, ...] | None = None
    verify: Callable[[Home], list[str]] = lambda _h: []
    timeout: float = 900.0

    def argv(self, home: Home) -> tuple[str, ...]:
        return self.args(home) if callable(self.args) else self.args


# ---- what a first run does -------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    syscall: str
    nth: int  # the how-manieth call of this syscall by kiln (strace's `when=`)
    path: str  # relative to the trial's root, or kernel/... for the shared object tree
    detail: str  # the call as strace printed it (shortened)


@dataclass(frozen=True)
class KillPoint:
    what: str  # in words, for the report
    syscall: str = ""  # "": a timed kill
    nth: int = 0
    seconds: float = 0.0


@dataclass
class Discovery:
    writes: list[Write]
    programs: Programs
    seconds: float
    peak_bytes: int  # the most the run's KILN_HOME grew by at any moment (tmpfs: df)
    points: list[KillPoint] = field(default_factory=list)


_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FDPATH = re.compile(r"^\d+<([^>]*)>")


def _args(line: str) -> list[str]:
    """The arguments of a strace line, split at top-level commas."""
    inner = line[line.index("(") + 1 : line.rindex(")")]
    out, depth, cur, quoted = [], 0, "", False
    i = 0
    while i < len(inner):
        c = inner[i]
        if quoted:
            cur += c
            if c == "\\":
                cur += inner[i + 1]
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted, cur = True, cur + c
        elif c in "<[{":
            depth, cur = depth + 1, cur + c
        elif c in ">]}":
            depth, cur = depth - 1, cur + c
        elif c == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        out.append(cur.strip())
    return out


def _path(arg: str, base: str | None = None) -> str:
    """A path argument: "string" (relative to `base`, a dirfd's path) or fd<path>."""
    if m := _STRING.fullmatch(arg):
        text = m.group(1).encode().decode("unicode_escape")
        return text if text.startswith("/") or base is None else f"{base}/{text}"
    if m := _FDPATH.match(arg):
        return m.group(1)
    return ""


def parse_trace(text: str) -> list[tuple[str, int, str, bool]]:
    """(syscall, nth call, path written, succeeded) for every call in a strace -y log of WRITES."""
    counts: dict[str, int] = {}
    calls = []
    for line in text.splitlines():
        m = re.match(r"^([a-z0-9_]+)\(", line)
        if not m or m.group(1) not in WRITES:
            continue
        name = m.group(1)
        counts[name] = counts.get(name, 0) + 1
        args = _args(line.rsplit(" = ", 1)[0]) if " = " in line else []
        ok = " = " in line and not line.rsplit(" = ", 1)[1].startswith("-1")
        path, writes = "", True
        if name == "openat" and len(args) >= 3:
            writes = bool(re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args[2]))
            path = _path(args[1], _path(args[0]) or None)
        elif name in ("rename", "renameat", "renameat2") and args:
            dest = args[1] if name == "rename" else (args[3] if len(args) > 3 else "")
            path = _path(dest, _path(args[2]) or None if name != "rename" else None)
        elif name in ("unlinkat", "mkdirat") and len(args) >= 2:
            path = _path(args[1], _path(args[0]) or None)
        elif name in ("linkat", "symlinkat") and args:
            path = _path(args[-2] if name == "linkat" else args[-1], None)
        elif args:
            path = _path(args[0])
        if writes:
            calls.append((name, counts[name], path, ok))
    return calls


def _normal(rel: str) -> str:
    """A path with what changes from run to run (owners, random suffixes, digests) written as *."""
    rel = re.sub(r"[0-9a-f]{64}", "<digest>", rel)
    rel = re.sub(r"(?<=[-.])\d+_\d+(?=[-.])", "*", rel)
    rel = re.sub(r"(?<=\*[-.])[A-Za-z0-9_]{8}", "*", rel)
    return re.sub(r"(?<=[-.])[a-z0-9_]{8}(?=\.tmp|$|/)", "*", rel)


def _place(rel: str) -> str:
    parts = _normal(rel).split("/")[:-1]
    return "/".join(parts[:5])


def kill_points(writes: list[Write], programs: Programs, seconds: float) -> list[KillPoint]:
    """The first write of each step, one half-way through a long step, every rename and fsync, the
    middle of each program's run, and a third and two thirds of the way through the whole."""
    kind = {"openat": "create", "mkdir": "create", "mkdirat": "create", "linkat": "create", "symlinkat": "create",
            "rename": "rename", "renameat": "rename", "renameat2": "rename", "fsync": "sync", "fdatasync": "sync",
            "ftruncate": "create"}  # fmt: skip
    steps: list[list[Write]] = []
    for w in writes:
        key = (kind.get(w.syscall, "remove"), _place(w.path))
        if steps and (kind.get(steps[-1][0].syscall, "remove"), _place(steps[-1][0].path)) == key:
            steps[-1].append(w)
        else:
            steps.append([w])
    points: dict[tuple[str, int], KillPoint] = {}
    for i, step in enumerate(steps, 1):
        chosen = {0: "the first", len(step) // 2: "half-way"} if len(step) >= 3 else {0: "the first"}
        chosen = chosen if len(step) > 1 else {0: ""}
        chosen.update({j: "" for j, w in enumerate(step) if w.syscall.startswith(("rename", "fsync", "fdatasync"))})
        for j, how in sorted(chosen.items()):
            w = step[j]
            where = _normal(w.path)
            text = f"{w.syscall} {where} (step {i}" + (f", {how} of its {len(step)} writes)" if how else ")")
            points.setdefault((w.syscall, w.nth), KillPoint(text, w.syscall, w.nth))
    timed: list[float] = []
    for program, (first, last) in sorted(programs.items(), key=lambda kv: kv[1]):
        middle = round((first + last) / 2, 3)
        if last - first >= 0.1 and all(abs(middle - t) > 0.25 for t in timed):  # gcc and its cc1: one point
            points[(program, 0)] = KillPoint(f"while {program} ran", seconds=middle)
            timed.append(middle)
    for third in (1, 2):
        points[(f"{third}/3", 0)] = KillPoint(f"{third}/3 of the way ({seconds:.1f} s)", seconds=seconds * third / 3)
    return list(points.values())


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _tree(pid: int) -> list[int]:
    children, out, todo = children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _used(path: Path) -> int:
    """Bytes in use on the file system of `path` (df)."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` for a while (a disk that fills up)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={max(size, 1 << 20)},mode=0755", "tmpfs", str(path)],
                   check=True)  # fmt: skip
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)


def _watch(
    op: Operation, home: Home, argv: list[str], skip: int, disk: Path | None
) -> tuple[float, dict[str, tuple[float, float]], int]:
    """Run `argv` to the end, watching the programs kiln starts (kiln: the `skip`th process of the tree, after
    strace) and the use of `disk`: (seconds, programs with when they ran, the peak growth of the disk)."""
    base = _used(disk) if disk else 0
    began = time.monotonic()
    proc = subprocess.Popen(argv, env=home.env(), cwd=home.work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    programs: Programs = {}
    peak = 0
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout or []), daemon=True)
    reader.start()
    while proc.poll() is None:
        t = time.monotonic() - began
        tree = _tree(proc.pid)
        kiln = tree[skip - 1] if len(tree) >= skip else proc.pid
        for p in children_map().get(kiln, []):  # the programs kiln itself started (not theirs: make's gcc)
            if name := _comm(p):
                programs[name] = (programs.get(name, (t, t))[0], t)
        if disk:
            peak = max(peak, _used(disk) - base)
        time.sleep(0.02)
    reader.join()
    seconds = time.monotonic() - began
    if proc.returncode != 0:
        text = b"".join(out).decode(errors="replace")[-3000:]
        raise AssertionError(f"{op.name}: kiln {' '.join(op.argv(home))} failed on its own:\n{text}")
    if op.finish:
        home.kiln(*op.finish, timeout=op.timeout)
    _end_processes(home)
    return seconds, programs, peak


def discover(op: Operation, template: Home, root: Path) -> Discovery:
    """Run the operation twice: on a tmpfs, watched (how long, which programs when, its peak use of the
    disk), then under strace (its writes)."""
    disk = root / "disk"
    with tmpfs(disk, 8 << 30):
        home = template.copy_to(disk)
        op.each(home)
        seconds, programs, peak = _watch(op, home, [KILN, *op.argv(home)], 1, disk)
    home = template.copy_to(root / "traced")
    op.each(home)
    trace = root / "writes.trace"
    argv = ["strace", "-qq", "-y", "-s", "512", "-o", str(trace), "-e", "trace=" + ",".join(WRITES),
            KILN, *op.argv(home)]  # fmt: skip
    _watch(op, home, argv, 2, None)
    prefixes = [(str(home.root), ""), (str(template.shared_kernel.resolve()), "kernel/")]
    writes = []
    for name, nth, path, ok in parse_trace(trace.read_text()):
        for prefix, label in prefixes:
            if ok and path.startswith(prefix + "/"):
                writes.append(Write(name, nth, label + path[len(prefix) + 1 :], ""))
                break
    shutil.rmtree(root, ignore_errors=True)
    d = Discovery(writes, programs, seconds, peak)
    d.points = kill_points(writes, programs, seconds)
    return d


# ---- what a run leaves -----------------------------------------------------------------------
def processes_of(home: Home) -> list[tuple[int, str]]:
    """(pid, program) of every live process a trial started (its marker in the environment)."""
    return marked(home.run_id)


def marked(run_id: str) -> list[tuple[int, str]]:
    """(pid, program) of every live process whose environment carries MARKER=run_id."""
    found = []
    marker = f"{MARKER}={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and proc_start_time(int(entry.name)):
                found.append((int(entry.name), _comm(int(entry.name))))
        except OSError:
            continue
    return found


def _end_processes(home: Home) -> None:
    for pid, _ in processes_of(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(home: Home, within: float = GONE_WITHIN) -> list[tuple[int, str]]:
    deadline = time.monotonic() + within
    while (left := processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def leftovers(home: Home) -> list[str]:
    """Temporary files (in the store's tmp/, anywhere with an owner tag, in TMPDIR), held locks and
    sockets under the trial's root: each one in words."""
    found = []
    tmp = home.store / "tmp"
    if tmp.is_dir():
        found += [f"store/tmp/{e.name}" for e in tmp.iterdir()]
    found += [f"$TMPDIR/{e.name}" for e in home.tmp.iterdir()] if home.tmp.is_dir() else []
    for dirpath, dirnames, filenames in os.walk(home.root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = path.relative_to(home.root)
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISSOCK(st.st_mode):
                found.append(f"a socket: {rel}")
            elif _OWNER.search(name) and not str(rel).startswith(("home/store/tmp", "tmp/")):
                found.append(f"a temporary file: {rel}")
            elif (name == "lock" or name.endswith(".lock")) and stat.S_ISREG(st.st_mode) and _held(path):
                found.append(f"a held lock: {rel}")
    kernel_lock = home.shared_kernel / "work"
    for lock in kernel_lock.glob("*.lock") if kernel_lock.is_dir() else []:
        if _held(lock):
            found.append(f"a held lock: {lock}")
    return found


def _held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def store_damage(home: Home) -> list[str]:
    """What `kiln store check` finds wrong, leftovers of the dead aside (they are not damage)."""
    proc = home.kiln("store", "check", "--json", timeout=300)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return [f"kiln store check printed no report (status {proc.returncode}): {proc.stderr.strip()[-300:]}"]
    return [p["message"] for p in report["problems"] if p["kind"] != "leftover"]


def store_listing(home: Home) -> dict[str, str]:
    """Every file in the store (tmp/ and the lock aside) with a hash of its content: the store as it is."""
    listing = {}
    for dirpath, _dirs, files in os.walk(home.store):
        for name in files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(home.store))
            if rel.startswith("tmp/") or rel == "lock":
                continue
            listing[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return listing


# ---- trials ------------------------------------------------------------------------------------
@dataclass
class Trial:
    operation: str
    point: str
    outcome: str  # "held", "failed", "not reached" (the run ended before the point), "fit" (a disk big enough)
    problems: list[str] = field(default_factory=list)
    detail: str = ""  # what was running when it was killed; the error line of a full disk

    @property
    def held(self) -> bool:
        return self.outcome == "held"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def kill_trial(op: Operation, point: KillPoint, template: Home, root: Path) -> Trial:
    """Kill the operation at `point`; check the store, run it again, check what is left."""
    home = template.copy_to(root)
    op.each(home)
    env = home.env()
    if point.syscall:
        argv = ["strace", "-qq", "-o", "/dev/null", "-e", f"trace={point.syscall}",
                "-e", f"inject={point.syscall}:signal=KILL:when={point.nth}", KILN, *op.argv(home)]  # fmt: skip
    else:
        argv = [KILN, *op.argv(home)]
    proc = subprocess.Popen(argv, env=env, cwd=home.work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    running = ""
    if not point.syscall:
        try:
            proc.wait(point.seconds)
        except subprocess.TimeoutExpired:
            running = ", ".join(sorted({_comm(p) for p in _tree(proc.pid)[1:]} - {""})) or "nothing else"
            os.kill(proc.pid, signal.SIGKILL)
    try:
        output = proc.communicate(timeout=op.timeout)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
    trial = Trial(op.name, point.what, "held", detail=f"running: {running}" if running else "")
    if proc.returncode == 0:
        trial.outcome = "not reached"
        _cleanup(op, home)
        return trial
    if proc.returncode not in (-signal.SIGKILL, 128 + signal.SIGKILL):
        trial.problems.append(f"the run failed on its own (status {proc.returncode}): {_last_line(output)}")
    if op.finish is None and (left := wait_gone(home)):
        trial.problems.append("left running after the kill: " + ", ".join(f"{n} ({p})" for p, n in left))
    trial.problems += store_damage(home)
    trial.problems += op.verify(home)
    again = home.kiln(*op.argv(home), timeout=op.timeout)
    if again.returncode != 0:
        trial.problems.append(f"the next run failed: {_last_line(again.stderr or again.stdout)}")
    if op.finish:
        done = home.kiln(*op.finish, timeout=op.timeout)
        if done.returncode != 0:
            trial.problems.append(f"kiln {' '.join(op.finish)} failed: {_last_line(done.stderr)}")
    if left := wait_gone(home):
        trial.problems.append("left running: " + ", ".join(f"{n} ({p})" for p, n in left))
    trial.problems += store_damage(home) + leftovers(home)
    trial.outcome = "failed" if trial.problems else "held"
    _cleanup(op, home)
    return trial


def disk_trial(op: Operation, template: Home, root: Path, fraction: float, peak: int) -> Trial:
    """Run the operation with its KILN_HOME on a tmpfs with room for `fraction` of what it writes."""
    point = f"{fraction:.0%} of the {peak / 2**20:.1f} MiB it writes"
    template_bytes = sum((Path(d) / f).lstat().st_size for d, _, fs in os.walk(template.root) for f in fs)
    with tmpfs(root, template_bytes + int(fraction * peak) + (256 << 10)):
        home = template.copy_to(root)
        op.each(home)
        before = store_listing(home)
        proc = home.kiln(*op.argv(home), timeout=op.timeout)
        trial = Trial(op.name, point, "held")
        if proc.returncode == 0:
            trial.outcome = "fit"
            if op.finish:
                home.kiln(*op.finish, timeout=op.timeout)
        else:
            errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
            trial.detail = _last_line(proc.stderr)
            if "Traceback" in proc.stderr + proc.stdout:
                trial.problems.append("a traceback: " + _last_line(proc.stderr))
            if proc.returncode < 0:
                trial.problems.append(f"killed by signal {-proc.returncode}")
            if len(errors) != 1 or not trial.detail.startswith("kiln: error:"):
                trial.problems.append(f"not one error line: {proc.stderr.strip()[-300:]!r}")
            if store_listing(home) != before:
                trial.problems.append("the store changed")
            if left := wait_gone(home, 10):
                trial.problems.append("left running: " + ", ".join(f"{n} ({p})" for p, n in left))
            trial.problems += leftovers(home) + store_damage(home)
            trial.outcome = "failed" if trial.problems else "held"
        _end_processes(home)
        # the store as it was is also a store the next run can use, once there is room again
    return trial


def _cleanup(op: Operation, home: Home) -> None:
    if op.finish:
        home.kiln(*op.finish, timeout=op.timeout)
    _end_processes(home)
    shutil.rmtree(home.root, ignore_errors=True)
