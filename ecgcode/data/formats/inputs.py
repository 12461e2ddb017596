"""Let predict.py take any recording the converter reads, next to CODE-style HDF5 files.

:func:`contract_inputs` keeps HDF5 inputs as they are and converts each run of consecutive
other inputs (clinical XML/DICOM/SCP exports, WFDB or CinC records, CPSC ``.mat``, folders
of records) into a temporary HDF5 file of the data contract, removed when the block ends.
:func:`row_names` then names every row by its file, so that an output row can be traced back
to its recording.
"""

import contextlib
import os
import tempfile

import h5py

from ecgcode.data.formats.convert import convert, units_factor

HDF5_EXTENSIONS = (".hdf5", ".h5", ".hdf")


def is_tracings_file(path):
    """True for an HDF5 input (or one that claims to be: a missing or broken ``.hdf5``).

    Such inputs are left to the HDF5 reader, whose errors name the problem precisely.
    """
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() in HDF5_EXTENSIONS or not os.path.exists(path):
        return True
    return os.path.isfile(path) and h5py.is_hdf5(path)


@contextlib.contextmanager
def contract_inputs(paths, fs=None, units=None, leads=None, window_stride=None):
    """Yield HDF5 paths for ``paths``: other recordings converted into temporary files.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        HDF5 files and/or anything ``datasets.py convert`` reads, read as it reads them.
    fs, units, leads : optional
        As for ``datasets.py convert``: required for CSV and .npy, override WFDB headers.
    window_stride : int, optional
        Cut the recordings into windows this many samples apart (``convert --windows``),
        one row each, instead of centre-cropping them.

    Yields
    ------
    hdf5_paths : list of str
        In input order; each run of consecutive non-HDF5 inputs became one temporary file.
    converted : dict
        Temporary path -> list of record names (file names), one per row (per window).

    Raises
    ------
    ECGInputError
        A recording the converter cannot read (the converter's one-line message).
    """
    if units is not None:
        units_factor(units, "--units")  # fail before converting anything
    groups = _group_runs([os.fspath(path) for path in paths])
    with tempfile.TemporaryDirectory(prefix="ecg-predict-") as folder:
        hdf5_paths, converted = [], {}
        for index, (is_hdf5, group) in enumerate(groups):
            if is_hdf5:
                hdf5_paths.extend(group)
                continue
            output = os.path.join(folder, f"converted{index}.hdf5")
            convert(group, output, fs=fs, units=units, leads=leads, progress=False,
                    window_stride=window_stride)
            hdf5_paths.append(output)
            converted[output] = _record_names(output)
        yield hdf5_paths, converted


def row_names(paths, sizes, converted):
    """One name per row: a converted record's file name, or ``FILE.hdf5[ROW]``.

    Parameters
    ----------
    paths, sizes : sequences
        The collection's files and their row counts.
    converted : dict
        As yielded by :func:`contract_inputs`.

    Returns
    -------
    list of str, or None when no input was converted (the output keeps its usual columns)
    """
    if not converted:
        return None
    names = []
    for path, size in zip(paths, sizes):
        names.extend(converted.get(path) or
                     [f"{os.path.basename(path)}[{row}]" for row in range(size)])
    return names


def _group_runs(paths):
    """[(is_hdf5, [paths...]), ...]: consecutive inputs of the same kind grouped."""
    groups = []
    for path in paths:
        kind = is_tracings_file(path)
        if groups and groups[-1][0] == kind:
            groups[-1][1].append(path)
        else:
            groups.append((kind, [path]))
    return groups


def _record_names(output):
    with h5py.File(output, "r") as file:
        return [os.path.basename(source.rstrip("/"))
                for source in file["records/source"].asstr()[()]]
