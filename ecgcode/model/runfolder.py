"""A train.py run folder: the name of every file in it, and the model a MODEL argument names.

Every module that reads or writes a run folder takes the names from here: the best
epoch's model (``BEST_MODEL`` + .keras/.h5, looked for as ``RUN_MODEL_NAMES``), the last
epoch's (``LAST_MODEL``), ``FINAL_MODEL_NAME``, ``RUN_THRESHOLDS_NAME`` (read and
written by ``ecgcode.model.thresholds``), ``CONFIG_NAME``, ``HISTORY_NAME``, ``TENSORBOARD_DIR`` and
``RESUME_DIR`` with its ``STATE_NAME`` and checkpoints (:func:`checkpoint_name`).
:func:`run_file` joins a folder and a name; :func:`write_json` writes the run's JSON
files. :func:`resolve_model` turns a MODEL argument (a model file or a run folder) into a
model file and its thresholds file. Free of TensorFlow and Keras.
"""

import json
import math
import os
import zipfile

import numpy as np

from ecgcode.common import DEFAULT_DATASET_NAME, ECGInputError, atomic_output
from ecgcode.data.hdf5 import corrupt_hdf5_errors, open_hdf5

MODEL_EXTENSIONS = (".keras", ".h5", ".hdf5")
"""File extensions of a model file."""

BEST_MODEL = "model_best"
"""Stem of the best epoch's model, saved as .keras and .h5."""

LAST_MODEL = "model_last"
"""Stem of the last completed epoch's (or the interruption's) model, .keras and .h5."""

FINAL_MODEL_NAME = "final_model.h5"
"""The best epoch's weights again, in the legacy HDF5 format, written when a run ends."""

RUN_MODEL_NAMES = (f"{BEST_MODEL}.keras", f"{BEST_MODEL}.h5")
"""Model files looked for, in this order, inside a train.py run folder."""

RUN_EXPORT_NAME = f"{BEST_MODEL}.onnx"
"""An ONNX export of the best model (``model.py export RUN RUN/model_best --formats onnx``);
predict.py runs it instead of the Keras model while it is an export of the current best model
(``ecgcode.inference.predictor``)."""

RUN_THRESHOLDS_NAME = "thresholds.json"
"""The run folder's per-class decision thresholds (``ecgcode.model.thresholds``)."""

CONFIG_NAME = "config.json"
"""Options, inputs, set-up and versions of the run."""

HISTORY_NAME = "history.csv"
"""One row per completed epoch."""

TENSORBOARD_DIR = "tensorboard"
"""TensorBoard logs (when TensorBoard is installed)."""

RESUME_DIR = "resume"
"""The resume state and the checkpoint it names."""

STATE_NAME = "state.json"
"""The resume state (the commit point of an epoch), inside ``RESUME_DIR``."""

CHECKPOINT_PREFIX = "epoch_"
"""Start of a checkpoint's name inside ``RESUME_DIR``: ``epoch_NNNN.keras``."""


def run_file(folder, *names):
    """The path of the file (or folder) ``names`` inside the run folder ``folder``."""
    return os.path.join(os.fspath(folder), *names)


def state_path(folder):
    """The path of the resume state file of a run folder."""
    return run_file(folder, RESUME_DIR, STATE_NAME)


def checkpoint_name(completed_epochs):
    """The file name, inside ``RESUME_DIR``, of the checkpoint after ``completed_epochs``."""
    return f"{CHECKPOINT_PREFIX}{int(completed_epochs):04d}.keras"


def json_safe(value):
    """JSON-safe copy of ``value``: numpy scalars and arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def write_json(path, data):
    """Write ``data`` as indented JSON to ``path`` atomically (NaN/inf become null)."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(json_safe(data), handle, indent=2, allow_nan=False)
        handle.write("\n")


def find_run_model(folder, fix="give a train.py run folder or a model file"):
    """The best model file of a train.py run folder; ECGInputError (ending with ``fix``) if none."""
    for name in RUN_MODEL_NAMES:
        candidate = run_file(folder, name)
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
        thresholds_path = run_file(path, RUN_THRESHOLDS_NAME)
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
