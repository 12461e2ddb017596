"""The README's set-up commands stay true (CI runs exactly its test command), and the
packaging it describes: only the package is installed, the scripts are console scripts."""

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_each_root_script_says_first_where_its_code_lives():
    for path in sorted(ROOT.glob("*.py")):
        if path.name == "setup.py":
            continue
        first_line = path.read_text().splitlines()[0]
        assert "``ecgcode/" in first_line, f"{path.name}: its first line names no module " \
            f"of ecgcode/: {first_line}"


@pytest.mark.slow
def test_the_original_api_works_from_a_checkout():
    """``from model import get_model`` and ``from datasets import make_dataset, ...`` as in
    the original repository; importing ``model`` alone does not import Keras."""
    code = (
        "import sys\n"
        "import model\n"
        "print(sorted({'keras', 'tensorflow'} & set(sys.modules)))\n"
        "from datasets import load_labels, make_dataset, open_collection\n"
        "import ecgcode.data as data\n"
        "assert (make_dataset, open_collection, load_labels) == "
        "(data.make_dataset, data.open_collection, data.load_labels)\n"
        "from model import get_model\n"
        "import ecgcode.model.network\n"
        "assert get_model is ecgcode.model.network.get_model\n"
        "try:\n"
        "    from model import no_such_name\n"
        "except ImportError:\n"
        "    print('ImportError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "ImportError"]


def test_the_fast_subset_is_registered_and_documented():
    """``pytest -m "not slow"`` is the developer's loop; the full suite stays the README's."""
    markers = _setup_cfg().get("tool:pytest", "markers")
    assert re.search(r"^slow:", markers.strip(), re.MULTILINE), markers
    readme = (ROOT / "README.md").read_text()
    assert '-m pytest -q -m "not slow"' in readme
    assert _readme_commands()[1].endswith("-m pytest -q")  # the whole suite
