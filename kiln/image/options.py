"""What every builder takes besides its source: the options of one build, and the Progress it reports to.

One options value and one reporter replace the tail of parameters each builder used to repeat (tag,
step, build_kernel, kernel_progress). kiln.build passes them through; a library caller that passes
neither gets a quiet build with the defaults.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.kernel import build as kbuild
    from kiln.kernel import config as kconfig


@dataclass(frozen=True)
class BuildOptions:
    tag: str | None = None  # NAME[:TAG]; None: the app's name, :latest
    build_kernel: bool = True  # False: fail, saying how, instead of building a kernel that is not cached
    check: bool | None = None  # the import audit: None where it applies (a Python app with ports), True
    # always (kiln build --check: its report is the result's), False never (--no-check)
    # kernel features a run of the image will use that no analysis of it can see, each with why: compose asks for
    # 9p when a service is handed secrets, binds or volumes (kiln.compose.lifecycle)
    needs: tuple[tuple[str, str], ...] = ()


class Progress:
    """Where a build says what it does, as pypa/build's context logger: one line a step, and a kernel
    build's progress. This one says nothing; the CLI's prints."""

    def step(self, message: str) -> None:
        """One line: what the build does now."""

    def kernel(self, cfg: kconfig.KernelConfig) -> AbstractContextManager[kbuild.Progress | None]:  # noqa: ARG002
        """Around a kernel build (minutes): yields the callback kernel.build reports its progress to."""
        return contextlib.nullcontext(None)


QUIET = Progress()
