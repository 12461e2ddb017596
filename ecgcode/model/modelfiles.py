"""Model files: which one a MODEL argument names, saving it, loading every format we know.

:func:`resolve_model` turns MODEL (a model file or a train.py run folder, whose best model
it finds) into a model file and its thresholds file, refusing before TensorFlow is imported
what cannot be a model. ``.keras`` (Keras 3) and legacy ``.h5`` files are written by
:func:`save_model`; :func:`load_model` reads them, full-model ``.h5``/``.hdf5`` files of
Keras 3, tf.keras 2.x and Keras 2.2.4 (the original study's published weights) and
weights-only ``.h5`` files, whose weights go into :func:`ecgcode.model.network.get_model`.
Importing this module imports no Keras: loading does.
"""

import contextlib
import json
import logging
import os
import zipfile

import numpy as np

from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    INPUT_SHAPE,
    N_CLASSES,
    ECGInputError,
    atomic_output,
    first_line,
)
from ecgcode.data.hdf5 import corrupt_hdf5_errors, open_hdf5
from ecgcode.model.legacy_h5 import rewrite_for_tf_keras2
from ecgcode.model.metadata import model_classes, output_names, write_model_info
from ecgcode.model.runfolder import RUN_MODEL_NAMES, RUN_THRESHOLDS_NAME, run_file

MODEL_EXTENSIONS = (".keras", ".h5", ".hdf5")
"""File extensions of a model file."""


# --- Which file MODEL names ---------------------------------------------------------
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



# --- Saving ------------------------------------------------------------------------
def save_model(model, stem, formats=(".keras", ".h5"), classes=None, provenance=None):
    """Save ``model`` as ``STEM.keras`` and as a legacy ``STEM.h5``, with its class names.

    The ``.h5`` copy loads with plain ``keras.models.load_model`` in any Keras 3
    process and with ``tf_keras.models.load_model`` (tf.keras 2.x), without importing
    this project (see :mod:`ecgcode.model.legacy_h5`). Each file is written to a temporary file
    and renamed, so an interrupted save never leaves a partial file. The class names and
    the provenance go inside each file (see ``ecgcode.model.metadata``).

    Parameters
    ----------
    model : keras.Model
    stem : str or os.PathLike
        Destination without extension (an extension ``.keras``/``.h5`` is stripped).
    formats : sequence of str
        Which of ``.keras`` and ``.h5`` to write.
    classes : sequence of str, optional
        Names of the outputs; default the paper's six for 6 outputs, else ``class_0..``.
    provenance : dict, optional
        What the model was trained on (``ecgcode.model.provenance.training_provenance``).

    Returns
    -------
    tuple of str
        The paths written, in the order of ``formats``.
    """
    stem = os.fspath(stem)
    if os.path.splitext(stem)[1] in (".keras", ".h5", ".hdf5"):
        stem = os.path.splitext(stem)[0]
    paths = tuple(stem + suffix for suffix in formats)
    classes = output_names(int(model.outputs[0].shape[-1]), classes)
    for path in paths:
        with atomic_output(path) as tmp, _keeping_compile_config(model):
            model.save(tmp)
            if path.endswith(".h5"):
                rewrite_for_tf_keras2(tmp)
            write_model_info(tmp, classes, provenance)
    return paths


@contextlib.contextmanager
def _keeping_compile_config(model):
    """Undo a side effect of Keras 3's legacy .h5 save, and silence its "legacy" warning.

    Saving ``.h5`` drops the optimizer from the model's compile config, so a later
    ``.keras`` save of the same model would silently lose the optimizer state.
    """
    compile_config = getattr(model, "_compile_config", None)
    saved = dict(compile_config.config) if compile_config is not None else None
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if saved is not None:
            compile_config.config = saved


