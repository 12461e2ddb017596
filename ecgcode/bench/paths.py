"""predict.py's whole path against a bare forward pass, in float32 and mixed bfloat16.

Issue 15's items 1 and 2 in one process: the ECGs/s of a complete ``predict_collection``
pass (``ecgcode.inference.predictor``: reading the rows, the batches' forward passes, the
output array: everything but the command line) next to the bare compiled forward pass of
the same model at the same batch size on one in-memory batch, alternated round by round so
that both see the same machine state; then the same in mixed bfloat16, with the agreement
of its probabilities and thresholded decisions with float32.
"""

import statistics
import time

import numpy as np

from ecgcode.bench.model_speed import random_ecgs, row
from ecgcode.inference.predictor import keras_predictor, predict_collection
from ecgcode.model.metadata import default_classes
from ecgcode.model.modelfiles import load_model_and_classes
from ecgcode.model.precision import describe_bfloat16_support, with_policy
from ecgcode.model.thresholds import binarize, fill_missing, read_thresholds
from ecgcode.training.run_setup import choose_precision, device_defaults


def trained_model(model_path, thresholds_path=None):
    """(model, thresholds, label) of a model file and its run's ``thresholds.json``.

    ``model_path`` and ``thresholds_path`` are what ``ecgcode.model.modelfiles.resolve_model``
    finds for a run folder or a model file.  The thresholds are in the model's class order,
    0.5 for a class without one (and for every class when ``thresholds_path`` is None), with
    ``ecgcode.model.thresholds.fill_missing``'s note.
    """
    model, classes, _ = load_model_and_classes(model_path)
    found = read_thresholds(thresholds_path, classes) if thresholds_path else {}
    thresholds, _ = fill_missing(found, classes)
    return model, [thresholds[name] for name in classes], f"model {model_path}"


def bare_forward_rate(model, batch_size, batches=3):
    """ECGs/s of ``model.predict_on_batch`` on one in-memory batch (compiled first).

    Parameters
    ----------
    model : keras.Model
    batch_size : int
    batches : int
        Timed calls after one untimed call (compilation).

    Returns
    -------
    float
    """
    x, _ = random_ecgs(batch_size)  # (batch, 4096, 12)
    model.predict_on_batch(x)
    start = time.perf_counter()
    for _ in range(batches):
        model.predict_on_batch(x)
    return batches * batch_size / (time.perf_counter() - start)


def full_pass(model, collection, batch_size):
    """(ECGs/s, probabilities) of one complete ``predict_collection`` pass of ``model``."""
    predictor = keras_predictor(model, default_classes(int(model.outputs[0].shape[-1])),
                                "(bench model)", batch_size)
    start = time.perf_counter()
    probabilities = predict_collection(predictor, collection, batch_size)
    return collection.n / (time.perf_counter() - start), probabilities


def compare_paths(model, collection, batch_size, rounds=3):
    """Alternate bare forward passes and whole predict.py passes, ``rounds`` of each.

    One untimed pass first compiles every batch shape (the last batch may be smaller).

    Returns
    -------
    dict
        ``bare`` and ``path``: lists of ECGs/s; ``probabilities``: (n, n_classes) float32 of
        the last pass.
    """
    _, probabilities = full_pass(model, collection, batch_size)
    bare, path = [], []
    for _ in range(rounds):
        bare.append(bare_forward_rate(model, batch_size))
        rate, probabilities = full_pass(model, collection, batch_size)
        path.append(rate)
    return {"bare": bare, "path": path, "probabilities": probabilities}


def agreement(reference, other, thresholds):
    """How closely ``other`` probabilities follow ``reference`` ones.

    Parameters
    ----------
    reference, other : numpy.ndarray, shape (n, n_classes)
    thresholds : sequence of float, length n_classes
        A decision is positive when the probability exceeds the class's threshold.

    Returns
    -------
    dict
        ``max_abs_difference``, ``mean_abs_difference``, ``decisions_agree`` (fraction) and
        ``decisions`` (their number).
    """
    reference, other = np.asarray(reference), np.asarray(other)
    limits = np.asarray(thresholds, dtype=np.float64)[None, :]  # (1, n_classes)
    difference = np.abs(reference.astype(np.float64) - other)
    same = binarize(reference, limits) == binarize(other, limits)
    return {"max_abs_difference": float(difference.max()),
            "mean_abs_difference": float(difference.mean()),
            "decisions_agree": float(same.mean()), "decisions": int(same.size)}


