"""Read real-world ECG recordings: the sources that ``ecgcode.data.formats.convert`` turns
into the data contract.

Every reader returns one record as ``(signal, fs, lead_names, units)``: ``signal`` a
(n_samples, n_channels) float array, ``fs`` the sampling rate in Hz, ``lead_names`` one
name per channel as found in the source and ``units`` one string for all channels or one
per channel. Supported sources: WFDB records (PhysioNet ``.hea`` + ``.dat``/``.mat``,
CinC 2020/2021 ``#Dx:`` codes included), CSV files with one column per lead, ``.npy``
arrays, the PTB-XL collection (its ``ptbxl_database.csv`` table gives ids, folds and
labels), CPSC 2018 ``.mat`` records (``ecgcode.data.formats.challenge``) and clinical exports
recognised by content: GE MUSE XML, HL7 aECG, DICOM, SCP-ECG, Philips XML, EDF/EDF+, ISHNE
Holter, MFER (``ecgcode.data.formats.clinical``). The loaders of :func:`plan_inputs` return a
fifth element, a :class:`RecordInfo` of per-record metadata.

:func:`plan_inputs` validates a list of user inputs up front and returns lazy loaders, so
that a bad input fails before any output is written. This module does not depend on
``ecgcode.data.formats.convert``; the conversion into the contract lives there.
"""

import functools
import os
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgcode.common import LEADS, ECGInputError, first_line, plain
from ecgcode.data.formats import challenge, clinical
from ecgcode.data.formats.ptbxl_labels import label_matrix

# --- Names ---------------------------------------------------------------------------
_LEAD_ALIASES = {
    "i": "DI", "di": "DI",
    "ii": "DII", "dii": "DII",
    "iii": "DIII", "diii": "DIII",
    "avr": "aVR", "avl": "aVL", "avf": "aVF",
    **{f"v{k}": f"V{k}" for k in range(1, 7)},
}  # fmt: skip

PTBXL_DATABASE = "ptbxl_database.csv"

_WFDB_EXTENSIONS = {".hea", ".dat"}

_READ_ERRORS = (ValueError, OSError, EOFError, IndexError, KeyError, UnicodeDecodeError,
                TypeError, SyntaxError, tokenize.TokenError)
"""What readers of malformed files raise (pandas' and numpy's parse errors are ValueErrors;
found by tests/test_fuzz.py: wfdb raises TypeError on some broken headers, numpy a
SyntaxError or tokenize.TokenError on a damaged .npy header)."""


def canonical_lead(name):
    """Return our lead name for a source channel name, or None for a non-ECG-lead channel.

    Matching ignores case, blanks, ``-``/``_`` and a leading ``lead`` (``"Lead II"``).
    """
    key = str(name).strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    if key.startswith("lead") and len(key) > 4:
        key = key[4:]
    return _LEAD_ALIASES.get(key)


# --- Readers: each returns (signal (n_samples, n_channels) float, fs, lead_names, units) ---
def read_wfdb(path):
    """Read a WFDB record (``.hea`` + signal files) in physical units.

    Parameters
    ----------
    path : str or os.PathLike
        Record path with or without the ``.hea``/``.dat`` extension.

    Returns
    -------
    signal : np.ndarray, shape (n_samples, n_channels), float64
    fs : float
    lead_names : list of str
    units : list of str
        One per channel, from the header (WFDB's default is mV).
    """
    import wfdb  # imported lazily: it pulls in pandas, matplotlib, ...  # deferred: only this format's reader needs it

    record_path = _wfdb_record_path(path)
    _require_file(record_path + ".hea", "a WFDB header")
    try:
        record = wfdb.rdrecord(record_path)
    except _READ_ERRORS as error:  # wfdb raises several kinds on malformed files
        message = first_line(error)
        raise ECGInputError(f"{record_path}: cannot read WFDB record ({message}); "
                            "fix: check that the .hea and its signal files are complete") from None
    if record.p_signal is None:
        raise ECGInputError(f"{record_path}: WFDB record has no single-rate signal; "
                            "fix: resample its channels to one rate first")
    return record.p_signal, float(record.fs), list(record.sig_name), list(record.units)


