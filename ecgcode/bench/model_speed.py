"""Training and inference ECGs/s of the model alone, on in-memory random ECGs, any backend.

The ``model`` section of ``bench.py``: every combination of batch size, Keras dtype policy
and XLA setting is trained with ``model.fit`` and predicted with ``model.predict`` on
random ECGs held in memory, with neither tf.data nor TensorFlow, so that it runs under any
Keras 3 backend::

    KERAS_BACKEND=jax python bench.py model --batch-sizes 64,256 --policies float32,mixed_bfloat16

(its options are in ``ecgcode.cli.bench``).  Importing this module imports
neither Keras nor TensorFlow nor ``ecgcode.bench.measure``: it needs only
``ecgcode.common`` and ``ecgcode.data``, and ``ecgcode.model.network`` for the paper's
model.  ``--data FILE`` also feeds each setting from the project's tf.data pipeline
(``ecgcode.data.make_dataset``; TensorFlow needed for tf.data only, the model may run on
any backend), which tells whether the pipeline keeps a GPU busy.  It also holds the table
helpers (``row``, ``format_table``, ``write_table``) and model factories that ``bench.py``
shares.
"""

import contextlib
import itertools
import platform
import time

import numpy as np

from ecgcode import data as ecg_data
from ecgcode.common import CLASSES, INPUT_SHAPE, N_CLASSES, atomic_output, first_line
from ecgcode.model.precision import global_policy

PAPER_BATCH = 64
"""The paper's training batch size."""
DTYPE_POLICIES = ("float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16")
"""Keras dtype policies (``keras.mixed_precision``) of ``train/predict_throughput``."""


# --- Models ------------------------------------------------------------------------------
def paper_model(n_classes=N_CLASSES):
    """The paper's ResNet (``model.get_model``)."""
    from ecgcode.model.network import get_model  # deferred: imports Keras and its backend

    return get_model(n_classes)


def tiny_model(n_classes=N_CLASSES):
    """A few-thousand-parameter stand-in with the same input and output (for tests)."""
    import keras  # deferred: imports Keras and its backend

    signal = keras.Input(shape=INPUT_SHAPE, name="signal")  # (batch, 4096, 12)
    x = keras.layers.Conv1D(8, 16, strides=16, use_bias=False)(signal)  # (batch, 256, 8)
    x = keras.layers.GlobalAveragePooling1D()(x)  # (batch, 8)
    outputs = keras.layers.Dense(n_classes, activation="sigmoid")(x)  # (batch, n_classes)
    return keras.Model(signal, outputs, name="tiny")


MODELS = {"paper": paper_model, "tiny": tiny_model}


