"""What predict.py writes and warns about: the output table, input/output warnings, sheets.

``write_predictions`` writes the ``.npy`` (the original study's format) or the ``.csv``
(``predictions_table``, written by ``write_table``); ``input_warnings`` and ``nonfinite_warning`` give the one-line
warnings on the inputs and on NaN outputs; ``plot_exams`` draws ``--plot`` sheets and
``exams_to_explain`` reads the ``--explain`` exams. No TensorFlow is imported here.
"""

import csv
import os

import numpy as np

from ecgcode.common import CLASSES, ECGInputError, atomic_output
from ecgcode.data import collection_warnings
from ecgcode.data.hdf5 import describe_rows
from ecgcode.inference import explain
from ecgcode.inference import plotting as ecg_plot
from ecgcode.model.thresholds import binarize

OUTPUT_FORMATS = (".npy", ".csv")
UNITS_SAMPLE = 64
"""Records read (evenly spread over the input) for the amplitude-scale check."""


# --- The output file ---------------------------------------------------------------
def output_format(path):
    """Return ``'.npy'`` or ``'.csv'`` from the extension of ``path``; ECGInputError otherwise."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in OUTPUT_FORMATS:
        raise ECGInputError(
            f"{path}: unsupported output format '{extension}'; name the output file .npy or .csv"
        )
    return extension


def predictions_table(probabilities, exam_ids=None, thresholds=None, classes=CLASSES,
                      names=None):
    """The .csv table: id column, one probability per class, 0/1 columns if thresholds.

    Built as text without pandas (whose import is 0.3-0.4 s of a one-exam pass), cell by
    cell as pandas' ``to_csv(index=False, float_format="%.9g")`` writes them.

    Parameters
    ----------
    probabilities : numpy.ndarray, shape (n, n_classes)
    exam_ids : numpy.ndarray, shape (n,), optional
        Used as the ``exam_id`` column; without it a ``row`` column holds 0..n-1.
    thresholds : dict, optional
        Class -> threshold; adds ``<class>_pred`` = 1 where probability > threshold (empty
        cells for a class whose threshold is None).
    classes : sequence of str
        Column names of the probabilities (the paper's six by default).
    names : sequence of str, optional
        A first ``record`` column: the file each row came from (converted inputs).

    Returns
    -------
    header : list of str
    rows : list of tuples of str
        Floats as ``%.9g`` (float32 round-trips), NaN and missing decisions empty.
    """
    probabilities = np.asarray(probabilities)  # (n, n_classes)
    header, columns = [], []
    if names is not None:
        header.append("record")
        columns.append([str(name) for name in names])
    if exam_ids is not None:
        header.append("exam_id")
        columns.append([csv_cell(value) for value in np.asarray(exam_ids)])
    else:
        header.append("row")
        columns.append([str(row) for row in range(len(probabilities))])
    for column, name in enumerate(classes):
        header.append(name)
        columns.append([csv_cell(value) for value in probabilities[:, column]])
    for column, name in enumerate(classes if thresholds is not None else ()):
        header.append(f"{name}_pred")
        if thresholds[name] is None:  # no threshold known for this class: empty cells
            columns.append([""] * len(probabilities))
        else:
            positive = binarize(probabilities[:, column], thresholds[name])
            columns.append([str(int(value)) for value in positive])
    return header, list(zip(*columns))


def csv_cell(value):
    """One .csv cell as pandas writes it with float_format="%.9g" (NaN and None: empty)."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else format(float(value), ".9g")
    return str(value)


def write_predictions(path, probabilities, exam_ids=None, thresholds=None, classes=CLASSES,
                      names=None):
    """Write probabilities atomically as .npy (float32 (n, n_classes)) or .csv (see
    :func:`predictions_table`)."""
    if output_format(path) == ".csv":
        write_table(path, *predictions_table(probabilities, exam_ids, thresholds, classes,
                                             names))
        return
    with atomic_output(path) as tmp_path, open(tmp_path, "wb") as handle:
        np.save(handle, np.asarray(probabilities, dtype=np.float32))


def write_table(path, header, rows):
    """Write a .csv table (cells as str) atomically, in pandas' dialect (``,``, ``\\n``)."""
    with atomic_output(path) as tmp_path, open(tmp_path, "w", encoding="utf-8",
                                                newline="") as handle:
        write_csv_rows(handle, header, rows)


def write_csv_rows(handle, header, rows):
    """The header and rows of a .csv table into the open text file ``handle``."""
    writer = csv.writer(handle, lineterminator="\n")  # pandas' defaults
    writer.writerow(header)
    writer.writerows(rows)


# --- Checks, plots and explanations -------------------------------------------------
def input_warnings(collection, max_records=UNITS_SAMPLE):
    """Warnings about the amplitude scale and the leads, from a few evenly spread records.

    Uses the checks of ``datasets.py inspect`` (``ecgcode.data.collection_warnings``): QRS
    amplitudes that do not fit a file's declared scale (naming the likely factor), flat
    leads, leads normalised independently, swapped leads.

    Returns
    -------
    list of str
    """
    rows = np.unique(np.linspace(0, collection.n - 1, min(max_records, collection.n)).astype(int))
    return collection_warnings(collection, rows)


def nonfinite_warning(probabilities, collection):
    """A one-line warning naming the exams (file, row in it, exam_id) with NaN/inf outputs."""
    bad = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
    if len(bad) == 0:
        return None
    exams = "1 exam has" if len(bad) == 1 else f"{len(bad)} exams have"
    return (
        f"{exams} NaN/inf tracing values, so their predictions are NaN "
        f"({describe_rows(collection, bad)}); fix or drop those records"
    )


def locate_row(collection, row, option="--plot"):
    """Map a 0-based row over the whole collection to (file path, row inside that file)."""
    if not 0 <= row < collection.n:
        raise ECGInputError(
            f"{option} {row}: no such exam; the tracings hold {collection.n} exams "
            f"(rows 0 to {collection.n - 1})"
        )
    file_number, local_row = collection.locate([row])
    return collection.paths[int(file_number[0])], int(local_row[0])


def read_rows(collection, rows, option="--plot"):
    """(file path, tracing, exam_id) of each row of ``collection``, opening each file once.

    The tracings are at ``UNITS_PER_MV`` (as sheets draw them and
    ``ecgcode.inference.predictor.original_scale_model`` takes them), whatever the files' scales.

    ``exam_id`` is that file's ``exam_id`` of the row, or None when the file has none.
    """
    located = [locate_row(collection, row, option) for row in rows]
    by_file = {}
    for path, local_row in located:
        by_file.setdefault(path, []).append(local_row)
    scales = dict(zip(collection.paths, collection.scales))
    exams = {path: iter(ecg_plot.read_exams(path, local_rows, collection.dataset_name,
                                            scales[path].units_per_mv))
             for path, local_rows in by_file.items()}
    return [(path, *next(exams[path])) for path, _ in located]


def plot_path(output_file, row, plot_format):
    """Path of the --plot sheet for ``row``: ``<output stem>_row<row>.<format>``."""
    return f"{os.path.splitext(output_file)[0]}_row{row}.{plot_format}"


def plot_exams(collection, rows, probabilities, thresholds, output_file, plot_format,
               model_path=None, classes=CLASSES, names=None):
    """Draw each requested row as an ECG sheet; return the written paths."""
    written = []
    for row, (path, tracing, exam_id) in zip(rows, read_rows(collection, rows)):
        title = f"{names[row] if names else os.path.basename(path)}   row {row}"
        if exam_id is not None:
            title += f"   exam_id {exam_id}"
        if model_path:
            title += f"   model {model_path}"
        destination = plot_path(output_file, row, plot_format)
        ecg_plot.save_ecg_sheet(
            tracing, destination, title=title, probabilities=probabilities[row],
            thresholds=thresholds, classes=classes,
        )
        written.append(destination)
    return written


def exams_to_explain(collection, rows):
    """The ``--explain`` rows of ``collection`` as ``ecgcode.inference.explain.Exam`` records."""
    return [explain.Exam(row, tracing, exam_id, os.path.basename(path))
            for row, (path, tracing, exam_id) in zip(rows, read_rows(collection, rows))]
