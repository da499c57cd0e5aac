"""Find the stored snapshot that fits a run, or say in one line why there is none.

A snapshot fits when everything a restore depends on is the same as when it was
made (kiln.manifest.MadeWith: QEMU's version, the accelerator, the CPU model,
the memory and the device set). Its blobs are checked against their digests
before it is used; a damaged snapshot is never restored, and left as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kiln import atomic
from kiln.errors import StoreError, TargetError
from kiln.manifest import MadeWith, SnapshotRecord
from kiln.paths import home_dir
from kiln.store import Image, Store
from kiln.targets.qemu_command import VmSpec, cpu_model, device_set


def qemu_version(qemu: str) -> str:
    """QEMU's version line ("QEMU emulator version 7.2.x (Debian ...)"), cached per binary."""
    st = os.stat(qemu)
    key = f"{qemu}|{st.st_size}|{st.st_mtime_ns}"
    cache = home_dir("cache") / "qemu-version.json"
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(cache.read_text())
    if key not in known:
        try:
            out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError) as err:
            raise TargetError(f"{qemu} --version failed: {err}") from None
        known[key] = (out.strip().splitlines() or ["unknown"])[0]
        atomic.write_bytes(cache, json.dumps(known, indent=2).encode())
    return known[key]


def made_with(spec: VmSpec, qemu: str, after: str) -> MadeWith:
    return MadeWith(
        qemu=qemu_version(qemu),
        accel=spec.accel,
        cpu=cpu_model(spec.accel),
        memory_mib=spec.memory_mib,
        devices=device_set(spec),
        after=after,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Found:
    digest: str  # the record's
    record: SnapshotRecord
    state: Path
    ram: Path


def find(store: Store, image: Image, spec: VmSpec, qemu: str) -> tuple[Found | None, str | None]:
    """(the snapshot to restore, None) or (None, why not, in one line; None if the image has none)."""
    refs = store.snapshot_refs(image.digest)
    if not refs:
        return None, None
    records: list[tuple[str, SnapshotRecord]] = []
    for _, _, digest in refs:
        try:
            records.append((digest, store.snapshot(digest)))
        except StoreError as err:
            return None, f"the snapshot of {image.ref} is damaged ({err}): booting cold"
    wanted = {after: made_with(spec, qemu, after) for after in ("ready", "kernel")}
    fitting = [(d, r) for d, r in records if r.made_with == wanted[r.made_with.after]]
    if not fitting:
        _, first = records[0]
        diff = "; ".join(first.made_with.differences(wanted[first.made_with.after]))
        return None, f"the snapshot of {image.ref} does not fit this run ({diff}): booting cold"
    digest, record = sorted(fitting, key=lambda dr: dr[1].made_with.after != "ready")[0]
    try:
        state = store.verify_blob(record.state.digest, f"the device state of the snapshot of {image.ref}")
        ram = store.verify_blob(record.ram.digest, f"the memory of the snapshot of {image.ref}")
    except StoreError as err:
        return None, f"refusing to restore: {err}; booting cold"
    return Found(digest, record, state, ram), None