# --- Measurements ------------------------------------------------------------------------
def random_ecgs(n, seed=0):
    """``n`` random ~1 mV tracings and ~5 % positive labels, in memory.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``x`` (n, 4096, 12) float32 and ``y`` (n, 6) float32.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + INPUT_SHAPE, dtype=np.float32) * 10  # (n, 4096, 12)
    y = (rng.random((n, len(CLASSES))) < 0.05).astype(np.float32)  # (n, 6)
    return x, y


def _seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def train_throughput(batch_size, policy="float32", jit_compile=True, steps=20, warmup=3,
                     factory=paper_model, data=None):
    """Steady-state training ECGs/s of ``model.fit`` on in-memory random ECGs.

    A first ``fit`` over ``warmup`` batches compiles the train step; a second ``fit`` over
    ``steps`` batches (the copy of every batch to the device included) is timed.  Adam
    and binary cross-entropy, as in train.py; neither tf.data nor TensorFlow is used,
    unless ``data`` is given: then the same compiled model is also trained from
    ``ecgcode.data.make_dataset`` over that file (``fed_throughput``).

    Parameters
    ----------
    batch_size : int
        ECGs per training step.
    policy : str
        Keras dtype policy: ``float32``, ``mixed_bfloat16``, ``mixed_float16``...
    jit_compile : bool
        Compile the train step with XLA (the JAX backend always does).
    steps, warmup : int
        Timed batches, and batches of the untimed first ``fit``.
    factory : callable
        Builds the model (default the paper's ResNet).
    data : str, optional
        A CODE-style HDF5 file with labels (``bench.py make``) to feed training from.

    Returns
    -------
    dict
        ``ecg_per_s`` (timed ``fit``) and ``warmup_s`` (seconds of the first ``fit``); with
        ``data`` also ``fed_ecg_per_s`` and ``pipeline_ecg_per_s`` (``fed_throughput``).
    """
    import keras  # deferred: imports Keras and its backend

    x, y = random_ecgs(batch_size * max(steps, warmup))
    with global_policy(policy):
        model = factory()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                      jit_compile=jit_compile)
        first = batch_size * warmup
        warmup_s = _seconds(lambda: model.fit(x[:first], y[:first], batch_size=batch_size,
                                              epochs=1, shuffle=False, verbose=0))
        timed = batch_size * steps
        seconds = _seconds(lambda: model.fit(x[:timed], y[:timed], batch_size=batch_size,
                                             epochs=1, shuffle=False, verbose=0))
        result = {"ecg_per_s": timed / seconds, "warmup_s": warmup_s}
        if data:
            result.update(fed_throughput(model, data, batch_size, steps, train=True))
    return result


def predict_throughput(batch_size, policy="float32", jit_compile=True, batches=10,
                       factory=paper_model, data=None):
    """Steady-state inference ECGs/s of ``model.predict`` on in-memory random ECGs.

    One batch is predicted first (compilation, not timed), then ``batches`` batches are
    timed.  Parameters as in ``train_throughput``; returns ``{"ecg_per_s": ...}``, with
    ``data`` also the rates of ``fed_throughput`` (in file order, as predict.py reads).
    """
    x, _ = random_ecgs(batch_size * batches)
    with global_policy(policy):
        model = factory()
        model.jit_compile = jit_compile
        model.predict(x[:batch_size], batch_size=batch_size, verbose=0)
        seconds = _seconds(lambda: model.predict(x, batch_size=batch_size, verbose=0))
        result = {"ecg_per_s": len(x) / seconds}
        if data:
            result.update(fed_throughput(model, data, batch_size, batches, train=False))
    return result


def file_batches(path_or_collection, batch_size, train, batches=None):
    """``ecgcode.data.make_dataset`` over a file as train.py and predict.py read it.

    Training: shuffled (x, y) batches of the file's ``labels``, repeated forever.
    Inference: x alone in file order, over the first ``batches`` whole batches (or all
    whole batches of the file), so that every batch has the compiled shape; the dataset's
    cardinality is that number of batches.
    """
    collection = ecg_data.open_collection(path_or_collection)
    if train:
        labels = ecg_data.load_labels(collection).labels  # (n, 6)
        return ecg_data.make_dataset(collection, labels, batch_size=batch_size, shuffle=True,
                                     repeat=True, drop_remainder=True)
    import tensorflow as tf  # deferred: imports TensorFlow (tf.data only)

    whole = collection.n // batch_size
    if whole < 1:
        raise ValueError(f"{', '.join(collection.paths)}: {collection.n} rows, fewer than "
                         f"one batch of {batch_size}")
    count = min(whole, batches or whole)
    dataset = ecg_data.make_dataset(collection, batch_size=batch_size,
                                    indices=np.arange(batch_size * count), check_values=False)
    return dataset.apply(tf.data.experimental.assert_cardinality(count))  # as predict.py


def fed_throughput(model, path, batch_size, steps, train=True):
    """ECGs/s of a compiled ``model`` fed by the project's input pipeline, and of the pipeline.

    Does the input pipeline keep the accelerator busy?  Compare ``fed_ecg_per_s`` (``fit``
    or ``predict`` on ``file_batches``, after one untimed pass over the file so that every
    row's NaN check is done, as from the second epoch of a training run) with the
    in-memory rate of the same model; ``pipeline_ecg_per_s`` is the pipeline alone (the
    same batches converted to numpy, as Keras does, with no model).  Needs TensorFlow
    (tf.data) but runs under any Keras backend.

    Returns
    -------
    dict
        ``fed_ecg_per_s``, ``pipeline_ecg_per_s`` and ``fed_batches`` (timed batches).
    """
    collection = ecg_data.open_collection(path)
    if train:
        dataset = file_batches(collection, batch_size, train=True)
        first_pass = max(1, -(-collection.n // batch_size))
        model.fit(dataset, epochs=1, steps_per_epoch=first_pass, shuffle=False, verbose=0)
        seconds = _seconds(lambda: model.fit(dataset, epochs=1, steps_per_epoch=steps,
                                             shuffle=False, verbose=0))
        timed = steps
        pipeline_seconds = _seconds(lambda: _drain(dataset.take(steps)))
    else:
        dataset = file_batches(collection, batch_size, train=False, batches=steps)
        timed = int(dataset.cardinality())
        model.predict(dataset, verbose=0)  # first pass: page cache, thread pools
        seconds = _seconds(lambda: model.predict(dataset, verbose=0))
        pipeline_seconds = _seconds(lambda: _drain(dataset))
    return {"fed_ecg_per_s": timed * batch_size / seconds,
            "pipeline_ecg_per_s": timed * batch_size / pipeline_seconds,
            "fed_batches": timed}


def check_data_file(path):
    """Raise the project's one-line ``ECGInputError`` unless ``path`` holds tracings and labels.

    Checked before any setting runs, so that a bad ``--data`` file stops the run (exit 2)
    instead of turning every fed row into a failure.
    """
    ecg_data.load_labels(ecg_data.open_collection(path))


def _drain(dataset):
    for _batch in dataset.as_numpy_iterator():
        pass


def backend_description():
    """Dict: Python and Keras versions, Keras backend and its devices (no TensorFlow import)."""
    import keras  # deferred: imports Keras and its backend

    devices = "unknown"
    with contextlib.suppress(Exception):  # backends without keras.distribution support
        devices = ", ".join(keras.distribution.list_devices())
    return {"python": platform.python_version(), "keras": keras.__version__,
            "backend": keras.backend.backend(), "devices": devices}


# --- Table rows and the markdown table (shared with bench.py) ------------------------------
def row(section, measurement, value, unit, note=""):
    """One table row (a dict)."""
    return {"section": section, "measurement": measurement, "value": value, "unit": unit,
            "note": note}


def model_rows(batch_sizes=(PAPER_BATCH,), policies=("float32",), jits=(True,), steps=20,
               factory=paper_model, data=None):
    """Rows of the ``model`` section: training and inference ECGs/s of each setting.

    Every combination of dtype policy, XLA setting and batch size is trained
    (``train_throughput``, after 3 untimed batches) and predicted (``predict_throughput``,
    after 1) for ``steps`` timed batches of in-memory random ECGs.  With ``data`` (an
    HDF5 file with labels) each setting also gets rows fed by ``make_dataset`` from that
    file, and of the pipeline alone (``fed_throughput``).  A setting that fails (e.g. out
    of device memory) gets a NaN value and the error in its note; the others run.
    """
    rows = []
    for policy, jit, batch in itertools.product(policies, jits, batch_sizes):
        setting = f"{policy}, XLA {'on' if jit else 'off'}, batch {batch}"
        for task, throughput in (("training", train_throughput),
                                 ("inference", predict_throughput)):
            try:
                result = throughput(batch, policy, jit, steps, factory=factory, data=data)
            except Exception as error:  # noqa: BLE001 - e.g. out of memory: report, go on
                result = {"ecg_per_s": float("nan"), "error": "failed: " + first_line(error, 120)}
            note = result.get("error", f"{steps} timed batches")
            if "warmup_s" in result:
                note += f"; first fit (compilation) {result['warmup_s']:.1f} s"
            rows.append(row("model", f"{task}, {setting}", result["ecg_per_s"], "ECGs/s", note))
            if "fed_ecg_per_s" in result:
                rows += _fed_rows(task, setting, batch, result)
    return rows


def _fed_rows(task, setting, batch, result):
    """The two rows of ``fed_throughput``'s numbers for one task and setting."""
    order = "shuffled" if task == "training" else "in file order"
    share = result["fed_ecg_per_s"] / result["ecg_per_s"]
    batches = f"{result['fed_batches']} timed batches"
    return [row("model", f"{task} fed by make_dataset ({order}), {setting}",
                result["fed_ecg_per_s"], "ECGs/s", f"{batches}; {share:.0%} of in-memory"),
            row("model", f"make_dataset alone ({order}, no model), batch {batch}",
                result["pipeline_ecg_per_s"], "ECGs/s", batches)]


def format_table(rows, machine=None):
    """Markdown: a machine line, then | section | measurement | value | unit | note |."""
    lines = []
    if machine:
        lines.append("Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()))
        lines.append("")
    lines.append("| section | measurement | value | unit | note |")
    lines.append("|---|---|---:|---|---|")
    for item in rows:
        value = item["value"]
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"| {item['section']} | {item['measurement']} | {text} | {item['unit']} | "
                     f"{item['note']} |")
    return "\n".join(lines) + "\n"


def write_table(text, path):
    """Write the table atomically (when ``path`` is given)."""
    if path:
        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
