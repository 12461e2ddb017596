"""Stream CODE-style HDF5 ECG collections of any size into tf.data, and refuse bad data.

The data contract (see ``ecg_common``): an HDF5 file holds a dataset ``tracings`` of shape
(N, 4096, 12), float32, in units of 1e-4 V, leads in ``LEADS`` order; optionally an
``exam_id`` (N,) integer dataset and a ``labels`` (N, 6) dataset whose attribute
``classes`` names its columns.  Several files (e.g. the 18 shards of CODE-15%) are read
as one *collection*, rows numbered in file order.

Public API
----------
open_collection(paths, dataset_name)      -> Collection  (validates every file up front)
load_labels(paths_or_collection, csv)     -> LabelTable  (labels aligned to the rows)
split_indices(n, val_split, groups, seed) -> (train_idx, val_idx)
make_dataset(paths_or_collection, labels, batch_size=..., shuffle=..., ...) -> tf.data.Dataset
find_nonfinite(collection)                -> (row indices, count) of NaN/inf values

How the pipeline reads
----------------------
Rows are grouped into *blocks* of consecutive rows; a *window* of several blocks is read
per tf.data element by a parallel ``map`` (``tf.numpy_function``).  For the usual
uncompressed, contiguous float32 dataset the window is read with ``os.preadv`` straight
from the file's byte offsets: one system call per contiguous run of rows, which releases
the GIL, copies each row once into its (possibly shuffled) slot of the output buffer, and
needs no HDF5 library call.  Chunked, compressed or non-float32 datasets fall back to
h5py slab reads (correct, slower: h5py serialises its calls).  Shuffling draws the block
order from ``seed`` (reshuffled every pass over the data) and permutes the rows inside
each window; ``shuffle=False`` keeps the exact file (or ``indices``) order.

Command line: ``python datasets.py {inspect,convert,synthetic} ...``.
"""

import argparse
import dataclasses
import itertools
import os
import sys
import threading
import weakref

import numpy as np

from ecg_common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    INPUT_SHAPE,
    LEADS,
    N_LEADS,
    N_SAMPLES,
    UNITS_PER_MV,
    ECGInputError,
    run_cli,
)

ROW_BYTES = N_SAMPLES * N_LEADS * 4
"""Bytes of one float32 tracing (196,608)."""

PIECE_ROWS = 16
"""Rows (3 MB) per ``preadv`` call: small enough to check NaN/inf while still in cache."""


# --- Errors: one subclass of ECGInputError per bad-data case -------------------------
class MissingFileError(ECGInputError):
    """An input file does not exist."""


class NotHDF5Error(ECGInputError):
    """An input file is not an HDF5 file."""


class TruncatedFileError(ECGInputError):
    """An HDF5 file is truncated or corrupt (e.g. an interrupted download or copy)."""


class MissingDatasetError(ECGInputError):
    """The signal dataset is absent from an HDF5 file."""


class WrongShapeError(ECGInputError):
    """The signal dataset does not have shape (N, 4096, 12)."""


class WrongDtypeError(ECGInputError):
    """The signal dataset is not floating point."""


class NonFiniteError(ECGInputError):
    """Tracings contain NaN or infinite values."""


class EmptyCollectionError(ECGInputError):
    """No files, or no tracings, or an empty selection of rows."""


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


