"""The README's main job: build examples/hello-http, boot it under QEMU, answer a real request.

Run through `make demo` (which installs everything and builds the kernel first).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KILN = str(Path(sys.executable).parent / "kiln")
PORT = int(os.environ.get("DEMO_PORT", "8080"))
BOOT_TIMEOUT = 120


def main() -> int:
    subprocess.run([KILN, "build", str(ROOT / "examples" / "hello-http")], check=True)
    print(f"==> booting hello-http under QEMU, port {PORT}", flush=True)
    vm = subprocess.Popen([KILN, "run", "-p", f"127.0.0.1:{PORT}:8080", "hello-http"])
    started = time.monotonic()
    try:
        while True:
            if vm.poll() is not None:
                print(f"demo: the VM exited early with status {vm.returncode}", file=sys.stderr)
                return 1
            try:
                reply = httpx.get(f"http://127.0.0.1:{PORT}/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() - started > BOOT_TIMEOUT:
                    print("demo: no answer from the VM", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        elapsed = time.monotonic() - started
        print(f"==> GET http://127.0.0.1:{PORT}/ -> {reply.status_code} after {elapsed:.2f} s: {reply.text.strip()}")
        health = httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=5)
        print(f"==> GET /health -> {health.status_code} {health.text.strip()}")
        return 0 if reply.status_code == 200 and health.status_code == 200 else 1
    finally:
        vm.send_signal(signal.SIGINT)
        vm.wait(30)
        print("==> VM stopped")


if __name__ == "__main__":
    sys.exit(main())
