"""The summoner: serve images with no instance running, and start one when a request arrives.

    config.py   summon.toml (or the command line): services, their ports, idle, max_running, DNS
    vms.py      one summoned VM: restored from its snapshot (or booted cold), listed by `kiln ps`
    server.py   the asyncio loop: listeners, the held-connection proxy, idle reaper, LRU, DNS
    metrics.py  the Prometheus metrics it exposes

This is the seeds' Jitsu: a unikernel restored from a snapshot answers in a
fraction of a second, so it need not run until someone calls it.
"""
