"""The README's set-up commands stay true (CI runs exactly its test command), and the
packaging it describes: only the package is installed, the scripts are console scripts."""

import configparser
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


def _setup_cfg():
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return config


def test_no_root_module_is_installed():
    """The root scripts are not installed as top-level modules (``datasets``, ``model``,
    ``train`` would clash with other distributions); the package alone is."""
    config = _setup_cfg()
    assert not config.has_option("options", "py_modules"), config.get("options", "py_modules")
    assert config.get("options", "packages").strip() == "find:"
    assert config.get("options.packages.find", "include").strip() == "ecgcode, ecgcode.*"


def test_every_console_script_points_into_the_package():
    entries = _setup_cfg().get("options.entry_points", "console_scripts").strip().splitlines()
    assert entries
    for entry in entries:
        name, _, target = (part.strip() for part in entry.partition("="))
        module, _, function = target.partition(":")
        assert module.startswith("ecgcode.") and function, f"{name} = {target}"
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name}: {path.relative_to(ROOT)} does not exist"
        assert re.search(rf"^def {function}\(", path.read_text(), re.MULTILINE), (
            f"{name}: {module} defines no {function}()"
        )


def test_the_root_holds_only_the_scripts():
    """At most the eight scripts and setup.py at the root; the library is one package."""
    root_files = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(root_files) <= 9, root_files
    folders = {p.parent for p in (ROOT / "ecgcode").rglob("*.py")}
    assert all((folder / "__init__.py").is_file() for folder in folders), folders


def test_the_package_never_imports_the_root_scripts():
    scripts = {p.stem for p in ROOT.glob("*.py")}
    pattern = re.compile(r"^\s*(?:import|from)\s+(\w+)", re.MULTILINE)
    for path in (ROOT / "ecgcode").rglob("*.py"):
        imported = set(pattern.findall(path.read_text())) & scripts
        assert not imported, f"{path.relative_to(ROOT)} imports {sorted(imported)}"
