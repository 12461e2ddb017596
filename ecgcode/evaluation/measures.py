"""Per-class measures of a model's scores with bootstrap 95 % intervals.

Discrimination (AUROC, AUPRC), calibration (expected calibration error, Brier score) and
the paper's Table-2 metrics at given thresholds (``ecgcode.evaluation.metrics``), each
with the 2.5-97.5 percentile interval over resamples of the exams. The resamples are the
original study's (``ecgcode.evaluation.metrics.bootstrap_indices``); a resample is held as
the number of times it draws each exam (its *weights*), so that every measure is computed
on all resamples at once. On unit weights each measure equals scikit-learn's (``roc_auc_score``,
``average_precision_score``, ``brier_score_loss``; the tests check it on resamples too).

A measure that a set of exams does not define is NaN: AUROC without positive or without
negative exams, AUPRC without positive exams. Its interval is NaN too when more than
:data:`MAX_UNDEFINED` of the resamples leave it undefined (too few positives to say).
"""

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ecgcode.evaluation import metrics as em

N_BINS = 10
"""Equal-width probability bins of the reliability diagram and of the calibration error."""

MAX_UNDEFINED = 0.05
"""Largest share of resamples on which a measure may be undefined for its interval to be given."""

CHUNK = 100
"""Resamples whose weights are held in memory at once."""

SCORE_MEASURES = ("auroc", "auprc", "ece", "brier")
"""Measures of the scores themselves, in the report's order."""

THRESHOLD_MEASURES = ("precision", "recall", "specificity", "f1")
"""Table 2's measures of decisions at thresholds, in ``ecgcode.evaluation.metrics.METRICS``
order."""


# --- Measures on weighted exams --------------------------------------------------------
def resample_weights(indices, n_exams):
    """How many times each resample draws each exam: (n_resamples, n_exams) float64."""
    indices = np.asarray(indices)
    offsets = np.arange(len(indices))[:, None] * n_exams
    counts = np.bincount((indices + offsets).ravel(), minlength=len(indices) * n_exams)
    return counts.reshape(len(indices), n_exams).astype(np.float64)


def _tie_groups(scores, descending=False):
    """The order that sorts ``scores`` and the start of each run of equal scores in it."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, starts


def weighted_auroc(y_true, scores, weights):
    """AUROC of weighted exams: the chance that a positive outscores a negative (ties: 1/2).

    Parameters
    ----------
    y_true : array_like
        (n_exams,) 0/1 labels.
    scores : array_like
        (n_exams,) scores.
    weights : numpy.ndarray
        (n_resamples, n_exams) weights (e.g. :func:`resample_weights`).

    Returns
    -------
    numpy.ndarray
        (n_resamples,); NaN where a resample has no positive or no negative exam.
    """
    y = np.asarray(y_true) > 0.5
    order, starts = _tie_groups(np.asarray(scores, dtype=np.float64))
    positive = np.add.reduceat(weights[:, order] * y[order], starts, axis=1)  # (B, groups)
    negative = np.add.reduceat(weights[:, order] * ~y[order], starts, axis=1)  # (B, groups)
    below = np.cumsum(negative, axis=1) - negative  # negatives scoring strictly lower
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    won = (positive * (below + 0.5 * negative)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, won / pairs, np.nan)


def weighted_average_precision(y_true, scores, weights):
    """Average precision (AUPRC, scikit-learn's step-wise sum) of weighted exams.

    Returns
    -------
    numpy.ndarray
        (n_resamples,); NaN where a resample has no positive exam.
    """
    y = np.asarray(y_true) > 0.5
    order, starts = _tie_groups(np.asarray(scores, dtype=np.float64), descending=True)
    positive = np.add.reduceat(weights[:, order] * y[order], starts, axis=1)  # (B, groups)
    called = np.cumsum(np.add.reduceat(weights[:, order], starts, axis=1), axis=1)
    true_pos = np.cumsum(positive, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(called > 0, true_pos / called, 0.0)
        total = positive.sum(axis=1)
        return np.where(total > 0, (positive * precision).sum(axis=1) / total, np.nan)


def probability_bins(probabilities, n_bins=N_BINS):
    """The bin of each probability among ``n_bins`` equal-width bins of [0, 1].

    The binning of scikit-learn's ``calibration_curve(strategy="uniform")``: a probability
    on an edge falls in the lower bin.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(probabilities, dtype=np.float64))


def weighted_ece(y_true, probabilities, weights, n_bins=N_BINS):
    """Expected calibration error of weighted exams over ``n_bins`` equal-width bins.

    The sum over bins of the bin's share of exams times the gap between its observed
    frequency of positives and its mean probability.

    Returns
    -------
    numpy.ndarray
        (n_resamples,)
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = (np.asarray(y_true) > 0.5).astype(np.float64)
    member = np.eye(n_bins)[probability_bins(p, n_bins)]  # (n_exams, n_bins)
    gaps = weights @ (member * y[:, None]) - weights @ (member * p[:, None])  # (B, n_bins)
    return np.abs(gaps).sum(axis=1) / weights.sum(axis=1)


def weighted_brier(y_true, probabilities, weights):
    """Brier score (mean squared difference of probability and label) of weighted exams."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = (np.asarray(y_true) > 0.5).astype(np.float64)
    return weights @ (p - y) ** 2 / weights.sum(axis=1)


