"""How the static import scan classifies each import."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kiln.analyze.imports import Kind, parse, scan
from kiln.errors import AppError


def kinds(src: str, is_main: bool = False) -> dict[str, Kind]:
    tree = parse(textwrap.dedent(src).encode(), Path("m.py"))
    return {(r.module or ".") + ("" if not r.names else ":" + ",".join(r.names)): r.kind for r in scan(tree, is_main)}


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        pytest.param("import os", {"os": Kind.REQUIRED}, id="plain"),
        pytest.param("def f():\n    import json", {"json": Kind.REQUIRED}, id="in-function"),
        pytest.param(
            "try:\n    import ssl\nexcept ImportError:\n    ssl = None", {"ssl": Kind.OPTIONAL}, id="optional"
        ),
        pytest.param(
            "try:\n    import ujson as j\nexcept ImportError:\n    import json as j",
            {"ujson": Kind.PREFERRED, "json": Kind.FALLBACK},
            id="alternatives",
        ),
        pytest.param(
            "import sys\nif sys.platform == 'win32':\n    import winreg",
            {"sys": Kind.REQUIRED},
            id="platform-decided",
        ),
        pytest.param(
            "import sys\nif sys.platform in SUPPORTED:\n    import winreg",
            {"sys": Kind.REQUIRED, "winreg": Kind.CONDITIONAL},
            id="platform-undecided",
        ),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import email",
            {"typing:TYPE_CHECKING": Kind.REQUIRED},
            id="type-checking",
        ),
        pytest.param(
            "import importlib\nimportlib.import_module('plugins.fast')",
            {"importlib": Kind.REQUIRED, "plugins.fast": Kind.DYNAMIC},
            id="dynamic-literal",
        ),
        pytest.param("try:\n    import x\nexcept KeyError:\n    pass", {"x": Kind.REQUIRED}, id="other-exception"),
        pytest.param(
            "try:\n    from django.core.management import run\nexcept ImportError as exc:\n"
            "    raise ImportError('is Django installed?') from exc",
            {"django.core.management:run": Kind.REQUIRED},
            id="reraised",
        ),
        pytest.param("from . import sibling", {".:sibling": Kind.REQUIRED}, id="relative"),
    ],
)
def test_classification(src: str, expected: dict[str, Kind]) -> None:
    assert kinds(src) == expected


def test_main_guard_is_skipped_except_in_the_entry_point() -> None:
    src = "if __name__ == '__main__':\n    import doctest\n"
    assert kinds(src) == {}
    assert kinds(src, is_main=True) == {"doctest": Kind.REQUIRED}


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(AppError, match=r"^broken\.py:3: syntax error"):
        parse(b"x = 1\ny = 2\ndef f(:\n", Path("broken.py"))


def test_codecs_named_by_a_constant_are_imports() -> None:
    import ast

    from kiln.analyze.imports import codec_modules

    tree = ast.parse(
        's.encode("unicode_escape")\nopen(p, encoding="latin-1")\ncodecs.lookup("IDNA")\n'
        'b.decode(name)\nx.decode("utf8")\n'
    )
    assert codec_modules(tree) == [
        ("encodings.unicode_escape", 1), ("encodings.latin_1", 2), ("encodings.idna", 3), ("encodings.utf_8", 5),
    ]  # fmt: skip


def test_plugin_groups_a_module_loads_by_name() -> None:
    import ast

    from kiln.analyze.imports import entry_point_groups

    source = (
        "from importlib.metadata import entry_points\n"
        'pm.load_setuptools_entrypoints("datasette")\n'
        'for ep in entry_points(group="myapp.plugins"): ep.load()\n'
        'entry_points().select(group="other.hooks")\n'
        'pkg_resources.iter_entry_points("legacy.plugins")\n'
        'entry_points(group="console_scripts")\n'  # programs to launch, not plugins
        "entry_points(group=name)\n"  # not a literal
    )
    assert [g for g, _ in entry_point_groups(ast.parse(source))] == [
        "datasette", "myapp.plugins", "other.hooks", "legacy.plugins"]  # fmt: skip