# --- Opening and validating files ----------------------------------------------------
@dataclasses.dataclass
class Collection:
    """Several CODE-style HDF5 files seen as one, rows in file order.

    Attributes
    ----------
    paths : list of str
        The files, in the order their rows are numbered.
    dataset_name : str
        Name of the signal dataset in every file.
    sizes : list of int
        Rows per file.
    n : int
        Total rows.
    exam_ids : numpy.ndarray or None
        (n,) int64 exam ids concatenated over the files; None if any file lacks ``exam_id``.
    dtypes : list of numpy.dtype
        Stored dtype of the signal dataset of each file.
    """

    paths: list
    dataset_name: str
    sizes: list
    n: int
    exam_ids: object = None
    dtypes: list = dataclasses.field(default_factory=list)

    @property
    def starts(self):
        """(n_files + 1,) int64 first global row of each file, then ``n``."""
        return np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])

    def locate(self, rows):
        """Map global rows to (file number, row within file) arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        files = np.searchsorted(self.starts, rows, side="right") - 1
        return files, rows - self.starts[files]


def _as_path_list(paths):
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise EmptyCollectionError("no input files given: pass at least one HDF5 file")
    return paths


def _open_hdf5(path):
    """Open ``path`` read-only, turning every failure into a specific ECGInputError."""
    import h5py

    if not os.path.exists(path):
        raise MissingFileError(f"{path}: file not found; check the path")
    if os.path.isdir(path):
        raise NotHDF5Error(f"{path}: is a directory, not an HDF5 file; pass the .hdf5 file(s)")
    if not h5py.is_hdf5(path):
        raise NotHDF5Error(
            f"{path}: not an HDF5 file; convert it first with `python datasets.py convert`"
        )
    try:
        return h5py.File(path, "r")
    except OSError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TruncatedFileError(
            f"{path}: cannot be read as HDF5 ({reason}); the file is truncated or corrupt, "
            "download or copy it again"
        ) from None


def _dataset_names(handle):
    import h5py

    names = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else 0)
    return names


def _validate_signal(path, handle, dataset_name):
    """Return the signal dataset of an open file after checking its name, shape and dtype."""
    if dataset_name not in handle:
        existing = ", ".join(_dataset_names(handle)) or "none"
        raise MissingDatasetError(
            f"{path}: no dataset '{dataset_name}' (datasets in the file: {existing}); "
            "pass the right one with --dataset-name / dataset_name="
        )
    dataset = handle[dataset_name]
    shape = tuple(dataset.shape)
    if len(shape) == 3 and shape[1:] == (N_LEADS, N_SAMPLES):
        raise WrongShapeError(
            f"{path}: dataset '{dataset_name}' has shape {shape}, i.e. transposed "
            f"(N, {N_LEADS}, {N_SAMPLES}); store it as (N, {N_SAMPLES}, {N_LEADS}) "
            "(numpy: x.transpose(0, 2, 1))"
        )
    if len(shape) != 3 or shape[1:] != INPUT_SHAPE:
        raise WrongShapeError(
            f"{path}: dataset '{dataset_name}' has shape {shape}, expected "
            f"(N, {N_SAMPLES}, {N_LEADS}) at {N_SAMPLES} samples x {N_LEADS} leads; "
            "resample/pad with `python datasets.py convert`"
        )
    if dataset.dtype.kind != "f":
        raise WrongDtypeError(
            f"{path}: dataset '{dataset_name}' has dtype {dataset.dtype}, expected float32 "
            "in 1e-4 V; integers are usually raw ADC counts: convert with "
            "`python datasets.py convert` (which applies the gain)"
        )
    return dataset


def _read_exam_ids(path, handle, n_rows):
    if "exam_id" not in handle:
        return None
    exam_ids = handle["exam_id"]
    if exam_ids.shape != (n_rows,) or exam_ids.dtype.kind not in "iu":
        raise WrongShapeError(
            f"{path}: dataset 'exam_id' has shape {exam_ids.shape} and dtype {exam_ids.dtype}, "
            f"expected ({n_rows},) integers, one per tracing"
        )
    return exam_ids[()].astype(np.int64)


def open_collection(paths, dataset_name=DEFAULT_DATASET_NAME, *, check_values=False):
    """Open and validate CODE-style HDF5 files as one collection.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        HDF5 file(s); their rows are numbered in this order.
    dataset_name : str
        Name of the signal dataset (``tracings``).
    check_values : bool
        Also scan every tracing for NaN/inf (reads the whole collection once, in
        bounded memory).

    Returns
    -------
    Collection

    Raises
    ------
    ECGInputError
        A specific subclass (MissingFileError, NotHDF5Error, TruncatedFileError,
        MissingDatasetError, WrongShapeError, WrongDtypeError, EmptyCollectionError,
        NonFiniteError) with a one-line message naming the file, problem and fix.
    """
    if isinstance(paths, Collection):
        return paths
    paths = _as_path_list(paths)
    sizes, dtypes, id_parts = [], [], []
    for path in paths:
        with _open_hdf5(path) as handle:
            dataset = _validate_signal(path, handle, dataset_name)
            sizes.append(int(dataset.shape[0]))
            dtypes.append(dataset.dtype)
            id_parts.append(_read_exam_ids(path, handle, dataset.shape[0]))
    if sum(sizes) == 0:
        raise EmptyCollectionError(
            f"{', '.join(paths)}: no tracings (dataset '{dataset_name}' has 0 rows)"
        )
    exam_ids = None if any(p is None for p in id_parts) else np.concatenate(id_parts)
    collection = Collection(paths, dataset_name, sizes, int(sum(sizes)), exam_ids, dtypes)
    if check_values:
        check_finite(collection)
    return collection


# --- Raw reading of row sets --------------------------------------------------------
def _contiguous_offset(dataset):
    """Byte offset of a dataset readable with plain pread, or None when it is not."""
    import h5py

    try:
        plist = dataset.id.get_create_plist()
        if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters():
            return None
        if dataset.dtype != np.dtype("<f4") or dataset.file.driver != "sec2":
            return None
        offset = dataset.id.get_offset()
    except (AttributeError, ValueError, RuntimeError):
        return None
    return None if offset is None else int(offset)


def _aligned_view(raw, shape, alignment=64):
    """A float32 view of ``shape`` into byte array ``raw``, starting on an aligned address.

    TensorFlow wraps a 64-byte aligned array returned by ``tf.numpy_function`` without
    copying it; it copies unaligned ones (measured: 5,300 vs 490,000 windows of 256 rows
    per second).
    """
    nbytes = int(np.prod(shape)) * 4
    start = (-raw.ctypes.data) % alignment
    return raw[start : start + nbytes].view(np.float32).reshape(shape)


class RowReader:
    """Reads arbitrary sets of rows of a collection into float32 arrays, thread-safely.

    File descriptors (and, for datasets that are not plain contiguous float32, h5py
    handles) are opened lazily and closed when the reader is garbage-collected.
    """

    def __init__(self, collection, pool_size=8):
        self.collection = collection
        self.pool_size = pool_size
        self._pool = []
        self.starts = collection.starts
        self._lock = threading.Lock()
        self._fds = {}
        self._handles = {}
        self._offsets = {}
        self._finalizer = weakref.finalize(self, RowReader._close, self._fds, self._handles)

    @staticmethod
    def _close(fds, handles):
        for fd in fds.values():
            os.close(fd)
        for handle in handles.values():
            handle.close()
        fds.clear()
        handles.clear()

    def close(self):
        """Close every open file."""
        self._finalizer()

    def _source(self, file_number):
        """(fd, byte offset) for the pread path or (h5py dataset, None) for the fallback."""
        with self._lock:
            if file_number not in self._offsets:
                path = self.collection.paths[file_number]
                with _open_hdf5(path) as handle:
                    dataset = _validate_signal(path, handle, self.collection.dataset_name)
                    offset = _contiguous_offset(dataset)
                    end = None if offset is None else offset + dataset.size * 4
                if offset is not None and end > os.path.getsize(path):
                    raise TruncatedFileError(
                        f"{path}: file is shorter than its dataset "
                        f"'{self.collection.dataset_name}' requires; the file is truncated, "
                        "copy it again"
                    )
                if offset is None:
                    self._handles[file_number] = _open_hdf5(path)
                else:
                    self._fds[file_number] = os.open(path, os.O_RDONLY)
                self._offsets[file_number] = offset
            offset = self._offsets[file_number]
            if offset is None:
                return self._handles[file_number][self.collection.dataset_name], None
            return self._fds[file_number], offset

    def new_buffer(self, n_rows):
        """A 64-byte aligned (n_rows, 4096, 12) float32 array, recycled when possible.

        Buffers handed out earlier are reused once nobody (e.g. a TensorFlow tensor
        wrapping them) references them any more; reusing memory avoids the kernel's
        page-zeroing of fresh allocations (about a third of the cost of a read).
        """
        nbytes = n_rows * ROW_BYTES
        with self._lock:
            for raw in self._pool:
                # References: the pool list, ``raw`` and getrefcount's argument.
                if raw.nbytes == nbytes + 64 and sys.getrefcount(raw) <= 3:
                    return _aligned_view(raw, (n_rows,) + INPUT_SHAPE)
            raw = np.empty(nbytes + 64, dtype=np.uint8)
            if len(self._pool) < self.pool_size:
                self._pool.append(raw)
            return _aligned_view(raw, (n_rows,) + INPUT_SHAPE)

    def read(self, rows, out=None, check_finite=False):
        """Read global ``rows`` (any order, duplicates allowed) into ``out[i] = row rows[i]``.

        Parameters
        ----------
        rows : array_like of int
            (k,) global row numbers.
        out : numpy.ndarray, optional
            (k, 4096, 12) float32 C-contiguous destination (a recycled buffer when None).
        check_finite : bool
            Raise NonFiniteError if a row holds NaN/inf (checked while the data are
            still in the CPU cache).

        Returns
        -------
        numpy.ndarray
            (k, 4096, 12) float32.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = self.new_buffer(len(rows))
        if len(rows) == 0:
            return out
        order = np.argsort(rows, kind="stable")  # read the file forwards
        sorted_rows = rows[order]
        files, local = self.collection.locate(sorted_rows)
        # A run is a maximal stretch of consecutive rows of one file.
        breaks = np.flatnonzero((np.diff(sorted_rows) != 1) | (np.diff(files) != 0)) + 1
        bounds = np.concatenate([[0], breaks, [len(rows)]])
        finite = True
        for begin, end in itertools.pairwise(bounds):
            finite &= self._read_run(
                int(files[begin]), int(local[begin]), order[begin:end], out, check_finite
            )
        if not finite:
            bad = ~np.isfinite(out)
            if bad.any():
                raise NonFiniteError(
                    _nonfinite_message(self.collection, rows[bad.any(axis=(1, 2))], int(bad.sum()))
                )
        return out

    def _read_run(self, file_number, first_row, destinations, out, check_finite):
        """Read rows first_row ... into out[destinations]; False if NaN/inf may be present."""
        source, offset = self._source(file_number)
        count = len(destinations)
        if offset is None:  # h5py fallback: one slab read, then scatter
            slab = np.empty((count,) + INPUT_SHAPE, dtype=np.float32)
            source.read_direct(slab, source_sel=np.s_[first_row : first_row + count])
            out[destinations] = slab
            return not check_finite or _all_finite(slab)
        finite = True
        for begin in range(0, count, PIECE_ROWS):
            piece = destinations[begin : begin + PIECE_ROWS]
            if len(piece) == 1 or np.all(np.diff(piece) == 1):
                targets = [out[piece[0] : piece[-1] + 1]]
            else:
                targets = [out[d] for d in piece]
            position = offset + (first_row + begin) * ROW_BYTES
            wanted = len(piece) * ROW_BYTES
            got = os.preadv(source, [memoryview(t).cast("B") for t in targets], position)
            if got != wanted:
                raise TruncatedFileError(
                    f"{self.collection.paths[file_number]}: read {got} of {wanted} bytes at "
                    f"row {first_row + begin}; the file is truncated, copy it again"
                )
            if check_finite:  # one cheap pass while the piece (<= 3 MB) is in cache
                finite &= all(_all_finite(t) for t in targets)
        return finite