# --- Loading -----------------------------------------------------------------------
def load_model(path, n_classes=N_CLASSES, compile=False):
    """Load a model from any file format the project knows, and check its shapes.

    Accepted: ``.keras`` files (Keras 3, loaded in safe mode); full-model ``.h5``/
    ``.hdf5`` files saved by Keras 3, by tf.keras 2.x or by Keras 2.2.4 (the original
    study's published weights); weights-only ``.h5`` files (their weights go into
    :func:`get_model`, matched by layer name, else by layer order).

    Parameters
    ----------
    path : str or os.PathLike
    n_classes : int or None
        Expected number of outputs; None skips the check.
    compile : bool
        Restore the training configuration too (``.keras`` and Keras 3 ``.h5`` only).

    Returns
    -------
    keras.Model

    Raises
    ------
    ECGInputError
        Missing, truncated or unrecognised file, or a model of another shape.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ECGInputError(f"{path}: model file not found; give the path of a .keras or .h5 model")
    if path.endswith(".keras"):
        model = _load_keras_file(path, compile)
    else:
        model = _load_h5_file(path, n_classes, compile)
    _check_shapes(model, path, n_classes)
    return model


def load_model_and_classes(path, classes=None):
    """Load a model with any number of outputs, and name its outputs.

    Parameters
    ----------
    path : str or os.PathLike
        A model file (see :func:`load_model`).
    classes : sequence of str, optional
        Names given by the user (``--classes``); else the names stored in the file, else
        the defaults (see ``ecgcode.model.metadata.model_classes``).

    Returns
    -------
    model : keras.Model
    classes : tuple of str
        One name per output.
    warning : str or None
        Set when the names were guessed; the caller prints it.
    """
    model = load_model(path, n_classes=None)
    names, warning = model_classes(os.fspath(path), int(model.outputs[0].shape[-1]), classes)
    return model, names, warning


def _load_keras_file(path, compile):
    import keras  # deferred: imports TensorFlow

    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a damaged zip
        raise ECGInputError(
            f"{path}: cannot load this .keras file ({first_line(error, 200)}); "
            "is it complete? save it again or use its .h5 copy"
        ) from None


def _open_h5(path):
    return open_hdf5(path, unreadable="not a readable HDF5 file ({reason}); the file may be "
                     "truncated: download or save it again")


def _load_h5_file(path, n_classes, compile):
    with _open_h5(path) as f:
        model_config = f.attrs.get("model_config")
        keras_version = _as_str(f.attrs.get("keras_version", ""))
        weights_only = model_config is None and "layer_names" in f.attrs
        if model_config is None and not weights_only:
            raise ECGInputError(
                f"{path}: this HDF5 file holds no Keras model or weights "
                f"(top-level keys: {', '.join(list(f)[:6]) or 'none'}); "
                "is it a tracings file given in place of the model?"
            )
        if model_config is not None:
            _check_config_shapes(json.loads(_as_str(model_config)), path, n_classes)
    if weights_only:
        return _model_from_weights(path, n_classes, saved_by=keras_version or "unknown Keras")
    import keras  # deferred: imports TensorFlow

    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as error:  # noqa: BLE001 - any failure to rebuild the configuration
        if not keras_version.startswith("2."):
            raise ECGInputError(
                f"{path}: cannot load this .h5 model ({first_line(error, 200)}); "
                "save it again with model.save_model()"
            ) from None
    # Keras 2.x configurations (e.g. 2.2.4's initializers) that Keras 3 cannot rebuild:
    # the architecture is the paper's, so rebuild it and load the weights into it.
    return _model_from_weights(path, n_classes, saved_by=f"Keras {keras_version}")


def _check_config_shapes(config, path, n_classes):
    """Refuse a saved model of another input shape or class count before building it."""
    layers = config.get("config", {}).get("layers", [])
    for layer in layers:
        if layer.get("class_name") == "InputLayer":
            layer_config = layer.get("config", {})
            shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
            if shape is not None and tuple(shape[1:]) != INPUT_SHAPE:
                raise ECGInputError(
                    f"{path}: model input shape is {tuple(shape[1:])}, expected {INPUT_SHAPE} "
                    "(4096 samples x 12 leads); this is not a model for this project's ECGs"
                )
    dense = [layer for layer in layers if layer.get("class_name") == "Dense"]
    if n_classes is not None and dense and dense[-1]["config"].get("units") != n_classes:
        raise ECGInputError(
            f"{path}: model has {dense[-1]['config'].get('units')} outputs, expected "
            f"{n_classes} ({', '.join(CLASSES)})"
        )


def _check_shapes(model, path, n_classes):
    input_shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    if input_shape != INPUT_SHAPE:
        found = [tuple(t.shape[1:]) for t in model.inputs]
        raise ECGInputError(
            f"{path}: model inputs are {found}, expected one input of shape {INPUT_SHAPE}"
        )
    outputs = model.outputs[0].shape[-1] if len(model.outputs) == 1 else None
    if n_classes is not None and outputs != n_classes:
        raise ECGInputError(
            f"{path}: model has {outputs} outputs, expected {n_classes} ({', '.join(CLASSES)})"
        )


def _saved_layer_weights(group):
    """[(layer name, [arrays])] of the layers with weights, in the file's order."""
    layers = []
    for name in (_as_str(n) for n in group.attrs["layer_names"]):
        layer_group = group[name]
        weight_names = [_as_str(n) for n in layer_group.attrs.get("weight_names", [])]
        if weight_names:
            layers.append((name, [np.asarray(layer_group[w]) for w in weight_names]))
    return layers


def _model_from_weights(path, n_classes, saved_by):
    """Build :func:`get_model` and fill it with the weights stored in an HDF5 file."""
    with _open_h5(path) as f:
        group = f.get("model_weights", f)
        if "layer_names" not in group.attrs:
            raise ECGInputError(f"{path}: the file has a model but no weights; save it again")
        saved = _saved_layer_weights(group)
    from ecgcode.model.network import get_model  # deferred: imports Keras

    model = get_model(n_classes or N_CLASSES)
    layers = [layer for layer in model.layers if layer.weights]
    if len(saved) != len(layers):
        raise ECGInputError(
            f"{path}: {len(saved)} layers with weights (saved by {saved_by}), but the paper's "
            f"model has {len(layers)}; this file holds another architecture"
        )
    by_name = {layer.name: layer for layer in layers}
    if set(by_name) == {name for name, _ in saved}:
        layers = [by_name[name] for name, _ in saved]  # match by name, else by order
    for layer, (saved_name, values) in zip(layers, saved):
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != [v.shape for v in values]:
            raise ECGInputError(
                f"{path}: weights of layer {saved_name} have shapes "
                f"{[v.shape for v in values]}, expected {expected}; "
                "this file holds another architecture"
            )
        layer.set_weights(values)
    return model


def _as_str(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
