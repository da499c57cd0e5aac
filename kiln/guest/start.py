"""kiln's start-up hook for Python apps: the image's command runs this, which runs the app.

`python3.11 -s -S -B /kiln/start.pyc /app/app.pyc ARGS...`: register faulthandler on SIGUSR2 (every
thread's Python stack to stderr, the console, when `kiln stack` asks; guest init sends the signal),
then run the app's code as `__main__`, with the argv the app would have had. It imports only
built-in modules, so the image keeps no module for it, and leaves nothing in `__main__`.
"""


def _kiln_start() -> None:
    import _signal
    import faulthandler
    import marshal
    import sys

    faulthandler.register(_signal.SIGUSR2, all_threads=True, chain=False)
    del sys.argv[0]  # the app's own argv: [its script, its arguments...]
    path = sys.argv[0]
    sys.path[0] = path.rpartition("/")[0] or "/"  # the app's directory, as if it had been run itself
    with open(path, "rb") as f:
        data = f.read()
    code = marshal.loads(data[16:]) if path.endswith(".pyc") else compile(data, path, "exec")
    main = vars(sys.modules["__main__"])
    del main["_kiln_start"]
    main["__file__"] = path
    exec(code, main)


_kiln_start()
