"""The gaps #12 closes, measured: image size, guest memory, and kiln's own start-up.

image   hello-http built with each EROFS packing kiln could use (Debian's mkfs.erofs has LZ4 only),
        its size, and its boot to first response under QEMU (median of --runs cold boots); ratios
        against the packing kiln used before (lz4hc level 9, tails in blocks of their own).
trim    what two more cuts would save on hello-http's root: `strip --strip-unneeded` of every ELF
        file in it, and leaving out the modules the analysis keeps but one `kiln build --check`
        run never imported (the root packed again without them, as kiln packs it).
memory  the lowest guest RAM with which hello-http boots and answers 100 requests (bisection), and
        where the RAM goes at the default size after 100 requests, in the guest's own figures
        (/proc/meminfo and the app's status, asked over the control channel: `meminfo`).
cli     wall time of `kiln --help`, `kiln ps`, `kiln images` and `kiln run --dry-run`, and `kiln run
        --target unix` to first response against the same app run by plain python; ratios against
        `python3 -c pass` and the plain app, measured in the same run. Python's byte code is written
        first (a user's install has it), whatever PYTHONDONTWRITEBYTECODE says here.

    python bench/gaps.py                      # everything; rewrites its block in docs/benchmarks.md
    python bench/gaps.py --quick              # 3 runs, coarse bisection
    python bench/gaps.py --parts cli,memory --output /tmp/b.md
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.harness import accelerator, answered, bisect_min, machine, replace_section, serving, time_to_first_response
from bench.stacks import APP, GUEST_PORT, HOST_PYTHON, IMAGE
from kiln.guest.protocol import ControlChannel
from kiln_testing.command import KILN, ROOT
from kiln_testing.homes import isolated_home, kiln_home_of
from kiln_testing.ports import free_port

PARTS = ("image", "trim", "memory", "cli")
# (label, mkfs.erofs settings) — the first is what kiln used before #12, the baseline of the ratios
PACKINGS: list[tuple[str, dict[str, object]]] = [
    ("lz4hc 9, 128 KiB clusters (before)", {"level": 9, "tailpacking": False}),
    ("lz4hc 12", {"level": 12, "tailpacking": False}),
    ("lz4hc 12 + tail packing (kept)", {"level": 12, "tailpacking": True}),
    ("lz4hc 12 + tail packing, 1 MiB clusters", {"level": 12, "tailpacking": True, "pcluster": 1 << 20}),
]
AIM_SIZE = 8 * 2**20
CHECK_PATHS = ("/", "/health")  # what hello-http serves


def say(text: str) -> None:
    print(text, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


# -- image -----------------------------------------------------------------------------------------


def build_with(env: dict[str, str], settings: dict[str, object]) -> dict:
    """`kiln build --json` of hello-http, with mkfs.erofs called with `settings` (kiln.image.erofs.pack's
    keyword arguments) instead of kiln's defaults."""
    code = (
        "import functools, sys\n"
        "from kiln.image import erofs\n"
        f"erofs.pack = functools.partial(erofs.pack, **{settings!r})\n"
        "from kiln.cli.main import main\n"
        "sys.argv = ['kiln', 'build', '--json', sys.argv[1]]\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(APP)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def boot_median(env: dict[str, str], accel: str, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        port = free_port()
        argv = [KILN, "run", "--cold", "--accel", accel, "-p", f"127.0.0.1:{port}:{GUEST_PORT}", IMAGE]
        t = time_to_first_response(argv, port, env=env)
        if t.seconds is None:
            raise RuntimeError(f"hello-http did not answer:\n{t.output[-2000:]}")
        times.append(t.seconds)
    return statistics.median(times), times


def measure_image(base: Path, runs: int) -> dict:
    rows = []
    for i, (label, settings) in enumerate(PACKINGS):
        env = isolated_home(base / f"image-{i}")
        built = build_with(env, settings)
        accel = accelerator(env, IMAGE)
        median, times = boot_median(env, accel, runs)
        rows.append(
            {
                "packing": label,
                "size": built["size"],
                "rootfs_size": built["rootfs_size"],
                "kernel_size": built["kernel_size"],
                "boot": median,
                "boots": times,
                "accel": accel,
            }
        )
        say(f"  {label}: {built['size']:,} bytes, boot {ms(median)}")
    return {"rows": rows}


# -- trim ------------------------------------------------------------------------------------------


def measure_trim(base: Path) -> dict:
    """Bytes two further cuts would save on hello-http's root; neither is applied by kiln."""
    import shutil

    from kiln import check
    from kiln.image import erofs, unpack
    from kiln.paths import kiln_home
    from kiln.store import Store

    env = isolated_home(base / "trim")
    subprocess.run([KILN, "build", str(APP)], env=env, capture_output=True, check=True)
    with kiln_home_of(env):
        store = Store(kiln_home() / "store")
        image = store.image(IMAGE)
        tree = unpack.tree(store, image)
        root_size = image.manifest.rootfs.size
        # 1. strip: every ELF file, stripped of what the loader does not need
        elf_bytes = stripped_bytes = elf_files = 0
        for path in sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()):
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            out = base / "stripped"
            subprocess.run(["strip", "--strip-unneeded", "-o", out, path], check=True, capture_output=True)
            elf_files += 1
            elf_bytes += path.stat().st_size
            stripped_bytes += out.stat().st_size
        # 2. modules never imported in one run of `kiln build --check` (GET / and /health)
        report = check.run(store, image, CHECK_PATHS, lambda _name: True)
        python = image.manifest.python
        assert python is not None
        unused = [m for m in python.modules if m.path and m.name not in report.imported and m.name != "__main__"]
        trimmed = base / "trimmed"
        shutil.copytree(tree, trimmed, symlinks=True)
        for m in unused:
            (trimmed / m.path.lstrip("/")).unlink(missing_ok=True)
        erofs.pack(trimmed, base / "trimmed.erofs")
        trimmed_root = (base / "trimmed.erofs").stat().st_size
        # the stored root is EROFS plus its dm-verity tree: compare EROFS with EROFS
        erofs.pack(tree, base / "again.erofs")
        full_root = (base / "again.erofs").stat().st_size
    say(f"  strip: {elf_files} ELF files, {elf_bytes:,} -> {stripped_bytes:,} bytes")
    say(f"  never imported: {len(unused)} of {len(python.modules)} modules; EROFS {full_root:,} -> {trimmed_root:,}")
    return {
        "root_size": root_size,
        "elf_files": elf_files,
        "elf_bytes": elf_bytes,
        "stripped_bytes": stripped_bytes,
        "modules": len(python.modules),
        "imported": len(report.imported),
        "unused": len(unused),
        "unused_bytes": sum(m.size for m in unused),
        "unused_examples": sorted(m.name for m in unused)[:12],
        "erofs_full": full_root,
        "erofs_trimmed": trimmed_root,
    }


