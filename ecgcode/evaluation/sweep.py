"""Which amplitude scale does a model expect? Its discrimination with the inputs rescaled.

:func:`scale_sweep` multiplies the tracings by each factor (0.2, 0.5, 1, 2, 5 by default),
predicts them and measures every class: a model fed at the scale it was trained on
discriminates best near factor 1, and a peak at another factor says by how much the
inputs are off (a peak at 5 for tracings that are 5 times too small, for instance).
:func:`sweep_markdown` lays one measure out as a Markdown table. No TensorFlow here: the
caller passes the model as a function.
"""

import numpy as np
import pandas as pd

from ecgcode.common import ECGInputError
from ecgcode.evaluation.measures import point_measures
from ecgcode.evaluation.metrics import scores_table
from ecgcode.evaluation.output import markdown_table

DEFAULT_FACTORS = (0.2, 0.5, 1, 2, 5)
"""The factors of :func:`scale_sweep` and of validate.py's ``--scale-sweep``."""

COLUMNS = ("factor", "class", "auroc", "auprc", "f1", "precision", "recall", "positives")
"""The columns of :func:`scale_sweep`'s table."""

BATCH = 256
"""Exams rescaled and predicted at a time."""


def scale_sweep(predict, tracings, labels, classes, thresholds=None,
                factors=DEFAULT_FACTORS):
    """Discrimination of a model on tracings multiplied by each factor.

    Parameters
    ----------
    predict : callable
        Maps (n, 4096, 12) float32 tracings to (n, n_classes) float32 probabilities
        (``ecgcode.inference.predictor.Predictor.predict``, for instance).
    tracings : array_like
        (n, 4096, 12) float32: a numpy array, or anything sliced the same way (an h5py
        dataset); read :data:`BATCH` exams at a time.
    labels : array_like
        (n, n_classes) 0/1, columns in ``classes`` order.
    classes : sequence of str
        The model's output names, in output order.
    thresholds : dict, optional
        Class name -> float or None; F1, precision and recall are measured at these
        (positive when the score is greater). None, or a None threshold: NaN.
    factors : sequence of float
        Multipliers of the tracings.

    Returns
    -------
    pandas.DataFrame
        Long form, one row per factor and class, columns :data:`COLUMNS`. AUROC is NaN
        for a class without positive or without negative exams, AUPRC without positives.
    """
    labels = np.asarray(labels) > 0.5  # (n, n_classes)
    thresholds = thresholds or {}
    rows = []
    for factor in factors:
        probabilities = np.concatenate([
            np.asarray(predict(np.asarray(tracings[start:start + BATCH], dtype=np.float32)
                               * np.float32(factor)), dtype=np.float32)
            for start in range(0, len(labels), BATCH)])  # (n, n_classes)
        for k, name in enumerate(classes):
            measures = point_measures(labels[:, k], probabilities[:, k])
            threshold = thresholds.get(name)
            decided = [np.nan] * 4
            if threshold is not None:
                predicted = probabilities[:, k:k + 1] > threshold
                decided = scores_table(labels[:, k:k + 1], predicted)[0]  # (4,)
            rows.append({"factor": float(factor), "class": name, "auroc": measures["auroc"],
                         "auprc": measures["auprc"], "f1": decided[3],
                         "precision": decided[0], "recall": decided[1],
                         "positives": int(labels[:, k].sum())})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def parse_factors(text, option="--scale-sweep"):
    """Comma-separated positive factors (``"0.2,1,5"`` -> (0.2, 1.0, 5.0)), else a one-line
    ECGInputError naming ``option``."""
    try:
        factors = tuple(float(value) for value in text.split(","))
    except ValueError:
        factors = ()
    if not factors or any(not f > 0 for f in factors):
        raise ECGInputError(f"{option} {text!r}: give positive factors, comma-separated, "
                            f"e.g. {option} 0.2,0.5,1,2,5")
    return factors


def sweep_markdown(frame, metric="auroc", decimals=3):
    """One measure of :func:`scale_sweep`'s table in Markdown: a row per factor, a column
    per class (classes in the table's order; NaN shown as ``nan``).

    Parameters
    ----------
    frame : pandas.DataFrame
        As :func:`scale_sweep` returns it.
    metric : str
        One of auroc, auprc, f1, precision, recall.
    decimals : int

    Returns
    -------
    str
    """
    wide = frame.pivot(index="factor", columns="class", values=metric)
    wide = wide.loc[:, list(dict.fromkeys(frame["class"]))]
    wide.index = [f"x{factor:g}" for factor in wide.index]
    return markdown_table(wide, decimals, corner=f"{metric} at factor")