SCORE_FUNCTIONS = {"auroc": weighted_auroc, "auprc": weighted_average_precision,
                   "ece": weighted_ece, "brier": weighted_brier}


# --- Point estimates and intervals -----------------------------------------------------
def point_measures(y_true, scores):
    """The :data:`SCORE_MEASURES` of one class, scikit-learn's where it has them.

    Returns
    -------
    dict
        Measure -> float (NaN where undefined).
    """
    y = (np.asarray(y_true) > 0.5).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    both = 0 < y.sum() < len(y)
    return {"auroc": roc_auc_score(y, s) if both else np.nan,
            "auprc": average_precision_score(y, s) if y.any() else np.nan,
            "ece": float(weighted_ece(y, s, np.ones((1, len(y))))[0]),
            "brier": brier_score_loss(y, s) if len(y) else np.nan}


def resampled_measures(y_true, scores, indices):
    """Every :data:`SCORE_MEASURES` of one class on every resample.

    Returns
    -------
    dict
        Measure -> (n_resamples,) values.
    """
    parts = {name: [] for name in SCORE_FUNCTIONS}
    for start in range(0, len(indices), CHUNK):
        weights = resample_weights(indices[start:start + CHUNK], len(y_true))
        for name, function in SCORE_FUNCTIONS.items():
            parts[name].append(function(y_true, scores, weights))
    return {name: np.concatenate(values) for name, values in parts.items()}


def interval(resampled):
    """The 95 % bootstrap interval of one measure: (low, high), NaN when too often undefined.

    The percentiles are the original study's (``ecgcode.evaluation.metrics.bootstrap_interval``),
    taken over the resamples on which the measure is defined.
    """
    values = np.asarray(resampled, dtype=np.float64)
    defined = values[np.isfinite(values)]
    if not len(values) or len(defined) < (1 - MAX_UNDEFINED) * len(values):
        return np.nan, np.nan
    low, high = em.bootstrap_interval(defined)
    return float(low), float(high)


def score_table(y_true, scores, classes, indices=None):
    """AUROC, AUPRC, ECE and Brier score per class, with their intervals.

    Parameters
    ----------
    y_true, scores : numpy.ndarray
        (n_exams, n_classes) labels and probabilities.
    classes : sequence of str
    indices : numpy.ndarray, optional
        (n_resamples, n_exams) bootstrap draws; None gives no intervals (NaN).

    Returns
    -------
    pandas.DataFrame
        Columns class, exams, positives, then ``<measure>``, ``<measure>_low`` and
        ``<measure>_high`` for each of :data:`SCORE_MEASURES`.
    """
    rows = []
    for k, name in enumerate(classes):
        y, s = y_true[:, k], scores[:, k]
        row = {"class": name, "exams": len(y), "positives": int((y > 0.5).sum())}
        points = point_measures(y, s)
        resampled = resampled_measures(y, s, indices) if indices is not None else {}
        for measure in SCORE_MEASURES:
            low, high = interval(resampled[measure]) if resampled else (np.nan, np.nan)
            row.update({measure: points[measure], f"{measure}_low": low,
                        f"{measure}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def threshold_table(y_true, scores, thresholds, classes, indices=None):
    """Table 2's precision, recall, specificity and F1 at ``thresholds``, with intervals.

    Parameters
    ----------
    y_true, scores : numpy.ndarray
        (n_exams, n_classes).
    thresholds : dict
        Class name -> float, or None (no decision: the row's measures are NaN).
    classes : sequence of str
    indices : numpy.ndarray, optional
        Bootstrap draws, as for :func:`score_table`.

    Returns
    -------
    pandas.DataFrame
        Columns class, threshold, exams, positives, then each of
        :data:`THRESHOLD_MEASURES` with ``_low`` and ``_high``.
    """
    values = np.array([np.nan if thresholds.get(name) is None else thresholds[name]
                       for name in classes], dtype=np.float64)
    decided = np.isfinite(values)
    predicted = (scores > np.where(decided, values, np.inf)).astype(int)  # ecgcode.model.thresholds
    points = em.scores_table(y_true, predicted)  # (n_classes, 4)
    if indices is not None:
        lows, highs = em.bootstrap_interval(em.bootstrap_scores(y_true, predicted, indices))
    rows = []
    for k, name in enumerate(classes):
        row = {"class": name, "threshold": values[k], "exams": len(y_true),
               "positives": int((y_true[:, k] > 0.5).sum())}
        for m, measure in enumerate(THRESHOLD_MEASURES):
            known = decided[k] and indices is not None
            row.update({measure: points[k, m] if decided[k] else np.nan,
                        f"{measure}_low": lows[k, m] if known else np.nan,
                        f"{measure}_high": highs[k, m] if known else np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def reliability_curve(y_true, probabilities, n_bins=N_BINS):
    """Points of the reliability diagram: scikit-learn's ``calibration_curve`` and bin sizes.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Observed frequency of positives, mean probability and number of exams of every
        non-empty bin.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    observed, predicted = calibration_curve(np.asarray(y_true) > 0.5, p, n_bins=n_bins,
                                            strategy="uniform")
    sizes = np.bincount(probability_bins(p, n_bins), minlength=n_bins)
    return observed, predicted, sizes[sizes > 0]
