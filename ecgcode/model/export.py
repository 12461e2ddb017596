"""Export a trained model for serving: ONNX, TFLite (LiteRT) and TensorFlow SavedModel.

Every export takes float32 ``signal`` (batch, 4096, 12) at the model's amplitude scale
(``units_per_mv`` in its metadata) and returns
``probabilities`` (batch, n_classes), and carries the same metadata (class names, leads,
sampling rate, units and the source model's provenance; see :func:`export_metadata`),
readable with :func:`ecgcode.model.runtimes.read_metadata`.

The conversions are the maintained ones: Keras' ``ExportArchive`` writes the SavedModel,
``model.export(format="onnx")`` (tf2onnx underneath) the ONNX file and TensorFlow's
``tf.lite.TFLiteConverter`` the flat buffer (from that SavedModel). Running them back is
:mod:`ecgcode.model.runtimes`'s job.
"""

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings

import numpy as np

from ecgcode.common import (
    INPUT_SHAPE,
    LEADS,
    SAMPLING_RATE,
    UNITS_PER_MV,
    ECGInputError,
    atomic_output,
)
from ecgcode.data.scale import SCALE_ATTRIBUTE, units_text
from ecgcode.data.synthetic.generate import generate
from ecgcode.model.metadata import output_names
from ecgcode.model.precision import with_policy
from ecgcode.model.runfolder import json_safe
from ecgcode.model.runtimes import (
    INPUT_NAME,
    METADATA_COLLECTION,
    OUTPUT_NAME,
    SIGNATURE,
    predict_export,
)

FORMATS = ("onnx", "tflite", "saved_model")
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "saved_model": ""}
"""File name suffix of each export: ``OUT.onnx``, ``OUT.tflite`` and the folder ``OUT``."""


# --- What every export carries -----------------------------------------------------
def class_names(model, classes=None):
    """The class names of ``model``'s outputs (``ecgcode.model.metadata.output_names``).

    Parameters
    ----------
    model : keras.Model
    classes : sequence of str, optional
        Names to use; by default the paper's ``CLASSES`` for a six-output model, else
        ``class_0``, ``class_1``, ...

    Returns
    -------
    tuple of str
    """
    return output_names(int(model.outputs[0].shape[-1]), classes)


def export_metadata(classes, thresholds=None, provenance=None, source=None,
                    units_per_mv=UNITS_PER_MV):
    """The string metadata written into every export.

    Parameters
    ----------
    classes : sequence of str
        One name per output, in output order.
    thresholds : dict, optional
        The run's decision thresholds (class -> float or None), stored as the JSON object
        ``thresholds`` so that predict.py decides with them (``ecgcode.inference.predictor``).
    provenance : dict, optional
        The source model's provenance (``ecgcode.model.provenance.model_provenance``), stored as
        the JSON string ``provenance``; absent when the model holds none.
    source : dict, optional
        The model file exported, ``{"file": name, "sha256": hex}`` (``ecgcode.model.provenance.
        export_source``), stored as the JSON string ``source_model``: predict.py uses an
        export next to that file only while the file is unchanged (``ecgcode.inference.predictor``).
    units_per_mv : float
        The amplitude scale the model expects (``ecgcode.data.scale``), stored as
        ``units_per_mv``; predict.py brings every input to it.

    Returns
    -------
    dict of str to str
        ``classes`` and ``leads`` are JSON lists, ``provenance`` a JSON object; the other
        values are plain text.
    """
    metadata = {
        "classes": json.dumps(list(classes)),
        "leads": json.dumps(list(LEADS)),
        "sampling_rate_hz": str(SAMPLING_RATE),
        "input": f"{INPUT_NAME}: float32 (batch, {INPUT_SHAPE[0]}, {INPUT_SHAPE[1]}), "
        f"{units_text(units_per_mv)}",
        SCALE_ATTRIBUTE: f"{float(units_per_mv):g}",
        "output": f"{OUTPUT_NAME}: float32 (batch, {len(classes)}), one sigmoid probability "
        "per class, in the order of classes",
        "producer": "ecg-code-keras (Ribeiro et al. 2020, Nat Commun 11:1760)",
    }
    if thresholds is not None:
        metadata["thresholds"] = json.dumps({name: thresholds[name] for name in classes})
    if provenance is not None:
        metadata["provenance"] = json.dumps(provenance)
    if source is not None:
        metadata["source_model"] = json.dumps(source)
    return metadata


