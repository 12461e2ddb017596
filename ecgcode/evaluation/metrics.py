"""Reading the CODE-test files and computing the paper's statistics (no plotting, no Keras).

The functions here reproduce the evaluation of Ribeiro et al., Nat Commun 11:1760 (2020):
per-class precision, recall, specificity and F1 score against a gold standard, bootstrap
percentiles over resampled exams, McNemar's test, Cohen's kappa and the choice of the
representative network among several seeds (the thresholds are ``ecgcode.model.thresholds``').

Label and score arrays are ``(n_exams, n_classes)``, their columns in the order of
``classes`` (the paper's ``CLASSES`` by default; any class set can be evaluated).
"""

import os

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, cohen_kappa_score
from statsmodels.stats.contingency_tables import mcnemar

from ecgcode.common import CLASSES, CODE_TEST_DOI, ECGInputError
from ecgcode.data.labels import (
    check_label_values,
    csv_classes,
    exam_id_positions,
    read_label_csv,
)

METRICS = ("Precision", "Recall", "Specificity", "F1 score")
"""Metrics of Table 2, in the paper's column order."""

DOWNLOAD_HINT = f"download the CODE-test data from https://doi.org/{CODE_TEST_DOI}"


# --- Reading ---------------------------------------------------------------------------
def require_file(path, hint=DOWNLOAD_HINT):
    """Raise ECGInputError naming ``path`` and ``hint`` when the file does not exist."""
    if not os.path.isfile(path):
        raise ECGInputError(f"missing file {path}: {hint}")
    return path


def _class_columns(frame, path, classes):
    missing = [name for name in classes if name not in frame.columns]
    if missing:
        raise ECGInputError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"the file needs one column per class: {','.join(classes)}"
        )
    return frame.loc[:, list(classes)]


def gold_classes(path, classes=None):
    """The classes to evaluate: ``ecgcode.data.labels.csv_classes`` on the gold standard,
    every one of its 0/1 columns when it lacks the paper's six and none are given."""
    return csv_classes(read_table(path), classes, path, every_zero_one=True)


def read_table(path):
    """Read a CSV file (``ecgcode.data.labels.read_label_csv``) after ``require_file``."""
    return read_label_csv(require_file(path))


def read_labels(path, classes=CLASSES):
    """Read 0/1 annotations (one column per class; other columns such as exam_id ignored).

    Returns
    -------
    labels : ndarray of int, shape (n_exams, n_classes)
    exam_ids : ndarray or None
        The ``exam_id`` column when the file has one.
    """
    frame = read_table(path)
    values = check_label_values(_class_columns(frame, path, classes).to_numpy(), path, classes)
    exam_ids = frame["exam_id"].to_numpy() if "exam_id" in frame.columns else None
    return values.astype(int), exam_ids


def read_scores(path, classes=CLASSES):
    """Read a model's scores from ``.npy`` (n_exams, n_classes) or ``.csv``.

    A CSV file needs one probability column per class name; an ``exam_id`` column is
    returned for alignment and every other column (e.g. binary decisions) is ignored.

    Returns
    -------
    scores : ndarray of float, shape (n_exams, n_classes)
    exam_ids : ndarray or None
    """
    require_file(path, hint="check the path of the model's predictions")
    exam_ids = None
    if path.endswith(".npy"):
        try:
            scores = np.load(path)
        except (ValueError, OSError) as error:
            raise ECGInputError(f"{path}: not a readable .npy file ({error})") from error
    elif path.endswith(".csv"):
        frame = read_table(path)
        scores = _class_columns(frame, path, classes).to_numpy()
        exam_ids = frame["exam_id"].to_numpy() if "exam_id" in frame.columns else None
    else:
        raise ECGInputError(f"{path}: predictions must be a .npy or .csv file")
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise ECGInputError(
            f"{path}: expected scores of shape (n_exams, {len(classes)}) for "
            f"{','.join(classes)}, got {scores.shape}"
        )
    if not np.isfinite(scores).all():
        raise ECGInputError(f"{path}: scores contain NaN or infinite values")
    return scores, exam_ids


