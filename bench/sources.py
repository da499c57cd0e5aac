"""What keeping sources costs: the same apps built sourceless (`sources = "none"`), with the app's own
sources beside their bytecode (`"app"`, the default) and with every module's (`"all"`), in one run;
image bytes and files, with ratios against the sourceless build.

    python bench/sources.py           # rewrites its block in docs/benchmarks.md
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import example_args, replace_section
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home

FIXTURES = ROOT / "tests" / "fixtures" / "apps"
# app -> (its directory, the kiln.toml lines besides `sources` that build it as kiln would without one)
APPS = {
    "hello-http": (ROOT / "examples" / "hello-http", None),
    "flask-app": (ROOT / "examples" / "flask-app", None),
    "django-site": (
        FIXTURES / "django-site",
        'command = ["python", "manage.py", "runserver", "--noreload", "0.0.0.0:8000"]\nvolumes = ["/app/data"]\n',
    ),
}
MODES = ("none", "app", "all")


def build(app: Path, mode: str, extra: str | None, tmp: Path, env: dict[str, str]) -> dict[str, object]:
    copy = shutil.copytree(app, tmp / f"{app.name}-{mode}")
    toml = copy / "kiln.toml"
    text = toml.read_text() if toml.exists() else (extra or "")
    toml.write_text(f'name = "{app.name}"\nsources = "{mode}"\n' + "\n".join(
        line for line in text.splitlines() if not line.startswith(("sources", "name"))
    ) + "\n")  # fmt: skip
    out = subprocess.run([KILN, "build", "--json", str(copy)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    args = example_args(argv, __doc__.splitlines()[0], "one build per mode")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-sources-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        for name, (app, extra) in APPS.items():
            print(f"==> {name}", flush=True)
            rows.append((name, {mode: build(app, mode, extra, Path(tmp), env) for mode in MODES}))
    lines = [
        "## Sources kept (`bench/sources.py`)",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. The default keeps the app's own `.py` files "
        "beside their bytecode (tracebacks with lines, `find_dotenv`, `inspect.getsourcefile`), "
        "against no source at all and every module's source; image bytes (kernel + compressed root) and files:",
        "",
        "| app | sourceless | app's sources (default) | all sources |",
        "|---|---|---|---|",
    ]
    for name, built in rows:
        base = int(built["none"]["size"])  # type: ignore[call-overload]
        cells = []
        for mode in MODES:
            size = int(built[mode]["size"])  # type: ignore[call-overload]
            cells.append(f"{size / 1e6:.2f} MB, {built[mode]['files']} files ({size / base:.3f}×)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    body = "\n".join(lines) + "\n"
    replace_section(args.output, "sources", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