def predict_path_rows(model, collection, batch_size, thresholds, model_label, rounds=3):
    """Rows of issue 15's items 1 and 2: float32 and bfloat16 paths against bare passes.

    Parameters
    ----------
    model : keras.Model
        In float32.
    collection : ecgcode.data.Collection
        Predicted whole, every round.
    batch_size : int
    thresholds : sequence of float
        Decision thresholds of the model's classes (for the agreement of decisions).
    model_label : str
        What the model is (e.g. "the demo's trained model"), for the notes.
    rounds : int

    Returns
    -------
    list of dict
    """
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        results[policy] = compare_paths(with_policy(model, policy), collection, batch_size,
                                        rounds)
    medians = {policy: {key: statistics.median(result[key]) for key in ("bare", "path")}
               for policy, result in results.items()}
    common = f"batch {batch_size}, {collection.n} exams, {rounds} alternating rounds"
    f32, bf16 = medians["float32"], medians["mixed_bfloat16"]
    rows = [
        row("precision", "inference, bare compiled forward pass, float32", f32["bare"], "ECGs/s",
            f"{common}; one in-memory batch"),
        row("precision", "inference, predict.py path (predict_collection), float32", f32["path"],
            "ECGs/s", f"{f32['path'] / f32['bare']:.0%} of the bare pass (target >= 95 %); "
            f"rounds {_span(results['float32']['path'])}; {common}"),
        row("precision", "inference, bare compiled forward pass, mixed bfloat16", bf16["bare"],
            "ECGs/s", f"{bf16['bare'] / f32['bare']:.2f} x float32; {describe_bfloat16_support()}"),
        row("precision", "inference, predict.py --precision bfloat16", bf16["path"], "ECGs/s",
            f"{bf16['path'] / f32['path']:.2f} x the float32 path (target >= 2 x); rounds "
            f"{_span(results['mixed_bfloat16']['path'])}"),
    ]
    agree = agreement(results["float32"]["probabilities"],
                      results["mixed_bfloat16"]["probabilities"], thresholds)
    rows += [
        row("precision", "bfloat16 vs float32: max abs. probability difference",
            agree["max_abs_difference"], "", f"mean {agree['mean_abs_difference']:.1e}; "
            f"{model_label}"),
        row("precision", "bfloat16 vs float32: thresholded decisions that agree",
            100 * agree["decisions_agree"], "%",
            f"{agree['decisions']} decisions (target >= 99.5 %); {model_label}"),
    ]
    return rows


def training_precision_rows(run, path, model_name, rounds, warmup, window, windows):
    """Rows of issue 15's item 3: train.py's default precision against float32.

    ``run(kind, path, model_name, warmup, window, windows, **options)`` measures
    ``train_default`` (bench.py's ``measure_in_subprocess``); the two settings alternate
    over ``rounds`` processes each.
    """
    device, _, mixed_policy = device_defaults()
    policy, reason = choose_precision(None, device, mixed_policy)
    rates = {None: [], False: []}
    for _ in range(rounds):
        for mixed in rates:
            rates[mixed] += run("train_default", path, model_name, warmup, window, windows,
                                mixed_precision=mixed)["rates"]
    default, float32 = (statistics.median(rates[key]) for key in (None, False))
    return [
        row("precision", f"training, train.py default ({policy}), batch 64", default, "ECGs/s",
            f"{default / float32:.2f} x --no-mixed-precision; {reason}"),
        row("precision", "training, train.py --no-mixed-precision (float32), batch 64", float32,
            "ECGs/s", f"{len(rates[False])} windows each"),
    ]


def _span(rates):
    return f"{min(rates):.1f}-{max(rates):.1f}"