def read_csv(path, *, fs, units):
    """Read a CSV file with one column per lead, named in its header row.

    Columns whose names are not leads (e.g. ``time``) are ignored.

    Returns
    -------
    signal : np.ndarray, shape (n_samples, n_leads), float64
    fs : float
    lead_names : list of str
    units : str
    """
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    path = os.fspath(path)
    _require_file(path, "a CSV file")
    _require_options(path, fs=fs, units=units)
    try:
        frame = pd.read_csv(path)
    except _READ_ERRORS as error:
        raise ECGInputError(f"{path}: cannot read CSV ({type(error).__name__}); "
                            "fix: give a comma-separated file with a header row") from None
    lead_columns = [column for column in frame.columns if canonical_lead(column) is not None]
    if not lead_columns:
        found = ", ".join(map(str, frame.columns[:8]))
        raise ECGInputError(f"{path}: no CSV header names a lead (found: {found}); fix: add a "
                            f"header row naming the columns, e.g. {','.join(LEADS[:3])},...")
    values = frame[lead_columns].apply(pd.to_numeric, errors="coerce")
    non_numeric = values.isna() & frame[lead_columns].notna()
    if non_numeric.to_numpy().any():
        row, col = np.argwhere(non_numeric.to_numpy())[0]
        raise ECGInputError(f"{path}: non-numeric value {plain(frame[lead_columns].iat[row, col])} "
                            f"in column {lead_columns[col]} (data row {row + 1}); "
                            "fix: keep only numbers below the header")
    return values.to_numpy(np.float64), float(fs), [str(c) for c in lead_columns], units


def read_npy(path, *, fs, units, leads):
    """Read a 2-D ``.npy`` recording, (n_samples, n_leads) or (n_leads, n_samples).

    Parameters
    ----------
    leads : sequence of str
        Names of the channels, in array order.

    Returns
    -------
    signal : np.ndarray, shape (n_samples, n_leads), float64
    fs, lead_names, units : as given
    """
    array = _load_npy(path, fs, units, leads)
    if array.ndim != 2:
        raise ECGInputError(f"{path}: expected a 2-D array, got shape {array.shape}; fix: "
                            "save one (n_samples, n_leads) recording (or use convert for 3-D)")
    return _orient(np.asarray(array), leads, path), float(fs), list(leads), units


def _load_npy(path, fs, units, leads):
    path = os.fspath(path)
    _require_file(path, "a .npy file")
    _require_options(path, fs=fs, units=units, leads=leads)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except _READ_ERRORS as error:
        raise ECGInputError(f"{path}: cannot read .npy ({type(error).__name__}); "
                            "fix: save the array with numpy.save") from None
    if not np.issubdtype(array.dtype, np.number):
        raise ECGInputError(f"{path}: non-numeric array of dtype {array.dtype}; "
                            "fix: save a float array")
    return array


def _orient(array, leads, path):
    """Return ``array`` as (n_samples, n_leads), transposing a lead-major (n_leads, n) one."""
    n_leads = len(leads)
    if array.shape[-1] == n_leads:
        return array
    if array.shape[-2] == n_leads:
        return np.swapaxes(array, -1, -2)
    raise ECGInputError(f"{path}: array of shape {array.shape} has no axis of {n_leads} leads "
                        f"(--leads names {n_leads}); fix: give one --leads name per channel")


