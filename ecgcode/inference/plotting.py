"""Draw one exam as a standard 12-lead ECG sheet (PNG or PDF).

The sheet follows the paper-recorder conventions cardiologists read: 25 mm/s, 10 mm/mV,
a pink millimetre grid (1 mm = 0.04 s = 0.1 mV, bold lines every 5 mm), a 1 mV
calibration pulse at the start of every row, the leads in the usual 3 x 4 layout
(I, aVR, V1, V4 / II, aVL, V2, V5 / III, aVF, V3, V6; 2.5 s each) and a full-length
lead II rhythm strip underneath. The figure is sized in millimetres, so a PDF printed
at 100 % keeps the true scale.

predict.py's ``--plot`` and ``--explain`` draw with it; so does ``ecg-plot``
(``ecgcode.cli.plot``). Only matplotlib, h5py and numpy are needed (no TensorFlow).
"""

import os

import numpy as np

from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    LEADS,
    N_LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    UNITS_PER_MV,
    ECGInputError,
    atomic_output,
)
from ecgcode.data.hdf5 import corrupt_hdf5_errors, open_hdf5
from ecgcode.data.scale import file_scale, recorded_scale
from ecgcode.model.thresholds import binarize

PAPER_SPEED_MM_PER_S = 25.0
"""Horizontal scale: millimetres of paper per second."""

GAIN_MM_PER_MV = 10.0
"""Vertical scale: millimetres of paper per millivolt."""

SHEET_SECONDS = 10.0
"""Seconds of signal shown on the sheet (the central 10 s of the 10.24 s tracing)."""

SHEET_LAYOUT = (
    ("DI", "aVR", "V1", "V4"),
    ("DII", "aVL", "V2", "V5"),
    ("DIII", "aVF", "V3", "V6"),
)
"""Leads of the 3 x 4 block, row by row; column c shows seconds [2.5 c, 2.5 (c + 1))."""

RHYTHM_LEAD = "DII"
"""Lead shown over the full 10 s under the 3 x 4 block."""

DISPLAY_NAMES = {"DI": "I", "DII": "II", "DIII": "III"}
"""Names printed on the sheet where they differ from ``LEADS``."""

# Geometry of the sheet, in millimetres of paper.
_CALIBRATION_WIDTH = 15.0  # left margin holding the 1 mV calibration pulse
_ROW_PITCH = 35.0  # distance between the baselines of consecutive rows
_GRID_HEIGHT = 150.0
_FIRST_BASELINE = 125.0  # baseline of the top row; the rhythm strip sits at 20 mm
_RIGHT_PAD = 5.0
_MARGINS = {"left": 6.0, "right": 6.0, "bottom": 10.0, "top": 15.0}
_MINOR_COLOR, _MAJOR_COLOR = "#f5c6c6", "#e07b7b"
_BACKGROUND = "#fffafa"
_DPI = 200


def display_name(lead):
    """Return the name printed on the sheet for ``lead`` (``'DI'`` -> ``'I'``)."""
    return DISPLAY_NAMES.get(lead, lead)


def units_to_mm(values):
    """Convert tracing values (at ``UNITS_PER_MV``) to millimetres of paper at 10 mm/mV."""
    return np.asarray(values, dtype=np.float64) * (GAIN_MM_PER_MV / UNITS_PER_MV)


def sheet_window(n_samples, seconds=SHEET_SECONDS):
    """Return ``(start, stop)`` sample indices of the centred ``seconds`` window.

    Tracings are zero-padded on both sides to ``N_SAMPLES``, so the centre holds the
    recording; a tracing shorter than the window is shown whole.
    """
    width = min(round(seconds * SAMPLING_RATE), n_samples)
    start = (n_samples - width) // 2
    return start, start + width