def export_paths(out, formats=FORMATS):
    """``{format: path}`` of the files :func:`export_model` writes for ``out``."""
    stem = os.fspath(out)
    for suffix in (".onnx", ".tflite"):
        stem = stem.removesuffix(suffix)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ECGInputError(
            f"unknown export format {', '.join(unknown)}; choose from {', '.join(FORMATS)}"
        )
    return {name: stem + SUFFIXES[name] for name in formats}


# --- Exporting ---------------------------------------------------------------------
def export_model(model, out, formats=FORMATS, classes=None, thresholds=None, provenance=None,
                 source=None, units_per_mv=UNITS_PER_MV):
    """Export ``model`` as ``OUT.onnx``, ``OUT.tflite`` and the SavedModel folder ``OUT``.

    Each file is written to a temporary name and renamed, so an interrupted export leaves
    no partial file; an existing SavedModel folder ``OUT`` is replaced.

    Parameters
    ----------
    model : keras.Model
        Maps (batch, 4096, 12) to (batch, n_classes); a mixed-precision model is exported
        in float32.
    out : str or os.PathLike
        Destination stem (a ``.onnx``/``.tflite`` suffix is stripped).
    formats : sequence of str
        A subset of ``("onnx", "tflite", "saved_model")``.
    classes : sequence of str, optional
        Output names for the metadata (see :func:`class_names`).
    thresholds : dict, optional
        Decision thresholds for the metadata (see :func:`export_metadata`).
    provenance : dict, optional
        What the model was trained on, copied into the metadata (:func:`export_metadata`).
    source : dict, optional
        The model file exported (:func:`export_metadata`).
    units_per_mv : float
        The amplitude scale the model expects (:func:`export_metadata`).

    Returns
    -------
    dict of str to str
        Format -> path written.
    """
    import keras  # deferred: imports TensorFlow

    if keras.backend.backend() != "tensorflow":
        raise ECGInputError(
            f"export runs on the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()}); "
            "run it with KERAS_BACKEND=tensorflow"
        )
    paths = export_paths(out, formats)
    if "saved_model" in paths:
        _check_replaceable(paths["saved_model"])  # before the minutes of work
    classes = class_names(model, classes)
    model = float32_model(model)
    metadata = export_metadata(classes, thresholds, provenance, source, units_per_mv)
    if "saved_model" in paths:
        export_saved_model(model, paths["saved_model"], metadata)
    if "onnx" in paths:
        export_onnx(model, paths["onnx"], metadata)
    if "tflite" in paths:
        if "saved_model" in paths:
            export_tflite(paths["saved_model"], paths["tflite"], metadata)
        else:
            with tempfile.TemporaryDirectory() as scratch:
                saved_model = os.path.join(scratch, "saved_model")
                export_saved_model(model, saved_model, metadata)
                export_tflite(saved_model, paths["tflite"], metadata)
    return paths


def float32_model(model):
    """``model`` itself when it computes in float32, else a float32 copy with its weights."""
    return with_policy(model, "float32")


def export_saved_model(model, path, metadata):
    """Write a SavedModel with a ``serving_default`` signature for TF Serving.

    The signature maps ``signal`` (batch, 4096, 12) to ``probabilities``; the reloaded
    object's ``metadata`` collection holds the JSON of ``metadata``.
    """
    import keras  # deferred: imports TensorFlow
    import tensorflow as tf  # deferred: imports TensorFlow

    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoint's trace already captures every weight, and
    # tracking the model too stores each weight twice (keras-team/keras#23553).
    archive.add_endpoint(
        SIGNATURE,
        lambda signal: {OUTPUT_NAME: model(signal, training=False)},  # (batch, n_classes)
        input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name=INPUT_NAME)],
    )
    archive.add_variable_collection(
        METADATA_COLLECTION,
        [tf.Variable(json.dumps(metadata), trainable=False, name=METADATA_COLLECTION)],
    )
    with _atomic_directory(path) as tmp, _quiet():
        archive.write_out(tmp, verbose=False)


def export_onnx(model, path, metadata):
    """Write an ONNX model: input ``signal`` (batch, 4096, 12), output ``probabilities``."""
    import onnx  # optional extra: pip install .[export]

    with tempfile.TemporaryDirectory() as scratch, _quiet():
        model(np.zeros((1, *INPUT_SHAPE), np.float32))  # Keras exports only called models
        raw = os.path.join(scratch, "model.onnx")
        model.export(raw, format="onnx", verbose=False)
        proto = onnx.load(raw)
    _name_onnx_interface(proto.graph)
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = metadata["producer"]
    onnx.checker.check_model(proto)
    with atomic_output(path) as tmp:
        onnx.save(proto, tmp)


