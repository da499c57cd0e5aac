"""Write docs/security.md: hello-http's attack surface beside a Debian minbase
system with Debian's cloud kernel, counted from the real artefacts.

    python bench/surface.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import KILN, ROOT, isolated_home
from kiln.surface import Surface, markdown

INTRO = """# Security

kiln seals an app four ways, and this page shows the result for `examples/hello-http`
beside what a traditional Debian system exposes. Regenerate it with `python bench/surface.py`
(or `kiln inspect --surface IMAGE` for any image).

- **Only what the app needs.** The image holds the interpreter, the libraries of its ELF
  closure, the modules the import analysis reached, and guest init: no shell, no package
  manager, no other program. The kernel is built for the app from config fragments: no
  networking unless it declares ports or uses sockets, no 9p unless it declares volumes,
  epoll/eventfd/timerfd/signalfd only if its code names them (`kiln inspect` says why each
  feature is on). One limit: Linux 6.1 builds the seccomp filter engine only with the
  networking core (CONFIG_NET), so a kernel without networking still has that core, with no
  protocol family (no INET, no UNIX) and no network device.
- **A syscall policy.** Before it starts the app, guest init installs a seccomp filter in the
  app's process that refuses fork, vfork, clone without CLONE_THREAD, execve and execveat
  (once the app itself has started), ptrace, mount/umount2/pivot_root, kernel module loading,
  kexec, bpf, reboot and the key-management calls. Refusals reach init by seccomp user
  notification: init prints `kiln-init: refused <call> by pid <n>` on the console and the
  call fails with EPERM, so an app that handles the error keeps running. `[seccomp] allow =
  { call = "reason" }` in kiln.toml relaxes one call and records why in the manifest. The
  same init applies the same policy on the `unix` target.
- **A verified read-only root.** The root is EROFS (read-only by design) on a read-only
  virtio-blk device, protected by dm-verity: the hash tree is built at image build time
  (veritysetup, appended to the image) and the root hash is on the kernel command line
  (`dm-mod.create=`, no initramfs), so the guest kernel refuses any block that does not
  match. Before booting, `kiln run` checks every part's sha256 against the manifest and
  refuses a damaged image, naming the image and the part. Writable places are `/tmp`
  (tmpfs) and the volumes the app declares.
- **Fewer privileges on the host.** The `unix` target runs the app in fresh mount, PID, IPC
  and UTS namespaces on a read-only bind mount, with every capability dropped except
  binding low ports, and `no_new_privs`.
"""


def main(argv: list[str] | None = None) -> int:  # noqa: ARG001 (no options; one signature for python -m bench)
    with tempfile.TemporaryDirectory(prefix="kiln-surface-") as tmp:
        env = isolated_home(Path(tmp) / "home")
        subprocess.run([KILN, "build", str(ROOT / "examples" / "hello-http")], env=env, check=True, capture_output=True)
        data = json.loads(
            subprocess.run(
                [KILN, "inspect", "--surface", "--json", "hello-http"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    table = markdown([Surface(**data["image"]), Surface(**data["debian"])])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"{INTRO}\n## Attack surface (measured {stamp})\n\n{table}\n"
    (ROOT / "docs" / "security.md").write_text(doc)
    print(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
