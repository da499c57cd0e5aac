"""kiln.toml, [tool.kiln] and single-file apps."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.discover import load_app
from kiln.errors import AppError
from kiln.units import parse_memory


def test_single_file_defaults(tmp_path: Path) -> None:
    (tmp_path / "My App.py").write_text("print(1)\n")
    app = load_app(tmp_path / "My App.py")
    assert app.name == "my-app" and app.config.entry == "My App.py" and app.config.memory is None  # from the image


def test_kiln_toml(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    (tmp_path / "kiln.toml").write_text(
        'name = "svc"\nentry = "main.py"\nports = [80]\nmemory = "1G"\nargs = ["-v"]\n[env]\nA = "b"\n'
    )
    app = load_app(tmp_path)
    assert (app.name, app.config.ports, app.config.memory, app.config.args, app.config.env) == (
        "svc",
        (80,),
        1024,
        ("-v",),
        {"A": "b"},
    )


def test_pyproject_tool_kiln(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.kiln]\nports = [8000]\n')
    app = load_app(tmp_path)
    assert app.config.ports == (8000,) and app.name == tmp_path.name.lower().replace("_", "_")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param('colour = "red"\n', "colour: Extra inputs are not permitted", id="unknown-key"),
        pytest.param('memory = "lots"\n', "memory: Value error, memory must be a size", id="bad-memory"),
        pytest.param("ports = [70000]\n", "ports.0: Input should be less than or equal to 65535", id="bad-port"),
        pytest.param('entry = "missing.py"\n', "entry 'missing.py' does not exist", id="missing-entry"),
        pytest.param("name = [\n", "kiln.toml: ", id="bad-toml"),
        pytest.param('args = ["a\\nb"]\n', "args.0: Value error, must not contain a newline", id="newline-arg"),
        pytest.param('name = "Bad Name"\n', "name: Value error, must be lower-case", id="bad-name"),
        pytest.param('[seccomp]\nexec = { "bin/x" = "it runs it" }\n', "must be an absolute path", id="exec-relative"),
        pytest.param('[seccomp]\nexec = { "/bin/x" = " " }\n', "say why /bin/x is executed", id="exec-why"),
        pytest.param('[seccomp]\nexec = { "/bin/x" = "y" }\n', "a Python app's image holds none", id="exec-python"),
    ],
)
def test_config_errors(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "kiln.toml").write_text(toml)
    with pytest.raises(AppError, match=None) as err:
        load_app(tmp_path)
    assert message in str(err.value)


def test_missing_app(tmp_path: Path) -> None:
    with pytest.raises(AppError, match="no such app"):
        load_app(tmp_path / "nope")


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(AppError, match=r"no kiln\.toml"):
        load_app(tmp_path)


@pytest.mark.parametrize(("value", "mib"), [("64M", 64), ("1G", 1024), (48, 48), ("65536K", 64), ("128MiB", 128)])
def test_parse_memory(value: object, mib: int) -> None:
    assert parse_memory(value) == mib


@pytest.mark.parametrize("value", ["8M", "lots", True, "100T"])
def test_parse_memory_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_memory(value)
