"""The README's set-up commands stay true: CI runs exactly its test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(python3 -m venv .*?)\n```", (ROOT / "README.md").read_text())


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert all(command.startswith("python3 -m venv .venv && ") for command in commands)


def test_ci_runs_the_readme_test_command():
    test_command = _readme_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_every_root_module_is_packaged():
    config = (ROOT / "setup.cfg").read_text()
    listed = re.search(r"py_modules =\n((?:    \w+\n)+)", config).group(1).split()
    modules = sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "setup")
    assert sorted(listed) == modules
