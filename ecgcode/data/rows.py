"""Reading arbitrary sets of rows of a collection, and checking them for NaN/inf.

For the usual uncompressed, contiguous float32 dataset, ``RowReader`` reads with
``os.preadv`` straight from the file's byte offsets: one system call per contiguous run
of rows, which releases the GIL, copies each row once into its (possibly permuted) slot
of the output buffer, and needs no HDF5 library call.  Chunked, compressed or
non-float32 datasets fall back to h5py slab reads (correct, slower: h5py serialises its
calls).  Labels live in ``ecgcode.data.labels``, statistics in ``ecgcode.data.inspection`` and the tf.data
pipeline in ``datasets``.

Public API
----------
RowReader(collection).read(rows)          -> (k, 4096, 12) float32 tracings, each file's
                                             rows multiplied by its gain (its rescaling)
find_nonfinite(collection)                -> (row indices, count) of NaN/inf values
check_finite(collection)                  -> raises NonFiniteError on NaN/inf
"""

import itertools
import os
import sys
import threading
import weakref

import h5py
import numpy as np
from tqdm import tqdm

from ecgcode.common import INPUT_SHAPE, N_LEADS, N_SAMPLES
from ecgcode.data.hdf5 import (
    NonFiniteError,
    TruncatedFileError,
    corrupt_hdf5_errors,
    describe_rows,
    open_collection,
    open_hdf5,
    validate_signal,
)

ROW_BYTES = N_SAMPLES * N_LEADS * 4
"""Bytes of one float32 tracing (196,608)."""

PIECE_ROWS = 16
"""Rows (3 MB) per ``preadv`` call: small enough to check NaN/inf while still in cache."""


# --- Raw reading of row sets --------------------------------------------------------
def _contiguous_offset(dataset):
    """Byte offset of a dataset readable with plain pread, or None when it is not."""
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
                    dataset = validate_signal(path, handle, self.collection.dataset_name)
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
        self._apply_gains(rows, out)
        return out

    def _apply_gains(self, rows, out):
        """Multiply the rows of rescaled files by their gain (``Collection.gains``), in place."""
        gains = np.asarray(self.collection.gains or [1.0], dtype=np.float32)
        if np.all(gains == 1):
            return
        row_gains = gains[self.collection.locate(rows)[0]]  # (k,)
        for gain in np.unique(row_gains[row_gains != 1]):
            picked = np.flatnonzero(row_gains == gain)
            if len(picked) == len(rows):
                out *= gain
            else:
                out[picked] *= gain

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
    return (
        f"{count} NaN/inf values in {len(rows)} tracings (first: "
        f"{describe_rows(collection, rows)}); replace or drop those records (e.g. pass "
        "indices= without them)"
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
