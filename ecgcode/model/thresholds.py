"""Per-class decision thresholds: the rule, the files, the choices and the F1-optimal values.

The rule: a score strictly greater than its class's threshold is a positive
(:func:`binarize`). A threshold of None (``null`` in JSON) means *no decision* for that
class: train.py writes it for a class without positive validation exams, and predict.py
then leaves the class's ``<class>_pred`` column empty. A consumer that must decide every
class fills such gaps with :func:`fill_missing` (the demo and bench.py, with the same
note), or refuses them (generate_figures.py's ``--thresholds FILE.json``).

Here too: reading a thresholds file in any format the project writes
(:func:`read_thresholds`), writing train.py's ``thresholds.json``
(:func:`write_thresholds`, :func:`read_validation_f1`), predict.py's choice
(:func:`choose_thresholds`), generate_figures.py's ``--thresholds`` (:func:`parse_thresholds`)
and the F1-optimal thresholds (:func:`f1_optimal_thresholds`, :func:`f1_max_thresholds`).
Free of TensorFlow; scikit-learn is imported by the F1-optimal choice only.
"""

import json

import numpy as np

from ecgcode.common import CLASSES, PAPER_THRESHOLDS, ECGInputError
from ecgcode.model.metadata import is_paper_set
from ecgcode.model.runfolder import write_json

RULE = "positive when score > threshold"
"""The decision rule, as train.py's thresholds.json states it."""

FALLBACK_THRESHOLD = 0.5
"""The threshold :func:`fill_missing` gives a class without one."""


# --- The rule ------------------------------------------------------------------------
def binarize(scores, thresholds):
    """0/1 predictions: a score strictly greater than its class's threshold is positive.

    Parameters
    ----------
    scores : array_like
        (n_exams, n_classes), or one class's scores, or one score.
    thresholds : array_like
        One threshold per class (broadcast against ``scores``), or one number.

    Returns
    -------
    numpy.ndarray of int
    """
    return (np.asarray(scores) > np.asarray(thresholds)).astype(int)


def fill_missing(thresholds, classes, default=FALLBACK_THRESHOLD, say=print):
    """Thresholds for every one of ``classes``: ``default`` where none is known, said once.

    A null threshold means "no decision", and predict.py leaves that class undecided. A
    consumer that must decide every class (the demo's evaluation, bench.py's agreement of
    decisions) fills the gaps here, all with this one rule and this one note.

    Parameters
    ----------
    thresholds : dict
        Class name -> float or None (as :func:`read_thresholds` returns); may lack classes.
    classes : sequence of str
    default : float
    say : callable
        Called with the one-line note when a class was filled (default: print it).

    Returns
    -------
    values : dict
        Class name -> float, for every name in ``classes``.
    filled : list of str
        The classes that got ``default``.
    """
    filled = [name for name in classes if thresholds.get(name) is None]
    if filled:
        say(f"note: no validation threshold for {', '.join(filled)}; using {default}")
    values = {name: default if name in filled else float(thresholds[name]) for name in classes}
    return values, filled


