"""A model that predicts: MODEL resolved and loaded, and run over a collection.

The path of every prediction, read top to bottom: :func:`resolve_predictor` turns MODEL
(a model file, a train.py run folder or an ONNX export) into a file, before TensorFlow is
imported (``ecgcode.model.modelfiles.resolve_model``); :func:`load_predictor` loads it once
(``ecgcode.model.modelfiles.load_model_and_classes`` for Keras) and returns a
:class:`Predictor`, whose ``predict(x)`` maps (n, 4096, 12) float32 tracings at the model's
amplitude scale (``Predictor.scale``) to (n, n_classes) float32 probabilities;
:func:`at_model_scale` brings a collection to that scale, once; :func:`predict_collection`
runs the predictor over it. predict.py, the HTTP service (``ecgcode.inference.service``),
validate.py and bench.py's measured path all predict through :func:`predict_collection`.

A Keras model runs ``predict_on_batch`` batch by batch on rows read by
``ecgcode.data.RowReader``: over 2,000 exams on a 2-core CPU it is as fast as tf.data with
``model.predict`` (within 3 %, the same probabilities to the bit), and on one exam it takes
27 ms against 66 (PERFORMANCE.md, issue 30 item 4).

An ``.onnx`` export (``model.py export``) runs in onnxruntime with its class names (and the
run's thresholds, when the export stored them) from its metadata: neither TensorFlow nor
Keras nor JAX is imported, so a fresh process predicts one exam in about a second instead
of the seven that importing TensorFlow takes.
"""

import dataclasses
import json
import os
import sys
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from ecgcode.common import INPUT_SHAPE, UNITS_PER_MV, ECGInputError, first_line
from ecgcode.data import RowReader
from ecgcode.data.scale import SCALE_ATTRIBUTE, bring_to_scale, model_scale
from ecgcode.model.metadata import choose_model_classes, read_model_provenance, read_model_scale
from ecgcode.model.modelfiles import load_model_and_classes, resolve_model
from ecgcode.model.precision import bfloat16_model, with_policy
from ecgcode.model.provenance import fingerprint
from ecgcode.model.quiet import import_tensorflow
from ecgcode.model.runfolder import RUN_EXPORT_NAME, run_file
from ecgcode.model.runtimes import onnx_session, provenance_in

DEFAULT_BATCH_SIZE = 128
"""Exams per forward pass of predict.py, validate.py and the service."""

