"""Labels aligned with the rows of an ECG collection, and train/validation splits.

No TensorFlow and no signal reads: labels come from a ``labels`` dataset in the HDF5
files (attribute ``classes`` names its columns) or from a CSV whose class columns are
matched by name and whose rows are joined on ``exam_id``.

Public API
----------
load_labels(paths_or_collection, csv)     -> LabelTable  (labels aligned to the rows)
read_label_csv(path)                      -> DataFrame   (every label CSV is read with it)
csv_classes(frame, classes, source)       -> the label columns (the one default-class rule)
hdf5_label_classes(collection)            -> the label columns of the files' ``labels``
exam_id_positions(ids, wanted, source)    -> rows of ``ids`` holding ``wanted`` (the exam_id join)
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
        (n, n_classes) float32, columns in ``classes`` order (NaN rows where ``matched`` is
        False).
    exam_ids : numpy.ndarray or None
        (n,) int64 exam ids of the rows, when known.
    frame : pandas.DataFrame or None
        The CSV rows aligned with the collection (None when labels came from the HDF5).
    matched : numpy.ndarray
        (n,) bool, rows that have labels (all True unless ``allow_missing``).
    source : str
        Where the labels came from.
    classes : tuple of str
        Names of the label columns (the paper's six by default).
    """

    labels: np.ndarray
    exam_ids: object
    frame: object
    matched: np.ndarray
    source: str
    classes: tuple = CLASSES


def check_label_values(values, source, classes):
    """``values`` as float32 after checking that every one is 0 or 1 (LabelValuesError)."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise LabelValuesError(
            f"{source}: {int(bad.sum())} label values are not 0 or 1 (first: row {row}, "
            f"class {classes[column]}, value {plain(values[row, column])}); labels must be 0/1"
        )
    return values.astype(np.float32)


def zero_one_columns(frame):
    """Names of the columns of ``frame`` whose non-missing values are all 0 or 1."""
    found = []
    for name in frame.columns:
        values = frame[name].dropna()
        if len(values) and values.isin((0, 1, True, False)).all():
            found.append(str(name))
    return found


def choose_classes(available, classes, source, zero_one=None, *, every_zero_one=False):
    """The label columns: ``classes`` if given, else the paper's six when all are present.

    Without either, training stops with a LabelColumnsError listing the 0/1 columns: a
    label CSV such as CODE-15%'s exams.csv also has 0/1 metadata (``is_male``, ``death``)
    that must not be learned silently. A gold standard to evaluate against holds
    annotations only, so ``every_zero_one`` takes all its 0/1 columns instead.

    Parameters
    ----------
    available : sequence of str
        Column names of the labels (CSV columns or the HDF5 ``classes`` attribute).
    classes : sequence of str or None
        The requested names (``--classes``), matched by name, in this order.
    source : str
        File named in the error messages.
    zero_one : sequence of str, optional
        The 0/1 columns, listed when the paper's six are absent and nothing was requested.
    every_zero_one : bool
        Return the (non-empty) ``zero_one`` columns rather than raising.

    Returns
    -------
    tuple of str
    """
    available = [str(name) for name in available]
    if classes is not None:
        missing = [name for name in classes if name not in available]
        if missing:
            raise LabelColumnsError(
                f"{source}: no label column {', '.join(missing)} (columns found: "
                f"{', '.join(available)}); fix the class names given to --classes"
            )
        return tuple(classes)
    missing = [name for name in CLASSES if name not in available]
    if not missing:
        return tuple(CLASSES)
    candidates = list(zero_one if zero_one is not None else available)
    if every_zero_one and zero_one:
        return tuple(zero_one)
    raise LabelColumnsError(
        f"{source}: no paper class column {', '.join(missing)}; its 0/1 columns are "
        f"{', '.join(candidates) or 'none'}: choose the ones to learn with --classes "
        f"{','.join(candidates[:3]) or 'A,B'} (classes= in the API)"
    )


def _hdf5_label_classes(handle, path):
    classes = handle["labels"].attrs.get("classes")
    if classes is None:
        raise LabelColumnsError(
            f"{path}: dataset 'labels' has no attribute 'classes' naming its columns; "
            f"set it to the column names, e.g. {list(CLASSES)}"
        )
    return [c.decode() if isinstance(c, bytes) else str(c) for c in classes]


def hdf5_label_classes(collection):
    """The label columns every file of ``collection`` has (in the first file's order).

    Returns
    -------
    tuple of str or None
        None when a file has no ``labels`` dataset.
    """
    common = None
    for path in collection.paths:
        with open_hdf5(path) as handle, corrupt_hdf5_errors(path):
            if "labels" not in handle:
                return None
            columns = _hdf5_label_classes(handle, path)
        common = columns if common is None else [c for c in common if c in columns]
    return tuple(common)


def _labels_from_hdf5(collection, classes=None):
    """(n, n_classes) labels from every file's ``labels`` dataset, and their names.

    Without ``classes``: the paper's six (a LabelColumnsError listing the file's columns
    when it lacks them). Returns (None, None) if a file has no ``labels`` dataset.
    """
    parts = []
    for path in collection.paths:
        with open_hdf5(path) as handle, corrupt_hdf5_errors(path):
            if "labels" not in handle:
                return None, None
            dataset = handle["labels"]
            columns = _hdf5_label_classes(handle, path)
            rows = handle[collection.dataset_name].shape[0]
            if dataset.ndim != 2 or dataset.shape != (rows, len(columns)):
                raise LabelRowCountError(
                    f"{path}: dataset 'labels' has shape {dataset.shape}, expected "
                    f"({rows}, {len(columns)}): one row per tracing, one column per class"
                )
            classes = choose_classes(columns, classes, f"{path}:labels")
            values = dataset[()][:, [columns.index(c) for c in classes]]
            parts.append(check_label_values(values, f"{path}:labels", classes))
    return np.concatenate(parts), tuple(classes)


def read_label_csv(path):
    """A label CSV (or a CSV of predictions) as a DataFrame, with one-line errors.

    Raises
    ------
    MissingFileError
        No such file.
    LabelError
        The file cannot be parsed as CSV.
    """
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: label CSV not found; check the path")
    try:
        return pd.read_csv(path)
    except (ValueError, OSError) as error:  # ParserError and UnicodeDecodeError included
        raise LabelError(f"{path}: cannot be parsed as CSV ({error}); check the file") from None


def csv_classes(frame, classes, source, *, every_zero_one=False):
    """The label columns of a label CSV's ``frame`` (``choose_classes`` on its columns)."""
    zero_one = zero_one_columns(frame.drop(columns=["exam_id"], errors="ignore"))
    return choose_classes(frame.columns, classes, source, zero_one,
                          every_zero_one=every_zero_one)


