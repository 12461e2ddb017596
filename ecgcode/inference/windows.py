"""predict.py ``--windows``: one output row per window of a long recording, and a summary.

The windows themselves are cut by the conversion (``ecgcode.data.formats.convert.window_starts``:
4096 samples every stride, plus a final window ending at the last sample). A converted file
names each row's record, window number and start/end time in its ``records/`` group
(``record``, ``window``, ``start_s``, ``end_s``); :func:`window_rows` reads them back. A row of
an HDF5 file without them (a CODE-style collection) is a record of one window, 0 to 10.24 s.

:func:`windows_table` is the per-window table, :func:`records_table` the per-record summary
(maximum probability and share of windows positive per class, e.g. the AF burden), and
:func:`write_window_outputs` writes both atomically. No TensorFlow is imported here.
"""

import os
from dataclasses import dataclass

import h5py
import numpy as np

from ecgcode.common import CLASSES, N_SAMPLES, SAMPLING_RATE
from ecgcode.inference.outputs import csv_cell, predictions_table, write_table
from ecgcode.model.thresholds import binarize

SUMMARY_SUFFIX = "_records.csv"
"""The per-record summary is written next to the output as ``<OUT stem>_records.csv``."""

_WINDOW_KEYS = ("record", "window", "start_s", "end_s")
"""records/ datasets that a conversion with windows writes (ecgcode.data.formats.convert)."""


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


def windows_table(rows, probabilities, thresholds=None, classes=CLASSES):
    """The per-window table: record, window, start_s, end_s, probabilities, ``_pred`` columns.

    Parameters
    ----------
    rows : WindowRows
    probabilities : np.ndarray, shape (n, n_classes)
    thresholds : dict, optional
        Class -> threshold (None: no threshold known, empty ``_pred`` cells).
    classes : sequence of str

    Returns
    -------
    (header, rows)
        As :func:`ecgcode.inference.outputs.predictions_table`, whose ``row`` column gives way to
        ``window``, ``start_s`` and ``end_s``.
    """
    header, cells = predictions_table(probabilities, None, thresholds, classes, rows.names)
    header = [header[0], "window", "start_s", "end_s", *header[2:]]  # record, row, ... before
    cells = [(line[0], str(int(window)), csv_cell(start), csv_cell(end), *line[2:])
             for line, window, start, end in zip(cells, rows.window, rows.start_s, rows.end_s)]
    return header, cells


def records_table(rows, probabilities, thresholds=None, classes=CLASSES):
    """The per-record summary, one row per record in order of appearance.

    Columns: ``record``, ``n_windows``, ``duration_s`` (the end of its last window, or its
    length when shorter than one window), then per class ``<class>_max`` (the highest
    window probability) and ``<class>_share`` (the fraction of windows above the class's
    threshold; empty when no threshold is known for it).

    Returns
    -------
    (header, rows)
        Cells as str, as :func:`ecgcode.inference.outputs.predictions_table` writes them.
    """
    first = {}  # record key -> its first row
    for row, key in enumerate(rows.keys):
        first.setdefault(key, row)
    index = {key: number for number, key in enumerate(first)}
    group = np.array([index[key] for key in rows.keys], dtype=np.int64)  # (n,)
    n_records = len(first)
    n_windows = np.bincount(group, minlength=n_records)  # (records,)
    duration = np.zeros(n_records)
    np.maximum.at(duration, group, rows.end_s)
    highest = np.full((n_records, len(classes)), -np.inf)  # (records, n_classes)
    np.maximum.at(highest, group, probabilities)
    shares = []  # per class: (records,) or None
    for column, name in enumerate(classes):
        threshold = None if thresholds is None else thresholds.get(name)
        positive = None if threshold is None else binarize(probabilities[:, column], threshold)
        shares.append(None if positive is None
                      else np.bincount(group, positive.astype(np.float64), n_records) / n_windows)
    header = ["record", "n_windows", "duration_s", *(f"{name}_max" for name in classes),
              *(f"{name}_share" for name in classes)]
    cells = [(rows.names[row], str(n_windows[number]), csv_cell(duration[number]),
              *(csv_cell(value) for value in highest[number]),
              *(csv_cell(None if share is None else share[number]) for share in shares))
             for number, row in enumerate(first.values())]
    return header, cells


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
    write_table(output_file, *windows_table(rows, probabilities, thresholds, classes))
    write_table(summary, *records_table(rows, probabilities, thresholds, classes))
    return summary
