"""The import graph against the real target interpreter (Debian's python3.11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.analyze.python import analyze
from kiln.discover import load_app
from kiln.errors import AnalysisError, AppError
from kiln.interpreter import probe

PYTHON = "/usr/bin/python3.11"


def make_app(tmp_path: Path, files: dict[str, str], toml: str = "") -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "kiln.toml").write_text(f'entry = "app.py"\n{toml}')
    return tmp_path


def graph_of(path: Path):
    app = load_app(path)
    return analyze(app, probe(app.config.python))


def test_stdlib_only_app_stays_small(tmp_path: Path) -> None:
    g = graph_of(make_app(tmp_path, {"app.py": "import json, os\nprint(json.dumps(dict(os.environ)))\n"}))
    for heavy in ("tkinter", "unittest", "email", "asyncio", "ssl", "doctest"):
        assert heavy not in g.modules, f"{heavy} pulled in via {g.why(heavy)}"
    assert {"json", "json.decoder", "os", "encodings.utf_8"} <= set(g.modules)


def test_what_the_app_imports_is_kept(tmp_path: Path) -> None:
    g = graph_of(make_app(tmp_path, {"app.py": "import email.message\nimport unittest\n"}))
    assert {"email", "email.message", "unittest", "unittest.case"} <= set(g.modules)
    assert g.why("email.message")[0] == "__main__"


def test_the_app_is_kept_whole_less_its_ignore_files(tmp_path: Path) -> None:
    """Every module of the app's directory is kept, whatever imports it (a server's CLI names modules
    kiln never heard of), less what .dockerignore and .kilnignore exclude; a file nothing imports that
    cannot be compiled is left out with a note, and what it imports that is not installed is no error."""
    files = {
        "app.py": "import importlib, sys\nimportlib.import_module(sys.argv[1])\n",
        "plugins/__init__.py": "",
        "plugins/fast.py": "import csv\nimport not_installed_anywhere\n",
        "plugins/old.py": "print 'python 2'\n",
        "tests/test_app.py": "import pytest\n",
        "scratch/notes.py": "import tkinter\n",
        ".dockerignore": "tests\n**/__pycache__\n",
        ".kilnignore": "scratch/\n",
    }
    g = graph_of(make_app(tmp_path, files))
    assert {"plugins", "plugins.fast", "csv"} <= set(g.modules)
    assert g.modules["plugins.fast"].origin == "app"
    assert "not_installed_anywhere" in g.optional_left_out
    assert "plugins.old" not in g.modules and any("plugins/old.py" in n for n in g.notes)
    assert not {"tests", "tests.test_app", "scratch.notes", "tkinter"} & set(g.modules)


def test_a_stdlib_module_named_at_run_time_needs_include(tmp_path: Path) -> None:
    files = {"app.py": "import importlib, sys\nimportlib.import_module(sys.argv[1])\n"}
    assert "xml.dom.minidom" not in graph_of(make_app(tmp_path, files)).modules
    kept = graph_of(make_app(tmp_path, files, 'include = ["xml.dom.minidom"]\n'))
    assert {"xml.dom", "xml.dom.minidom"} <= set(kept.modules)


def test_names_held_in_constants_are_followed(tmp_path: Path) -> None:
    """datasette's `for plugin in DEFAULT_PLUGINS: importlib.import_module(plugin)`, and an f-string over
    a loop of names: each name the constant holds is kept when it exists."""
    files = {
        "app.py": (
            "import importlib\n"
            'DEFAULT = ("json.tool", "xml.dom.minidom", "no.such.module")\n'
            'CODECS: dict[str, str] = {"b64": "ignored"}\n'
            "for name in DEFAULT:\n"
            "    importlib.import_module(name)\n"
            "def load():\n"
            '    for kind in ("html.parser", "csv"):\n'
            "        __import__(kind)\n"
            '    for fmt in ["pulldom"]:\n'
            '        importlib.import_module(f"xml.dom.{fmt}")\n'
        ),
    }
    g = graph_of(make_app(tmp_path, files))
    assert {"json.tool", "xml.dom.minidom", "html.parser", "csv", "xml.dom.pulldom"} <= set(g.modules)
    assert "no.such.module" not in g.modules


def test_optional_import_left_out_unless_included(tmp_path: Path) -> None:
    files = {"app.py": "try:\n    import xml.dom.minidom\nexcept ImportError:\n    pass\n"}
    g = graph_of(make_app(tmp_path, files))
    assert "xml.dom.minidom" not in g.modules and "xml.dom.minidom" in g.optional_left_out
    kept = graph_of(make_app(tmp_path, files, 'include = ["xml.dom.minidom"]\n'))
    assert "xml.dom.minidom" in kept.modules


def test_relative_imports_in_app_package(tmp_path: Path) -> None:
    files = {
        "app.py": "from pkg import api\n",
        "pkg/__init__.py": "from .core import run\n",
        "pkg/core.py": "from . import util\nrun = 1\n",
        "pkg/util.py": "",
        "pkg/api.py": "from .. import x\n",
    }
    with pytest.raises(AnalysisError, match=r"from \.\. import x \(imported at .*pkg/api\.py:1\)"):
        graph_of(make_app(tmp_path, files))
    files["pkg/api.py"] = "from .util import *\n"
    g = graph_of(make_app(tmp_path, files))
    assert {"pkg", "pkg.core", "pkg.util", "pkg.api"} <= set(g.modules)


def test_every_unresolved_import_is_listed(tmp_path: Path) -> None:
    files = {
        "app.py": "import os\nimport no_such_module\nfrom helper import thing\n",
        "helper.py": "import also_missing\nthing = 1\n",
    }
    with pytest.raises(AnalysisError) as err:
        graph_of(make_app(tmp_path, files))
    msg = str(err.value)
    assert msg.startswith("2 imports cannot be resolved")
    assert "no_such_module (imported at" in msg and "app.py:2" in msg
    assert "also_missing (imported at" in msg and "helper.py:1" in msg


def test_syntax_error_in_app_module(tmp_path: Path) -> None:
    files = {"app.py": "import helper\n", "helper.py": "def broken(:\n"}
    with pytest.raises(AppError, match=r"helper\.py:1: syntax error"):
        graph_of(make_app(tmp_path, files))


def test_include_of_unknown_module_fails(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="include: module nope cannot be found"):
        graph_of(make_app(tmp_path, {"app.py": ""}, 'include = ["nope"]\n'))


def test_extension_modules_are_found(tmp_path: Path) -> None:
    g = graph_of(make_app(tmp_path, {"app.py": "import decimal\n"}))
    assert any(m.name == "_decimal" for m in g.extensions)
    assert probe(PYTHON).version.startswith("3.11")
