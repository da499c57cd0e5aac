"""Snapshots: a VM of an image saved once it is ready, restored in a fraction of a boot.

    match.py    which stored snapshot fits a run (QEMU, accelerator, CPU, memory, devices), checked
    make.py     `kiln snapshot`: boot once, wait until ready, pause, save into the store
    restore.py  what a restored VM needs before it may serve: a fresh seed and clock, then its ports

The store keeps snapshots as blobs beside the image they belong to (kiln.store);
QEMU's command line for saving and restoring comes from kiln.targets.qemu_command.
"""