def sheet_segments():
    """List the trace segments of the sheet.

    Returns
    -------
    list of dict
        One dict per segment with ``lead``, ``t0``/``t1`` (seconds from the start of the
        10 s window), ``x0`` (mm from the left edge of the grid where the segment starts)
        ``baseline`` (mm from the bottom of the grid) and ``rhythm`` (bool): 12 segments
        of the 3 x 4 block, then the rhythm strip.
    """
    column_seconds = SHEET_SECONDS / len(SHEET_LAYOUT[0])
    segments = []
    for row, leads in enumerate(SHEET_LAYOUT):
        baseline = _FIRST_BASELINE - row * _ROW_PITCH
        for column, lead in enumerate(leads):
            t0 = column * column_seconds
            segments.append(
                {
                    "lead": lead,
                    "t0": t0,
                    "t1": t0 + column_seconds,
                    "x0": _CALIBRATION_WIDTH + t0 * PAPER_SPEED_MM_PER_S,
                    "baseline": baseline,
                    "rhythm": False,
                }
            )
    segments.append(
        {
            "lead": RHYTHM_LEAD,
            "t0": 0.0,
            "t1": SHEET_SECONDS,
            "x0": _CALIBRATION_WIDTH,
            "baseline": _FIRST_BASELINE - len(SHEET_LAYOUT) * _ROW_PITCH,
            "rhythm": True,
        }
    )
    return segments


def format_probabilities(probabilities, thresholds=None, classes=CLASSES):
    """Format class probabilities for a title, marking those above threshold with ``*``.

    Parameters
    ----------
    probabilities : sequence of float
        One score per class, in ``classes`` order.
    thresholds : dict, optional
        Class name -> threshold (or None when unknown); a score strictly greater than it
        is marked.
    classes : sequence of str
        The class names (the paper's six by default).
    """
    parts = []
    for name, value in zip(classes, probabilities):
        threshold = None if thresholds is None else thresholds.get(name)
        mark = "*" if threshold is not None and binarize(value, threshold) else ""
        parts.append(f"{name} {value:.3f}{mark}")
    text = "   ".join(parts)
    if thresholds is not None:
        text += "    (* above threshold)"
    return text


def _grid_width():
    return _CALIBRATION_WIDTH + SHEET_SECONDS * PAPER_SPEED_MM_PER_S + _RIGHT_PAD


def _draw_grid(axes, width, height):
    from matplotlib.collections import LineCollection  # deferred: matplotlib only when drawing

    for step, color, linewidth in ((1.0, _MINOR_COLOR, 0.25), (5.0, _MAJOR_COLOR, 0.6)):
        xs = np.arange(0.0, width + 1e-9, step)
        ys = np.arange(0.0, height + 1e-9, step)
        lines = [((x, 0.0), (x, height)) for x in xs] + [((0.0, y), (width, y)) for y in ys]
        axes.add_collection(LineCollection(lines, colors=color, linewidths=linewidth, zorder=1))


def _draw_calibration(axes, baseline):
    pulse_x = np.array([2.0, 4.0, 4.0, 4.0 + 0.2 * PAPER_SPEED_MM_PER_S])
    pulse_x = np.concatenate([pulse_x, [pulse_x[-1], pulse_x[-1] + 2.0]])
    pulse_y = baseline + np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0]) * GAIN_MM_PER_MV
    axes.plot(pulse_x, pulse_y, color="black", linewidth=0.8, zorder=3)


def _draw_segment(axes, signal, segment):
    """Draw one lead segment; ``signal`` is the lead over the 10 s window, at ``UNITS_PER_MV``."""
    first = round(segment["t0"] * SAMPLING_RATE)
    last = min(round(segment["t1"] * SAMPLING_RATE), len(signal))
    values = units_to_mm(signal[first:last])
    x = segment["x0"] + np.arange(last - first) / SAMPLING_RATE * PAPER_SPEED_MM_PER_S
    (line,) = axes.plot(
        x, segment["baseline"] + values, color="black", linewidth=0.55, zorder=3
    )
    kind = "rhythm" if segment["rhythm"] else "lead"
    line.set_gid(f"{kind}-{segment['lead']}-{segment['t0']:g}")
    axes.text(
        segment["x0"] + 1.0,
        segment["baseline"] + 11.0,
        display_name(segment["lead"]),
        fontsize=9,
        fontweight="bold",
        zorder=4,
    )
    if segment["t0"] > 0:  # lead change marker
        axes.plot(
            [segment["x0"]] * 2,
            [segment["baseline"] - 4.0, segment["baseline"] + 4.0],
            color="black",
            linewidth=0.8,
            zorder=3,
        )


