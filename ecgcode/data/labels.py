"""Labels aligned with the rows of an ECG collection, and train/validation splits.

No TensorFlow and no signal reads: labels come from a ``labels`` dataset in the HDF5
files (attribute ``classes`` names its columns) or from a CSV whose class columns are
matched by name and whose rows are joined on ``exam_id``.

Public API
----------
load_labels(paths_or_collection, csv)     -> LabelTable  (labels aligned to the rows)
split_indices(n, val_split, groups, seed) -> (train_idx, val_idx)
"""

import dataclasses
import os

import numpy as np

from ecgcode.common import CLASSES, DEFAULT_DATASET_NAME, ECGInputError, plain
from ecgcode.data.hdf5 import MissingFileError, corrupt_hdf5_errors, open_collection, open_hdf5


# --- Errors --------------------------------------------------------------------------
class LabelError(ECGInputError):
    """Labels are missing or malformed."""


class LabelColumnsError(LabelError):
    """Class columns are missing from the labels."""


class LabelValuesError(LabelError):
    """Label values other than 0 and 1."""


class LabelRowCountError(LabelError):
    """The label CSV has a different number of rows than the collection has tracings."""


class ExamIdJoinError(LabelError):
    """Exam ids of the tracings are absent from (or duplicated in) the label CSV."""


# --- Labels --------------------------------------------------------------------------
@dataclasses.dataclass
class LabelTable:
    """Labels aligned with the rows of a collection.

    Attributes
    ----------
    labels : numpy.ndarray
        (n, 6) float32, columns in ``CLASSES`` order (NaN rows where ``matched`` is False).
    exam_ids : numpy.ndarray or None
        (n,) int64 exam ids of the rows, when known.
    frame : pandas.DataFrame or None
        The CSV rows aligned with the collection (None when labels came from the HDF5).
    matched : numpy.ndarray
        (n,) bool, rows that have labels (all True unless ``allow_missing``).
    source : str
        Where the labels came from.
    """

    labels: np.ndarray
    exam_ids: object
    frame: object
    matched: np.ndarray
    source: str


def _check_label_values(values, source):
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise LabelValuesError(
            f"{source}: {int(bad.sum())} label values are not 0 or 1 (first: row {row}, "
            f"class {CLASSES[column]}, value {plain(values[row, column])}); labels must be 0/1"
        )
    return values.astype(np.float32)


def _labels_from_hdf5(collection):
    """(n, 6) labels from the ``labels`` datasets of every file, or None if any lacks one."""
    parts = []
    for path in collection.paths:
        with open_hdf5(path) as handle, corrupt_hdf5_errors(path):
            if "labels" not in handle:
                return None
            dataset = handle["labels"]
            classes = dataset.attrs.get("classes")
            if classes is None:
                raise LabelColumnsError(
                    f"{path}: dataset 'labels' has no attribute 'classes' naming its columns; "
                    f"set it to {list(CLASSES)}"
                )
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in classes]
            rows = handle[collection.dataset_name].shape[0]
            if dataset.ndim != 2 or dataset.shape != (rows, len(classes)):
                raise LabelRowCountError(
                    f"{path}: dataset 'labels' has shape {dataset.shape}, expected "
                    f"({rows}, {len(classes)}): one row per tracing, one column per class"
                )
            missing = [c for c in CLASSES if c not in classes]
            if missing:
                raise LabelColumnsError(
                    f"{path}: dataset 'labels' lacks classes {missing} (has {classes})"
                )
            values = dataset[()][:, [classes.index(c) for c in CLASSES]]
            parts.append(_check_label_values(values, f"{path}:labels"))
    return np.concatenate(parts)


