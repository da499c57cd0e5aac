"""Shared fixtures: isolated $KILN_HOMEs that reuse the built kernels, the session's registry, images
several test modules boot, and the instances a test started (kiln_testing holds what they are made of)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln_testing.command import EXAMPLES, FIXTURES, interrupt, kiln
from kiln_testing.homes import SHARED_HOME, isolated_home
from kiln_testing.instance import Instance
from kiln_testing.registry import Registry

# A suite started in the background by a non-interactive shell (`.ci/run &`) inherits SIGINT
# ignored and passes that on to every kiln it starts, where Python then never raises
# KeyboardInterrupt. The tests interrupt kiln on purpose (Ctrl-C during a build, a pull, a run),
# so the suite takes SIGINT back: the programs it starts get the default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# The apps whose specialized kernels the tests boot (`make kernels` builds the same ones, in the
# same order: each after the config it differs least from, in the shared object tree).
KERNEL_APPS = (
    EXAMPLES / "hello-http",
    FIXTURES / "sealed",
    FIXTURES / "exit3",
    EXAMPLES / "memcached",
    EXAMPLES / "nginx-static",
    EXAMPLES / "redis",
    EXAMPLES / "mosquitto",
)


@pytest.fixture(scope="session")
def kernel_built() -> None:
    """Build the kernels the tests boot, once (no-ops when cached, as after `make kernel`)."""
    env = {**os.environ, "KILN_HOME": str(SHARED_HOME)}
    for app in KERNEL_APPS:
        kiln("kernel", "build", "--for", str(app), env=env, timeout=1800, check=True)


@pytest.fixture(scope="session")
def session_env(tmp_path_factory: pytest.TempPathFactory, kernel_built: None) -> dict[str, str]:
    """A store shared by the tests of a session (images built once), with the shared kernel."""
    return isolated_home(tmp_path_factory.mktemp("kiln-home"), SHARED_HOME)


@pytest.fixture
def env(tmp_path: Path, kernel_built: None) -> dict[str, str]:
    """A fresh, empty store for one test, with the shared kernel."""
    return isolated_home(tmp_path / "kiln-home", SHARED_HOME)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on loopback, for the session (container images in and out)."""
    reg = Registry(tmp_path_factory.mktemp("container-registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def clone_snapshot(session_env: dict[str, str]) -> str:
    """clone-http built and snapshotted once (after = ready) in the session's store."""
    kiln("build", str(FIXTURES / "clone-http"), env=session_env, check=True)
    kiln("snapshot", "clone-http", env=session_env, check=True, timeout=600)
    return "clone-http"


@pytest.fixture(scope="session")
def sealed_image(session_env: dict[str, str]) -> str:
    kiln("build", str(FIXTURES / "sealed"), env=session_env, check=True)
    return "sealed"


@pytest.fixture(scope="session")
def hello_image(session_env: dict[str, str]) -> str:
    kiln("build", str(EXAMPLES / "hello-http"), env=session_env, check=True)
    return "hello-http"


@pytest.fixture
def instances() -> Iterator[list[Instance]]:
    """Instances started by a test; any still running at the end are stopped."""
    started: list[Instance] = []
    yield started
    for inst in started:
        interrupt(inst.proc, grace=20)