# --- Files ---------------------------------------------------------------------------
def _load_json(path):
    """The content of the JSON file ``path``; ECGInputError when missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ECGInputError(f"{path}: thresholds file not found; check the path") from None
    except (OSError, ValueError) as error:
        raise ECGInputError(f"{path}: cannot read thresholds JSON ({error})") from None


def read_thresholds(path, classes=CLASSES):
    """Read per-class decision thresholds from a JSON file.

    Accepts ``{class: number}``, ``{class: {"threshold": number, ...}}``, or either under
    a top-level ``"classes"`` or ``"thresholds"`` key (train.py's ``thresholds.json`` is
    ``{"classes": {class: {"threshold": ...}}, ...}``). A ``null`` threshold (train.py's
    choice for a class without positive validation exams) is kept as None.

    Parameters
    ----------
    path : str
    classes : sequence of str
        The classes that need a threshold (the paper's six by default).

    Returns
    -------
    dict
        Class name -> float or None, for every name in ``classes``.

    Raises
    ------
    ECGInputError
        Missing or unreadable file, or a class without a numeric (or null) threshold.
    """
    content = _load_json(path)
    for key in ("classes", "thresholds"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
    if not isinstance(content, dict):
        raise ECGInputError(f"{path}: thresholds must be a JSON object mapping class to number")
    return {name: _class_threshold(content, name, path, classes) for name in classes}


def _class_threshold(content, name, path, classes):
    """The threshold of class ``name`` in a thresholds mapping: float or None."""
    value = content.get(name, "missing")
    if isinstance(value, dict):
        value = value.get("threshold", "missing")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ECGInputError(
            f"{path}: no numeric threshold for class {name}; the file must give one for "
            f"each of {', '.join(classes)}"
        )
    return None if value is None else float(value)


def write_thresholds(path, per_class, epoch, val_loss):
    """Write train.py's ``thresholds.json`` (atomically).

    Parameters
    ----------
    path : str
    per_class : dict
        :func:`f1_max_thresholds` of the validation set.
    epoch : int
        The (1-based) epoch whose model the thresholds belong to.
    val_loss : float
    """
    write_json(path, {"epoch": epoch, "val_loss": val_loss, "rule": RULE,
                      "classes": per_class})


def write_chosen_thresholds(path, record):
    """Write thresholds chosen by validate.py as a thresholds file that predict.py reads.

    The file is :func:`read_thresholds`'s ``{"classes": {class: {"threshold": t, ...}}}``,
    each class with the precision, recall, specificity and F1 its threshold reached on
    the measuring exams, plus ``chosen_by`` (the provenance: rule, data, the exams that
    chose and those that measured), ``calibration`` (or null) and ``replaces``: the file
    this one replaces, when there was one (without its own ``replaces``).

    Parameters
    ----------
    path : str
    record : dict
        ``ecgcode.evaluation.validation.threshold_record``: ``thresholds``, ``measures``,
        ``calibration`` and ``provenance``.
    """
    previous = None
    try:
        previous = _load_json(path)
    except ECGInputError:
        previous = None  # no file yet (or an unreadable one, replaced)
    if isinstance(previous, dict):
        previous.pop("replaces", None)
    unmeasured = dict.fromkeys(("precision", "recall", "specificity", "f1", "positives"))
    classes = {name: {"threshold": value, **(record["measures"].get(name) or unmeasured)}
               for name, value in record["thresholds"].items()}
    write_json(path, {"rule": RULE, "chosen_by": record["provenance"], "classes": classes,
                      "calibration": record["calibration"], "replaces": previous})


def read_calibration(path):
    """The recalibration stored in a thresholds file (``--write-thresholds`` with
    ``--calibrate``), or None (``ecgcode.model.calibration`` applies it)."""
    content = _load_json(path)
    calibration = content.get("calibration") if isinstance(content, dict) else None
    return calibration if isinstance(calibration, dict) else None


def read_validation_f1(path, classes):
    """Validation F1 per class at the thresholds of train.py's ``thresholds.json``.

    Returns
    -------
    dict
        Class name -> float, or None for a class without a threshold.
    """
    content = _load_json(path)["classes"]
    return {name: content[name]["f1"] for name in classes}


# --- Choices -------------------------------------------------------------------------
def choose_thresholds(paper, path, run_thresholds_path, classes=CLASSES, stored=None):
    """predict.py's thresholds: the paper's, a file's, the run folder's, the model's, or None.

    Parameters
    ----------
    paper : bool
        ``--paper-thresholds``: the original study's (for the paper's six classes only).
    path : str or None
        ``--thresholds FILE.json``.
    run_thresholds_path : str or None
        The run folder's thresholds file (``ecgcode.model.modelfiles.resolve_model``).
    classes : sequence of str
        The model's classes.
    stored : dict, optional
        Thresholds stored in the model (an ONNX export of a run: class -> float or None).

    Returns
    -------
    dict or None
        Class name -> float or None (no decision for that class); None: no decisions.
    """
    if paper:
        if not is_paper_set(classes):
            raise ECGInputError(
                f"--paper-thresholds: the model's classes are {','.join(classes)}, not the "
                f"paper's {','.join(CLASSES)}; give --thresholds FILE.json for them"
            )
        return dict(PAPER_THRESHOLDS)
    if path:
        return read_thresholds(path, classes)
    if run_thresholds_path:
        return read_thresholds(run_thresholds_path, classes)
    if stored is not None:
        return {name: stored.get(name) for name in classes}
    return None


def choose_calibration(paper, path, run_thresholds_path, metadata=None):
    """The recalibration that comes with predict.py's thresholds, or None.

    The same order as :func:`choose_thresholds`: ``--paper-thresholds`` has none, then
    ``--thresholds FILE.json``, the run folder's thresholds file and an export's metadata
    (``calibration``), each as validate.py's ``--write-thresholds`` with ``--calibrate``
    writes it.
    """
    if paper:
        return None
    if path or run_thresholds_path:
        return read_calibration(path or run_thresholds_path)
    stored = json.loads((metadata or {}).get("calibration") or "null")
    return stored if isinstance(stored, dict) else None


def parse_thresholds(text, y_true=None, scores=None, classes=CLASSES):
    """Thresholds from generate_figures.py's --thresholds: every class must have one.

    Parameters
    ----------
    text : str
        'paper', 'f1' (F1-optimal on ``y_true`` and ``scores``), a .json file (a class
        with a null threshold is an error) or one number per class, comma-separated.
        'columns' is handled by the caller (a CSV's own 0/1 columns, not thresholds).
    y_true, scores : numpy.ndarray, optional
        (n_exams, n_classes), for 'f1'.
    classes : sequence of str

    Returns
    -------
    numpy.ndarray
        (n_classes,) thresholds, for :func:`binarize`.
    """
    if text == "paper":
        if not is_paper_set(classes):
            raise ECGInputError(f"--thresholds paper: the paper's thresholds are for "
                                f"{','.join(CLASSES)}, not {','.join(classes)}; give 'f1', "
                                "a thresholds.json or one number per class")
        return np.array([PAPER_THRESHOLDS[name] for name in CLASSES])
    if text == "f1":
        return f1_optimal_thresholds(y_true, scores)
    if text.endswith(".json"):
        return _every_class_thresholds(text, classes)
    try:
        values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        values = np.array([])
    if values.shape != (len(classes),):
        raise ECGInputError(f"--thresholds {text!r}: give 'paper', 'f1', 'columns', a .json "
                            f"file or {len(classes)} comma-separated numbers")
    return values


def _every_class_thresholds(path, classes):
    """(n_classes,) thresholds of a JSON file; a class without one (null) is an error."""
    thresholds = read_thresholds(path, classes)
    missing = [name for name, value in thresholds.items() if value is None]
    if missing:
        raise ECGInputError(f"{path}: no threshold for {', '.join(missing)} (no positive "
                            "validation exams?); give one number per class to --thresholds")
    return np.array([thresholds[name] for name in classes], dtype=float)


# --- F1-optimal thresholds -----------------------------------------------------------
def f1_optimal_thresholds(y_true, scores):
    """Per-class threshold maximising F1 on (y_true, scores), for use with :func:`binarize`.

    Among equally good cut points the lowest score wins (as in the original study). The
    returned threshold lies halfway between the chosen cut score and the next lower score,
    so that ``scores > threshold`` selects exactly the exams with ``score >= cut``. This is
    generate_figures.py's ``--thresholds f1`` and its supplementary splits.

    Parameters
    ----------
    y_true : numpy.ndarray
        (n_exams, n_classes) 0/1 labels.
    scores : numpy.ndarray
        (n_exams, n_classes).

    Returns
    -------
    numpy.ndarray
        (n_classes,) thresholds; a number even for a class without positive exams.
    """
    from sklearn.metrics import precision_recall_curve  # deferred: only this choice needs it

    thresholds = []
    for k in range(y_true.shape[1]):
        precision, recall, cuts = precision_recall_curve(y_true[:, k], scores[:, k])
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        thresholds.append(threshold_below(cuts[int(np.argmax(f1[:-1]))], scores[:, k]))
    return np.array(thresholds)


def threshold_below(cut, scores):
    """The threshold that makes exactly the scores ``>= cut`` positive under :func:`binarize`.

    Halfway between ``cut`` and the next lower score (``cut - 1e-10`` when none is lower).
    """
    scores = np.asarray(scores)
    below = scores[scores < cut]
    return float((cut + below.max()) / 2 if below.size else cut - 1e-10)


def f1_max_thresholds(y_true, y_score, classes):
    """train.py's validation thresholds: :func:`f1_optimal_thresholds`, with their scores.

    The same cut as :func:`f1_optimal_thresholds` for a class with positive exams. They
    differ only where train.py must not guess: a class without positive validation exams
    gets None (no decision) instead of a meaningless number, and soft labels count as
    positive above 0.5. Each class also records the precision, recall and F1 its
    threshold reaches, for thresholds.json.

    Parameters
    ----------
    y_true, y_score : numpy.ndarray
        (n_exams, n_classes) labels and scores.
    classes : sequence of str
        The names of the columns.

    Returns
    -------
    dict
        class -> {"threshold", "precision", "recall", "f1", "positives"}; the numbers are
        None for a class without positive exams.
    """
    result = {}
    for k, name in enumerate(classes):
        y = np.asarray(y_true[:, k]) > 0.5
        s = np.asarray(y_score[:, k], dtype=np.float64)
        result[name] = _best_f1_cut(y, s)
    return result


def _best_f1_cut(y, s):
    """The thresholds.json entry of one class (boolean labels ``y``, scores ``s``)."""
    entry = {"threshold": None, "precision": None, "recall": None, "f1": None,
             "positives": int(y.sum())}
    if not y.any():
        return entry
    threshold = float(f1_optimal_thresholds(y[:, None].astype(int), s[:, None])[0])
    predicted = binarize(s, threshold).astype(bool)
    true_pos = int((predicted & y).sum())
    precision = true_pos / max(int(predicted.sum()), 1)
    recall = true_pos / int(y.sum())
    f1_value = 2 * precision * recall / (precision + recall) if true_pos else 0.0
    entry.update(threshold=threshold, precision=precision, recall=recall, f1=f1_value)
    return entry


# --- Thresholds chosen by a named rule -------------------------------------------------
RULE_NAMES = ("f1", "youden", "sensitivity", "specificity")
"""The named rules: F1-optimal, Youden's J, a minimum sensitivity, a minimum specificity."""

DEFAULT_RULES = ("f1", "youden", "sensitivity=0.9", "specificity=0.99")
"""The rules validate.py reports by default."""


def parse_rule(text, option="--rules"):
    """A named threshold rule as ``(name, target)``.

    Parameters
    ----------
    text : str
        ``f1`` (the F1-optimal threshold), ``youden`` (the largest sensitivity +
        specificity - 1), ``sensitivity=X`` (the highest threshold whose sensitivity is at
        least X) or ``specificity=X`` (the lowest threshold whose specificity is at least
        X), with 0 < X <= 1.
    option : str
        The option named in the error message.

    Returns
    -------
    (str, float or None)
        The rule's name and its target (None for ``f1`` and ``youden``).
    """
    name, sep, value = str(text).strip().lower().partition("=")
    target = None
    if sep:
        try:
            target = float(value)
        except ValueError:
            target = float("nan")
    valid = (name in ("f1", "youden") and not sep) or (
        name in ("sensitivity", "specificity") and target is not None and 0 < target <= 1)
    if not valid:
        raise ECGInputError(f"{option} {text!r}: a rule is f1, youden, sensitivity=X or "
                            "specificity=X with 0 < X <= 1 (e.g. sensitivity=0.9)")
    return name, target


def rule_text(rule):
    """The canonical text of a rule (``"sensitivity=0.9"``), as reports and files write it."""
    name, target = parse_rule(rule) if isinstance(rule, str) else rule
    return name if target is None else f"{name}={target:g}"


def rule_threshold(y_true, scores, rule):
    """The threshold a named rule chooses for one class, or None where it is undefined.

    Every rule picks a cut among the class's scores and returns :func:`threshold_below`
    it, so that :func:`binarize` makes the scores ``>= cut`` positive; ``f1`` is
    :func:`f1_optimal_thresholds`. ``specificity=X`` may choose to call nothing positive
    (the threshold is then the highest score). A rule needs positive exams (and
    ``youden`` and ``specificity=X`` negative ones): without them the answer is None.

    Parameters
    ----------
    y_true : array_like
        (n_exams,) 0/1 labels of one class.
    scores : array_like
        (n_exams,) its scores.
    rule : str or tuple
        As :func:`parse_rule` reads it.

    Returns
    -------
    float or None
    """
    name, target = parse_rule(rule) if isinstance(rule, str) else rule
    y = np.asarray(y_true) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    needs_negatives = name in ("youden", "specificity")
    if (name != "specificity" and n_pos == 0) or (needs_negatives and n_neg == 0):
        return None
    if name == "f1":
        return float(f1_optimal_thresholds(y[:, None].astype(int), s[:, None])[0])
    cuts, true_pos, false_pos = _cut_counts(y, s)
    sensitivity = true_pos / max(n_pos, 1)
    specificity = 1 - false_pos / max(n_neg, 1)
    if name == "youden":
        youden = sensitivity + specificity - 1
        index = np.flatnonzero(youden >= youden.max() - 1e-12)[-1]  # ties: the lowest cut
    elif name == "sensitivity":
        index = np.flatnonzero(sensitivity >= target - 1e-12)[0]  # the highest such cut
    else:
        reached = np.flatnonzero(specificity >= target - 1e-12)
        if not reached.size:
            return float(s.max())  # only calling nothing positive reaches the target
        index = reached[-1]  # the lowest such cut
    return threshold_below(cuts[index], s)


def _cut_counts(y, s):
    """Distinct scores from the highest down, and the true and false positives at each
    (the exams scoring at least that much called positive)."""
    order = np.argsort(-s, kind="stable")
    ordered = s[order]
    last = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])  # end of each tie group
    positives = np.cumsum(y[order])
    return ordered[last], positives[last], (last + 1) - positives[last]


def rule_thresholds(y_true, scores, rule, classes):
    """:func:`rule_threshold` for every class.

    Parameters
    ----------
    y_true, scores : numpy.ndarray
        (n_exams, n_classes) labels and scores.
    rule : str or tuple
    classes : sequence of str

    Returns
    -------
    dict
        Class name -> float, or None where the rule is undefined (no positive exams).
    """
    return {name: rule_threshold(y_true[:, k], scores[:, k], rule)
            for k, name in enumerate(classes)}