def _read_label_csv(csv_path):
    import pandas as pd

    csv_path = os.fspath(csv_path)
    if not os.path.exists(csv_path):
        raise MissingFileError(f"{csv_path}: label CSV not found; check the path")
    try:
        frame = pd.read_csv(csv_path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise LabelError(f"{csv_path}: cannot be parsed as CSV ({error}); check the file") from None
    missing = [c for c in CLASSES if c not in frame.columns]
    if missing:
        raise LabelColumnsError(
            f"{csv_path}: missing class columns {missing} (columns found: "
            f"{list(frame.columns)}); the CSV needs one 0/1 column per class, matched by name"
        )
    return frame


def _align_csv(frame, collection, csv_path, allow_missing):
    """Rows of ``frame`` aligned with the collection, and the mask of matched rows."""
    csv_path = os.fspath(csv_path)
    if collection.exam_ids is not None and "exam_id" in frame.columns:
        duplicated = frame["exam_id"].duplicated()
        if duplicated.any():
            raise ExamIdJoinError(
                f"{csv_path}: {int(duplicated.sum())} duplicated exam_id values (first: "
                f"{frame['exam_id'][duplicated].iloc[0]}); exam ids must be unique"
            )
        positions = frame.reset_index(drop=True).reset_index().set_index("exam_id")["index"]
        found = positions.reindex(collection.exam_ids)
        matched = found.notna().to_numpy()
        if not matched.all() and not allow_missing:
            missing_ids = collection.exam_ids[~matched]
            raise ExamIdJoinError(
                f"{csv_path}: {len(missing_ids)} of {collection.n} exam ids of the tracings are "
                f"not in the CSV (first: {missing_ids[:5].tolist()}); use the CSV that belongs "
                "to these files, or allow_missing=True to skip them"
            )
        aligned = frame.iloc[found.fillna(0).astype(np.int64).to_numpy()].reset_index(drop=True)
        return aligned, matched
    if len(frame) != collection.n:
        raise LabelRowCountError(
            f"{csv_path}: {len(frame)} rows but the collection has {collection.n} tracings; "
            "without exam_id in both files the CSV needs exactly one row per tracing, in file "
            "order"
        )
    return frame.reset_index(drop=True), np.ones(collection.n, dtype=bool)


def load_labels(
    paths_or_collection, labels_csv=None, dataset_name=DEFAULT_DATASET_NAME, *, allow_missing=False
):
    """Labels (and exam ids) aligned with the rows of a collection, without reading signals.

    Preference: a ``labels`` dataset in every HDF5 file (attribute ``classes`` names its
    columns); else ``labels_csv``, whose class columns are matched by NAME (extra columns
    ignored) and whose rows are joined on ``exam_id`` when both the HDF5 files and the CSV
    have it, and otherwise taken as one row per tracing in file order.

    Parameters
    ----------
    paths_or_collection : paths or Collection
    labels_csv : str or os.PathLike, optional
    dataset_name : str
    allow_missing : bool
        With an exam-id join, keep tracings absent from the CSV (``matched`` False,
        NaN labels) instead of raising ExamIdJoinError.

    Returns
    -------
    LabelTable

    Raises
    ------
    LabelError
        No labels anywhere, missing class columns (LabelColumnsError), values other than 0/1
        (LabelValuesError), wrong row count (LabelRowCountError), exam ids that do not join
        (ExamIdJoinError).
    """
    collection = open_collection(paths_or_collection, dataset_name)
    if labels_csv is None:
        labels = _labels_from_hdf5(collection)
        if labels is None:
            raise LabelError(
                f"{', '.join(collection.paths)}: no 'labels' dataset in the file(s) and no "
                "label CSV given; pass a CSV with one 0/1 column per class"
            )
        matched = np.ones(collection.n, dtype=bool)
        return LabelTable(labels, collection.exam_ids, None, matched, "hdf5")
    frame = _read_label_csv(labels_csv)
    aligned, matched = _align_csv(frame, collection, labels_csv, allow_missing)
    labels = np.full((collection.n, len(CLASSES)), np.nan, dtype=np.float32)
    labels[matched] = _check_label_values(
        aligned.loc[matched, list(CLASSES)].to_numpy(), os.fspath(labels_csv)
    )
    exam_ids = collection.exam_ids
    if exam_ids is None and "exam_id" in aligned.columns:
        exam_ids = aligned["exam_id"].to_numpy(dtype=np.int64)
    return LabelTable(labels, exam_ids, aligned, matched, os.fspath(labels_csv))


# --- Splits --------------------------------------------------------------------------
def split_indices(n, val_split=0.02, groups=None, seed=0):
    """Train/validation row indices.

    Parameters
    ----------
    n : int
        Number of rows.
    val_split : float
        Fraction of rows for validation, in [0, 1).
    groups : array_like, optional
        (n,) group of each row (e.g. ``patient_id``).  Without it the validation set is the
        last ``val_split`` fraction of the rows, as in the original study (Keras'
        ``validation_split``).  With it, whole groups, drawn at random from ``seed``, go to
        validation until it holds at least ``val_split * n`` rows, so no group is in both.
    seed : int

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted int64 train and validation indices.
    """
    if not 0.0 <= val_split < 1.0:
        raise ECGInputError(f"val_split={val_split}: must be in [0, 1)")
    if groups is None:
        split_at = int(n * (1.0 - val_split))
        return np.arange(split_at, dtype=np.int64), np.arange(split_at, n, dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ECGInputError(f"groups has shape {groups.shape}, expected ({n},): one per row")
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    needed = val_split * n
    taken = np.cumsum(counts[order])
    n_groups = int(np.searchsorted(taken, needed, side="left") + 1) if needed > 0 else 0
    is_val_group = np.zeros(len(unique), dtype=bool)
    is_val_group[order[:n_groups]] = True
    is_val = is_val_group[inverse]
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)