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
    assert "packages = find:" in config and "include = ecgcode, ecgcode.*" in config


def test_the_root_holds_only_the_scripts():
    """At most the seven scripts and setup.py at the root; the library is one package."""
    root_files = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(root_files) <= 8, root_files
    folders = {p.parent for p in (ROOT / "ecgcode").rglob("*.py")}
    assert all((folder / "__init__.py").is_file() for folder in folders), folders


def test_the_package_never_imports_the_root_scripts():
    scripts = {p.stem for p in ROOT.glob("*.py")}
    pattern = re.compile(r"^\s*(?:import|from)\s+(\w+)", re.MULTILINE)
    for path in (ROOT / "ecgcode").rglob("*.py"):
        imported = set(pattern.findall(path.read_text())) & scripts
        assert not imported, f"{path.relative_to(ROOT)} imports {sorted(imported)}"
