"""Per-class recalibration of a model's probabilities: Platt scaling or a temperature.

Both map a probability ``p`` through its logit ``z = log(p / (1 - p))``:

* ``platt``: ``sigmoid(slope * z + intercept)``, a logistic regression of the labels on
  ``z`` (scikit-learn, nearly unpenalised);
* ``temperature``: ``sigmoid(z / temperature)``, the temperature minimising the negative
  log-likelihood (scipy).

Both are increasing in ``p`` (a fitted slope that is not positive is refused), so a
threshold on the raw probability makes the same decisions as the mapped threshold on the
recalibrated one: thresholds are kept on the raw scale. A calibration is a JSON-ready
dict ``{"method": ..., "classes": {class: {parameters} or None}}``; a class without both
positive and negative exams where it is fitted keeps its probabilities (None).
"""

import numpy as np

from ecgcode.common import ECGInputError

METHODS = ("platt", "temperature")
"""The recalibrations :func:`fit_calibration` knows."""

EPSILON = 1e-7
"""Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking their logit."""


def logit(probabilities):
    """The log-odds of clipped probabilities."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def sigmoid(z):
    """The logistic function."""
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def _fit_platt(z, y):
    from sklearn.linear_model import LogisticRegression  # deferred: only fitting needs it

    model = LogisticRegression(C=1e6, max_iter=1000).fit(z[:, None], y)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    return {"slope": slope, "intercept": intercept} if slope > 0 else None


def _fit_temperature(z, y):
    from scipy.optimize import minimize_scalar  # deferred: only fitting needs it

    def loss(log_t):
        scaled = z / np.exp(log_t)
        return np.sum(np.logaddexp(0, scaled) - y * scaled)  # negative log-likelihood

    best = minimize_scalar(loss, bounds=(-5, 5), method="bounded")
    return {"temperature": float(np.exp(best.x))}


def fit_calibration(y_true, probabilities, classes, method):
    """Fit one recalibration per class.

    Parameters
    ----------
    y_true, probabilities : numpy.ndarray
        (n_exams, n_classes) labels and the model's probabilities on the exams that fit it.
    classes : sequence of str
    method : str
        One of :data:`METHODS`.

    Returns
    -------
    dict
        ``{"method": method, "classes": {class: parameters or None}}``.
    """
    if method not in METHODS:
        raise ECGInputError(f"--calibrate {method!r}: choose {' or '.join(METHODS)}")
    fit = _fit_platt if method == "platt" else _fit_temperature
    fitted = {}
    for k, name in enumerate(classes):
        y = (np.asarray(y_true[:, k]) > 0.5).astype(int)
        fitted[name] = fit(logit(probabilities[:, k]), y) if 0 < y.sum() < len(y) else None
    return {"method": method, "classes": fitted}


def apply_calibration(probabilities, calibration, classes):
    """Recalibrated probabilities: each class through its fitted map (unchanged without one).

    Parameters
    ----------
    probabilities : numpy.ndarray
        (n_exams, n_classes), columns in ``classes`` order.
    calibration : dict or None
        As :func:`fit_calibration` returns it (None: no change).
    classes : sequence of str

    Returns
    -------
    numpy.ndarray
        (n_exams, n_classes), of the dtype of ``probabilities``.
    """
    probabilities = np.asarray(probabilities)
    if not calibration:
        return probabilities
    out = probabilities.copy()
    for k, name in enumerate(classes):
        parameters = calibration["classes"].get(name)
        if parameters:
            out[:, k] = _recalibrate(probabilities[:, k], parameters)
    return out


def _recalibrate(probabilities, parameters):
    """One class's probabilities through its fitted map."""
    z = logit(probabilities)
    if "temperature" in parameters:
        return sigmoid(z / parameters["temperature"])
    return sigmoid(parameters["slope"] * z + parameters["intercept"])


def calibrate_outputs(probabilities, thresholds, calibration, classes):
    """Recalibrated probabilities, and the thresholds mapped the same way.

    The thresholds of a calibration's file are on the raw scale; mapped through the same
    increasing function, they make the same decisions on the recalibrated probabilities.
    This is what predict.py and ``predict.py --serve`` apply.

    Parameters
    ----------
    probabilities : numpy.ndarray
        (n_exams, n_classes), columns in ``classes`` order.
    thresholds : dict or None
        Class name -> float or None.
    calibration : dict or None
        As :func:`fit_calibration` returns it; None changes nothing.
    classes : sequence of str

    Returns
    -------
    (numpy.ndarray, dict or None)
    """
    if not calibration:
        return probabilities, thresholds
    mapped = None if thresholds is None else dict(thresholds)
    for name, value in (thresholds or {}).items():
        parameters = calibration["classes"].get(name)
        if parameters and value is not None:
            mapped[name] = float(_recalibrate(np.array([value]), parameters)[0])
    return apply_calibration(probabilities, calibration, classes), mapped


def describe_calibration(calibration):
    """One line naming the method and each class's parameters (for reports and messages)."""
    parts = []
    for name, parameters in calibration["classes"].items():
        if not parameters:
            parts.append(f"{name} unchanged")
        elif "temperature" in parameters:
            parts.append(f"{name} T={parameters['temperature']:.3g}")
        else:
            parts.append(f"{name} {parameters['slope']:.3g}z{parameters['intercept']:+.3g}")
    return f"{calibration['method']}: " + ", ".join(parts)
