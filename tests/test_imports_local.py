"""Imports inside functions only where they defer TensorFlow, each saying so (issue 22).

A function-level import hides a module's dependencies from a reader of its top, so the
package allows one only to keep TensorFlow, Keras or JAX (or an optional extra such as
onnx, or a library that would slow the scripts' start measurably) out of the scripts' fast
paths: ``--help`` and the one-line input errors come before TensorFlow is paid for. Each
such import carries a comment on its line, or on the line just above, saying why.

Importing a cli module must itself import none of TensorFlow, Keras or JAX.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "ecgcode"
REASONS = ("TensorFlow", "Keras", "JAX", "optional extra", "deferred")
"""A local import's comment names one of these."""


def _comment(line):
    """The comment of a source line ('' when none; a '#' inside a string is not one)."""
    return line.split("#", 1)[1] if "#" in line else ""


def local_imports(package=PACKAGE):
    """(relative path, line number, source line) of every import inside a function."""
    found = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.append((path.relative_to(package.parent).as_posix(), node.lineno,
                                  lines[node.lineno - 1]))
    return sorted(set(found))


def unexplained(package=PACKAGE):
    """The local imports without a comment that gives a reason (``REASONS``)."""
    missing = []
    for relative, lineno, line in local_imports(package):
        lines = (package.parent / relative).read_text().splitlines()
        above = lines[lineno - 2] if lineno >= 2 else ""
        above = above if above.strip().startswith("#") else ""
        comments = _comment(line) + " " + _comment(above)
        if not any(reason in comments for reason in REASONS):
            missing.append(f"{relative}:{lineno}: {line.strip()}")
    return missing


def test_the_walk_finds_local_imports_and_their_comments(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        "import os\n\n\ndef f():\n    import keras  # deferred: imports TensorFlow\n"
        "    # optional extra: pip install .[export]\n    import onnx\n"
        "    import h5py\n    return os, keras, onnx, h5py\n")
    assert [lineno for _, lineno, _ in local_imports(package)] == [5, 7, 8]
    assert unexplained(package) == ["pkg/m.py:8: import h5py"]


def test_every_local_import_says_why():
    missing = unexplained()
    assert not missing, "local imports without a reason (move them to the top, or say why):\n" \
        + "\n".join(missing)


CLI_MODULES = sorted(f"ecgcode.cli.{path.stem}" for path in (PACKAGE / "cli").glob("*.py")
                     if path.stem != "__init__")


@pytest.mark.parametrize("module", CLI_MODULES)
def test_importing_a_cli_module_imports_no_tensorflow(module):
    code = (f"import sys, {module}\n"
            "print(sorted({'tensorflow', 'keras', 'jax'} & set(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing {module} imported {done.stdout.strip()}"
