"""Open, validate and read CODE-style HDF5 ECG collections, without TensorFlow.

The data contract (see ``ecgcode.common``): an HDF5 file holds a dataset ``tracings`` of shape
(N, 4096, 12), float32, at ``UNITS_PER_MV`` (its scale recorded or assumed:
``ecgcode.data.scale``), leads in ``LEADS`` order; optionally an
``exam_id`` (N,) integer dataset and a ``labels`` (N, 6) dataset whose attribute
``classes`` names its columns.  Several files (e.g. the 18 shards of CODE-15%) are read
as one *collection*, rows numbered in file order.

Public API
----------
open_collection(paths, dataset_name,
                units_per_mv)             -> Collection  (validates every file up front and
                                             reads its amplitude scale)
open_hdf5(path, unreadable)               -> h5py.File, or a one-line ECGInputError (every
                                             user-given HDF5 file is opened with it)
is_synthetic_file(path)                   -> bool: written by ``ecgcode.data.synthetic.generate``

Reading rows and checking their values (``RowReader``, ``find_nonfinite``,
``check_finite``) live in ``ecgcode.data.rows``.

Labels live in ``ecgcode.data.labels``, statistics in ``ecgcode.data.inspection`` and the
tf.data pipeline in ``ecgcode.data.pipeline``.
"""

import contextlib
import dataclasses
import os

import h5py
import numpy as np

from ecgcode.common import (
    DEFAULT_DATASET_NAME,
    INPUT_SHAPE,
    LEADS,
    N_LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    ECGInputError,
    first_line,
)
from ecgcode.data.scale import declare_scale, file_scale, recorded_scale

SYNTHETIC_GENERATOR = "ecg_synthetic"
"""Root attribute ``generator`` of the files ``ecgcode.data.synthetic.generate`` writes."""


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
    scales : list of ecgcode.data.scale.Scale
        Amplitude scale of each file: recorded, given (``--units-per-mv``) or assumed.
    gains : tuple of float
        Factor applied to each file's rows when read (``ecgcode.data.scale.bring_to_scale``);
        empty: none.
    notes : tuple of str
        Notes for the user (an ``--units-per-mv`` ignored for a file that records a scale).
    """

    paths: list
    dataset_name: str
    sizes: list
    n: int
    exam_ids: object = None
    dtypes: list = dataclasses.field(default_factory=list)
    scales: list = dataclasses.field(default_factory=list)
    gains: tuple = ()
    notes: tuple = ()

    @property
    def starts(self):
        """(n_files + 1,) int64 first global row of each file, then ``n``."""
        return np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])

    def locate(self, rows):
        """Map global rows to (file number, row within file) arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        files = np.searchsorted(self.starts, rows, side="right") - 1
        return files, rows - self.starts[files]


SHOWN_ROWS = 5
"""Rows named in a message (then ``...``)."""


