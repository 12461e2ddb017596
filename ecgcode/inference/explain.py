"""Per-lead, per-sample explanations of the model's predictions: integrated gradients.

Integrated gradients (Sundararajan, Taly & Yan, ICML 2017) attribute an output ``F`` to
each input value ``x_i`` as ``(x_i - x0_i)`` times the average of ``dF/dx_i`` along the
straight path from a baseline ``x0`` to ``x``. The baseline here is the all-zero tracing
(a flat line: no electrical activity) and ``F`` the class probability, so the
attributions of an exam add up to ``F(x) - F(0)`` (completeness), up to the error of the
path integral (trapezoidal rule, ``steps`` intervals). A positive attribution is evidence
for the class, a negative one evidence against it.

The method is a few lines of TensorFlow gradients: the explanation libraries that wrap
it for Keras pull in old TensorFlow pins, so it is written here and tested against its
two defining properties (tests/test_explain.py).
"""

import dataclasses
import json
import os

import numpy as np

from ecgcode.common import (
    CLASSES,
    INPUT_SHAPE,
    LEADS,
    SAMPLING_RATE,
    ECGInputError,
    atomic_output,
)
from ecgcode.inference import plotting
from ecgcode.model.export import float32_model

DEFAULT_STEPS = 64
"""Intervals of the trapezoidal path integral (the completeness gap shrinks with more)."""

GRADIENT_BATCH = 16
"""Path points per gradient batch."""

SMOOTHING_SECONDS = 0.04
"""Width of the moving average applied to the attributions drawn on the sheet (40 ms)."""

FOR_COLOR, AGAINST_COLOR = "#7b3294", "#008837"
"""Shading of evidence for the class (purple) and against it (green): apart from the
sheet's pink-red grid and readable by most colour-blind readers."""

MAX_ALPHA = 0.6
SHEET_DPI = 200
"""Resolution of the saliency sheets (that of predict.py --plot)."""


# --- Attributions ------------------------------------------------------------------
@dataclasses.dataclass
class Explanation:
    """Integrated-gradients attributions of a batch of exams.

    Attributes
    ----------
    attributions : numpy.ndarray, shape (n, 4096, 12), float32
        Per sample and lead, in probability units; they sum to ``outputs -
        baseline_outputs`` up to the integration error.
    class_indices : numpy.ndarray, shape (n,), int
        The explained output of each exam.
    outputs, baseline_outputs : numpy.ndarray, shape (n,), float64
        The explained output at the exam and at the zero baseline.
    steps : int
    """

    attributions: np.ndarray
    class_indices: np.ndarray
    outputs: np.ndarray
    baseline_outputs: np.ndarray
    steps: int

    @property
    def completeness_gap(self):
        """``sum(attributions) - (output - baseline output)`` per exam, shape (n,)."""
        totals = self.attributions.astype(np.float64).sum(axis=(1, 2))
        return totals - (self.outputs - self.baseline_outputs)


def integrated_gradients(model, tracings, class_indices, steps=DEFAULT_STEPS):
    """Attribute one output per exam to every sample of every lead, against a zero baseline.

    Parameters
    ----------
    model : keras.Model
        Maps (batch, 4096, 12) to (batch, n_classes); TensorFlow backend. A
        mixed-precision model is explained through a float32 copy.
    tracings : array_like, shape (n, 4096, 12)
        Exams at the amplitude scale ``model`` expects (predict.py gives
        ``ecgcode.inference.predictor.original_scale_model`` tracings at ``UNITS_PER_MV``).
    class_indices : sequence of int, length n
        Output explained for each exam.
    steps : int
        Intervals of the trapezoidal rule along the path.

    Returns
    -------
    Explanation
    """
    import keras  # deferred: imports TensorFlow

    if keras.backend.backend() != "tensorflow":
        raise ECGInputError(
            f"explanations need the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()});"
            " run with KERAS_BACKEND=tensorflow"
        )
    model = float32_model(model)  # bfloat16 gradients would break completeness
    tracings = np.asarray(tracings, dtype=np.float32)
    class_indices = np.asarray(class_indices, dtype=np.int64)
    if steps < 1:
        raise ECGInputError(f"--explain-steps {steps}: must be a positive integer")
    weights = np.full(steps + 1, 1.0 / steps)  # trapezoidal rule on [0, 1]
    weights[[0, -1]] /= 2
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    gradient = _gradient_function(model)
    results = [
        _explain_one(gradient, tracing, int(index), alphas, weights)
        for tracing, index in zip(tracings, class_indices)
    ]
    attributions, outputs, baseline_outputs = (np.array(part) for part in zip(*results))
    return Explanation(attributions.astype(np.float32), class_indices, outputs,
                       baseline_outputs, steps)