ONNX_SUFFIX = ".onnx"


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A loaded model.

    Attributes
    ----------
    predict : callable
        ``predict(x)``: (n, 4096, 12) float32 -> (n, n_classes) float32.
    classes : tuple of str
        One name per output.
    kind : str
        ``"onnx"`` or ``"keras"``.
    path : str
        The model file.
    metadata : dict of str to str
        An export's metadata (empty for a Keras model).
    thresholds : dict or None
        Thresholds stored with the model (an export of a run with ``thresholds.json``).
    model : keras.Model or None
        The Keras model (None for an export).
    warning : str or None
        A warning for the user (class names guessed).
    provenance : dict or None
        What the model was trained on, as stored in its file or export's metadata
        (``ecgcode.model.provenance``); None when it holds none (the original study's weights).
    scale : ecgcode.data.scale.Scale or None
        The amplitude scale the model expects (recorded, given or by the rules of
        ``ecgcode.data.scale``).
    """

    predict: Callable
    classes: tuple
    kind: str
    path: str
    metadata: dict = dataclasses.field(default_factory=dict)
    thresholds: dict = None
    model: object = None
    warning: str = None
    provenance: dict = None
    scale: object = None


# --- MODEL named --------------------------------------------------------------------
def is_onnx(path):
    """True when MODEL names an ONNX export (an ``.onnx`` file)."""
    return os.fspath(path).lower().endswith(ONNX_SUFFIX)


def resolve_predictor(argument, keras_needed=False):
    """(model path, run thresholds path or None) for MODEL.

    MODEL is an ``.onnx`` file, or as ``ecgcode.model.modelfiles.resolve_model`` a model file
    or a run folder. A run folder that holds an ONNX export of its best model
    (``RUN_EXPORT_NAME``) gives that export unless ``keras_needed`` (``--explain``,
    ``--precision bfloat16``); :func:`load_predictor` runs the Keras model instead when the
    best model has changed since it was exported.
    """
    if not is_onnx(argument):
        model_path, thresholds_path = resolve_model(argument)
        if os.path.isdir(argument) and not keras_needed:
            export = run_file(argument, RUN_EXPORT_NAME)
            if os.path.isfile(export):
                return export, thresholds_path
        return model_path, thresholds_path
    if not os.path.isfile(argument):
        raise ECGInputError(f"{argument}: ONNX model not found; give the .onnx file that "
                            "`model.py export` wrote")
    return os.fspath(argument), None


def refuse_keras_options(model_path, explain=(), precision="float32"):
    """ECGInputError when an option that needs Keras is given with an ONNX model.

    Checked before any input is converted or any model loaded.
    """
    if not is_onnx(model_path):
        return
    if explain:
        raise ECGInputError(f"--explain: needs the Keras model (gradients); {model_path} is "
                            "an ONNX export: give the .keras model or run folder it was "
                            "exported from")
    if precision != "float32":
        raise ECGInputError(f"--precision {precision}: needs a Keras model; {model_path} is "
                            "an ONNX export, which computes in float32 (give the .keras model)")


# --- MODEL loaded -------------------------------------------------------------------
def load_predictor(path, classes=None, precision="float32", batch_size=DEFAULT_BATCH_SIZE,
                   verbose=False, units_per_mv=None):
    """Load MODEL once for many predictions.

    Parameters
    ----------
    path : str
        An ``.onnx`` export, or a ``.keras``/``.h5`` model file (a resolved model path).
    classes : sequence of str, optional
        Output names given by the user; override those stored in the model.
    precision : str
        ``"float32"``, or ``"bfloat16"`` (Keras models only).
    batch_size : int
        Exams per forward pass.
    verbose : bool
        Show TensorFlow's start-up logging (Keras models).
    units_per_mv : float, optional
        The amplitude scale of a model that records none (``--model-units-per-mv``).

    Returns
    -------
    Predictor
    """
    if not is_onnx(path):
        predictor = _keras_predictor(path, classes, precision, batch_size, verbose)
    else:
        refuse_keras_options(path, precision=precision)
        predictor = _onnx_predictor(path, classes, batch_size)
        changed = changed_source(predictor)
        if changed is not None:
            source, message = changed
            keras = _keras_predictor(source, classes, precision, batch_size, verbose)
            predictor = dataclasses.replace(
                keras, warning="; ".join(filter(None, [message, keras.warning])))
    return _with_scale(predictor, units_per_mv)


def _with_scale(predictor, given):
    """``predictor`` with the scale its model expects (and a note if ``given`` was ignored)."""
    if predictor.kind == "onnx":
        stored = predictor.metadata.get(SCALE_ATTRIBUTE)
        scale, note = model_scale(predictor.path, None if stored is None else float(stored),
                                  "classes" in predictor.metadata, given)
    else:
        scale, note = read_model_scale(predictor.path, given)
    warning = "; ".join(filter(None, [predictor.warning, note])) or None
    return dataclasses.replace(predictor, scale=scale, warning=warning)


def changed_source(predictor):
    """(model file, warning) when an export lies next to the model file it was exported from
    and that file has changed since; None otherwise (also for exports kept elsewhere).

    ``model.py export`` records the file's name and SHA-256 in the metadata
    (``source_model``); an export without the record is not checked.
    """
    source = json.loads(predictor.metadata.get("source_model", "null"))
    if not source:
        return None
    sibling = os.path.join(os.path.dirname(predictor.path), source["file"])
    if not os.path.isfile(sibling) or fingerprint(sibling)["sha256"] == source["sha256"]:
        return None
    return sibling, (f"{predictor.path} was exported from an earlier {source['file']}, which "
                     f"has changed since; running {sibling} with Keras instead (export it "
                     f"again with model.py export for the fast path)")


def _onnx_predictor(path, classes, batch_size):
    try:
        session = onnx_session(path)
    except ImportError:
        raise ECGInputError(f"{path}: running an ONNX model needs onnxruntime; pip install "
                            ".[export] (or onnxruntime)") from None
    except Exception as error:  # noqa: BLE001 onnxruntime's errors subclass Exception only
        raise ECGInputError(f"{path}: not a readable ONNX model ({first_line(error)}); "
                            "export it again with `model.py export`") from None
    (signal,), outputs = session.get_inputs(), session.get_outputs()
    n_outputs = outputs[0].shape[-1] if outputs[0].shape else None
    if tuple(signal.shape[1:]) != INPUT_SHAPE or not isinstance(n_outputs, int):
        raise ECGInputError(f"{path}: an ONNX model of input {signal.shape} and output "
                            f"{outputs[0].shape}; predict.py needs (batch, {INPUT_SHAPE[0]}, "
                            f"{INPUT_SHAPE[1]}) -> (batch, n_classes), as `model.py export` "
                            "writes")
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    stored = json.loads(metadata["classes"]) if "classes" in metadata else None
    names, warning = choose_model_classes(path, n_outputs, classes, stored)
    stored_thresholds = json.loads(metadata["thresholds"]) if "thresholds" in metadata else None
    input_name, output_name = signal.name, outputs[0].name  # "signal", "probabilities"

    def predict(x):
        x = np.ascontiguousarray(x, dtype=np.float32)  # (n, 4096, 12)
        batches = [session.run([output_name], {input_name: x[start:start + batch_size]})[0]
                   for start in range(0, len(x), batch_size)]  # each (b, n_classes)
        return np.concatenate(batches).astype(np.float32)  # (n, n_classes)

    provenance = provenance_in(metadata)
    return Predictor(predict, names, "onnx", os.fspath(path), metadata,
                     None if classes else stored_thresholds, warning=warning,
                     provenance=provenance)


def _keras_predictor(path, classes, precision, batch_size, verbose):
    import_tensorflow(verbose=verbose)
    model, names, warning = load_model_and_classes(path, classes)
    if precision == "bfloat16":
        model = bfloat16_model(model)
    else:  # a model saved in a mixed policy (e.g. a resume checkpoint) computes in float32
        model = with_policy(model, "float32")
    return keras_predictor(model, names, path, batch_size, warning, read_model_provenance(path))


def keras_predictor(model, classes, path, batch_size=DEFAULT_BATCH_SIZE, warning=None,
                    provenance=None):
    """A :class:`Predictor` of a Keras model already in memory (its ``scale`` unset).

    Parameters
    ----------
    model : keras.Model
        Maps (batch, 4096, 12) to (batch, n_classes).
    classes : sequence of str
        One name per output.
    path : str
        The model file (a label, for a model that has none).
    batch_size : int
        Exams per ``predict_on_batch`` call.
    warning : str, optional
        For the user (class names guessed).
    provenance : dict, optional
        What the model was trained on (``ecgcode.model.provenance``).

    Returns
    -------
    Predictor
    """
    def predict(x):  # predict_on_batch: model.predict's per-call set-up costs ~0.2 s
        x = np.asarray(x, dtype=np.float32)  # (n, 4096, 12)
        outputs = [np.asarray(model.predict_on_batch(x[start:start + batch_size]), np.float32)
                   for start in range(0, len(x), batch_size)]
        return np.concatenate(outputs)  # (n, n_classes)

    return Predictor(predict, tuple(classes), "keras", os.fspath(path), model=model,
                     warning=warning, provenance=provenance)


def original_scale_model(predictor):
    """``predictor``'s Keras model taking tracings at ``UNITS_PER_MV`` (``--explain``).

    A model that expects another scale gets a ``keras.layers.Rescaling`` in front, so that
    the tracings drawn on a sheet at 10 mm/mV are the ones attributed.
    """
    gain = predictor.scale.units_per_mv / UNITS_PER_MV
    if np.isclose(gain, 1.0):
        return predictor.model
    import keras  # deferred: the Keras path has imported it already

    signal = keras.Input(shape=INPUT_SHAPE, name="signal")  # (batch, 4096, 12)
    rescaled = keras.layers.Rescaling(gain, name="to_model_scale")(signal)
    return keras.Model(signal, predictor.model(rescaled))


def print_warning(predictor):
    """Print the predictor's warning (if any) on stderr."""
    if predictor.warning:
        print(f"warning: {predictor.warning}", file=sys.stderr)


# --- MODEL run over a collection ------------------------------------------------------
def at_model_scale(predictor, collection):
    """``collection`` read at the scale ``predictor``'s model expects, and one note per
    rescaled file (``ecgcode.data.scale.bring_to_scale``), the collection's own notes first.
    """
    collection, notes = bring_to_scale(collection, predictor.scale)
    return collection, [*collection.notes, *notes]


def predict_collection(predictor, collection, batch_size=DEFAULT_BATCH_SIZE, progress=False,
                       rows=None):
    """Run ``predictor`` over the exams of ``collection``: the one loop of every prediction.

    Batches of rows are read by ``ecgcode.data.RowReader`` (the collection's gains applied:
    give it at the model's scale, :func:`at_model_scale`) and passed to
    ``predictor.predict``, whether the model is a Keras one (``predict_on_batch``) or an
    ONNX export.

    Parameters
    ----------
    predictor : Predictor
    collection : ecgcode.data.Collection
    batch_size : int
        Rows read and predicted at a time.
    progress : bool
        A tqdm bar (stderr) when the rows take more than one batch.
    rows : array_like of int, optional
        The rows to predict, in this order (default: every row, in file order).

    Returns
    -------
    numpy.ndarray, shape (n_rows, n_classes), float32
        NaN/inf tracings give NaN rows (reported by the caller).
    """
    rows = np.arange(collection.n) if rows is None else np.asarray(rows, dtype=np.int64)
    reader = RowReader(collection)
    batches = []
    try:
        with tqdm(total=len(rows), unit="ECG", desc="predict",
                  disable=not progress or len(rows) <= batch_size) as bar:
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                batches.append(predictor.predict(reader.read(batch)))  # (b, n_classes)
                bar.update(len(batch))
    finally:
        reader.close()
    return np.concatenate(batches)