def draw_ecg_sheet(tracing, title=None, probabilities=None, thresholds=None, classes=CLASSES):
    """Draw a 12-lead ECG sheet and return the matplotlib Figure.

    Parameters
    ----------
    tracing : array_like, shape (N_SAMPLES, N_LEADS)
        One exam at ``UNITS_PER_MV``, leads in ``LEADS`` order.
    title : str, optional
        First title line (e.g. file and exam id).
    probabilities : sequence of float, optional
        The model's class scores, printed on the second title line.
    thresholds : dict, optional
        Class name -> threshold; scores above it are marked with ``*``.
    classes : sequence of str
        Names of the scores (the paper's six by default).

    Returns
    -------
    matplotlib.figure.Figure
        Sized in millimetres so that the grid has its true paper scale.
    """
    from matplotlib.figure import Figure  # deferred: matplotlib only when drawing

    tracing = np.asarray(tracing, dtype=np.float64)
    if tracing.ndim != 2 or tracing.shape[1] != N_LEADS:
        raise ECGInputError(
            f"tracing has shape {tracing.shape}, expected (samples, {N_LEADS}) in LEADS order"
        )
    start, stop = sheet_window(len(tracing))
    window = tracing[start:stop]  # (4000, 12)

    width, height = _grid_width(), _GRID_HEIGHT
    fig_width = width + _MARGINS["left"] + _MARGINS["right"]
    fig_height = height + _MARGINS["bottom"] + _MARGINS["top"]
    figure = Figure(figsize=(fig_width / 25.4, fig_height / 25.4), dpi=_DPI)
    axes = figure.add_axes(
        [_MARGINS["left"] / fig_width, _MARGINS["bottom"] / fig_height,
         width / fig_width, height / fig_height]
    )
    axes.set_xlim(0.0, width)
    axes.set_ylim(0.0, height)
    axes.set_axis_off()
    axes.add_patch(_background_patch(width, height))
    _draw_grid(axes, width, height)

    for segment in sheet_segments():
        if segment["t0"] == 0.0:
            _draw_calibration(axes, segment["baseline"])
        _draw_segment(axes, window[:, LEADS.index(segment["lead"])], segment)

    lines = [title] if title else []
    if probabilities is not None:
        lines.append(format_probabilities(probabilities, thresholds, classes))
    if lines:
        figure.text(
            _MARGINS["left"] / fig_width, 1.0 - 3.0 / fig_height, "\n".join(lines),
            ha="left", va="top", fontsize=9, family="monospace",
        )
    figure.text(
        1.0 - _MARGINS["right"] / fig_width, 2.5 / fig_height,
        f"{PAPER_SPEED_MM_PER_S:g} mm/s   {GAIN_MM_PER_MV:g} mm/mV   {SAMPLING_RATE} Hz   "
        f"samples {start}-{stop} of {len(tracing)}",
        ha="right", va="bottom", fontsize=7,
    )
    return figure


def _background_patch(width, height):
    from matplotlib.patches import Rectangle  # deferred: matplotlib only when drawing

    return Rectangle((0.0, 0.0), width, height, facecolor=_BACKGROUND, edgecolor="none", zorder=0)


def plot_format(path):
    """Return ``'png'`` or ``'pdf'`` from the extension of ``path``; ECGInputError otherwise."""
    extension = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if extension not in ("png", "pdf"):
        raise ECGInputError(
            f"{path}: unsupported plot format '.{extension}'; name the file .png or .pdf"
        )
    return extension


