"""The manual stays whole: the mkdocs site builds strictly, the README stays a short quick
start whose links resolve, and the commands and imports the pages show name real things."""

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_LIMIT_BYTES = 15_000
SCRIPTS = ("train", "predict", "validate", "generate_figures", "datasets", "model", "demo",
           "bench")


def _pages():
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def _manual():
    """README.md and every page of docs/, as (name, text)."""
    return [("README.md", (ROOT / "README.md").read_text())] + [
        (f"docs/{page}", (DOCS / page).read_text()) for page in _pages()
    ]


def _fenced(text, language):
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _commands(block):
    """The shell commands of a bash block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        line = re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", line)  # KERAS_BACKEND=jax python ...
        if line:
            commands.append(line)
    return commands


def _nav_pages(nav):
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for item in nav for page in _nav_pages(item)]


def test_the_site_builds_strictly_with_every_page_in_the_nav(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[test]' brings it)")
    import yaml  # a dependency of mkdocs

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config.get("site_name")
    assert sorted(_nav_pages(config["nav"])) == _pages()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").is_file()


def test_the_readme_is_a_short_quick_start():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_LIMIT_BYTES, f"README.md is {size:,} bytes; move detail into docs/"


def test_the_readme_links_to_existing_pages():
    links = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:", link)]
    to_docs = [link for link in local if link.startswith("docs/")]
    assert to_docs, "README.md links to no page of docs/"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    assert all(link.endswith(".md") for link in to_docs if link != "docs/"), to_docs


def test_every_script_shown_exists():
    """``python NAME.py`` names one of the eight programs, each in ``ecgcode/cli/``;
    ``python -m MODULE`` names a module of the package."""
    for name, text in _manual():
        for block in _fenced(text, "bash"):
            for command in _commands(block):
                script = re.match(r"python (\w+)\.py\b", command)
                if script:
                    assert script.group(1) in SCRIPTS, f"{name}: {command}"
                    assert (ROOT / "ecgcode" / "cli" / f"{script.group(1)}.py").is_file()
                module = re.match(r"python -m (ecgcode[\w.]*)", command)
                if module:
                    assert importlib.util.find_spec(module.group(1)), f"{name}: {command}"


def test_every_option_shown_is_defined():
    """Each ``--option`` of a command shown for one of the project's programs is defined
    somewhere in the package (``--no-X`` by its ``--X``)."""
    source = "\n".join(p.read_text() for p in (ROOT / "ecgcode").rglob("*.py"))
    program = re.compile(r"^(?:python (?:\w+\.py|-m ecgcode[\w.]*)|ecg-[\w-]+)(?:\s|$)")
    unknown = []
    for name, text in _manual():
        for block in _fenced(text, "bash"):
            for command in _commands(block):
                if not program.match(command):
                    continue
                for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", command):
                    spellings = {option, re.sub(r"^--no-", "--", option)}
                    if not any(f'"{spelling}"' in source for spelling in spellings):
                        unknown.append(f"{name}: {option} in {command}")
    assert not unknown, "\n".join(unknown)


def test_every_project_import_shown_resolves():
    """``from ecgcode... import names`` in the pages' Python examples import what they name."""
    pattern = re.compile(r"^from (ecgcode[\w.]*) import ([\w, ]+)$", re.MULTILINE)
    found = 0
    for name, text in _manual():
        for block in _fenced(text, "python"):
            for module_name, names in pattern.findall(block):
                module = importlib.import_module(module_name)
                for attribute in (n.strip() for n in names.split(",")):
                    found += 1
                    assert hasattr(module, attribute), f"{name}: {module_name}.{attribute}"
    assert found, "no ecgcode import in any example"


def _architecture_tree():
    """The package files the layout block of docs/ARCHITECTURE.md lists, as paths."""
    text = (DOCS / "ARCHITECTURE.md").read_text()
    block = next(b for b in _fenced(text, "") if "\necgcode/\n" in f"\n{b}")
    listed, folders, inside = set(), [], False
    for line in block.splitlines():
        name = line.split()[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        if line == "ecgcode/":
            inside, folders = True, ["ecgcode"]
            continue
        if not inside or depth == 0:
            inside = inside and depth > 0
            continue
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        elif name.endswith(".py"):
            listed.add("/".join(folders + [name]))
    return listed


def test_the_architecture_page_lists_every_module():
    actual = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "ecgcode").rglob("*.py")
        if p.name != "__init__.py" or p.parent == ROOT / "ecgcode"  # the root's is listed
    }
    listed = _architecture_tree()
    assert sorted(actual - listed) == [], "modules missing from docs/ARCHITECTURE.md's layout"
    assert sorted(listed - actual) == [], "docs/ARCHITECTURE.md lists modules that do not exist"
