"""A train.py run folder, and the model and thresholds a MODEL argument names.

Every script that reads or writes a run folder takes the file names from here:
``RUN_MODEL_NAMES`` (the best model), ``RUN_THRESHOLDS_NAME`` (per-class decision
thresholds). :func:`resolve_model` turns a MODEL argument (a model file or a run folder)
into a model file and its thresholds file; :func:`read_thresholds` reads a thresholds
file in any of the formats the project writes; :func:`choose_thresholds` applies
predict.py's rule. Free of TensorFlow.
"""

import json
import os
import zipfile

from ecgcode.classnames import is_paper_set
from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    PAPER_THRESHOLDS,
    ECGInputError,
)
from ecgcode.data.hdf5 import corrupt_hdf5_errors, open_hdf5

MODEL_EXTENSIONS = (".keras", ".h5", ".hdf5")
"""File extensions of a model file."""

RUN_MODEL_NAMES = ("model_best.keras", "model_best.h5")
"""Model files looked for, in this order, inside a train.py run folder."""

RUN_THRESHOLDS_NAME = "thresholds.json"
"""The run folder's per-class decision thresholds."""


def find_run_model(folder, fix="give a train.py run folder or a model file"):
    """The best model file of a train.py run folder; ECGInputError (ending with ``fix``) if none."""
    for name in RUN_MODEL_NAMES:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise ECGInputError(f"{folder}: folder has no {' or '.join(RUN_MODEL_NAMES)}; {fix}")



def model_file(path):
    """The model file named by ``path``: the file itself, or a run folder's best model."""
    path = os.fspath(path)
    return find_run_model(path) if os.path.isdir(path) else path


def resolve_model(path):
    """Find the model file and the thresholds file named by MODEL.

    Parameters
    ----------
    path : str
        A model file, or a train.py run folder.

    Returns
    -------
    model_path : str
    thresholds_path : str or None
        The run folder's ``thresholds.json`` when there is one.
    """
    if os.path.isdir(path):
        model_path = find_run_model(
            path, "give a train.py run folder or a model file as the last argument")
        thresholds_path = os.path.join(path, RUN_THRESHOLDS_NAME)
        return model_path, (thresholds_path if os.path.isfile(thresholds_path) else None)
    if not os.path.exists(path):
        raise ECGInputError(
            f"{path}: MODEL not found; the last argument must be a .keras/.h5 model file or a "
            "train.py run folder"
        )
    if os.path.splitext(path)[1].lower() not in MODEL_EXTENSIONS:
        raise ECGInputError(
            f"{path}: MODEL must be a .keras, .h5 or .hdf5 file or a run folder (the last "
            "argument is the model)"
        )
    refuse_tracings_as_model(path)
    return path, None


def refuse_tracings_as_model(path):
    """Refuse, before TensorFlow is imported, a MODEL file that cannot be a model.

    An unreadable file (truncated download, wrong file) and the usual mistake of giving
    tracing files only (the last one is then taken as MODEL) are explained here; the
    model loader reports the remaining problems.
    """
    if path.lower().endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ECGInputError(
                f"{path}: not a readable .keras model (a .keras file is a zip archive); the "
                "file is truncated or not a model: save or download it again"
            )
        return
    unreadable = ("not a readable HDF5 model file ({reason}); the file may be truncated: "
                  "download or save it again")
    with open_hdf5(path, unreadable) as handle, corrupt_hdf5_errors(path):
        is_model = "model_config" in handle.attrs or "layer_names" in handle.attrs
        looks_like_tracings = DEFAULT_DATASET_NAME in handle or "exam_id" in handle
    if looks_like_tracings and not is_model:
        raise ECGInputError(
            f"{path}: this is a tracings file, not a model; the MODEL (a .keras/.h5 model or "
            "a run folder) must be the last argument: predict.py TRACINGS... MODEL"
        )


def choose_thresholds(paper, path, run_thresholds_path, classes=CLASSES):
    """predict.py's thresholds: the paper's if ``paper``, else those of the file ``path``,
    else the run folder's (``run_thresholds_path``), else None."""
    if paper:
        if not is_paper_set(classes):
            raise ECGInputError(
                f"--paper-thresholds: the model's classes are {','.join(classes)}, not the "
                f"paper's {','.join(CLASSES)}; give --thresholds FILE.json for them"
            )
        return dict(PAPER_THRESHOLDS)
    if path:
        return read_thresholds(path, classes)
    if run_thresholds_path:
        return read_thresholds(run_thresholds_path, classes)
    return None



FALLBACK_THRESHOLD = 0.5
"""The threshold used for a class without one where every class must be decided."""


def fill_missing(thresholds, classes):
    """Thresholds for every one of ``classes``: FALLBACK_THRESHOLD where none is known.

    A null threshold (train.py's choice for a class without positive validation exams)
    means "no decision": predict.py leaves that class undecided. The demo and the
    benchmarks must decide every class; they fill the gaps here, all with one rule.

    Returns
    -------
    values : dict
        Class name -> float, for every name in ``classes``.
    filled : list of str
        The classes that got FALLBACK_THRESHOLD.
    """
    filled = [name for name in classes if thresholds.get(name) is None]
    values = {name: FALLBACK_THRESHOLD if name in filled else float(thresholds[name])
              for name in classes}
    return values, filled


def read_thresholds(path, classes=CLASSES):
    """Read per-class decision thresholds from a JSON file.

    Accepts ``{class: number}``, ``{class: {"threshold": number, ...}}``, or either under
    a top-level ``"classes"`` or ``"thresholds"`` key (train.py's ``thresholds.json`` is
    ``{"classes": {class: {"threshold": ...}}, ...}``). A ``null`` threshold (train.py's
    choice for a class without positive validation exams) is kept as None.

    Parameters
    ----------
    path : str
    classes : sequence of str
        The classes that need a threshold (the paper's six by default).

    Returns
    -------
    dict
        Class name -> float or None, for every name in ``classes``.

    Raises
    ------
    ECGInputError
        Missing or unreadable file, or a class without a numeric (or null) threshold.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except FileNotFoundError:
        raise ECGInputError(f"{path}: thresholds file not found; check the path") from None
    except (OSError, ValueError) as error:
        raise ECGInputError(f"{path}: cannot read thresholds JSON ({error})") from None
    for key in ("classes", "thresholds"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
    if not isinstance(content, dict):
        raise ECGInputError(f"{path}: thresholds must be a JSON object mapping class to number")
    thresholds = {}
    for name in classes:
        value = content.get(name, "missing")
        if isinstance(value, dict):
            value = value.get("threshold", "missing")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ECGInputError(
                f"{path}: no numeric threshold for class {name}; the file must give one for "
                f"each of {', '.join(classes)}"
            )
        thresholds[name] = None if value is None else float(value)
    return thresholds
