"""kiln's start-up hook for Python apps: the image's command runs this, which runs the app.

`python3.11 -s -S -B /kiln/start.pyc WHAT ARGS...`: register faulthandler on SIGUSR2 (every
thread's Python stack to stderr, the console, when `kiln stack` asks; guest init sends the signal),
answer SIGRTMIN+3 with the interpreter's gc figures in /tmp/.kiln-gc (`kiln top`: the one figure
that only the interpreter knows; init reads the file), then start the app as its command would,
with the argv the app would have had (kiln.analyze.command):

    /app/app.py ARGS             a file, as `python /app/app.py` (its bytecode from __pycache__ when
                                 the source is kept, or /app/app.pyc in the sourceless layout)
    -m MODULE ARGS               as `python -m MODULE`: through runpy, sys.path[0] the working directory
    -e MODULE:ATTR NAME ARGS     a console script, as pip's launcher runs it: sys.exit(ATTR()), argv[0] NAME

It imports only built-in and frozen modules, so the image keeps no module for it (runpy, for -m,
is the interpreter's own), and leaves nothing in `__main__`.

/tmp/.kiln-gc is one line of KEY=N words: gc_gen0, gc_gen1, gc_gen2 (gc.get_count()), gc_tracked
(objects the collector tracks), gc_collections, gc_collected, gc_uncollectable (gc.get_stats(),
summed over the generations). It is written only when asked, on the signal (a new file renamed
over the old one), so an app nobody watches has nothing in /tmp; the reader knows the handler is in
place from the app's SigCgt mask in /proc/PID/status (an uncaught real-time signal would kill it).
"""

GC_FILE = "/tmp/.kiln-gc"
GC_SIGNAL_OFFSET = 3  # SIGRTMIN + 3; kiln/guest/init/stats.c and kiln/runtime/guest_stats.py send the same


def _gc_figures(_signum: int = 0, _frame: object = None, path: str = GC_FILE) -> None:
    """Write the gc figures to `path` (a signal handler: it never raises into the app)."""
    import builtins as b  # the app's __main__ is this function's globals: its own `sum` is not ours
    import gc
    import posix

    try:
        stats = gc.get_stats()
        gen0, gen1, gen2 = gc.get_count()
        line = (
            f"gc_gen0={gen0} gc_gen1={gen1} gc_gen2={gen2} gc_tracked={b.len(gc.get_objects())} "
            f"gc_collections={b.sum(s['collections'] for s in stats)} "
            f"gc_collected={b.sum(s['collected'] for s in stats)} "
            f"gc_uncollectable={b.sum(s['uncollectable'] for s in stats)}\n"
        )
        tmp = path + ".tmp"
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
        try:
            posix.write(fd, line.encode())
        finally:
            posix.close(fd)
        posix.rename(tmp, path)
    except BaseException:  # a full or read-only /tmp: no figures, and the app goes on
        pass


def _code(path: str) -> object:
    """The code of a script: its cached bytecode beside a kept source, the .pyc itself, or compiled."""
    import marshal
    import sys

    directory, _, name = path.rpartition("/")
    candidates = [path] if path.endswith(".pyc") else []
    if path.endswith(".py"):
        candidates.append(f"{directory}/__pycache__/{name[:-3]}.{sys.implementation.cache_tag}.pyc")
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                return marshal.loads(f.read()[16:])
        except OSError:
            continue
    with open(path, "rb") as f:
        return compile(f.read(), path, "exec")


def _kiln_start() -> None:
    import _signal
    import faulthandler
    import posix
    import sys

    faulthandler.register(_signal.SIGUSR2, all_threads=True, chain=False)
    _signal.signal(_signal.SIGRTMIN + GC_SIGNAL_OFFSET, _gc_figures)
    load = _code  # the names below leave __main__ before the app runs in it
    del sys.argv[0]  # the app's own argv: [its script, its arguments...]
    main = vars(sys.modules["__main__"])
    for name in ("_kiln_start", "_gc_figures", "_code", "GC_FILE", "GC_SIGNAL_OFFSET"):
        del main[name]
    if sys.argv[0] == "-m":  # python -m MODULE ARGS
        import runpy

        del sys.argv[0]
        sys.path[0] = posix.getcwd()
        runpy._run_module_as_main(sys.argv[0], alter_argv=True)
        return
    if sys.argv[0] == "-e":  # a console script: -e MODULE:ATTR NAME ARGS
        module, _, attr = sys.argv[1].partition(":")
        del sys.argv[:2]
        sys.path[0] = posix.getcwd()  # servers import the app from their working directory
        # as pip's launcher does: `from MODULE import FIRST` (a submodule when it is not an attribute:
        # granian's `granian:cli.entrypoint`), then the rest as attributes
        first, *rest = attr.split(".")
        target = getattr(__import__(module, fromlist=[first]), first)
        for part in rest:
            target = getattr(target, part)
        sys.exit(target())
    path = sys.argv[0]
    sys.path[0] = path.rpartition("/")[0] or "/"  # the app's directory, as if it had been run itself
    code = load(path)
    main["__file__"] = path
    exec(code, main)


if __name__ == "__main__":  # not when multiprocessing's spawn re-runs the main module as __mp_main__
    _kiln_start()
