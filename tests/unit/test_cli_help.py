"""`kiln --help` lists every command from one-liners kept in kiln/cli/main.py (so that it imports no
command); they must say what each command's own help says."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.cli.main import COMMANDS


def test_one_liners_match_the_commands() -> None:
    for verb, (target, summary) in COMMANDS.items():
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert summary == command.get_short_help_str(limit=60), verb


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys; sys.argv = ['kiln', '--help']\n"
        "from kiln.cli.main import cli\n"
        "try:\n    cli(prog_name='kiln')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('kiln.cli.') and m[9:] not in ('main', 'ui')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(f"  {verb} " in out for verb in COMMANDS), out
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["ps"], ["ps", "-a", "--json"]])
def test_quick_commands_import_neither_pydantic_nor_rich(argv: list[str], tmp_path: Path) -> None:
    """`kiln --help` and `kiln ps` start in ~50-65 ms: pydantic and rich (~40 and ~30 ms of imports) stay out."""
    code = (
        f"import sys; sys.argv = ['kiln', *{argv!r}]\n"
        "from kiln.cli.main import cli\n"
        "try:\n    cli(prog_name='kiln')\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'rich', 'oras'}))"
    )
    env = {"KILN_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_target_names_are_the_targets() -> None:
    from kiln.targets import NAMES, target

    assert [target(name).name for name in NAMES] == list(NAMES)


def test_columns_align_without_rich(capsys: pytest.CaptureFixture[str]) -> None:
    from kiln.cli.ui import columns

    columns(("NAME", "SIZE"), [["a", "1.0 KiB"], ["longer", "12 B"]], right=("SIZE",))
    assert capsys.readouterr().out.splitlines() == ["NAME       SIZE", "a       1.0 KiB", "longer     12 B"]