def describe_rows(collection, rows, limit=SHOWN_ROWS):
    """Where global ``rows`` lie: ``"FILE row R (exam_id E); ..."``, the first ``limit`` of them.

    The row is counted inside its file (0-based), so it is found with h5py directly; the
    exam id is added when the files have ``exam_id``; `` ...`` ends the text when more rows
    than ``limit`` were given.
    """
    rows = np.asarray(rows, dtype=np.int64)
    files, local = collection.locate(rows[:limit])
    parts = []
    for row, file_number, local_row in zip(rows[:limit].tolist(), files.tolist(),
                                           local.tolist()):
        part = f"{collection.paths[file_number]} row {local_row}"
        if collection.exam_ids is not None:
            part += f" (exam_id {int(collection.exam_ids[row])})"
        parts.append(part)
    return "; ".join(parts) + (" ..." if len(rows) > limit else "")


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
        Contiguous (n, 4096, 12) float32, to be filled at ``UNITS_PER_MV`` (recorded in the
        dataset's and the file's attributes ``units_per_mv`` and ``units``).
    """
    tracings = handle.create_dataset(dataset_name, shape=(n, *INPUT_SHAPE), dtype="float32")
    tracings.attrs.update(sampling_rate=SAMPLING_RATE, leads=list(LEADS))
    declare_scale(tracings.attrs)
    declare_scale(handle.attrs)
    return tracings


def open_hdf5(path, unreadable=None):
    """Open the user-given file ``path`` read-only, every failure a one-line ECGInputError.

    The one place where opening an HDF5 file is checked and h5py's errors are translated:
    each message names the file, the problem and the fix.

    Parameters
    ----------
    path : str or os.PathLike
    unreadable : str, optional
        For files other than tracings (model files): the text after ``"{path}: "`` when
        h5py cannot open the file, with ``{reason}`` standing for the first line of its
        error; the tracings checks below are then skipped.  Default: a file of tracings,
        checked for existence, being a file and the HDF5 signature first.

    Returns
    -------
    h5py.File
        Open read-only; the caller closes it (``with open_hdf5(path) as handle``).

    Raises
    ------
    MissingFileError, NotHDF5Error, TruncatedFileError
    """
    path = os.fspath(path)
    if unreadable is None:
        _check_tracings_file(path, h5py)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        if unreadable is not None:
            raise TruncatedFileError(
                f"{path}: {unreadable.format(reason=first_line(error, 200))}"
            ) from None
        raise TruncatedFileError(
            f"{path}: cannot be read as HDF5 ({first_line(error)}); the file is truncated or "
            "corrupt, download or copy it again"
        ) from None


def is_synthetic_file(path):
    """True when ``path`` is a collection of synthetic ECGs (``ecgcode.data.synthetic.generate``).

    The one test of "synthetic": the HDF5 root attribute ``generator`` equals
    :data:`SYNTHETIC_GENERATOR`. Any other file (a converted clinical or WFDB record, a
    CODE shard, a file that cannot be read) is not synthetic.
    """
    try:
        with h5py.File(os.fspath(path), "r") as handle:
            generator = handle.attrs.get("generator")
    except (OSError, TypeError, ValueError):
        return False
    if isinstance(generator, bytes):
        generator = generator.decode("utf-8", "replace")
    return generator == SYNTHETIC_GENERATOR


def _check_tracings_file(path, h5py):
    """Raise MissingFileError or NotHDF5Error unless ``path`` is an HDF5 file."""
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: file not found; check the path")
    if os.path.isdir(path):
        raise NotHDF5Error(f"{path}: is a directory, not an HDF5 file; pass the .hdf5 file(s)")
    if not h5py.is_hdf5(path):
        raise NotHDF5Error(
            f"{path}: not an HDF5 file; convert it first with `python datasets.py convert`"
        )


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

    names = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else 0)
    return names


def validate_signal(path, handle, dataset_name):
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
            "tracings; integers are usually raw ADC counts: convert with "
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


def open_collection(paths, dataset_name=DEFAULT_DATASET_NAME, units_per_mv=None):
    """Open and validate CODE-style HDF5 files as one collection.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        HDF5 file(s); their rows are numbered in this order.
    dataset_name : str
        Name of the signal dataset (``tracings``).
    units_per_mv : float, optional
        The amplitude scale of files that record none (``--units-per-mv``); default the
        original study's (``ecgcode.data.scale``).

    Returns
    -------
    Collection

    Raises
    ------
    ECGInputError
        A specific subclass (MissingFileError, NotHDF5Error, TruncatedFileError,
        MissingDatasetError, WrongShapeError, WrongDtypeError, EmptyCollectionError) with
        a one-line message naming the file, problem and fix.

    Notes
    -----
    The values are not read: ``ecgcode.data.rows.check_finite`` scans them for NaN/inf.
    """
    if isinstance(paths, Collection):
        return paths
    paths = _as_path_list(paths)
    sizes, dtypes, id_parts, scales, notes = [], [], [], [], []
    for path in paths:
        with open_hdf5(path) as handle, corrupt_hdf5_errors(path):
            dataset = validate_signal(path, handle, dataset_name)
            sizes.append(int(dataset.shape[0]))
            dtypes.append(dataset.dtype)
            id_parts.append(_read_exam_ids(path, handle, dataset.shape[0]))
            scale, note = file_scale(path, recorded_scale(dataset.attrs, handle.attrs),
                                     units_per_mv)
            scales.append(scale)
            notes.extend([note] if note else [])
    if sum(sizes) == 0:
        raise EmptyCollectionError(
            f"{', '.join(paths)}: no tracings (dataset '{dataset_name}' has 0 rows)"
        )
    exam_ids = None if any(p is None for p in id_parts) else np.concatenate(id_parts)
    return Collection(paths, dataset_name, sizes, int(sum(sizes)), exam_ids, dtypes, scales,
                      notes=tuple(notes))
