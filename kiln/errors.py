"""The KilnError hierarchy: every failure a user can cause or meet.

Each exception's `str()` is the one line the user sees; `kiln.cli.main` maps
them to exit codes in one place and shows a traceback only under `--debug`.
"""

from __future__ import annotations


class KilnError(Exception):
    """A failure with a message meant for the user."""

    exit_code = 1


class UsageError(KilnError):
    """The command line or a config file asks for something invalid."""

    exit_code = 2


class AppError(KilnError):
    """The application cannot be read: missing path, bad config, syntax error."""


class AnalysisError(KilnError):
    """The dependency analysis found something it cannot resolve."""


class KernelError(KilnError):
    """The guest kernel is missing or its build failed."""


class StoreError(KilnError):
    """The local image store has no such image, or a part of it is damaged."""


class ToolMissingError(KilnError):
    """A host program kiln needs is not installed."""


class TargetError(KilnError):
    """An image cannot be started on a target (port in use, boot failure...)."""
