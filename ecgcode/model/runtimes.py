"""Reading the exports of :mod:`ecgcode.model.export` back: metadata, and inference in each
one's runtime.

ONNX runs in onnxruntime, TFLite in LiteRT (``ai_edge_litert``, else TensorFlow's
deprecated ``tf.lite.Interpreter``), a SavedModel in TensorFlow. Each runtime is imported
only when its format is used.
"""

import json
import os

import numpy as np

from ecgcode.common import ECGInputError

INPUT_NAME = "signal"
OUTPUT_NAME = "probabilities"
SIGNATURE = "serving_default"
METADATA_COLLECTION = "metadata"
"""Name under which a reloaded SavedModel holds its metadata (a JSON string variable)."""


def export_format(path):
    """``"onnx"``, ``"tflite"`` or ``"saved_model"`` for an export's path; ECGInputError else."""
    path = os.fspath(path)
    if path.endswith(".onnx"):
        return "onnx"
    if path.endswith(".tflite"):
        return "tflite"
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "saved_model"
    raise ECGInputError(
        f"{path}: not an export; give an .onnx or .tflite file or a SavedModel folder"
    )


def read_metadata(path):
    """The metadata dict written by :func:`export_model` into any of its exports."""
    kind = export_format(path)
    if kind == "onnx":
        import onnx  # optional extra: pip install .[export]

        proto = onnx.load(os.fspath(path), load_external_data=False)
        return {prop.key: prop.value for prop in proto.metadata_props}
    if kind == "tflite":
        from tensorflow.lite.tools import flatbuffer_utils  # deferred: imports TensorFlow

        tflite = flatbuffer_utils.read_model(os.fspath(path))
        return dict(_tflite_text_metadata(tflite))
    import tensorflow as tf  # deferred: imports TensorFlow

    loaded = tf.saved_model.load(os.fspath(path))
    return json.loads(getattr(loaded, METADATA_COLLECTION)[0].numpy().decode("utf-8"))


def _tflite_text_metadata(tflite):
    """(name, text) of the flat buffer's metadata entries that hold UTF-8 text."""
    for entry in tflite.metadata or []:
        data = tflite.buffers[entry.buffer].data
        try:
            yield _as_str(entry.name), bytes(data).decode("utf-8")
        except (TypeError, UnicodeDecodeError):
            continue  # the converter's binary entries (e.g. CONVERSION_METADATA)


def read_classes(path):
    """The class names stored in an export, as a tuple of str."""
    return tuple(json.loads(read_metadata(path)["classes"]))


def read_provenance(path):
    """The provenance record copied into an export (``ecgcode.model.provenance``), or None."""
    return provenance_in(read_metadata(path))


def provenance_in(metadata):
    """The provenance record of an export's metadata (str -> str), or None (absent, damaged)."""
    text = metadata.get("provenance")
    try:
        record = json.loads(text) if text else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def predict_export(path, x, batch_size=32):
    """Run an export on ``x`` (n, 4096, 12) with its own runtime; return (n, n_classes).

    ONNX runs in onnxruntime, TFLite in LiteRT (``ai_edge_litert``, else
    ``tf.lite.Interpreter``), a SavedModel in TensorFlow.
    """
    run = {"onnx": _onnx_runner, "tflite": _tflite_runner, "saved_model": _saved_model_runner}
    batch_runner = run[export_format(path)](os.fspath(path))
    x = np.asarray(x, dtype=np.float32)
    outputs = [batch_runner(x[start:start + batch_size]) for start in range(0, len(x), batch_size)]
    return np.concatenate(outputs).astype(np.float32)  # (n, n_classes)


def onnx_session(path, threads=None):
    """An onnxruntime CPU session for ``path`` (``threads``: intra-op threads, default all)."""
    import onnxruntime  # optional extra: pip install .[export]

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        os.fspath(path), options, providers=["CPUExecutionProvider"]
    )


def _onnx_runner(path):
    session = onnx_session(path)
    return lambda batch: session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


def _tflite_runner(path):
    try:
        from ai_edge_litert.interpreter import Interpreter  # optional extra: .[export]
    except ImportError:  # LiteRT not installed: TensorFlow's own (deprecated) interpreter
        import tensorflow as tf  # deferred: imports TensorFlow

        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_path=path).get_signature_runner(SIGNATURE)
    return lambda batch: runner(**{INPUT_NAME: batch})[OUTPUT_NAME]


def _saved_model_runner(path):
    import tensorflow as tf  # deferred: imports TensorFlow

    serve = tf.saved_model.load(path).signatures[SIGNATURE]
    return lambda batch: serve(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy()


def _as_str(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