def _gradient_function(model):
    import tensorflow as tf  # deferred: imports TensorFlow

    @tf.function(input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32),
                                  tf.TensorSpec((), tf.int64)])
    def gradient(points, class_index):  # points: (k, 4096, 12)
        with tf.GradientTape() as tape:
            tape.watch(points)
            scores = tf.gather(model(points, training=False), class_index, axis=1)  # (k,)
        return tape.gradient(scores, points), scores

    return gradient


def _explain_one(gradient, tracing, class_index, alphas, weights):
    """(attribution (4096, 12), F(x), F(0)) of one exam along the zero-baseline path."""
    import tensorflow as tf  # deferred: imports TensorFlow

    summed = np.zeros(tracing.shape, dtype=np.float64)  # (4096, 12)
    scores = []
    for start in range(0, len(alphas), GRADIENT_BATCH):
        chunk = alphas[start:start + GRADIENT_BATCH]
        points = chunk[:, None, None] * tracing[None]  # (k, 4096, 12), baseline 0
        grads, chunk_scores = gradient(tf.constant(points), tf.constant(class_index, tf.int64))
        summed += np.tensordot(weights[start:start + len(chunk)], grads.numpy(), axes=1)
        scores.extend(chunk_scores.numpy().tolist())
    return tracing * summed, float(scores[-1]), float(scores[0])


def chosen_classes(probabilities, class_name=None, classes=CLASSES):
    """Index of the explained class per exam: ``class_name``'s, else the top class's."""
    probabilities = np.asarray(probabilities)
    if class_name is None:
        return np.argmax(probabilities, axis=1)
    if class_name not in classes:
        raise ECGInputError(
            f"--explain-class {class_name}: unknown class; choose one of {', '.join(classes)}"
        )
    return np.full(len(probabilities), list(classes).index(class_name))


# --- Drawing -------------------------------------------------------------------------
def draw_saliency_sheet(tracing, attribution, class_name, **sheet_options):
    """The 12-lead sheet with each lead's attribution as a colour band behind the trace.

    Parameters
    ----------
    tracing, attribution : array_like, shape (4096, 12)
    class_name : str
        The explained class, named in the caption.
    **sheet_options
        Passed to :func:`ecgcode.inference.plotting.draw_ecg_sheet` (title, probabilities,
        thresholds).

    Returns
    -------
    matplotlib.figure.Figure
        Purple shading marks evidence for the class, green against; the strength is the
        40 ms moving average of the attribution, on one scale for all leads.
    """
    figure = plotting.draw_ecg_sheet(tracing, **sheet_options)
    axes = figure.axes[0]
    start, stop = plotting.sheet_window(len(tracing))
    shown = smooth(np.asarray(attribution, dtype=np.float64))[start:stop]  # (4000, 12)
    magnitude = np.abs(shown)
    scale = max(float(np.percentile(magnitude, 99.5)), float(magnitude.max()) / 4) or 1.0
    for segment in plotting.sheet_segments():
        lead = shown[:, LEADS.index(segment["lead"])]
        _shade_segment(axes, lead, segment, scale)
    figure.text(
        0.01, 0.005,
        f"shading: integrated gradients for {class_name} (zero baseline); purple = for, "
        f"green = against; {SMOOTHING_SECONDS * 1000:g} ms average; full colour at "
        f"{scale:.2g} per sample",
        ha="left", va="bottom", fontsize=7,
    )
    return figure


def smooth(attribution, seconds=SMOOTHING_SECONDS):
    """Moving average over ``seconds`` along the time axis of (4096, 12) attributions."""
    # deferred: only --explain needs scipy (+0.2 s on every predict.py start, --help too)
    from scipy.ndimage import uniform_filter1d

    width = max(1, round(seconds * SAMPLING_RATE))
    return uniform_filter1d(attribution, size=width, axis=0, mode="constant")


def _shade_segment(axes, values, segment, scale):
    """A band (one image column per sample) behind one lead segment of the sheet."""
    from matplotlib.colors import to_rgb  # deferred: only --explain draws (+0.1 s at start)

    first = round(segment["t0"] * plotting.SAMPLING_RATE)
    last = min(round(segment["t1"] * plotting.SAMPLING_RATE), len(values))
    strength = np.clip(values[first:last] / scale, -1.0, 1.0)  # (samples,)
    colors = np.where(strength[:, None] >= 0, to_rgb(FOR_COLOR), to_rgb(AGAINST_COLOR))
    band = np.concatenate([colors, MAX_ALPHA * np.abs(strength)[:, None]], axis=1)
    x0 = segment["x0"]
    x1 = x0 + (last - first) / plotting.SAMPLING_RATE * plotting.PAPER_SPEED_MM_PER_S
    half_height = 15.0 if segment["rhythm"] else 12.0  # mm around the baseline
    axes.imshow(
        band[None], extent=(x0, x1, segment["baseline"] - half_height,
                            segment["baseline"] + half_height),
        aspect="auto", interpolation="nearest", zorder=2,
    )


