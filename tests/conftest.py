"""Shared pytest fixtures: tiny CODE-style HDF5 files made in tmp_path.

``make_hdf5(path, n, ...)`` writes a file with ``tracings`` (n, 4096, 12) float32 at the
contract's scale ``UNITS_PER_MV`` (1 mV = 2 units; realistic beats with QRS complexes of
about 1-2 mV whose limb leads obey Einthoven's and Goldberger's relations), ``exam_id``
and, optionally, ``labels``. Like a file of anyone's own, it records no scale (the
original study's is then assumed).  Row ``i`` is recognisable by its value
``x[i, 0, 11]`` (lead V6, first sample), which equals its row id (see ``row_ids``).
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ecgcode.common import CLASSES, N_SAMPLES, SAMPLING_RATE, UNITS_PER_MV

SHARED = ROOT.parent / "shared"
"""The read-only shared data folder (may be absent)."""


def synthetic_tracings(n, seed=0, first_id=0):
    """(n, 4096, 12) float32 ECG-like tracings at ``UNITS_PER_MV``, ids in x[:, 0, 11].

    Each record has ~1 Hz beats: leads I and II carry QRS spikes of 1 and 1.6 mV (2 and 3.2
    units at 2 units per mV) with T waves and 0.01 mV of noise, the other limb leads are
    derived from them, precordial leads are scaled copies (QRS -1.4 to 2.1 mV). The largest
    lead's QRS, about 2.2 mV, is typical of an adult ECG, so the amplitude-scale check
    (``ecgcode.data.scale.scale_warning``) finds these tracings at ``UNITS_PER_MV``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(N_SAMPLES) / SAMPLING_RATE  # (4096,) seconds
    x = np.empty((n, N_SAMPLES, 12), dtype=np.float32)
    for i in range(n):
        rate = rng.uniform(0.8, 1.5)  # beats per second
        phase = (t * rate + rng.uniform()) % 1.0
        qrs = np.exp(-(((phase - 0.5) / 0.012) ** 2))  # (4096,) unit spikes
        wave = np.exp(-(((phase - 0.75) / 0.05) ** 2))  # T wave
        lead_1 = (1.0 * qrs + 0.25 * wave + rng.normal(0, 0.01, N_SAMPLES)) * UNITS_PER_MV
        lead_2 = (1.6 * qrs + 0.3 * wave + rng.normal(0, 0.01, N_SAMPLES)) * UNITS_PER_MV
        x[i, :, 0] = lead_1
        x[i, :, 1] = lead_2
        x[i, :, 2] = lead_2 - lead_1  # III
        x[i, :, 3] = -(lead_1 + lead_2) / 2  # aVR
        x[i, :, 4] = lead_1 - lead_2 / 2  # aVL
        x[i, :, 5] = lead_2 - lead_1 / 2  # aVF
        for v in range(6):
            x[i, :, 6 + v] = ((v - 2.0) * 0.7 * qrs + 0.15 * wave) * UNITS_PER_MV
        x[i, 0, 11] = first_id + i
    return x


def row_ids(x):
    """Row ids of tracings written by ``make_hdf5`` (x: (k, 4096, 12))."""
    return np.rint(np.asarray(x)[:, 0, 11]).astype(np.int64)