MISSING_IDS_FIX = ("use the CSV that belongs to these files, or allow_missing=True to skip "
                   "them")
"""End of the message when exam ids of the tracings are absent from their label CSV."""


def exam_id_positions(ids, wanted, source, *, allow_missing=False, wanted_from="the tracings",
                      fix=MISSING_IDS_FIX):
    """The exam_id join: the row of ``ids`` that holds each exam id of ``wanted``.

    Parameters
    ----------
    ids : array_like
        (m,) exam ids of the rows of ``source`` (a CSV).
    wanted : array_like
        (n,) exam ids to find there, in the order wanted.
    source : str
        The file of ``ids``, named in the messages.
    allow_missing : bool
        Mark absent ids as unmatched instead of raising.
    wanted_from, fix : str
        Where ``wanted`` comes from, and the fix, for the message on absent ids.

    Returns
    -------
    positions : numpy.ndarray
        (n,) int64 rows of ``ids`` (0 where unmatched).
    matched : numpy.ndarray
        (n,) bool.

    Raises
    ------
    ExamIdJoinError
        ``ids`` has duplicates, or (unless ``allow_missing``) lacks some wanted ids.
    """
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    ids = pd.Index(np.asarray(ids))
    duplicated = ids.duplicated()
    if duplicated.any():
        raise ExamIdJoinError(
            f"{source}: {int(duplicated.sum())} duplicated exam_id values (first: "
            f"{ids[duplicated][0]}); exam ids must be unique"
        )
    wanted = np.asarray(wanted)
    found = pd.Series(np.arange(len(ids)), index=ids).reindex(wanted)
    matched = found.notna().to_numpy()
    if not matched.all() and not allow_missing:
        missing_ids = wanted[~matched]
        raise ExamIdJoinError(
            f"{source}: {len(missing_ids)} of {len(wanted)} exam ids of {wanted_from} are not "
            f"in the CSV (first: {missing_ids[:5].tolist()}); {fix}"
        )
    return found.fillna(0).astype(np.int64).to_numpy(), matched