def read_decision_columns(path, classes=CLASSES):
    """Read the 0/1 ``<class>_pred`` columns of a predictions CSV (as written by predict.py).

    Returns
    -------
    decisions : ndarray of int, shape (n_exams, n_classes)
    exam_ids : ndarray or None
    """
    if not path.endswith(".csv"):
        raise ECGInputError(f"{path}: '--thresholds columns' needs a .csv of predictions")
    frame = read_table(path)
    names = [f"{name}_pred" for name in classes]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ECGInputError(f"{path}: no column(s) {', '.join(missing)}; rerun predict.py with "
                            "thresholds or choose another --thresholds")
    decisions = frame.loc[:, names].to_numpy()
    if not np.isin(decisions, (0, 1)).all():
        raise ECGInputError(f"{path}: the <class>_pred columns must hold 0 or 1")
    exam_ids = frame["exam_id"].to_numpy() if "exam_id" in frame.columns else None
    return decisions.astype(int), exam_ids


def align(values, exam_ids, gold_ids, path):
    """Reorder ``values`` to the gold standard's exams (by exam_id when both have ids).

    Raises ECGInputError when the exams cannot be matched one to one (the join is
    ``ecgcode.data.labels.exam_id_positions``).
    """
    if exam_ids is not None and gold_ids is not None:
        positions, _ = exam_id_positions(exam_ids, gold_ids, path,
                                         wanted_from="the gold standard",
                                         fix="use the file that belongs to this gold standard")
        return values[positions]
    if len(values) != len(gold_ids if gold_ids is not None else values):
        raise ECGInputError(f"{path}: row count differs from the gold standard")
    return values


