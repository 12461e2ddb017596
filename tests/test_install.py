"""The installed distribution beside unrelated packages named ``datasets``, ``model``, ...

Issue 22 item 1: the wheel once put the root scripts (``train.py``, ``datasets.py``, ...)
into site-packages as top-level modules, so beside HuggingFace's ``datasets`` the console
script ``ecg-train`` crashed (``module 'datasets' has no attribute 'make_dataset'``). Here
the project is installed, non-editable, into a fresh venv that already holds stand-ins for
such packages, and its console scripts are run from a folder outside the checkout.

How the fresh venv is isolated (one venv for the whole module, ~1 s to build):

* ``python -m venv --without-pip``: instant, offline, and works where ``ensurepip`` is
  missing. pip, setuptools, TensorFlow, Keras, h5py, ... are not reinstalled: the venv
  sees the running interpreter's site-packages (``site.getsitepackages()``) through a
  "farm" of symbolic links, one per entry, listed in a ``.pth`` file of the venv.
* The farm leaves out everything of this project (``ecgcode``, ``ecg_code_keras-*`` and
  ``__editable__*`` files), every ``*.pth`` and every top-level module or package named
  like a root script. The editable install's finder (``__editable___*_finder.py``, started
  by a ``.pth``) is therefore absent, and so is its distribution metadata, so pip neither
  sees an installed ``ecg-code-keras`` nor tries to uninstall it. (A plain ``.pth`` line
  naming the real site-packages would not run its ``.pth`` files either, but it would
  expose the checkout's metadata and whatever a former install left there.)
* A ``.pth`` appends its paths after the venv's own site-packages, so the venv's stand-ins
  and its copy of ``ecgcode`` come first; ``PYTHONPATH`` is dropped from the environment
  and every command runs with the cwd in ``tmp_path``. The tests check that ``ecgcode``
  and ``datasets`` are imported from the venv's site-packages, that no editable finder is
  on ``sys.meta_path`` and that nothing on ``sys.path`` lies in the checkout.
* The stand-ins are written straight into the venv's site-packages (a package with an
  ``__init__.py`` and a small ``.dist-info``), as pip would leave them: instant, offline,
  no build backend needed. ``datasets`` has ``load_dataset`` and no ``make_dataset``, like
  HuggingFace's.
* The project is built from a copy of the checkout's files (``git ls-files``, or a plain
  copy without git), so a stale ``build/`` folder or the parallel edits of others do not
  reach the wheel, and the checkout gets no ``build/`` or ``*.egg-info`` of this test. It is
  installed with ``pip install --no-deps --no-build-isolation --no-index``, which builds
  with the setuptools seen through the farm: no network needed.
"""

import configparser
import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ("bench", "datasets", "demo", "generate_figures", "model", "predict", "train",
            "validate")
"""The programs: root scripts ``<name>.py`` and modules ``ecgcode.cli.<name>``."""
STAND_INS = ("datasets", "model", "train", "predict")
PROJECT_DIST = "ecg_code_keras"
CLASSES = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
TIMEOUT = 600
OURS = ("ecgcode", *PROGRAMS)
"""Top-level names the venv may only get from its own site-packages."""
METADATA = re.compile(r"(?P<name>.+?)(-\d[^-]*)?\.(dist-info|egg-info|egg-link)")
pytestmark = pytest.mark.slow  # a venv built and the project installed in it: about 30 s


# --- Building the venv ----------------------------------------------------------------
def child_env():
    """The environment of every command in the venv: no PYTHONPATH, quiet TensorFlow, no GPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="",
        PYTHONNOUSERSITE="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def run(argv, cwd, timeout=TIMEOUT):
    """Run a command with ``child_env()``; return the CompletedProcess (text, captured)."""
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def checked(result):
    """``result`` if its exit status is 0, else fail showing its command and output."""
    assert result.returncode == 0, (
        f"{' '.join(result.args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def make_venv(path):
    """Create a venv without pip at ``path``; return (python, site-packages); skip if impossible."""
    result = run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / "bin" / "python"
    if result.returncode != 0 or not python.exists():
        pytest.skip(f"cannot create a venv with {sys.executable}: {result.stderr.strip()}")
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = checked(run([python, "-c", code], cwd=path.parent)).stdout.strip()
    return python, Path(purelib)


def hidden(entry):
    """Whether a site-packages entry stays out of the venv's view (see the module docstring)."""
    metadata = METADATA.fullmatch(entry)
    name = re.sub(r"[-_.]+", "_", metadata["name"]).lower() if metadata else None
    return (
        entry.startswith("__editable__")
        or entry.endswith(".pth")
        or entry == "__pycache__"
        or entry.split(".")[0] in OURS
        or name in (PROJECT_DIST, *PROGRAMS)
    )


