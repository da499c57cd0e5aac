"""Compose: many unikernels as one service (`kiln compose`).

project.py reads a compose file (Compose Specification schema, then kiln's subset), switch.py is a
project's private network, lifecycle.py starts and stops the services as detached instances.
"""
