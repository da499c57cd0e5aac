"""What kiln's tests and benchmarks share: real components started on loopback and stopped again, and the
few helpers every end-to-end check needs. Installed with kiln (`pip install -e '.[test]'` brings what it
imports); kiln itself never imports it, and nothing here imports a test module or bench.

    command    the kiln command line: KILN, ROOT, EXAMPLES, FIXTURES, kiln(*args, env=...)
    homes      isolated $KILN_HOME directories that share the kernel builds
    ports      free loopback ports (kiln's own free_port)
    answers    wait_for_answer(port or url, protocol, timeout): the one "wait until it answers"
    checks     what a refused command must look like (one line, no traceback) and the store it leaves
    instance   Instance: a running `kiln run`, its console and its ports
    registry   Debian's docker-registry on loopback
    images     buildah with a storage of its own, and OCI layouts written by hand
    servers    network misbehaviour: a slow proxy, a server that never answers
    engines    podman, containerd and dockerd started with the kiln-oci runtime
    summoner   a `kiln summon` in the foreground
    faults     the fault harness: kill points, full disks, bursts, the soak
"""
