"""A train.py run folder: the name of every file in it.

Every module that reads or writes a run folder takes the names from here: the best
epoch's model (``BEST_MODEL`` + .keras/.h5, looked for as ``RUN_MODEL_NAMES``), the last
epoch's (``LAST_MODEL``), ``FINAL_MODEL_NAME``, ``RUN_THRESHOLDS_NAME`` (read and
written by ``ecgcode.model.thresholds``), ``CONFIG_NAME``, ``HISTORY_NAME``,
``TENSORBOARD_DIR`` and ``RESUME_DIR`` with its ``STATE_NAME`` and checkpoints
(:func:`checkpoint_name`). :func:`run_file` joins a folder and a name; :func:`write_json`
writes the run's JSON files. Which model file a MODEL argument (a model file or a run
folder) names is ``ecgcode.model.modelfiles.resolve_model``'s. Free of TensorFlow and Keras.
"""

import json
import math
import os

import numpy as np

from ecgcode.common import atomic_output

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
