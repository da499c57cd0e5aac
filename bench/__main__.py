"""`python -m bench [--quick]`: every benchmark, one after the other (what `make bench` runs).

    hello-http on five stacks   bench/hello_http.py  -> docs/benchmarks.md, docs/bench/
    attack surface              bench/surface.py     -> docs/security.md
    native programs             bench/native.py      -> docs/benchmarks.md
    Python apps with packages   bench/python_apps.py -> docs/benchmarks.md
    the corpus (tests/corpus)   bench/corpus.py      -> docs/compatibility.md
    whole distributions' cost   bench/whole.py       -> docs/benchmarks.md
    summon from zero            bench/summon.py      -> docs/benchmarks.md, docs/bench/summon.png
    the measured gaps (#12)     bench/gaps.py        -> docs/benchmarks.md
    compose                     bench/compose.py     -> docs/benchmarks.md
    sources kept                bench/sources.py     -> docs/benchmarks.md
    container images in         bench/containers.py  -> docs/benchmarks.md
    under the engines           bench/engines.py     -> docs/benchmarks.md
    disks that firmware boots   bench/disk.py        -> docs/benchmarks.md
    real servers (databases)    bench/servers.py     -> docs/benchmarks.md

The fault sweep (kill -9 at every step, full disks, bursts, a 1,000-cycle soak) is `make faults`
(bench/faults.py -> docs/reliability.md): it is long, and not part of this run.

Each can also run alone (`python bench/hello_http.py --help`).
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console

from bench import (
    compose,
    containers,
    corpus,
    disk,
    engines,
    gaps,
    hello_http,
    native,
    python_apps,
    servers,
    sources,
    summon,
    surface,
    whole,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick mode: minutes, not an hour")
    args = parser.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    steps = [
        ("hello-http on five stacks", hello_http.main, quick),
        ("attack surface", surface.main, []),
        ("native programs", native.main, quick),
        ("Python apps with packages", python_apps.main, quick),
        ("the corpus", corpus.main, quick),
        ("whole distributions' cost", whole.main, quick),
        ("summon from zero", summon.main, quick),
        ("the measured gaps", gaps.main, quick),
        ("compose", compose.main, quick),
        ("sources kept", sources.main, []),
        ("container images in", containers.main, quick),
        ("under the engines", engines.main, quick),
        ("disks that firmware boots", disk.main, quick),
        ("real servers", servers.main, quick),
    ]
    console = Console(highlight=False)
    for i, (title, run, options) in enumerate(steps, 1):
        console.rule(f"[bold]{i}/{len(steps)} {title}")
        t0 = time.perf_counter()
        status = run(options)
        console.print(f"{title}: done in {time.perf_counter() - t0:.0f} s")
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