def _align_csv(frame, collection, csv_path, allow_missing):
    """Rows of ``frame`` aligned with the collection, and the mask of matched rows."""
    csv_path = os.fspath(csv_path)
    if collection.exam_ids is not None and "exam_id" in frame.columns:
        positions, matched = exam_id_positions(frame["exam_id"], collection.exam_ids, csv_path,
                                               allow_missing=allow_missing)
        return frame.iloc[positions].reset_index(drop=True), matched
    if len(frame) != collection.n:
        raise LabelRowCountError(
            f"{csv_path}: {len(frame)} rows but the collection has {collection.n} tracings; "
            "without exam_id in both files the CSV needs exactly one row per tracing, in file "
            "order"
        )
    return frame.reset_index(drop=True), np.ones(collection.n, dtype=bool)


def load_labels(
    paths_or_collection, labels_csv=None, dataset_name=DEFAULT_DATASET_NAME, *,
    allow_missing=False, classes=None,
):
    """Labels (and exam ids) aligned with the rows of a collection, without reading signals.

    Preference: a ``labels`` dataset in every HDF5 file (attribute ``classes`` names its
    columns); else ``labels_csv``, whose class columns are matched by NAME (extra columns
    ignored) and whose rows are joined on ``exam_id`` when both the HDF5 files and the CSV
    have it, and otherwise taken as one row per tracing in file order.

    Which columns: ``classes`` when given; else the paper's six when all are present (a
    CSV such as CODE-15%'s exams.csv also has 0/1 columns like ``is_male`` or ``death``
    that are not learned); else a LabelColumnsError that lists the 0/1 columns found.

    Parameters
    ----------
    paths_or_collection : paths or Collection
    labels_csv : str or os.PathLike, optional
    dataset_name : str
    allow_missing : bool
        With an exam-id join, keep tracings absent from the CSV (``matched`` False,
        NaN labels) instead of raising ExamIdJoinError.
    classes : sequence of str, optional
        The label columns to use, in this order.

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
        labels, classes = _labels_from_hdf5(collection, classes)
        if labels is None:
            raise LabelError(
                f"{', '.join(collection.paths)}: no 'labels' dataset in the file(s) and no "
                "label CSV given; pass a CSV with one 0/1 column per class"
            )
        matched = np.ones(collection.n, dtype=bool)
        return LabelTable(labels, collection.exam_ids, None, matched, "hdf5", classes)
    frame = read_label_csv(labels_csv)
    classes = csv_classes(frame, classes, os.fspath(labels_csv))
    aligned, matched = _align_csv(frame, collection, labels_csv, allow_missing)
    labels = np.full((collection.n, len(classes)), np.nan, dtype=np.float32)
    labels[matched] = check_label_values(
        aligned.loc[matched, list(classes)].to_numpy(), os.fspath(labels_csv), classes
    )
    exam_ids = collection.exam_ids
    if exam_ids is None and "exam_id" in aligned.columns:
        exam_ids = aligned["exam_id"].to_numpy(dtype=np.int64)
    return LabelTable(labels, exam_ids, aligned, matched, os.fspath(labels_csv), classes)


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

def row_values(collection, table, column):
    """(n,) values of ``column`` for every row: a label-CSV column, else an HDF5 dataset.

    The HDF5 form is a 1-D root dataset with one value per tracing in every file (e.g. the
    ``strat_fold`` and ``patient_id`` that ``datasets.py convert`` writes for PTB-XL).

    Raises
    ------
    LabelColumnsError
        Neither the CSV nor every HDF5 file has the column.
    """
    if table.frame is not None and column in table.frame.columns:
        return table.frame[column].to_numpy()
    parts = []
    for path in collection.paths:
        with open_hdf5(path) as handle:
            rows = handle[collection.dataset_name].shape[0]
            if column not in handle or handle[column].shape != (rows,):
                where = table.source if table.frame is not None else "the label CSV (none given)"
                raise LabelColumnsError(
                    f"{path}: no column {column!r} in {where} nor a ({rows},) dataset "
                    f"{column!r} in the file; name an existing column"
                )
            parts.append(handle[column][()])
    return np.concatenate(parts)


def parse_where(text, option):
    """``"COLUMN=V1,V2"`` -> (column, [values as str]) for row selection options."""
    column, sep, values = str(text).partition("=")
    values = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not column.strip() or not values:
        raise ECGInputError(f"{option} {text!r}: give COLUMN=VALUE[,VALUE...], e.g. "
                            f"{option} strat_fold=9")
    return column.strip(), values


def rows_where(values, wanted):
    """Boolean mask of the rows whose value (compared as text, so 9 == 9.0) is wanted."""
    def text(value):
        if isinstance(value, bytes):
            value = value.decode()
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        return f"{number:g}"

    wanted = {text(value) for value in wanted}
    return np.array([text(value) in wanted for value in values], dtype=bool)
