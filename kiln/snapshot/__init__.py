"""Snapshots: a VM of an image saved once it is ready, restored in a fraction of a boot.

    make.py                          `kiln snapshot`: boot once, wait until ready, pause, save into the store
    targets/snapshot_match.py        which stored snapshot fits a run (QEMU, accelerator, CPU, memory, devices)
    targets/snapshot_restore.py      what a restored VM needs before it may serve: a fresh seed and clock, then
                                     its ports

Matching and restoring are part of running (kiln.targets), so they live there; making one sits above.

The store keeps snapshots as blobs beside the image they belong to (kiln.store);
QEMU's command line for saving and restoring comes from kiln.targets.qemu_command.
"""
