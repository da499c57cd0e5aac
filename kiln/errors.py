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


class NoSpaceError(KilnError):
    """The disk kiln writes to is full (ENOSPC, or a quota): nothing was added to the store."""

    @classmethod
    def at(cls, path: str | None, doing: str | None = None) -> NoSpaceError:
        """The one line for a full disk met while writing `path` (a temporary path: said as the place)."""
        import os

        home = os.environ.get("KILN_HOME") or os.path.expanduser("~/.local/share/kiln")
        what = f"{doing} failed: " if doing else ""
        if path is None or os.path.abspath(path).startswith(home):
            return cls(f"{what}no space left on device in $KILN_HOME ({home}); the store is as it was "
                       "(kiln prune frees space)")  # fmt: skip
        directory = os.path.dirname(path) if os.path.basename(path).startswith(".") else path  # not a temp's name
        return cls(f"{what}no space left on device in {directory}; nothing half-written was left there")
