"""Open, validate and read CODE-style HDF5 ECG collections, without TensorFlow.

The data contract (see ``ecgcode.common``): an HDF5 file holds a dataset ``tracings`` of shape
(N, 4096, 12), float32, in units of 1e-4 V, leads in ``LEADS`` order; optionally an
``exam_id`` (N,) integer dataset and a ``labels`` (N, 6) dataset whose attribute
``classes`` names its columns.  Several files (e.g. the 18 shards of CODE-15%) are read
as one *collection*, rows numbered in file order.

Public API
----------
open_collection(paths, dataset_name)      -> Collection  (validates every file up front)
RowReader(collection).read(rows)          -> (k, 4096, 12) float32 tracings
find_nonfinite(collection)                -> (row indices, count) of NaN/inf values
check_finite(collection)                  -> raises NonFiniteError on NaN/inf
open_hdf5(path)                           -> h5py.File, or a specific ECGInputError

How rows are read
-----------------
For the usual uncompressed, contiguous float32 dataset, ``RowReader`` reads with
``os.preadv`` straight from the file's byte offsets: one system call per contiguous run
of rows, which releases the GIL, copies each row once into its (possibly permuted) slot
of the output buffer, and needs no HDF5 library call.  Chunked, compressed or
non-float32 datasets fall back to h5py slab reads (correct, slower: h5py serialises its
calls).  Labels live in ``ecgcode.data.labels``, statistics in ``ecgcode.data.inspection`` and the tf.data
pipeline in ``datasets``.
"""

import contextlib
import dataclasses
import itertools
import os
import sys
import threading
import weakref

import numpy as np

from ecgcode.common import (
    DEFAULT_DATASET_NAME,
    INPUT_SHAPE,
    LEADS,
    N_LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    UNIT_VOLTS,
    ECGInputError,
    first_line,
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


def create_tracings(handle, n, dataset_name=DEFAULT_DATASET_NAME):
    """Create the data contract's signal dataset in an open, writable HDF5 file.

    Every writer of the project (conversion, synthetic data) uses it, so the layout and
    its attributes (units, sampling rate, lead order) are defined once.

    Returns
    -------
    h5py.Dataset
        Contiguous (n, 4096, 12) float32, to be filled in 1e-4 V.
    """
    tracings = handle.create_dataset(dataset_name, shape=(n, *INPUT_SHAPE), dtype="float32")
    tracings.attrs.update(units="1e-4 V", unit_volts=UNIT_VOLTS, sampling_rate=SAMPLING_RATE,
                          leads=list(LEADS))
    return tracings


def open_hdf5(path):
    """Open ``path`` read-only, turning every failure into a specific ECGInputError.

    Returns
    -------
    h5py.File
        Open read-only; the caller closes it (``with open_hdf5(path) as handle``).

    Raises
    ------
    MissingFileError, NotHDF5Error, TruncatedFileError
    """
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
        reason = first_line(error)
        raise TruncatedFileError(
            f"{path}: cannot be read as HDF5 ({reason}); the file is truncated or corrupt, "
            "download or copy it again"
        ) from None


@contextlib.contextmanager
def corrupt_hdf5_errors(path):
    """Turn the errors HDF5 raises on damaged metadata into a one-line TruncatedFileError.

    h5py opens a file whose superblock is intact and fails later, on the first damaged
    object header, heap or B-tree it meets, with OSError, RuntimeError, KeyError or
    ValueError, and a damaged object type can turn a dataset into a group (AttributeError
    on ``.shape``): all found by tests/test_fuzz.py. The project's own errors pass unchanged.
    """
    try:
        yield
    except ECGInputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise TruncatedFileError(
            f"{path}: the HDF5 file is corrupt ({first_line(error, 120)}); download or copy "
            "it again"
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
    if not hasattr(dataset, "shape"):  # a group (or a damaged object) of that name
        raise MissingDatasetError(
            f"{path}: '{dataset_name}' is a group, not a dataset; pass the signal dataset "
            "with --dataset-name / dataset_name= (or the file is damaged: copy it again)"
        )
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
        with open_hdf5(path) as handle, corrupt_hdf5_errors(path):
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
        # Rows already found finite: the files are read-only inputs, so later passes
        # (epochs) skip re-checking them.
        self._verified = np.zeros(collection.n, dtype=bool)
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
                with open_hdf5(path) as handle, corrupt_hdf5_errors(path):
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
                    self._handles[file_number] = open_hdf5(path)
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
            still in the CPU cache; rows this reader already found finite are not
            checked again).

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
        check_finite = check_finite and not self._verified[rows].all()
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
        if check_finite:
            self._verified[rows] = True
        return out

    def _read_run(self, file_number, first_row, destinations, out, check_finite):
        """Read rows first_row ... into out[destinations]; False if NaN/inf may be present."""
        source, offset = self._source(file_number)
        count = len(destinations)
        if offset is None:  # h5py fallback: one slab read, then scatter
            slab = np.empty((count,) + INPUT_SHAPE, dtype=np.float32)
            with corrupt_hdf5_errors(self.collection.paths[file_number]):
                source.read_direct(slab, source_sel=np.s_[first_row : first_row + count])
            out[destinations] = slab
            return not check_finite or _all_finite(slab)
        # Lean per-row loop: with shuffled batches most runs are a single row.
        destinations = destinations.tolist()
        contiguous = destinations[-1] - destinations[0] == count - 1 and (
            count == 1 or destinations == list(range(destinations[0], destinations[-1] + 1))
        )
        finite = True
        for begin in range(0, count, PIECE_ROWS):
            piece = destinations[begin : begin + PIECE_ROWS]
            targets = [out[piece[0] : piece[-1] + 1]] if contiguous else [out[d] for d in piece]
            position = offset + (first_row + begin) * ROW_BYTES
            got = os.preadv(source, targets, position)  # C-contiguous arrays: flat buffers
            if got != len(piece) * ROW_BYTES:
                raise TruncatedFileError(
                    f"{self.collection.paths[file_number]}: read {got} of "
                    f"{len(piece) * ROW_BYTES} bytes at row {first_row + begin}; the file is "
                    "truncated, copy it again"
                )
            # One cheap pass while the piece (<= 3 MB) is in cache; after a first alarm
            # the caller's exact check decides.
            if check_finite and finite:
                finite = all(_all_finite(t) for t in targets)
        return finite


_ONES = np.ones(PIECE_ROWS * N_SAMPLES * N_LEADS, dtype=np.float32)


def _all_finite(x):
    """False if float32 array ``x`` (C-contiguous) may hold NaN/inf.

    A dot product with ones propagates any NaN/inf and runs at BLAS speed (about twice
    ``x.sum()``); an overflow gives a false alarm, which the caller's exact check clears.
    """
    flat = x.reshape(-1)
    ones = _ONES[: flat.size] if flat.size <= _ONES.size else np.ones_like(flat)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is a false alarm
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