# -- memory ----------------------------------------------------------------------------------------


def meminfo_after_serving(env: dict[str, str], accel: str, name: str = "gaps-meminfo") -> dict[str, int]:
    """Run hello-http detached at its default memory, make 100 requests, ask the guest for its figures."""
    port = free_port()
    subprocess.run(
        [KILN, "run", "-d", "--cold", "--name", name, "--accel", accel, "-p", f"127.0.0.1:{port}:{GUEST_PORT}", IMAGE],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        if not answered(port, 120):
            raise RuntimeError("hello-http did not answer")
        if not all_answered(port, 100):
            raise RuntimeError("hello-http did not serve 100 requests")
        sock = Path(env["KILN_HOME"]) / "instances" / name / "control.sock"
        with ControlChannel(sock, timeout=10) as channel:
            return channel.meminfo()
    finally:
        subprocess.run([KILN, "rm", "-f", name], env=env, capture_output=True, check=False)


def all_answered(port: int, n: int) -> bool:
    """n requests in a row, each answered 200 within 10 s (stops at the first that is not: a guest
    short of memory thrashes, and waiting out 100 timeouts would take a quarter of an hour)."""
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            try:
                if client.get(f"http://127.0.0.1:{port}/").status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    return True


def measure_memory(base: Path, quick: bool) -> dict:
    env = isolated_home(base / "memory")
    subprocess.run([KILN, "build", str(APP)], env=env, capture_output=True, check=True)
    accel = accelerator(env, IMAGE)
    inspected = json.loads(
        subprocess.run([KILN, "inspect", "--json", IMAGE], env=env, capture_output=True, text=True, check=True).stdout
    )
    default = int(inspected["manifest"]["entry"]["memory_mib"])
    figures = meminfo_after_serving(env, accel)
    say(f"  guest figures at {default} MiB: {figures}")

    def works(mib: int) -> bool:
        port = free_port()
        argv = [KILN, "run", "--cold", "--accel", accel, "-m", f"{mib}M", "-p", f"127.0.0.1:{port}:{GUEST_PORT}", IMAGE]
        with serving(argv, port, env=env, timeout=120) as server:
            ok = server.first_response is not None and all_answered(port, 100)
        say(f"  {mib} MiB: {'boots and answers 100 requests' if ok else 'fails'}")
        return ok

    lowest = bisect_min(24, 48, works, step=4 if quick else 1)
    return {"default": default, "figures": figures, "lowest": lowest, "accel": accel}


# -- cli -------------------------------------------------------------------------------------------


def wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_cli(base: Path, runs: int) -> dict:
    env = isolated_home(base / "cli")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(str(ROOT / "kiln"), quiet=1)  # what an install has: byte code for every module
    subprocess.run([KILN, "build", str(APP)], env=env, capture_output=True, check=True)
    n = max(runs * 3, 15)
    rows = {"python3 -c pass": wall([sys.executable, "-c", "pass"], env, n)}
    rows["python3 -c 'import click'"] = wall([sys.executable, "-c", "import click"], env, n)  # the CLI library alone
    for args in (["--help"], ["ps"], ["images"], ["run", "--dry-run", IMAGE]):
        rows["kiln " + " ".join(args)] = wall([KILN, *args], env, n)
    for label, value in rows.items():
        say(f"  {label}: {ms(value)}")
    first = {}
    for label, argv_of in (
        ("plain python3.11 app.py", lambda p: [HOST_PYTHON, str(APP / "app.py"), "--port", str(p)]),
        (
            "kiln run --target unix",
            lambda p: [KILN, "run", "--target", "unix", "-p", f"127.0.0.1:{p}:{GUEST_PORT}", IMAGE],
        ),
    ):
        times = []
        for _ in range(max(runs, 5)):
            port = free_port()
            t = time_to_first_response(argv_of(port), port, env=env)
            if t.seconds is None:
                raise RuntimeError(f"{label} did not answer:\n{t.output[-2000:]}")
            times.append(t.seconds)
        first[label] = statistics.median(times)
        say(f"  {label}: first response {ms(first[label])}")
    return {"start": rows, "first_response": first}


# -- report ----------------------------------------------------------------------------------------


def render(results: dict) -> str:
    when = results["when"]
    out = ["## The measured gaps: image size, guest memory, CLI start-up (`bench/gaps.py`)", ""]
    out.append(f"Measured {when}. Ratios (×) are against a baseline measured in the same run.")
    if "image" in results:
        rows = results["image"]["rows"]
        base = rows[0]
        out += ["", "### Image size: how the root is packed (hello-http)", ""]
        out.append(
            f"Accelerator: **{base['accel'].upper()}**; boot to first response is the median of "
            f"{len(base['boots'])} cold boots. Aim: at most 8 MiB ({AIM_SIZE:,} bytes), boot no worse than +10%."
        )
        out += [
            "",
            "| packing | image | root | size × | boot | boot × | within 8 MiB |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            out.append(
                f"| {r['packing']} | {r['size']:,} B | {r['rootfs_size']:,} B | {r['size'] / base['size']:.3f}× | "
                f"{ms(r['boot'])} | {r['boot'] / base['boot']:.2f}× | {'yes' if r['size'] <= AIM_SIZE else 'no'} |"
            )
        out.append("")
        out.append(
            "The kernel is the same in every row. Debian's mkfs.erofs (erofs-utils 1.5) offers LZ4 and LZ4HC "
            "only, so LZMA, which the 6.1 kernel can read, is not among the choices."
        )
    if "trim" in results:
        t = results["trim"]
        saved_strip = t["elf_bytes"] - t["stripped_bytes"]
        saved_trim = t["erofs_full"] - t["erofs_trimmed"]
        out += ["", "### Two more cuts, measured and not kept (hello-http's root)", ""]
        out += [
            "| cut | before | after | saved |",
            "|---|---:|---:|---:|",
            f"| `strip --strip-unneeded` of the {t['elf_files']} ELF files (uncompressed) | {t['elf_bytes']:,} B | "
            f"{t['stripped_bytes']:,} B | {saved_strip:,} B |",
            f"| leave out the {t['unused']} of {t['modules']} modules one `--check` run never imported (EROFS) | "
            f"{t['erofs_full']:,} B | {t['erofs_trimmed']:,} B | {saved_trim:,} B "
            f"({saved_trim / t['erofs_full']:.0%}) |",
            "",
            "- Strip: Debian ships its binaries and libraries stripped already; what is left is what the loader needs.",
            f"- Never imported: the run imported {t['imported']} modules; the rest are reached by the import graph "
            "on paths one run did not take (" + ", ".join(f"`{n}`" for n in t["unused_examples"]) + ", ...). "
            "Leaving them out would turn a rare path into a `ModuleNotFoundError` in a sealed guest, for the saving "
            "above; kiln keeps the analysis's set, and `kiln build --check` names third-party packages that never "
            "ran, as `exclude` lines for the user to decide.",
        ]
    if "memory" in results:
        m = results["memory"]
        f = m["figures"]
        out += ["", "### Guest memory (hello-http)", ""]
        lowest = f"{m['lowest']} MiB" if m["lowest"] else "more than 48 MiB"
        out.append(
            f"Lowest guest RAM that boots and answers 100 requests (bisection, {m['accel'].upper()}): "
            f"**{lowest}** (aim: 32 MiB; the image's default is {m['default']} MiB)."
        )
        out += [
            "",
            f"Where {m['default']} MiB go after 100 requests, in the guest's own figures (KiB; `meminfo` over "
            "the control channel):",
            "",
            "| what | KiB |",
            "|---|---:|",
        ]
        total = m["default"] * 1024
        kernel = total - f.get("MemTotal", total)
        for label, value in (
            ("kernel image and reserved at boot (RAM − MemTotal)", kernel),
            ("slab (kernel objects)", f.get("Slab")),
            ("kernel stacks + page tables", (f.get("KernelStack") or 0) + (f.get("PageTables") or 0)),
            ("page cache (the root's files, read through EROFS)", (f.get("Cached") or 0) - (f.get("Shmem") or 0)),
            ("tmpfs (shmem)", f.get("Shmem")),
            ("anonymous (the app's heap and stacks)", f.get("AnonPages")),
            ("free", f.get("MemFree")),
            ("the app's resident set (VmRSS: RssAnon + RssFile)", f.get("VmRSS")),
        ):
            out.append(f"| {label} | {value:,} |" if value is not None else f"| {label} | — |")
    if "cli" in results:
        c = results["cli"]
        base = c["start"]["python3 -c pass"]
        out += ["", "### kiln's own start-up", ""]
        out.append("Wall time, median; byte code written beforehand. Aim: `kiln --help` and `kiln ps` at most 60 ms.")
        out += ["", "| command | wall time | × `python3 -c pass` |", "|---|---:|---:|"]
        for label, value in c["start"].items():
            out.append(f"| `{label}` | {ms(value)} | {value / base:.1f}× |")
        click = c["start"].get("python3 -c 'import click'")
        if click is not None:
            own = {k: v - click for k, v in c["start"].items() if k.startswith("kiln ")}
            out += [
                "",
                f"Importing click, the CLI library, takes {ms(click)} of that alone (`python3 -c pass` included): "
                "kiln's own share on top of it is " + ", ".join(f"{ms(v)} for `{k}`" for k, v in own.items()) + ".",
            ]
        plain = c["first_response"]["plain python3.11 app.py"]
        out += ["", "| hello-http, start to first response | median | × plain |", "|---|---:|---:|"]
        for label, value in c["first_response"].items():
            out.append(f"| {label} | {ms(value)} | {value / plain:.2f}× |")
        out.append("")
        out.append("Aim for the unix target: at most 2× plain python.")
    info = machine()
    out += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items())]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 runs, coarse bisection")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--render", type=Path, nargs="+", help="re-render the block from saved results (merged)")
    args = parser.parse_args(argv)
    if args.render:
        merged: dict = {}
        for path in args.render:
            merged.update(json.loads(path.read_text()))
        replace_section(args.output, "gaps", render(merged))
        say(f"wrote {args.output}")
        return 0
    parts = args.parts.split(",")
    if unknown := [p for p in parts if p not in PARTS]:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    runs = 3 if args.quick else args.runs
    results: dict = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    with tempfile.TemporaryDirectory(prefix="kiln-gaps-") as tmp:
        base = Path(tmp)
        if "image" in parts:
            say("image: packings")
            results["image"] = measure_image(base, runs)
        if "trim" in parts:
            say("trim: strip, modules never imported")
            results["trim"] = measure_trim(base)
        if "memory" in parts:
            say("memory")
            results["memory"] = measure_memory(base, args.quick)
        if "cli" in parts:
            say("cli start-up")
            results["cli"] = measure_cli(base, runs)
        # stop anything a failed step left running in these homes
        for home in base.iterdir():
            subprocess.run(
                [KILN, "rm", "-f", *[d.name for d in (home / "instances").glob("*")]],
                env={**os.environ, "KILN_HOME": str(home)},
                capture_output=True,
                check=False,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    replace_section(args.output, "gaps", render(results))
    say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
