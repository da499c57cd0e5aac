"""Choose the accelerator: KVM when it really works on this host, TCG otherwise.

/dev/kvm existing is not enough (some hosts fail with "KVM internal error ...
emulation failure"), so the probe boots kiln's own kernel under KVM with a
tiny root file system whose init prints "kiln-init: probe ok" and exits, and
checks for that line. The answer is cached per host (kernel release, CPU,
QEMU build) in $KILN_HOME/cache/accel.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

from kiln import _proc, atomic
from kiln.guest import protocol
from kiln.paths import home_dir
from kiln.targets.qemu_command import VmSpec, command, cpu_vendor

PROBE_TIMEOUT = 10.0
PROBE_OK = (protocol.INIT_SAY + "probe ok").encode()


def host_fingerprint(qemu: str) -> str:
    st = os.stat(qemu)
    model = ""
    with contextlib.suppress(OSError):
        model = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "")
    text = f"{platform.node()}|{platform.release()}|{cpu_vendor()}|{model}|{qemu}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def probe_rootfs() -> Path:
    """A root file system holding only guest init and its libraries (cached)."""
    # Imported here: only a probe needs them, and `kiln run` starts faster without.
    from kiln.analyze import elf
    from kiln.guest import init_binary
    from kiln.image import erofs
    from kiln.image.rootfs import RootFS

    init = init_binary()
    final = home_dir("cache", "probe") / hashlib.sha256(init.read_bytes()).hexdigest()[:16]
    if (final / "root.erofs").is_file():
        return final / "root.erofs"
    with atomic.staging_dir(final) as tmp:
        root = RootFS(tmp / "root")
        root.add_file("/kiln/init", init, 0o555)
        for lib in elf.closure([init]).libraries:
            root.add_host_path(lib)
        erofs.pack(root.root, tmp / "root.erofs")
    return final / "root.erofs"


def kvm_works(kernel: Path, qemu: str) -> tuple[bool, str]:
    """Boot the probe under KVM; (works, reason)."""
    spec = VmSpec(
        kernel=kernel, rootfs=probe_rootfs(), memory_mib=32, accel="kvm", network=False, cmdline=(protocol.PROBE,)
    )
    try:
        proc = subprocess.run(
            command(spec, qemu),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            check=False,
            preexec_fn=_proc.die_with_parent,
        )
    except subprocess.TimeoutExpired:
        return False, f"the probe guest did not finish within {PROBE_TIMEOUT:.0f} s"
    if PROBE_OK in proc.stdout:
        return True, "the probe guest booted"
    err = (proc.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"])[0]
    return False, err


def choose(requested: str, kernel: Path) -> tuple[str, str | None]:
    """(accelerator, one-line notice or None)."""
    if requested in ("kvm", "tcg"):
        return requested, None
    qemu = _proc.require("qemu-system-x86_64")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "KVM is not available (/dev/kvm missing or not accessible); using TCG software emulation"
    cache = home_dir("cache") / "accel.json"
    key = host_fingerprint(qemu)
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if key not in known:
        works, reason = kvm_works(kernel, qemu)
        known[key] = {"kvm": works, "reason": reason}
        atomic.write_bytes(cache, json.dumps(known, indent=2).encode())
    if known[key]["kvm"]:
        return "kvm", None
    return "tcg", f"KVM does not work on this host ({known[key]['reason']}); using TCG software emulation"
