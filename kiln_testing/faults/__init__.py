"""The fault harness that tests/faults samples and bench/faults.py runs in full.

harness      kill points found under strace, full disks, and what must hold after each
operations   the long operations it kills, the states they start from, their own checks
load         bursts of first connections, and a process's resources (for the soak)
soak         summon -> serve -> idle stop, many times in a row
"""