def write_hdf5(
    path,
    n,
    *,
    seed=0,
    first_id=0,
    exam_ids=True,
    labels=False,
    classes=CLASSES,
    dataset_name="tracings",
    data=None,
    chunks=None,
    compression=None,
):
    """Write a tiny CODE-style HDF5 file and return its path (str).

    Parameters
    ----------
    path : str or Path
    n : int
        Number of tracings.
    seed : int
        Seed of the signals and labels.
    first_id : int
        Row id (in ``x[:, 0, 11]``) of the first tracing; exam ids are ``1000 + id``.
    exam_ids : bool or array_like
        Write ``exam_id`` (True: ``1000 + first_id + arange(n)``; or the given values).
    labels : bool or array_like
        Write a ``labels`` dataset (True: random 0/1 from ``seed``; or the given values),
        with attribute ``classes``.
    classes : sequence of str
        The ``classes`` attribute of ``labels``.
    dataset_name : str
    data : array_like, optional
        Tracings to write instead of synthetic ones (any shape or dtype, for bad-data tests).
    chunks, compression :
        Passed to h5py's create_dataset (e.g. chunks=True, compression="gzip").
    """
    import h5py

    x = synthetic_tracings(n, seed, first_id) if data is None else np.asarray(data)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(dataset_name, data=x, chunks=chunks, compression=compression)
        if exam_ids is not False and exam_ids is not None:
            ids = 1000 + first_id + np.arange(len(x)) if exam_ids is True else exam_ids
            handle.create_dataset("exam_id", data=np.asarray(ids, dtype=np.int64))
        if labels is not False and labels is not None:
            if labels is True:
                rng = np.random.default_rng(seed + 1)
                labels = (rng.random((len(x), len(classes))) < 0.3).astype(np.float32)
            dataset = handle.create_dataset("labels", data=np.asarray(labels, np.float32))
            dataset.attrs["classes"] = list(classes)
    return os.fspath(path)


@pytest.fixture
def make_hdf5(tmp_path):
    """Factory fixture: ``make_hdf5(name_or_path, n, **options)`` -> path (str).

    A relative name is created inside the test's ``tmp_path``.  Options as in
    ``write_hdf5`` (seed, first_id, exam_ids, labels, classes, dataset_name, data,
    chunks, compression).
    """

    def make(path, n, **options):
        path = Path(path)
        if not path.is_absolute():
            path = tmp_path / path
        return write_hdf5(path, n, **options)

    return make


def distinctive_paper_model(seed):
    """The paper's model with non-trivial batch-norm statistics and sigmoids away from 0 and 1.

    Loading such a model gives the saved predictions only if every weight and statistic
    came back, so comparisons of saved and loaded models can fail.
    """
    import keras

    from ecgcode.model.network import get_model

    keras.utils.set_random_seed(seed)
    net = get_model()
    for layer in net.layers:
        if "batch_normalization" in layer.name:
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * 1.1, beta + 0.1, mean + 0.2, variance * 1.5])
    kernel, bias = net.layers[-1].get_weights()
    net.layers[-1].set_weights([kernel * 0.01, bias + 0.1])
    return net


def run_main(main, argv, capsys):
    """Run a script's ``main`` as its command line does; return (status, stdout, stderr)."""
    from ecgcode.common import run_cli

    try:
        status = run_cli(main, argv)
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """(small.keras, small.onnx): ``small_model_and_export`` once per test module (skipped
    without onnxruntime and tf2onnx)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    return small_model_and_export(tmp_path_factory.mktemp("models"))


def small_model_and_export(folder, seed=0, thresholds=None):
    """A small functional model saved as ``small.keras`` and exported as ``small.onnx``.

    Conv1D, batch norm (non-trivial statistics), ReLU, pooling and a sigmoid head, so that
    the export must reproduce real layers. Returns (keras path, onnx path), both str.
    """
    import keras

    from ecgcode.model.export import export_model
    from ecgcode.model.modelfiles import save_model

    keras.utils.set_random_seed(seed)
    signal = keras.Input((N_SAMPLES, 12), name="signal")  # (batch, 4096, 12)
    x = keras.layers.Conv1D(8, 16, strides=16, use_bias=False)(signal)  # (batch, 256, 8)
    norm = keras.layers.BatchNormalization()
    x = keras.layers.Activation("relu")(norm(x))
    x = keras.layers.GlobalAveragePooling1D()(x)  # (batch, 8)
    head = keras.layers.Dense(len(CLASSES), activation="sigmoid")
    model = keras.Model(signal, head(x))  # (batch, 6)
    gamma, beta, mean, variance = norm.get_weights()
    norm.set_weights([gamma * 1.1, beta + 0.1, mean + 0.2, variance * 1.5])
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 30, bias])  # outputs spread over (0, 1), not all near 0.5
    stem = os.path.join(os.fspath(folder), "small")
    save_model(model, stem, formats=(".keras",))
    export_model(model, stem, formats=("onnx",), thresholds=thresholds)
    return stem + ".keras", stem + ".onnx"