def link_farm(sources, farm):
    """Symlink each visible entry of each source folder into ``farm/<i>``; return the folders."""
    folders = []
    for i, source in enumerate(sources):
        folder = farm / str(i)
        folder.mkdir(parents=True)
        for entry in sorted(os.listdir(source)):
            if not hidden(entry):
                (folder / entry).symlink_to(Path(source) / entry)
        folders.append(folder)
    return folders


def expose_dependencies(purelib, farm):
    """Make the running interpreter's packages visible to the venv (a .pth of link farms)."""
    sources = [p for p in site.getsitepackages() if Path(p).is_dir()]
    try:
        folders = link_farm(sources, farm)
    except OSError as error:
        pytest.skip(f"cannot create symbolic links in {farm}: {error}")
    lines = "".join(f"{folder}\n" for folder in folders)
    (purelib / "_test_install_dependencies.pth").write_text(lines)


def write_stand_in(purelib, name):
    """Write a stand-in package ``name`` (as pip would install it) into ``purelib``."""
    package = purelib / name
    package.mkdir()
    body = f'"""Stand-in for an unrelated distribution named {name} (test_install.py)."""\n'
    body += "STAND_IN = True\n"
    if name == "datasets":
        body += "\n\ndef load_dataset(*args, **kwargs):\n    raise RuntimeError('stand-in')\n"
    (package / "__init__.py").write_text(body)
    info = purelib / f"{name}-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.0\n")
    (info / "INSTALLER").write_text("test_install\n")
    records = [
        f"{name}/__init__.py,,",
        *(f"{info.name}/{f},," for f in ("METADATA", "INSTALLER", "RECORD")),
    ]
    (info / "RECORD").write_text("\n".join(records) + "\n")


def project_files():
    """Relative paths of the checkout's files to build from (tracked and untracked, not ignored)."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        argv = [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        result = run(argv, cwd=ROOT)
        if result.returncode == 0:
            return [p for p in result.stdout.split("\0") if p and (ROOT / p).is_file()]
    skip = {".git", ".venv", "venv", "build", "dist", "runs", "__pycache__", ".pytest_cache"}
    return [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*")
        if p.is_file()
        and not skip.intersection(p.relative_to(ROOT).parts)
        and not any(part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)
    ]


def copy_project(dest):
    """Copy the checkout's files to ``dest``; return ``dest``."""
    for relative in project_files():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    return dest


def pip_install(python, source, cwd):
    """Install ``source`` into the venv of ``python``: no deps, no build isolation, offline."""
    argv = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    checked(run([*argv, "--no-index", source], cwd=cwd))


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with the stand-ins and the project installed (see the module docstring)."""
    base = tmp_path_factory.mktemp("install")
    python, purelib = make_venv(base / "venv")
    expose_dependencies(purelib, base / "farm")
    if run([python, "-c", "import pip, setuptools"], cwd=base).returncode != 0:
        pytest.skip(f"pip and setuptools are not importable from {site.getsitepackages()}")
    for name in STAND_INS:
        write_stand_in(purelib, name)
    pip_install(python, copy_project(base / "source"), cwd=base)
    work = base / "work"
    work.mkdir()
    return SimpleNamespace(python=python, bin=python.parent, purelib=purelib, work=work)


# --- What the install put where -------------------------------------------------------
def installed_record(purelib):
    """The paths of the project's RECORD (relative to site-packages)."""
    infos = sorted(purelib.glob(f"{PROJECT_DIST}-*.dist-info"))
    assert len(infos) == 1, f"expected one {PROJECT_DIST} dist-info in {purelib}: {infos}"
    lines = (infos[0] / "RECORD").read_text().splitlines()
    return [line.rsplit(",", 2)[0] for line in lines if line]


def test_install_puts_only_the_package_at_top_level(venv):
    """The wheel holds ``ecgcode`` (and console scripts) only: no root script modules."""
    tops = {Path(p).parts[0] for p in installed_record(venv.purelib)}
    tops = {t for t in tops if t != ".." and not t.endswith(".dist-info")}
    assert tops == {"ecgcode"}
    roots = {p.stem for p in ROOT.glob("*.py") if p.name != "setup.py"} | set(PROGRAMS)
    landed = sorted(n for n in roots if (venv.purelib / f"{n}.py").exists())
    assert landed == [], f"root scripts installed as top-level modules: {landed}"
    for name in STAND_INS:
        assert "STAND_IN = True" in (venv.purelib / name / "__init__.py").read_text()


IMPORTS = """
import json, sys, datasets, ecgcode, ecgcode.cli
print(json.dumps({
    "ecgcode": ecgcode.__file__,
    "datasets": datasets.__file__,
    "load_dataset": hasattr(datasets, "load_dataset"),
    "make_dataset": hasattr(datasets, "make_dataset"),
    "finders": [type(f).__module__ for f in sys.meta_path],
    "path": sys.path,
}))
"""