_ONES = np.ones(PIECE_ROWS * N_SAMPLES * N_LEADS, dtype=np.float32)


def _all_finite(x):
    """False if float32 array ``x`` (C-contiguous) may hold NaN/inf.

    A dot product with ones propagates any NaN/inf and runs at BLAS speed (about twice
    ``x.sum()``); an overflow gives a false alarm, which the caller's exact check clears.
    """
    flat = x.reshape(-1)
    ones = _ONES[: flat.size] if flat.size <= _ONES.size else np.ones_like(flat)
    return bool(np.isfinite(np.dot(flat, ones)))


def _nonfinite_message(collection, rows, count):
    files, local = collection.locate(rows[:5])
    where = "; ".join(
        f"{collection.paths[f]} row {r}" for f, r in zip(files.tolist(), local.tolist())
    )
    more = " ..." if len(rows) > 5 else ""
    return (
        f"{count} NaN/inf values in {len(rows)} tracings (first: {where}{more}); "
        "replace or drop those records (e.g. pass indices= without them)"
    )


def find_nonfinite(collection, rows=None, block_rows=256, progress=False):
    """Scan tracings for NaN/inf values in bounded memory.

    Parameters
    ----------
    collection : Collection or paths
    rows : array_like of int, optional
        Rows to scan (all when None).
    block_rows : int
        Rows read at a time.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    (numpy.ndarray, int)
        Global rows holding non-finite values, and the number of such values.
    """
    collection = open_collection(collection)
    rows = np.arange(collection.n) if rows is None else np.asarray(rows, dtype=np.int64)
    reader = RowReader(collection)
    buffer = np.empty((block_rows,) + INPUT_SHAPE, dtype=np.float32)
    bad_rows, count = [], 0
    starts = range(0, len(rows), block_rows)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="scanning for NaN/inf", unit="block", leave=False)
    for begin in starts:
        block = rows[begin : begin + block_rows]
        x = reader.read(block, buffer[: len(block)])
        if _all_finite(x):  # fast path: one pass, no temporary
            continue
        bad = ~np.isfinite(x)
        count += int(bad.sum())
        bad_rows.append(block[bad.any(axis=(1, 2))])
    reader.close()
    bad_rows = np.concatenate(bad_rows) if bad_rows else np.zeros(0, dtype=np.int64)
    return bad_rows, count