def read_ptbxl_table(folder, low_rate=False, label_set="paper"):
    """Read PTB-XL's ``ptbxl_database.csv`` and map its SCP codes to a label set.

    Parameters
    ----------
    folder : str or os.PathLike
        The PTB-XL folder (containing ``ptbxl_database.csv`` and ``records500/``...).
    low_rate : bool
        Use the 100 Hz records (``filename_lr``) instead of the 500 Hz ones (``filename_hr``).
    label_set : str
        ``paper`` (our six classes) or one of PTB-XL's aggregations (see
        ``ecgcode.data.formats.ptbxl_labels``).

    Returns
    -------
    dict
        ``exam_id`` (n,) int64 (the ``ecg_id``), ``strat_fold`` (n,) int64, ``patient_id``
        (n,) int64 (-1 where absent), ``labels`` (n, n_classes) float32 and ``classes`` (a
        class is positive when its SCP code is listed, whatever its likelihood: PTB-XL gives
        rhythm statements a likelihood of 0), ``label_set`` and ``records``, the record paths
        relative to ``folder``.
    """
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    table_path = os.path.join(os.fspath(folder), PTBXL_DATABASE)
    _require_file(table_path, "PTB-XL's database table")
    try:
        frame = pd.read_csv(table_path)
    except _READ_ERRORS as error:
        raise ECGInputError(f"{table_path}: cannot read PTB-XL's table ({type(error).__name__}); "
                            "fix: give the unmodified ptbxl_database.csv") from None
    file_column = "filename_lr" if low_rate else "filename_hr"
    required = ["ecg_id", "scp_codes", "strat_fold", file_column]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ECGInputError(f"{table_path}: missing columns {', '.join(missing)}; "
                            "fix: give the unmodified ptbxl_database.csv")
    if frame.empty:
        raise ECGInputError(f"{table_path}: no records; fix: give the full ptbxl_database.csv")
    labels, classes = label_matrix(folder, frame, label_set, table_path)
    patient = frame["patient_id"] if "patient_id" in frame.columns else pd.Series(-1, frame.index)
    try:
        numbers = {"exam_id": frame["ecg_id"].to_numpy(np.int64),
                   "strat_fold": frame["strat_fold"].to_numpy(np.int64),
                   "patient_id": patient.fillna(-1).to_numpy(np.int64)}
    except (ValueError, TypeError, OverflowError):
        raise ECGInputError(f"{table_path}: ecg_id, strat_fold or patient_id holds a value that "
                            "is not a whole number; fix: give the unmodified ptbxl_database.csv"
                            ) from None
    return {**numbers, "labels": labels,  # (n, n_classes)
            "classes": classes, "label_set": label_set,
            "records": [str(name) for name in frame[file_column]]}


# --- Planning a conversion --------------------------------------------------------------
@dataclass
class RecordInfo:
    """What a record's file says about it, beyond the signal (written to ``records/``).

    Attributes
    ----------
    format : str
        The source format (``WFDB``, ``CSV``, ``GE MUSE XML``, ...).
    device : str
        Manufacturer and model of the cart, when the file names them.
    statements : str
        The file's own diagnosis statements, ``"; "``-separated.
    codes : str
        Diagnosis codes, comma-separated (CinC: every ``#Dx`` SNOMED CT code; CPSC: its codes).
    labels : np.ndarray or None, shape (6,)
        0/1 labels in ``CLASSES`` order when the file (or its REFERENCE.csv) gives diagnoses.
    label_source : str
        How ``labels`` were mapped (an attribute of the output's ``labels``).
    """

    format: str
    device: str = ""
    statements: str = ""
    codes: str = ""
    labels: np.ndarray | None = None
    label_source: str = ""


@dataclass
class _Source:
    """One record to convert: a name and a loader of (signal, fs, lead_names, units, info)."""

    name: str
    load: Callable


def plan_inputs(inputs, fs, units, leads, low_rate, ptbxl_labels="paper"):
    """Validate every input up front and return lazy loaders of its records.

    Parameters
    ----------
    inputs : list of str or os.PathLike
        WFDB records, folders of WFDB records, ``.csv`` and ``.npy`` files, or one PTB-XL
        folder (or its ``ptbxl_database.csv``) alone.
    fs, units, leads : optional
        As for ``ecgcode.data.formats.convert.convert``: required for CSV/.npy, override
        WFDB headers.
    low_rate : bool
        PTB-XL: use the 100 Hz records.
    ptbxl_labels : str
        PTB-XL: the label set (``ecgcode.data.formats.ptbxl_labels.LABEL_SETS``).

    Returns
    -------
    sources : list of _Source
        One per record, in output order; ``load()`` returns (signal, fs, lead_names, units,
        info), ``info`` a :class:`RecordInfo`.
    table : dict or None
        The PTB-XL table (see :func:`read_ptbxl_table`), None for other inputs.
    """
    if not inputs:
        raise ECGInputError("convert: no inputs; fix: name WFDB records, CSV, .npy files or "
                            "a PTB-XL folder")
    inputs = [os.path.dirname(os.path.abspath(path)) if os.path.basename(path) == PTBXL_DATABASE
              else os.fspath(path) for path in inputs]  # the database table stands for its folder
    ptbxl = [path for path in inputs if _is_ptbxl_folder(path)]
    if ptbxl:
        if len(inputs) > 1:
            raise ECGInputError(f"{ptbxl[0]}: a PTB-XL folder must be converted on its own; "
                                "fix: run convert once per collection")
        return _plan_ptbxl(ptbxl[0], fs, units, leads, low_rate, ptbxl_labels)
    sources = []
    for path in inputs:
        sources.extend(_plan_one(path, fs, units, leads))
    if not sources:
        raise ECGInputError(f"{', '.join(map(str, inputs))}: no records found; "
                            "fix: name WFDB records, CSV or .npy files")
    return sources, None