def test_venv_sees_the_project_only_through_its_install(venv):
    """``ecgcode`` and ``datasets`` come from the venv; nothing of the checkout is visible."""
    seen = json.loads(checked(run([venv.python, "-c", IMPORTS], cwd=venv.work)).stdout)
    assert Path(seen["ecgcode"]).is_relative_to(venv.purelib / "ecgcode")
    assert Path(seen["datasets"]) == venv.purelib / "datasets" / "__init__.py"
    assert seen["load_dataset"] and not seen["make_dataset"]
    assert not [f for f in seen["finders"] if "editable" in f], seen["finders"]
    leaks = [p for p in seen["path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    assert leaks == [], f"the checkout is on the venv's sys.path: {leaks}"


# --- The programs, run from the venv --------------------------------------------------
def console_scripts():
    """Names of the console scripts declared in setup.cfg."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].splitlines()
    return [line.split("=")[0].strip() for line in lines if "=" in line]


def all_succeed(commands, cwd):
    """Run the commands in parallel; fail listing those with an exit status other than 0."""
    procs = [
        subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=child_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for argv in commands
    ]
    failures = []
    for argv, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=TIMEOUT)
        if proc.returncode != 0 or "usage" not in (out + err).lower():
            failures.append(f"{' '.join(map(str, argv))} -> {proc.returncode}\n{out}\n{err}")
    assert failures == [], "\n".join(failures)


def test_every_console_script_and_cli_module_answers_help(venv):
    """``--help`` of each console script and of ``python -m ecgcode.cli.<name>`` exits 0
    (every module of ``ecgcode/cli/`` that defines ``cli()``; ``options.py`` is none)."""
    scripts = console_scripts()
    assert {"ecg-train", "ecg-predict", "ecg-datasets"} <= set(scripts)
    missing = [s for s in scripts if not (venv.bin / s).exists()]
    assert missing == [], f"console scripts not installed: {missing}"
    modules = sorted(p.stem for p in (venv.purelib / "ecgcode" / "cli").glob("[!_]*.py")
                     if re.search(r"^def cli\(", p.read_text(), re.MULTILINE))
    assert set(PROGRAMS) <= set(modules)
    commands = [[venv.bin / s, "--help"] for s in scripts]
    commands += [[venv.python, "-m", f"ecgcode.cli.{m}", "--help"] for m in modules]
    all_succeed(commands, venv.work)


def test_train_and_predict_beside_the_stand_ins(venv):
    """ecg-datasets synthetic, ecg-train (one step) and ecg-predict work from the venv."""
    work = venv.work
    checked(
        run([venv.bin / "ecg-datasets", "synthetic", "ecg.hdf5", "--n", "24", "--quiet"], cwd=work)
    )
    train = ["ecg.hdf5", "--out", "run", "--epochs", "1", "--steps-per-epoch", "1"]
    checked(
        run([venv.bin / "ecg-train", *train, "--batch-size", "8", "--val-split", "0.25"], cwd=work)
    )
    assert (work / "run" / "model_best.keras").exists()
    checked(run([venv.bin / "ecg-predict", "ecg.hdf5", "run", "--output-file", "p.csv"], cwd=work))
    table = pd.read_csv(work / "p.csv")
    assert len(table) == 24
    assert list(table.columns) == ["exam_id", *CLASSES, *(f"{c}_pred" for c in CLASSES)]
    assert table[CLASSES].apply(lambda c: c.between(0, 1)).all().all()


def test_generate_figures_reproduces_the_paper_from_the_installed_data(venv):
    """``ecg-generate-figures`` with no argument, in a folder of its own: the shipped CODE-test
    files are package data, so the install reproduces the published Table 2 (issue 29)."""
    from ecgcode.evaluation.metrics import published_table2

    folder = "ecgcode/evaluation/code_test/"
    shipped = {p for p in installed_record(venv.purelib) if p.startswith(folder)}
    assert {f"{folder}README.md", f"{folder}annotations/gold_standard.csv",
            f"{folder}dnn_predicts/other_seeds/model_10.npy"} <= shipped
    assert len(shipped) == 23
    work = venv.work / "paper"
    work.mkdir()
    checked(run([venv.bin / "ecg-generate-figures"], cwd=work))
    table = pd.read_csv(work / "outputs" / "tables" / "scores.csv", header=[0, 1], index_col=0)
    published = published_table2()
    assert (table[published.columns].round(3).to_numpy() == published.to_numpy()).all()
    assert (work / "outputs" / "figures" / "figure2_precision_recall.pdf").is_file()