def check_finite(collection, rows=None):
    """Raise NonFiniteError if any tracing (of ``rows``) holds NaN/inf."""
    bad_rows, count = find_nonfinite(collection, rows)
    if count:
        raise NonFiniteError(_nonfinite_message(collection, bad_rows, count))


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
            f"class {CLASSES[column]}, value {values[row, column]!r}); labels must be 0/1"
        )
    return values.astype(np.float32)


def _labels_from_hdf5(collection):
    """(n, 6) labels from the ``labels`` datasets of every file, or None if any lacks one."""
    parts = []
    for path in collection.paths:
        with _open_hdf5(path) as handle:
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


# --- The tf.data pipeline --------------------------------------------------------------
def _rows_to_read(collection, indices, shuffle):
    if indices is None:
        return np.arange(collection.n, dtype=np.int64)
    rows = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= collection.n):
        raise ECGInputError(
            f"indices must lie in [0, {collection.n}) for {', '.join(collection.paths)}"
        )
    return np.sort(rows) if shuffle else rows


def _check_labels_array(labels, collection):
    if labels is None:
        return None
    if isinstance(labels, LabelTable):
        labels = labels.labels
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape[0] != collection.n:
        raise LabelRowCountError(
            f"labels have shape {labels.shape} but {', '.join(collection.paths)} hold "
            f"{collection.n} tracings; pass one row per tracing (load_labels)"
        )
    return labels