def _is_ptbxl_folder(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, PTBXL_DATABASE))


def _plan_ptbxl(folder, fs, units, leads, low_rate, label_set):
    table = read_ptbxl_table(folder, low_rate, label_set)
    absent = [name for name in table["records"]
              if not os.path.isfile(os.path.join(folder, name + ".hea"))]
    if absent:
        raise ECGInputError(
            f"{folder}: {len(absent)} of {len(table['records'])} records listed in "
            f"{PTBXL_DATABASE} are missing (first: {absent[0]}.hea); fix: download the complete "
            "folder" + ("" if low_rate else ", or pass --ptbxl-100hz for the 100 Hz records")
        )
    sources = [
        _Source(name, _wfdb_loader(os.path.join(folder, name), fs, units, leads))
        for name in table["records"]
    ]
    return sources, table


def _plan_one(path, fs, units, leads):
    """Return the sources of one input path (a directory of records gives several)."""
    if os.path.isdir(path):
        return _plan_folder(path, fs, units, leads)
    extension = os.path.splitext(path)[1].lower()
    if (extension in _WFDB_EXTENSIONS or (not extension and os.path.isfile(path + ".hea"))
            or (extension == ".mat" and not challenge.is_cpsc_mat(path))):
        record = _wfdb_record_path(path)
        _require_file(record + ".hea", "a WFDB header")
        return [_Source(record, _wfdb_loader(record, fs, units, leads))]
    if extension == ".mat":
        _require_file(path, "a CPSC 2018 .mat record")
        return [_Source(path, lambda: _load_cpsc(path))]
    if extension == ".csv":
        _require_file(path, "a CSV file")
        _require_options(path, fs=fs, units=units)
        return [_Source(path, lambda: (*read_csv(path, fs=fs, units=units), RecordInfo("CSV")))]
    if extension == ".npy":
        return _plan_npy(path, fs, units, leads)
    _require_file(path, "an ECG file")
    if clinical.detect_clinical_format(path) is not None:
        return [_Source(path, lambda: _load_clinical(path))]
    damaged = clinical.unrecognised_error(path)  # e.g. a truncated .edf
    if damaged is not None:
        raise damaged
    raise ECGInputError(f"{path}: unknown file type {extension or '(no extension)'!r}, not "
                        f"recognised by content either; fix: give a WFDB record (.hea/.dat/.mat), "
                        f"a .csv, a .npy, a CPSC 2018 .mat, a PTB-XL folder or one of "
                        f"{', '.join(clinical.CLINICAL_FORMATS.values())}")


def _plan_folder(path, fs, units, leads):
    """Sources of a folder: its WFDB records (.hea), else its CPSC 2018 .mat records, else the
    clinical exports among its files (recognised by content)."""
    headers = sorted(Path(path).glob("*.hea"))
    if headers:
        return [_Source(str(h.with_suffix("")), _wfdb_loader(h, fs, units, leads))
                for h in headers]
    mats = sorted(str(mat) for mat in Path(path).glob("*.mat"))
    if mats:
        return [_Source(mat, functools.partial(_load_cpsc, mat)) for mat in mats]
    exports = sorted(str(file) for file in Path(path).iterdir()
                     if file.is_file() and clinical.detect_clinical_format(file) is not None)
    if exports:
        return [_Source(file, functools.partial(_load_clinical, file)) for file in exports]
    raise ECGInputError(f"{path}: folder has no WFDB records (.hea), CPSC .mat records, "
                        f"clinical ECG exports nor {PTBXL_DATABASE}; fix: name the record files "
                        "instead")


