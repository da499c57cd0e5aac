"""Branches on the Python version and the platform are decided for the embedded interpreter."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from kiln.analyze.conditions import Facts
from kiln.analyze.imports import parse, scan

PY311_LINUX = Facts(version_info=(3, 11, 2), platform="linux", os_name="posix", system="Linux")
PY314_LINUX = Facts(version_info=(3, 14, 0), platform="linux", os_name="posix", system="Linux")
PY311_WIN = Facts(version_info=(3, 11, 2), platform="win32", os_name="nt", system="Windows")


def verdict(expr: str, facts: Facts = PY311_LINUX) -> bool | None:
    return facts.evaluate(ast.parse(expr, mode="eval").body)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param("sys.version_info >= (3, 10)", True, id="version-ge"),
        pytest.param("sys.version_info < (3, 10)", False, id="version-lt"),
        pytest.param("sys.version_info >= (3, 14)", False, id="version-future"),
        pytest.param("sys.version_info[:2] == (3, 11)", True, id="version-slice"),
        pytest.param("sys.version_info[0] == 2", False, id="version-index"),
        pytest.param("sys.version_info.major >= 3 and sys.version_info.minor >= 8", True, id="version-attrs"),
        pytest.param("sys.platform == 'win32'", False, id="platform-eq"),
        pytest.param("sys.platform.startswith('linux')", True, id="platform-startswith"),
        pytest.param("sys.platform in ('win32', 'cygwin')", False, id="platform-in"),
        pytest.param("os.name == 'nt'", False, id="os-name"),
        pytest.param("platform.system() == 'Darwin'", False, id="platform-system"),
        pytest.param("sys.implementation.name == 'pypy'", False, id="implementation"),
        pytest.param("not sys.platform == 'win32'", True, id="not"),
        pytest.param("sys.platform == 'win32' or sys.version_info < (3, 8)", False, id="or"),
        pytest.param("HAS_FOO and sys.platform == 'win32'", False, id="unknown-and-false"),
        pytest.param("HAS_FOO or sys.platform == 'linux'", True, id="unknown-or-true"),
        pytest.param("HAS_FOO and sys.platform == 'linux'", None, id="unknown-and-true"),
        pytest.param("sys.platform in SUPPORTED", None, id="unknown-name"),
        pytest.param("sys.version_info >= '3'", None, id="type-error"),
    ],
)
def test_evaluate(expr: str, expected: bool | None) -> None:
    assert verdict(expr) is expected


def test_other_interpreters_get_other_answers() -> None:
    assert verdict("sys.version_info >= (3, 14)", PY314_LINUX) is True
    assert verdict("sys.platform == 'win32'", PY311_WIN) is True
    assert verdict("os.name == 'nt'", PY311_WIN) is True


def modules(src: str, facts: Facts = PY311_LINUX) -> list[str]:
    tree = parse(textwrap.dedent(src).encode(), Path("m.py"))
    return [r.module for r in scan(tree, facts=facts)]


def test_only_the_branch_that_runs_is_scanned() -> None:
    src = """
        import sys
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        if sys.version_info >= (3, 14):
            import annotationlib
        if sys.platform == "win32":
            import msvcrt
        elif sys.platform == "darwin":
            import _scproxy
        else:
            import termios
    """
    assert modules(src) == ["sys", "tomllib", "termios"]
    assert modules(src, PY314_LINUX) == ["sys", "tomllib", "annotationlib", "termios"]
    assert modules(src, PY311_WIN) == ["sys", "tomllib", "msvcrt"]


def test_module_level_names_bound_to_a_known_test() -> None:
    src = """
        import sys
        WIN = sys.platform.startswith("win")
        PY2 = sys.version_info[0] == 2
        if WIN:
            import colorama
        if not PY2:
            import io
    """
    assert modules(src) == ["sys", "io"]
    assert modules(src, PY311_WIN) == ["sys", "colorama", "io"]


def test_a_literal_flag_is_not_trusted() -> None:
    # `HAS_X = True` in a try block says nothing about the interpreter: both branches stay.
    src = """
        try:
            import x
            HAS_X = True
        except ImportError:
            HAS_X = False
        if HAS_X:
            import y
    """
    assert modules(src) == ["x", "y"]
