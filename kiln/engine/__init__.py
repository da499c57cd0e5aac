"""kiln under the engines people run: `kiln-oci`, an OCI runtime with runc's command line.

podman, Docker and containerd (and so Kubernetes, through a RuntimeClass) pull a
kiln image in its container form (`kiln push --as-container`, kiln.registry),
unpack it into a bundle, and call the runtime as they call runc:

    kiln-oci [--root DIR] [--log FILE] [--log-format json] create --bundle B --pid-file P [--console-socket S] ID
    kiln-oci start ID | state ID | kill ID [SIGNAL] | delete [--force] ID | features | ps ID | list

    bundle.py   the bundle's config.json read and checked, the kiln image in its rootfs found and checked,
                and what they say as a kiln run config (process.args/env, mounts on volumes, memory)
    state.py    a container's state under --root (the OCI state JSON), truthful from the processes alive
    shim.py     the container's process: waits for `start`, joins the engine's network namespace,
                boots the VM as `kiln run` does (QEMU, KVM or TCG), passes signals to the app through
                init, and exits with the app's status
    cli.py      the command line the engines call
"""