# --- predict.py --explain -------------------------------------------------------------
@dataclasses.dataclass
class Exam:
    """One exam to explain: its 0-based row over all inputs, (4096, 12) tracing, id, file."""

    row: int
    tracing: np.ndarray
    exam_id: int = None
    source: str = ""


def saliency_paths(output_file, rows, plot_format="png"):
    """``<output stem>_saliency.npy``, ``.json`` and one ``_row<N>_saliency`` sheet per row."""
    stem = os.path.splitext(os.fspath(output_file))[0]
    sheets = [f"{stem}_row{row}_saliency.{plot_format}" for row in rows]
    return f"{stem}_saliency.npy", f"{stem}_saliency.json", sheets


def explain_and_save(model, exams, probabilities, output_file, class_name=None,
                     thresholds=None, plot_format="png", steps=DEFAULT_STEPS, classes=CLASSES):
    """Attribute, write the ``.npy`` and its ``.json`` index, draw one sheet per exam.

    Parameters
    ----------
    model : keras.Model
    exams : list of Exam
    probabilities : numpy.ndarray, shape (n_all, n_classes)
        predict.py's probabilities of every exam (indexed by ``Exam.row``).
    output_file : str
        predict.py's output; the saliency files are named after its stem.
    class_name : str, optional
        Explain this class for every exam; default each exam's top class.
    thresholds : dict, optional
    plot_format : str
    steps : int
    classes : sequence of str
        The model's class names (the paper's six by default).

    Returns
    -------
    paths : list of str
        The files written.
    summaries : list of str
        One line per exam: class, probability and the completeness check.
    """
    rows = [exam.row for exam in exams]
    scores = probabilities[rows]  # (k, n_classes)
    explanation = integrated_gradients(
        model, np.stack([exam.tracing for exam in exams]), chosen_classes(scores, class_name, classes),
        steps,
    )
    npy_path, json_path, sheet_paths = saliency_paths(output_file, rows, plot_format)
    with atomic_output(npy_path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, explanation.attributions)  # (k, 4096, 12)
    index = explanation_index(exams, explanation, classes)
    with atomic_output(json_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=1)
    for exam, attribution, class_index, path in zip(
        exams, explanation.attributions, explanation.class_indices, sheet_paths
    ):
        _write_sheet(path, plot_format, exam, attribution, classes[class_index],
                     probabilities=probabilities[exam.row], thresholds=thresholds,
                     classes=classes)
    return [npy_path, json_path, *sheet_paths], [_summary(entry) for entry in index["exams"]]


def _write_sheet(path, plot_format, exam, attribution, class_name, **sheet_options):
    title = f"{exam.source}   row {exam.row}"
    if exam.exam_id is not None:
        title += f"   exam_id {exam.exam_id}"
    figure = draw_saliency_sheet(exam.tracing, attribution, class_name, title=title,
                                 **sheet_options)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format=plot_format, dpi=SHEET_DPI)


def explanation_index(exams, explanation, classes=CLASSES):
    """The ``_saliency.json`` content: method, and per exam what its attribution explains."""
    entries = []
    for position, exam in enumerate(exams):
        entries.append({
            "position": position,
            "row": exam.row,
            "exam_id": exam.exam_id,
            "class": classes[explanation.class_indices[position]],
            "probability": explanation.outputs[position],
            "baseline_probability": explanation.baseline_outputs[position],
            "attribution_sum": float(explanation.attributions[position].sum(dtype=np.float64)),
        })
    return {
        "method": "integrated gradients of the class probability, zero baseline, trapezoidal "
        f"rule with {explanation.steps} steps",
        "shape": "(explained exams, 4096 samples, 12 leads) in the order of 'exams'",
        "leads": list(LEADS),
        "input_shape": list(INPUT_SHAPE),
        "exams": entries,
    }


def _summary(entry):
    difference = entry["probability"] - entry["baseline_probability"]
    return (
        f"explained row {entry['row']}: {entry['class']} p={entry['probability']:.3f} "
        f"(zero tracing {entry['baseline_probability']:.3f}); attributions sum to "
        f"{entry['attribution_sum']:+.4f} for a difference of {difference:+.4f}"
    )
