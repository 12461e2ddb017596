"""predict.py ``--windows``: one output row per window of a long recording, and a summary.

The windows themselves are cut by the conversion (``ecgcode.formats.convert.window_starts``:
4096 samples every stride, plus a final window ending at the last sample). A converted file
names each row's record, window number and start/end time in its ``records/`` group
(``record``, ``window``, ``start_s``, ``end_s``); :func:`window_rows` reads them back. A row of
an HDF5 file without them (a CODE-style collection) is a record of one window, 0 to 10.24 s.

:func:`windows_frame` is the per-window table, :func:`records_frame` the per-record summary
(maximum probability and share of windows positive per class, e.g. the AF burden), and
:func:`write_window_outputs` writes both atomically. No TensorFlow is imported here.
"""

import os
from dataclasses import dataclass

import h5py
import numpy as np

from ecgcode.common import CLASSES, N_SAMPLES, SAMPLING_RATE, atomic_output
from ecgcode.outputs import predictions_frame
from ecgcode.thresholds import binarize

SUMMARY_SUFFIX = "_records.csv"
"""The per-record summary is written next to the output as ``<OUT stem>_records.csv``."""

_WINDOW_KEYS = ("record", "window", "start_s", "end_s")
"""records/ datasets that a conversion with windows writes (ecgcode.formats.convert)."""


@dataclass
class WindowRows:
    """Where each row of a collection lies in its recording.

    Attributes
    ----------
    names : list of str
        The record's name (its file name; ``FILE.hdf5[ROW]`` for a plain HDF5 row).
    keys : list of tuple
        One per row, equal for the rows of one record (file number, record number).
    window : np.ndarray, shape (n,), int64
        0-based number of the window in its record.
    start_s, end_s : np.ndarray, shape (n,), float64
        Seconds from the start of the record.
    """

    names: list
    keys: list
    window: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray


def window_rows(paths, sizes):
    """Read the window of every row of the files ``paths`` (of ``sizes`` rows each).

    Returns
    -------
    WindowRows
    """
    names, keys, parts = [], [], []
    for number, (path, size) in enumerate(zip(paths, sizes)):
        with h5py.File(path, "r") as file:
            group = file.get("records")
            if group is not None and all(key in group for key in _WINDOW_KEYS):
                sources = group["source"].asstr()[()]
                record = group["record"][()]
                names.extend(os.path.basename(str(source).rstrip("/")) for source in sources)
                keys.extend((number, int(index)) for index in record)
                parts.append(np.stack([group[key][()] for key in _WINDOW_KEYS[1:]], axis=1))
                continue
        names.extend(f"{os.path.basename(path)}[{row}]" for row in range(size))
        keys.extend((number, row) for row in range(size))
        parts.append(np.tile([0.0, 0.0, N_SAMPLES / SAMPLING_RATE], (size, 1)))
    table = np.concatenate(parts) if parts else np.zeros((0, 3))  # (n, 3): window, start, end
    return WindowRows(names, keys, table[:, 0].astype(np.int64), table[:, 1], table[:, 2])


def windows_frame(rows, probabilities, thresholds=None, classes=CLASSES):
    """The per-window table: record, window, start_s, end_s, probabilities, ``_pred`` columns.

    Parameters
    ----------
    rows : WindowRows
    probabilities : np.ndarray, shape (n, n_classes)
    thresholds : dict, optional
        Class -> threshold (None: no threshold known, empty ``_pred`` column).
    classes : sequence of str
    """
    frame = predictions_frame(probabilities, None, thresholds, classes, rows.names)
    frame = frame.drop(columns="row")
    frame.insert(1, "window", rows.window)
    frame.insert(2, "start_s", rows.start_s)
    frame.insert(3, "end_s", rows.end_s)
    return frame


def records_frame(rows, probabilities, thresholds=None, classes=CLASSES):
    """The per-record summary, one row per record in order of appearance.

    Columns: ``record``, ``n_windows``, ``duration_s`` (the end of its last window, or its
    length when shorter than one window), then per class ``<class>_max`` (the highest
    window probability) and ``<class>_share`` (the fraction of windows above the class's
    threshold; empty when no threshold is known for it).
    """
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    first = {}  # record key -> its first row
    for row, key in enumerate(rows.keys):
        first.setdefault(key, row)
    keys = list(first)
    index = {key: number for number, key in enumerate(keys)}
    group = np.array([index[key] for key in rows.keys], dtype=np.int64)  # (n,)
    frame = pd.DataFrame({"record": [rows.names[row] for row in first.values()],
                          "n_windows": np.bincount(group, minlength=len(keys))})
    duration = np.zeros(len(keys))
    np.maximum.at(duration, group, rows.end_s)
    frame["duration_s"] = duration
    for column, name in enumerate(classes):
        highest = np.full(len(keys), -np.inf)
        np.maximum.at(highest, group, probabilities[:, column])
        frame[f"{name}_max"] = highest
    for column, name in enumerate(classes):
        threshold = None if thresholds is None else thresholds.get(name)
        if threshold is None:
            frame[f"{name}_share"] = pd.array([pd.NA] * len(keys), dtype="Float64")
            continue
        positive = binarize(probabilities[:, column], threshold).astype(np.float64)
        frame[f"{name}_share"] = np.bincount(group, positive, len(keys)) / frame["n_windows"]
    return frame


def summary_path(output_file):
    """``<OUT stem>_records.csv``: where the per-record summary of ``output_file`` goes."""
    return f"{os.path.splitext(os.fspath(output_file))[0]}{SUMMARY_SUFFIX}"


def write_window_outputs(output_file, rows, probabilities, thresholds=None, classes=CLASSES):
    """Write the per-window ``.csv`` and, next to it, the per-record summary (atomically).

    Returns
    -------
    str
        The summary's path.
    """
    summary = summary_path(output_file)
    for path, frame in ((output_file, windows_frame(rows, probabilities, thresholds, classes)),
                        (summary, records_frame(rows, probabilities, thresholds, classes))):
        with atomic_output(path) as tmp_path:
            frame.to_csv(tmp_path, index=False, float_format="%.9g")  # float32 round-trips
    return summary