def _load_cpsc(path):
    """CPSC 2018 record with the labels of the REFERENCE.csv next to it (if listed there)."""
    signal, fs, names, units = challenge.read_cpsc(path)
    codes = challenge.cpsc_codes(path)
    info = RecordInfo("CPSC 2018")
    if codes is not None:
        info.statements = "; ".join(challenge.CPSC_CODES[code] for code in codes)
        info.codes = ",".join(map(str, codes))
        info.labels = challenge.cpsc_labels(codes)
        info.label_source = "CPSC 2018 REFERENCE.csv: " + ", ".join(
            f"{code} {challenge.CPSC_CODES[code]}->{name}"
            for code, name in challenge.CPSC_TO_CLASSES.items())
    return signal, fs, names, units, info


def _load_clinical(path):
    record = clinical.read_clinical(path)
    info = RecordInfo(record.format, record.device, record.statements)
    return record.signal, record.fs, record.lead_names, record.units, info


def _plan_npy(path, fs, units, leads):
    array = _load_npy(path, fs, units, leads)
    if array.ndim == 2:
        return [_Source(path, lambda: (*read_npy(path, fs=fs, units=units, leads=leads),
                                       RecordInfo(".npy")))]
    if array.ndim != 3:
        raise ECGInputError(f"{path}: expected a 2-D or 3-D array, got shape {array.shape}; "
                            "fix: save (n_samples, n_leads) or (n_records, n_samples, n_leads)")
    _orient(array[0], leads, path)  # fail now, not after converting part of the file
    return [_Source(f"{path}[{i}]", _npy_row_loader(path, i, fs, units, leads))
            for i in range(array.shape[0])]


def _npy_row_loader(path, index, fs, units, leads):
    def load():
        row = np.load(path, mmap_mode="r")[index]
        return (_orient(np.asarray(row), leads, f"{path}[{index}]"), float(fs), list(leads),
                units, RecordInfo(".npy"))
    return load


def _wfdb_loader(record, fs, units, leads):
    """Loader of a WFDB record; --fs/--units/--leads, when given, override its header."""
    def load():
        signal, header_fs, names, header_units = read_wfdb(record)
        if leads is not None and len(leads) != len(names):
            raise ECGInputError(f"{record}: --leads names {len(leads)} channels, the record has "
                                f"{len(names)}; fix: drop --leads or name every channel")
        return (signal, header_fs if fs is None else float(fs),
                names if leads is None else list(leads), header_units if units is None else units,
                _wfdb_info(record))
    return load


def _wfdb_info(record):
    """RecordInfo of a WFDB record: its CinC ``#Dx:`` SNOMED CT codes become labels."""
    codes = challenge.read_cinc_codes(_wfdb_record_path(record))
    if codes is None:
        return RecordInfo("WFDB")
    return RecordInfo(
        "WFDB (CinC #Dx)", codes=",".join(codes), labels=challenge.snomed_labels(codes),
        label_source="CinC #Dx SNOMED CT: " + ", ".join(
            f"{code}->{name}" for code, name in challenge.SNOMED_TO_CLASSES.items()),
    )


def _wfdb_record_path(path):
    path = os.fspath(path)
    stem, extension = os.path.splitext(path)
    if extension.lower() == ".mat" and os.path.isfile(stem + ".hea"):
        return stem  # a CinC record's signal file
    return stem if extension.lower() in _WFDB_EXTENSIONS else path


def _require_file(path, what):
    if not os.path.isfile(path):
        raise ECGInputError(f"{path}: file not found (expected {what}); fix: check the path")


def _require_options(path, **options):
    missing = [name for name, value in options.items() if value is None]
    if missing:
        flags = " ".join(f"--{name}" for name in missing)
        raise ECGInputError(f"{path}: this format does not record {', '.join(missing)}; "
                            f"fix: pass {flags} (e.g. --fs 500 --units mV --leads I,II,...)")