def make_dataset(
    paths_or_collection,
    labels=None,
    *,
    batch_size=64,
    shuffle=False,
    seed=0,
    indices=None,
    dataset_name=DEFAULT_DATASET_NAME,
    repeat=False,
    drop_remainder=False,
    block_size=None,
    shuffle_buffer=512,
    num_parallel_reads=3,
    prefetch=2,
    input_context=None,
    check_values=True,
):
    """A tf.data pipeline of ECG batches streamed from HDF5.

    Parameters
    ----------
    paths_or_collection : paths or Collection
    labels : numpy.ndarray or LabelTable, optional
        (n, n_classes) labels aligned with the collection's rows; when None the dataset
        yields ``x`` alone.
    batch_size : int
        Batch size (per worker / per input pipeline; see ``input_context``).
    shuffle : bool
        Shuffle reproducibly from ``seed``: the block order is redrawn on every pass over
        the data and rows are permuted within each window of ``shuffle_buffer`` rows.
        When False the order is exactly the file order (or the order of ``indices``).
    seed : int
    indices : array_like of int, optional
        Rows to use (e.g. from ``split_indices``), kept in the given order when not shuffled.
    dataset_name : str
    repeat : bool
        Repeat forever (a new shuffle each pass); batches then run across pass boundaries.
    drop_remainder : bool
        Drop the last, smaller batch (of each pass when not repeating).
    block_size : int, optional
        Consecutive rows read as one contiguous slab: the unit of shuffling.  Defaults to
        32 when shuffling and 256 otherwise.
    shuffle_buffer : int
        Rows per window (read and permuted together).  Memory is about
        ``(num_parallel_reads + prefetch + 3) * max(shuffle_buffer, block_size)`` rows of
        196 KB each.
    num_parallel_reads : int
        Windows read concurrently.
    prefetch : int
        Batches prefetched at the end of the pipeline.
    input_context : tf.distribute.InputContext, optional
        Given by ``strategy.distribute_datasets_from_function``: each input pipeline then
        reads a disjoint share of the blocks (``input_pipeline_id`` of
        ``num_input_pipelines``).  Multi-worker use: prefer
        ``strategy.distribute_datasets_from_function(lambda ctx: make_dataset(...,
        batch_size=ctx.get_per_replica_batch_size(global_batch), input_context=ctx))``.
        With ``strategy.experimental_distribute_dataset(dataset)`` instead, the dataset's
        auto-shard policy is DATA: every worker gets disjoint batches but reads the whole
        collection (there are no files for FILE sharding to split).
    check_values : bool
        Fail (NonFiniteError inside the pipeline, surfacing as a tf.errors.OpError) on
        NaN/inf; costs one extra pass over memory.

    Returns
    -------
    tf.data.Dataset
        Elements ``(x, y)``: x float32 (batch, 4096, 12), y float32 (batch, n_classes);
        or ``x`` alone when ``labels`` is None.
    """
    import tensorflow as tf

    collection = open_collection(paths_or_collection, dataset_name)
    labels = _check_labels_array(labels, collection)
    rows = _rows_to_read(collection, indices, shuffle)
    if len(rows) == 0:
        raise EmptyCollectionError(f"{', '.join(collection.paths)}: no rows selected (indices)")
    block_size = int(block_size or (32 if shuffle else 256))
    n_blocks = -(-len(rows) // block_size)
    window_blocks = max(1, int(shuffle_buffer) // block_size) if shuffle else 1
    reader = RowReader(collection, pool_size=num_parallel_reads + prefetch + 3)

    def read_window(block_ids, permutation_seed):
        # block_ids: (window_blocks,) int64 -> rows of those blocks, permuted when shuffling.
        window_rows = np.concatenate(
            [rows[b * block_size : (b + 1) * block_size] for b in block_ids]
        )
        if shuffle:
            rng = np.random.default_rng(int(permutation_seed) % 2**63)
            window_rows = window_rows[rng.permutation(len(window_rows))]
        x = reader.read(window_rows, check_finite=check_values)  # (rows, 4096, 12)
        if labels is None:
            return (x,)
        return x, labels[window_rows]

    block_ids = tf.data.Dataset.range(n_blocks)
    if input_context is not None and input_context.num_input_pipelines > 1:
        block_ids = block_ids.shard(
            input_context.num_input_pipelines, input_context.input_pipeline_id
        )
    if shuffle:
        block_ids = block_ids.shuffle(n_blocks, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        block_ids = block_ids.repeat()
    windows = block_ids.batch(window_blocks)
    permutation_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    windows = tf.data.Dataset.zip(windows, permutation_seeds)
    out_types = (tf.float32,) if labels is None else (tf.float32, tf.float32)

    def read_op(ids, permutation_seed):
        tensors = tf.numpy_function(read_window, [ids, permutation_seed], out_types)
        x = tf.ensure_shape(tensors[0], (None,) + INPUT_SHAPE)  # (rows, 4096, 12)
        if labels is None:
            return x
        y = tf.ensure_shape(tensors[1], (None, labels.shape[1]))  # (rows, n_classes)
        return x, y

    dataset = windows.map(read_op, num_parallel_calls=num_parallel_reads, deterministic=True)
    dataset = dataset.rebatch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    return dataset.prefetch(prefetch)


# --- inspect -------------------------------------------------------------------------
def _sample_rows(n, max_records, seed=0):
    if n <= max_records:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_records, replace=False))


def lead_statistics(x):
    """Per-lead amplitude statistics, in mV, of tracings ``x`` (k, 4096, 12) in 1e-4 V.

    All-zero records (padding) are ignored.

    Returns
    -------
    dict
        ``ptp``: (12,) median over records of the peak-to-peak amplitude;
        ``abs_max``: (12,) 99th percentile over records of the largest |value|;
        ``std``: (12,) median over records of the standard deviation; all in mV;
        ``records``: records used.
    """
    x = x[np.any(x != 0, axis=(1, 2))] / UNITS_PER_MV  # (k', 4096, 12) in mV
    if len(x) == 0:
        nan = np.full(N_LEADS, np.nan)
        return {"ptp": nan, "abs_max": nan, "std": nan, "records": 0}
    return {
        "ptp": np.median(x.max(axis=1) - x.min(axis=1), axis=0),
        "abs_max": np.percentile(np.abs(x).max(axis=1), 99, axis=0),
        "std": np.median(x.std(axis=1), axis=0),
        "records": len(x),
    }


def scale_warnings(stats):
    """Warnings when the typical amplitude does not look like 1e-4 V (1 mV = 10 units)."""
    if stats["records"] == 0:
        return ["all sampled tracings are zero"]
    typical = float(np.median(stats["ptp"]))  # mV; about 1-3 mV for a real ECG
    if typical < 0.3:
        return [
            (
                f"typical peak-to-peak amplitude is {typical:.3g} mV, about 10x too small: "
                "the values look like mV; multiply by 10 (tracings are in 1e-4 V, 1 mV = 10 "
                "units)"
            )
        ]
    if typical > 30:
        return [
            (
                f"typical peak-to-peak amplitude is {typical:.3g} mV, far too large: the "
                "values look like raw ADC counts or uV; divide by the gain (convert with "
                "`python datasets.py convert`) so that 1 mV = 10 units"
            )
        ]
    return []


def lead_order_warnings(x):
    """Warnings when limb-lead relations fail, suggesting swapped or misordered leads.

    Checks Einthoven's law II = I + III and that aVR is mostly negative, on tracings
    ``x`` (k, 4096, 12).
    """
    x = x[np.any(x != 0, axis=(1, 2))]
    if len(x) == 0:
        return []
    lead = {name: x[:, :, i].astype(np.float64) for i, name in enumerate(LEADS)}
    warnings = []
    residual = np.linalg.norm(lead["DII"] - lead["DI"] - lead["DIII"], axis=1)
    scale = np.linalg.norm(lead["DII"], axis=1) + 1e-9
    violated = float(np.mean(residual / scale > 0.2))
    if violated > 0.5:
        warnings.append(
            f"Einthoven's law II = I + III fails in {violated:.0%} of sampled records: "
            f"the limb leads look swapped or misordered (expected order {', '.join(LEADS)})"
        )
    avr = lead["aVR"] - np.median(lead["aVR"], axis=1, keepdims=True)
    peak_sign = np.sign(avr[np.arange(len(avr)), np.abs(avr).argmax(axis=1)])
    positive = float(np.mean(peak_sign > 0))
    if positive > 0.5:
        warnings.append(
            f"aVR's largest deflection is positive in {positive:.0%} of sampled records "
            "(normally negative): arm electrodes reversed or leads misordered"
        )
    return warnings


def inspect_collection(
    paths,
    labels_csv=None,
    dataset_name=DEFAULT_DATASET_NAME,
    max_records=1000,
    scan=True,
    file=None,
):
    """Print a summary of a collection; return the list of warnings.

    Parameters
    ----------
    paths : paths
    labels_csv : str, optional
    dataset_name : str
    max_records : int
        Records sampled for amplitude statistics and lead-order checks.
    scan : bool
        Scan every record for NaN/inf (raises NonFiniteError after printing).
    file : file-like, optional
        Where to print (stdout).
    """
    out = file or sys.stdout
    collection = open_collection(paths, dataset_name)
    for path, size, dtype in zip(collection.paths, collection.sizes, collection.dtypes):
        shape = f"({size}, {N_SAMPLES}, {N_LEADS})"
        print(f"{path}: {size} tracings, shape {shape}, {dtype}", file=out)
    print(
        f"total: N = {collection.n}, exam_id: {'yes' if collection.exam_ids is not None else 'no'}",
        file=out,
    )
    try:
        table = load_labels(collection, labels_csv, allow_missing=True)
    except LabelError as error:
        if labels_csv is not None:
            raise
        print(f"labels: none ({error})", file=out)
    else:
        labelled = table.labels[table.matched]
        print(f"labels from {table.source}: {len(labelled)} labelled tracings", file=out)
        for name, prevalence in zip(CLASSES, labelled.mean(axis=0)):
            print(f"  {name:6s} prevalence {prevalence:7.2%}", file=out)
    sample = _sample_rows(collection.n, max_records)
    x = RowReader(collection).read(sample)  # (k, 4096, 12)
    finite = np.isfinite(x).all(axis=(1, 2))
    stats = lead_statistics(x[finite])
    print(
        f"amplitudes in mV over {stats['records']} sampled non-empty records "
        "(median peak-to-peak / 99th pct of max |x| / median std):",
        file=out,
    )
    for i, name in enumerate(LEADS):
        print(
            f"  {name:4s} {stats['ptp'][i]:8.3f} {stats['abs_max'][i]:8.3f} {stats['std'][i]:8.3f}",
            file=out,
        )
    warnings = scale_warnings(stats) + lead_order_warnings(x[finite])
    for warning in warnings:
        print(f"WARNING: {warning}", file=out)
    if scan:
        check_finite(collection)
        print("no NaN/inf values", file=out)
    return warnings


def _inspect_main(argv):
    parser = argparse.ArgumentParser(
        prog="datasets.py inspect",
        description="Summarise CODE-style HDF5 file(s): size, labels, amplitudes in mV; warn "
        "when the scale (1e-4 V expected) or the lead order looks wrong.",
    )
    parser.add_argument("files", nargs="+", help="HDF5 file(s), read as one collection")
    parser.add_argument("--labels", help="label CSV (else a 'labels' dataset in the HDF5)")
    parser.add_argument(
        "--dataset-name",
        default=DEFAULT_DATASET_NAME,
        help="signal dataset name (default: %(default)s)",
    )
    parser.add_argument(
        "--max-records",
        type=int,
        default=1000,
        help="records sampled for amplitude statistics (default: %(default)s)",
    )
    parser.add_argument(
        "--no-scan", action="store_true", help="skip scanning every record for NaN/inf"
    )
    args = parser.parse_args(argv)
    inspect_collection(
        args.files, args.labels, args.dataset_name, args.max_records, scan=not args.no_scan
    )
    return 0


COMMANDS = {
    "inspect": "summarise HDF5 file(s) and warn about wrong scale or lead order",
    "convert": "convert WFDB / CSV / .npy / PTB-XL records into a CODE-style HDF5 file",
    "synthetic": "write a synthetic CODE-style HDF5 file (for tests and demos)",
}


def main(argv=None):
    """Dispatch ``inspect``, ``convert`` or ``synthetic`` (see ``--help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="datasets.py",
        description="ECG data tools for CODE-style HDF5 files (tracings (N, 4096, 12), "
        "float32, 1e-4 V, 400 Hz).",
        epilog="commands:\n"
        + "\n".join(f"  {k:10s} {v}" for k, v in COMMANDS.items())
        + "\nRun `python datasets.py COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments")
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the error
        return 2
    command, rest = argv[0], argv[1:]
    if command == "inspect":
        return _inspect_main(rest)
    if command == "convert":
        import ecg_convert

        return ecg_convert.main(rest)
    import ecg_synthetic

    return ecg_synthetic.main(rest)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