# --- The representative network -------------------------------------------------------
def select_median_model(y_true, score_list):
    """Index of the model immediately above the median by micro-averaged average precision.

    With 10 seeds this is the 6th model in increasing order of average precision, the
    network the paper reports.
    """
    precision = [average_precision_score(y_true, s, average="micro") for s in score_list]
    return int(np.argsort(precision)[len(score_list) // 2])


# --- Table 2 and the bootstrap ---------------------------------------------------------
def _safe_ratio(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's convention)."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def metrics_from_counts(tp, fp, fn, tn):
    """Precision, recall, specificity and F1 from count arrays; stacked on a new last axis."""
    precision = _safe_ratio(tp, tp + fp)
    recall = _safe_ratio(tp, tp + fn)
    specificity = _safe_ratio(tn, tn + fp)
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    return np.stack([precision, recall, specificity, f1], axis=-1)


def counts(y_true, y_pred, axis=-2):
    """True/false positives/negatives summed over the exam axis."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = np.sum(y_true & y_pred, axis=axis)
    fp = np.sum(~y_true & y_pred, axis=axis)
    fn = np.sum(y_true & ~y_pred, axis=axis)
    tn = np.sum(~y_true & ~y_pred, axis=axis)
    return tp, fp, fn, tn


def scores_table(y_true, y_pred):
    """The four metrics per class. Returns ndarray, shape (n_classes, 4) in ``METRICS`` order."""
    return metrics_from_counts(*counts(y_true, y_pred))


def bootstrap_indices(n_exams, n_bootstrap=1000, seed=123):
    """The original study's resamples: one legacy RandomState draw, shape (n_bootstrap, n_exams)."""
    draw = np.random.RandomState(seed).randint(n_exams, size=n_exams * n_bootstrap)
    return draw.reshape(n_bootstrap, n_exams)


def bootstrap_scores(y_true, y_pred, indices):
    """Metrics on every resample. Returns ndarray, shape (n_bootstrap, n_classes, 4)."""
    true_rs = np.asarray(y_true, dtype=bool)[indices]  # (n_bootstrap, n_exams, n_classes)
    pred_rs = np.asarray(y_pred, dtype=bool)[indices]  # (n_bootstrap, n_exams, n_classes)
    return metrics_from_counts(*counts(true_rs, pred_rs, axis=1))


def bootstrap_interval(resampled, percentiles=(2.5, 97.5)):
    """Percentiles over resamples as in the original study: sorted value at int(p/100 * B).

    Returns ndarray, shape (len(percentiles), ...) for ``resampled`` of shape (B, ...).
    """
    ordered = np.sort(resampled, axis=0)
    rows = [int(p / 100.0 * len(ordered)) for p in percentiles]
    return ordered[rows]


def confusion_frame(y_true, predictions, classes=CLASSES):
    """Tidy 2x2 counts: predictor, diagnosis, true label, predicted label, count."""
    rows = []
    for name, y_pred in predictions.items():
        tp, fp, fn, tn = counts(y_true, y_pred)
        for k, diagnosis in enumerate(classes):
            cells = (("not present", "not present", tn[k]), ("not present", "present", fp[k]),
                     ("present", "not present", fn[k]), ("present", "present", tp[k]))
            rows += [(name, diagnosis, t, p, int(c)) for t, p, c in cells]
    return pd.DataFrame(rows, columns=["predictor", "diagnosis", "true label",
                                       "predicted label", "count"])


def table2_frame(y_true, predictions, classes=CLASSES):
    """Table 2: rows diagnoses, columns (metric, predictor) as in the paper."""
    blocks = {name: scores_table(y_true, y_pred) for name, y_pred in predictions.items()}
    columns = pd.MultiIndex.from_product([METRICS, list(predictions)])
    values = np.stack([blocks[name][:, m] for m in range(len(METRICS)) for name in predictions],
                      axis=1)
    return pd.DataFrame(values, index=list(classes), columns=columns)


TABLE2_PREDICTORS = ("DNN", "cardio.", "emerg.", "stud.")
"""Table 2's predictors in the paper's column order: the network, then the cardiology
residents, the emergency residents and the medical students."""

PUBLISHED_TABLE2 = {
    "Precision": [
        [0.867, 0.905, 0.639, 0.605], [0.895, 0.868, 0.963, 0.914], [1.000, 1.000, 0.963, 0.931],
        [0.833, 0.833, 0.824, 0.750], [1.000, 0.769, 0.800, 0.571], [0.947, 0.968, 0.946, 0.912]],
    "Recall": [
        [0.929, 0.679, 0.821, 0.929], [1.000, 0.971, 0.765, 0.941], [1.000, 0.900, 0.867, 0.900],
        [0.938, 0.938, 0.875, 0.750], [0.769, 0.769, 0.615, 0.923], [0.973, 0.811, 0.946, 0.838]],
    "Specificity": [
        [0.995, 0.997, 0.984, 0.979], [0.995, 0.994, 0.999, 0.996], [1.000, 1.000, 0.999, 0.997],
        [0.996, 0.996, 0.996, 0.995], [1.000, 0.996, 0.998, 0.989], [0.997, 0.999, 0.997, 0.996]],
    "F1 score": [
        [0.897, 0.776, 0.719, 0.732], [0.944, 0.917, 0.852, 0.928], [1.000, 0.947, 0.912, 0.915],
        [0.882, 0.882, 0.848, 0.750], [0.870, 0.769, 0.696, 0.706], [0.960, 0.882, 0.946, 0.873]],
}
"""Table 2 of the paper as published (3 decimals): per metric, one row per diagnosis in
``CLASSES`` order, one column per predictor in ``TABLE2_PREDICTORS`` order."""


def published_table2():
    """The published Table 2 laid out as ``table2_frame`` lays out a computed one.

    Returns
    -------
    DataFrame
        Rows the diagnoses (``CLASSES``), columns (metric, predictor) over ``METRICS`` and
        ``TABLE2_PREDICTORS``; values as printed in the paper, 3 decimals.
    """
    columns = pd.MultiIndex.from_product([METRICS, TABLE2_PREDICTORS])
    values = np.concatenate([np.asarray(PUBLISHED_TABLE2[m]) for m in METRICS], axis=1)
    return pd.DataFrame(values, index=list(CLASSES), columns=columns)


# The original study's repository (antonior92/automatic-ecg-diagnosis, commit 1e6e5d6),
# outputs/tables/confusion matrices.csv, transcribed cell by cell.
PUBLISHED_CONFUSION = {
    "DNN": [(795, 4, 2, 26), (789, 4, 0, 34), (797, 0, 0, 30),
            (808, 3, 1, 15), (814, 0, 3, 10), (788, 2, 1, 36)],
    "cardio.": [(797, 2, 9, 19), (788, 5, 1, 33), (797, 0, 3, 27),
                (808, 3, 1, 15), (811, 3, 3, 10), (789, 1, 7, 30)],
    "emerg.": [(786, 13, 5, 23), (792, 1, 8, 26), (796, 1, 4, 26),
               (808, 3, 2, 14), (812, 2, 5, 8), (788, 2, 2, 35)],
    "stud.": [(782, 17, 2, 26), (790, 3, 2, 32), (795, 2, 3, 27),
              (807, 4, 4, 12), (805, 9, 1, 12), (787, 3, 6, 31)],
}
"""The published confusion matrices of the four predictors of Table 2 against the gold
standard: per predictor (``TABLE2_PREDICTORS``), one row per diagnosis in ``CLASSES`` order,
the counts (tn, fp, fn, tp), i.e. (true, predicted) = (not present, not present),
(not present, present), (present, not present), (present, present). Source: the original
study's repository, outputs/tables/confusion matrices.csv (commit 1e6e5d6)."""


def published_confusion():
    """The published confusion matrices laid out as ``confusion_frame`` lays out computed ones.

    Returns
    -------
    DataFrame
        Columns predictor, diagnosis, true label, predicted label, count; 96 rows, predictors
        in ``TABLE2_PREDICTORS`` order, diagnoses in ``CLASSES`` order.
    """
    cells = (("not present", "not present"), ("not present", "present"),
             ("present", "not present"), ("present", "present"))
    rows = [(name, diagnosis, true, predicted, count)
            for name in TABLE2_PREDICTORS
            for diagnosis, row in zip(CLASSES, PUBLISHED_CONFUSION[name])
            for (true, predicted), count in zip(cells, row)]
    return pd.DataFrame(rows, columns=["predictor", "diagnosis", "true label",
                                       "predicted label", "count"])


def bootstrap_frame(y_true, predictions, indices, classes=CLASSES):
    """Tidy bootstrap intervals and the resampled scores of every predictor.

    Returns
    -------
    intervals : DataFrame with columns predictor, diagnosis, metric, low, high
    resampled : dict predictor -> ndarray, shape (n_bootstrap, n_classes, 4)
    """
    rows, resampled = [], {}
    for name, y_pred in predictions.items():
        resampled[name] = bootstrap_scores(y_true, y_pred, indices)
        low, high = bootstrap_interval(resampled[name])
        rows += [(name, d, m, low[k, j], high[k, j])
                 for k, d in enumerate(classes) for j, m in enumerate(METRICS)]
    intervals = pd.DataFrame(rows, columns=["predictor", "diagnosis", "metric", "low", "high"])
    return intervals, resampled


# --- Agreement between predictors -------------------------------------------------------
def mcnemar_pvalues(y_true, y_a, y_b):
    """McNemar's chi-square p-value (1 dof, no continuity correction) per class.

    The test compares which exams each predictor gets right; classes on which the two
    never disagree get NaN (the statistic is 0/0).
    """
    right_a = np.asarray(y_a) == np.asarray(y_true)
    right_b = np.asarray(y_b) == np.asarray(y_true)
    pvalues = []
    for k in range(right_a.shape[1]):
        a, b = right_a[:, k], right_b[:, k]
        table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
        if table[0][1] + table[1][0] == 0:
            pvalues.append(np.nan)
            continue
        pvalues.append(mcnemar(table, exact=False, correction=False).pvalue)
    return np.array(pvalues)


def kappas(y_a, y_b):
    """Cohen's kappa (scikit-learn) between two raters, per class."""
    return np.array([cohen_kappa_score(y_a[:, k], y_b[:, k]) for k in range(y_a.shape[1])])


def pairwise_frame(predictions, statistic, label=" vs ", classes=CLASSES):
    """Apply ``statistic(y_a, y_b)`` to every pair of predictors (in order); rows 'a vs b'."""
    names = list(predictions)
    rows, index = [], []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            rows.append(statistic(predictions[first], predictions[second]))
            index.append(f"{first}{label}{second}")
    return pd.DataFrame(rows, index=index, columns=list(classes))