def update_onnx_metadata(path, entries):
    """Set metadata entries of an ONNX export in place (atomically); the graph is unchanged.

    Parameters
    ----------
    path : str
        An ``.onnx`` export.
    entries : dict
        Key -> JSON-serialisable value, stored as JSON text (None removes the key). This
        is how validate.py's ``--write-thresholds`` stores ``thresholds`` (read by
        ``ecgcode.inference.predictor``), ``calibration`` and ``thresholds_provenance``.
    """
    try:
        import onnx  # optional extra: pip install .[export]
    except ImportError:
        raise ECGInputError(f"{path}: writing into an ONNX export needs the onnx package; "
                            "pip install .[export]") from None
    try:
        proto = onnx.load(os.fspath(path))
    except Exception as error:  # noqa: BLE001 onnx raises DecodeError and others
        raise ECGInputError(f"{path}: not a readable ONNX model ({error.__class__.__name__})"
                            "; export it again with `model.py export`") from None
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    for key, value in entries.items():
        metadata.pop(key, None)
        if value is not None:
            metadata[key] = json.dumps(json_safe(value))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    with atomic_output(path) as tmp:
        onnx.save(proto, tmp)


def _name_onnx_interface(graph):
    """Name the output ``probabilities`` and the batch dimension ``batch``."""
    old_name = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == old_name else name for name in node.output]
        node.input[:] = [OUTPUT_NAME if name == old_name else name for name in node.input]
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def export_tflite(saved_model, path, metadata):
    """Convert a SavedModel to a TFLite flat buffer whose metadata holds ``metadata``."""
    import tensorflow as tf  # deferred: imports TensorFlow
    from tensorflow.lite.tools import flatbuffer_utils  # deferred: part of TensorFlow

    with _quiet():
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, [SIGNATURE])
        flat_buffer = converter.convert()
    tflite = flatbuffer_utils.read_model_from_bytearray(bytearray(flat_buffer))
    _add_tflite_metadata(tflite, metadata)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(flatbuffer_utils.convert_object_to_bytearray(tflite))


def _add_tflite_metadata(tflite, metadata):
    """Append one flat-buffer ``Metadata`` entry (name -> UTF-8 buffer) per key."""
    from tensorflow.lite.python import schema_py_generated as schema  # deferred: TensorFlow

    tflite.metadata = list(tflite.metadata or [])
    for name, value in metadata.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
        tflite.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(tflite.buffers) - 1
        tflite.metadata.append(entry)


@contextlib.contextmanager
def _atomic_directory(path):
    """Yield a temporary folder next to ``path``; put it in place of ``path`` on success.

    An existing ``path`` is replaced only when it is a SavedModel folder (it holds a
    ``saved_model.pb``) or empty, so a user's other folder is never deleted.
    """
    path = os.path.abspath(os.fspath(path))
    _check_replaceable(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    old = None
    try:
        yield os.path.join(scratch, "saved_model")
        if os.path.exists(path):
            old = os.path.join(scratch, "previous")
            os.replace(path, old)
        os.replace(os.path.join(scratch, "saved_model"), path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_replaceable(path):
    """Refuse a SavedModel destination that exists and is not an empty or SavedModel folder."""
    if not os.path.exists(path):
        return
    if not (os.path.isdir(path) and (not os.listdir(path) or "saved_model.pb" in os.listdir(path))):
        raise ECGInputError(
            f"{path}: exists and is not a SavedModel folder; choose another OUT name or "
            "remove it"
        )


@contextlib.contextmanager
def _quiet():
    """Silence the converters' Python warnings and INFO logs (tf2onnx is chatty)."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# --- Checking the exports ---------------------------------------------------------
CHECK_EXAMS = 4
"""Synthetic ECGs on which each export is compared with the Keras model after writing."""


def check_exports(model, paths, x=None):
    """Largest |export - Keras| per format, or the reason it could not be run.

    Parameters
    ----------
    model : keras.Model
    paths : dict of str to str
        Format -> path, as :func:`export_model` returns.
    x : numpy.ndarray, shape (n, 4096, 12), optional
        Default: ``CHECK_EXAMS`` synthetic ECGs.

    Returns
    -------
    dict of str to float or str
    """
    if x is None:
        x = generate(CHECK_EXAMS, seed=0)[0]  # (4, 4096, 12)
    expected = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
    differences = {}
    for kind, path in paths.items():
        try:
            predicted = predict_export(path, x)
        except ImportError as error:
            differences[kind] = f"runtime not installed: {error.name}"
            continue
        differences[kind] = float(np.max(np.abs(predicted - expected)))
    return differences