def save_ecg_sheet(tracing, path, **kwargs):
    """Draw the sheet (see ``draw_ecg_sheet``) and write it atomically to a .png or .pdf file."""
    file_format = plot_format(path)
    figure = draw_ecg_sheet(tracing, **kwargs)
    with atomic_output(path) as tmp_path:
        figure.savefig(tmp_path, format=file_format, dpi=_DPI)
    return path


def read_exam(path, index, dataset_name=DEFAULT_DATASET_NAME, units_per_mv=None):
    """Read exam ``index`` (0-based row) of a CODE-style HDF5 file: ``read_exams`` of one."""
    return read_exams(path, [index], dataset_name, units_per_mv)[0]


def read_exams(path, indices, dataset_name=DEFAULT_DATASET_NAME, units_per_mv=None):
    """Read exams ``indices`` (0-based rows) of a CODE-style HDF5 file, opening it once.

    Parameters
    ----------
    path : str
    indices : sequence of int
    dataset_name : str
    units_per_mv : float, optional
        The file's scale when it records none (``--units-per-mv``; ``ecgcode.data.scale``).

    Returns
    -------
    list of (tracing, exam_id)
        ``tracing`` : numpy.ndarray, shape (N_SAMPLES, N_LEADS), float32, at ``UNITS_PER_MV``
        (rescaled from the file's recorded or given scale), as the sheet draws it;
        ``exam_id`` : int or None, the file's ``exam_id`` of that row when it has one.

    Raises
    ------
    ECGInputError
        The file cannot be opened (see ``ecgcode.data.hdf5.open_hdf5``), lacks the signal
        dataset, has another shape, or has no such row.
    """
    exams = []
    with open_hdf5(path) as handle, corrupt_hdf5_errors(path):
        signals = _exam_signals(handle, path, dataset_name)
        scale, _ = file_scale(path, recorded_scale(signals.attrs, handle.attrs), units_per_mv)
        gain = np.float32(UNITS_PER_MV / scale.units_per_mv)
        for index in indices:
            if not 0 <= index < signals.shape[0]:
                raise ECGInputError(
                    f"{path}: exam index {index} out of range; the file has "
                    f"{signals.shape[0]} exams (0 to {signals.shape[0] - 1})"
                )
            exam_id = int(handle["exam_id"][index]) if "exam_id" in handle else None
            exams.append((np.asarray(signals[index], dtype=np.float32) * gain, exam_id))
    return exams


def _exam_signals(handle, path, dataset_name):
    """The signal dataset of an open file, checked to be (N, N_SAMPLES, N_LEADS)."""
    if dataset_name not in handle:
        raise ECGInputError(
            f"{path}: no dataset '{dataset_name}' (has: {', '.join(handle.keys()) or 'none'});"
            f" pass --dataset-name"
        )
    signals = handle[dataset_name]
    if signals.ndim != 3 or signals.shape[1:] != (N_SAMPLES, N_LEADS):
        raise ECGInputError(
            f"{path}: '{dataset_name}' has shape {signals.shape}, expected "
            f"(N, {N_SAMPLES}, {N_LEADS}); convert it with `python datasets.py convert`"
        )
    return signals


def read_prediction_row(path, index):
    """Read row ``index`` of a predict.py output (.npy or .csv) as six floats."""
    extension = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise ECGInputError(f"{path}: predictions file not found")
    if extension == ".npy":
        scores = np.load(path, mmap_mode="r")
    elif extension == ".csv":
        import pandas as pd  # deferred: pandas adds ~0.4 s to every start

        frame = pd.read_csv(path)
        missing = [name for name in CLASSES if name not in frame.columns]
        if missing:
            raise ECGInputError(f"{path}: no column(s) {', '.join(missing)}; use predict.py output")
        scores = frame[list(CLASSES)].to_numpy()
    else:
        raise ECGInputError(f"{path}: predictions must be a .npy or .csv file from predict.py")
    if scores.ndim != 2 or scores.shape[1] != len(CLASSES) or not 0 <= index < len(scores):
        raise ECGInputError(
            f"{path}: has shape {scores.shape}, no row {index} of {len(CLASSES)} class scores"
        )
    return np.asarray(scores[index], dtype=np.float64)
