"""Convert real-world ECG recordings into the project's HDF5 data contract.

Reads WFDB records (PhysioNet ``.hea`` + ``.dat``), CSV files with one column per
lead, ``.npy`` arrays and the PTB-XL collection, and writes one CODE-style HDF5 file:

* ``tracings``  (N, 4096, 12) float32 in 1e-4 V, leads in ``ecg_common.LEADS`` order, 400 Hz;
* ``exam_id``   (N,) int64: PTB-XL's ``ecg_id``, else 0..N-1 in input order;
* ``labels``    (N, 6) float32 with attribute ``classes`` (PTB-XL only);
* ``strat_fold`` and ``patient_id`` (N,) int64 (PTB-XL only);
* ``records/``  a group of per-record metadata, one (N,) dataset each: ``source``
  (file or record name), ``sampling_rate`` (original Hz), ``n_samples`` (original
  length), ``units`` and ``lead_names`` (as found in the source, comma-separated),
  ``derived_leads`` (limb leads computed from others, comma-separated, often empty).
  Per-record metadata are datasets rather than attributes because HDF5 attributes are
  limited to 64 KiB, too small for the 21,799 records of PTB-XL.

The file and the ``tracings`` dataset carry attributes ``units`` ("1e-4 V"), ``unit_volts``
(1e-4), ``sampling_rate`` (400) and ``leads``; the file also ``created_by``. Strings in
``records/`` read back as bytes in h5py (use ``dataset.asstr()[()]``).

Each record is processed by :func:`to_contract`: leads matched by name
(case-insensitive, ``I``/``DI``, ``aVR``/``AVR``, ...), reordered, missing limb leads
derived from the others, units converted to 1e-4 V, resampled to 400 Hz with a
polyphase filter and centred (zero-padded on both sides or centre-cropped) to 4096
samples.

Usage: ``python ecg_convert.py INPUT... -o OUT.hdf5`` or ``python datasets.py convert ...``.
"""

import argparse
import ast
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import resample_poly
from tqdm import tqdm

from ecg_common import (
    CLASSES,
    LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    UNIT_VOLTS,
    ECGInputError,
    atomic_output,
    run_cli,
)

# --- Names and units -----------------------------------------------------------------
_LEAD_ALIASES = {
    "i": "DI", "di": "DI",
    "ii": "DII", "dii": "DII",
    "iii": "DIII", "diii": "DIII",
    "avr": "aVR", "avl": "aVL", "avf": "aVF",
    **{f"v{k}": f"V{k}" for k in range(1, 7)},
}  # fmt: skip

LIMB_LEADS = LEADS[:6]
"""Limb leads, which span a 2-D space: each one is a combination of DI and DII."""

_LIMB_FROM_I_II = {  # coefficients (a, b): lead = a * DI + b * DII
    "DI": (1.0, 0.0),
    "DII": (0.0, 1.0),
    "DIII": (-1.0, 1.0),
    "aVR": (-0.5, -0.5),
    "aVL": (1.0, -0.5),
    "aVF": (-0.5, 1.0),
}

_UNITS_TO_CONTRACT = {  # multiply a value in these units by the factor to get 1e-4 V
    "v": 1e4, "volt": 1e4, "volts": 1e4,
    "mv": 10.0, "millivolt": 10.0, "millivolts": 10.0,
    "uv": 0.01, "\u00b5v": 0.01, "\u03bcv": 0.01, "microvolt": 0.01, "microvolts": 0.01,
    "1e-4v": 1.0, "0.1mv": 1.0, "100uv": 1.0,
}  # fmt: skip

UNIT_CHOICES = "V, mV, uV (or \u00b5V), 1e-4V"

PTBXL_DATABASE = "ptbxl_database.csv"
PTBXL_TO_CLASSES = {"1AVB": "1dAVb", "CRBBB": "RBBB", "CLBBB": "LBBB", "SBRAD": "SB",
                    "AFIB": "AF", "STACH": "ST"}
"""PTB-XL SCP statement -> our class name."""

_WFDB_EXTENSIONS = {".hea", ".dat"}

_READ_ERRORS = (ValueError, OSError, EOFError, IndexError, KeyError, UnicodeDecodeError)
"""What readers of malformed files raise (pandas' and numpy's parse errors are ValueErrors)."""


def canonical_lead(name):
    """Return our lead name for a source channel name, or None for a non-ECG-lead channel.

    Matching ignores case, blanks, ``-``/``_`` and a leading ``lead`` (``"Lead II"``).
    """
    key = str(name).strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    if key.startswith("lead") and len(key) > 4:
        key = key[4:]
    return _LEAD_ALIASES.get(key)


def units_factor(units, source="input"):
    """Return the factor that converts values in ``units`` to 1e-4 V.

    Raises
    ------
    ECGInputError
        When the units are not one of V, mV, uV/µV or 1e-4 V.
    """
    key = str(units).strip().lower().replace(" ", "")
    if key not in _UNITS_TO_CONTRACT:
        raise ECGInputError(
            f"{source}: unknown units {units!r}; fix: give the units as one of {UNIT_CHOICES}"
        )
    return _UNITS_TO_CONTRACT[key]


# --- The conversion of one record ------------------------------------------------------
def match_leads(signal, lead_names, units, source="input"):
    """Pick, reorder and scale the 12 standard leads, deriving missing limb leads.

    Parameters
    ----------
    signal : array_like, shape (n_samples, n_channels)
    lead_names : sequence of str, length n_channels
        Channel names; channels that are not standard leads (e.g. Frank vx, vy, vz) are dropped.
    units : str or sequence of str
        Units of all channels, or one per channel.
    source : str
        Name used in error messages.

    Returns
    -------
    leads : np.ndarray, shape (n_samples, 12), float64, in 1e-4 V, ``LEADS`` order
    derived : list of str
        Limb leads that were computed from the others.
    """
    signal = np.asarray(signal, dtype=np.float64)  # (n_samples, n_channels)
    if signal.ndim != 2 or signal.shape[1] != len(lead_names):
        raise ECGInputError(
            f"{source}: signal of shape {signal.shape} does not match {len(lead_names)} lead "
            "names; fix: give one name per channel"
        )
    per_channel_units = [units] * len(lead_names) if isinstance(units, str) else list(units)
    if len(per_channel_units) != len(lead_names):
        raise ECGInputError(f"{source}: {len(per_channel_units)} units for {len(lead_names)} "
                            "channels; fix: give one unit, or one per channel")
    found = {}
    for column, (name, unit) in enumerate(zip(lead_names, per_channel_units)):
        lead = canonical_lead(name)
        if lead is None:
            continue
        if lead in found:
            raise ECGInputError(f"{source}: lead {lead} appears twice (channel {name!r}); "
                                "fix: keep one channel per lead")
        found[lead] = signal[:, column] * units_factor(unit, source)
    derived = _derive_limb_leads(found, source)
    missing = [lead for lead in LEADS if lead not in found]
    if missing:
        raise ECGInputError(
            f"{source}: missing leads {', '.join(missing)} (found channels "
            f"{', '.join(map(str, lead_names))}); fix: name the channels {', '.join(LEADS)} "
            "(I/II/III also accepted)"
        )
    leads = np.stack([found[lead] for lead in LEADS], axis=1)  # (n_samples, 12)
    return leads, derived


def _derive_limb_leads(found, source):
    """Add missing limb leads to ``found`` from two independent ones; return their names.

    Uses DIII = DII - DI, aVR = -(DI + DII)/2, aVL = DI - DII/2, aVF = DII - DI/2 after
    solving for DI and DII from whichever limb leads are present (least squares).
    """
    present = [lead for lead in LIMB_LEADS if lead in found]
    missing = [lead for lead in LIMB_LEADS if lead not in found]
    if not missing or not present:
        return []
    coefficients = np.array([_LIMB_FROM_I_II[lead] for lead in present])  # (n_present, 2)
    if np.linalg.matrix_rank(coefficients) < 2:
        raise ECGInputError(
            f"{source}: cannot derive limb leads {', '.join(missing)} from "
            f"{', '.join(present)} alone; fix: include two independent limb leads (e.g. I and II)"
        )
    observed = np.stack([found[lead] for lead in present], axis=0)  # (n_present, n_samples)
    basis, *_ = np.linalg.lstsq(coefficients, observed, rcond=None)  # (2, n_samples): DI, DII
    for lead in missing:
        a, b = _LIMB_FROM_I_II[lead]
        found[lead] = a * basis[0] + b * basis[1]
    return missing


def resample_to_contract_rate(signal, fs):
    """Resample ``signal`` (n_samples, n_leads) from ``fs`` Hz to 400 Hz (polyphase filter).

    The ratio is the Fraction 400 / fs (fs rounded to a denominator of at most 1000).
    """
    rate = Fraction(SAMPLING_RATE) / Fraction(fs).limit_denominator(1000)
    if rate == 1:
        return signal
    return resample_poly(signal, rate.numerator, rate.denominator, axis=0)


def centre(signal, n_samples=N_SAMPLES):
    """Zero-pad on both sides, or centre-crop, ``signal`` (n, n_leads) to ``n_samples`` rows.

    An odd remainder goes to the end (one more padded/cropped sample on the right).
    """
    length = signal.shape[0]
    if length >= n_samples:
        start = (length - n_samples) // 2
        return signal[start:start + n_samples]
    left = (n_samples - length) // 2
    return np.pad(signal, ((left, n_samples - length - left), (0, 0)))


def to_contract(signal, fs, lead_names, units, source="input"):
    """Convert one recording into the data contract.

    Parameters
    ----------
    signal : array_like, shape (n_samples, n_channels)
    fs : float
        Sampling rate in Hz.
    lead_names : sequence of str
        One name per channel (case-insensitive; extra channels are dropped).
    units : str or sequence of str
        V, mV, uV/µV or 1e-4 V, for all channels or one per channel.
    source : str
        Name used in error messages.

    Returns
    -------
    np.ndarray, shape (4096, 12), float32
        In 1e-4 V, ``ecg_common.LEADS`` order, 400 Hz, centred.

    Raises
    ------
    ECGInputError
        Missing leads that cannot be derived, unknown units, bad rate, empty or
        non-finite signal.
    """
    return _convert_record(signal, fs, lead_names, units, source)[0]


def _convert_record(signal, fs, lead_names, units, source):
    """Return (tracing (4096, 12) float32, derived limb leads) for one recording."""
    _check_rate(fs, source)
    signal = np.asarray(signal, dtype=np.float64)  # (n_samples, n_channels)
    if signal.ndim != 2 or signal.shape[0] == 0:
        raise ECGInputError(f"{source}: empty or malformed signal of shape {signal.shape}; "
                            "fix: give a (n_samples, n_leads) recording")
    leads, derived = match_leads(signal, lead_names, units, source)  # (n_samples, 12)
    _check_finite(leads, source)
    resampled = resample_to_contract_rate(leads, fs)  # (n_samples * 400 / fs, 12)
    return centre(resampled).astype(np.float32), derived  # (4096, 12)


def _check_rate(fs, source):
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise ECGInputError(f"{source}: invalid sampling rate {fs!r}; "
                            "fix: pass --fs with the rate in Hz")


def _check_finite(leads, source):
    bad = ~np.isfinite(leads)  # (n_samples, 12)
    if bad.any():
        bad_leads = [lead for lead, column in zip(LEADS, bad.T) if column.any()]
        raise ECGInputError(
            f"{source}: {int(bad.sum())} non-finite values (NaN/inf) in leads "
            f"{', '.join(bad_leads)}; fix: repair or drop this record"
        )


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
    import wfdb  # imported lazily: it pulls in pandas, matplotlib, ...

    record_path = _wfdb_record_path(path)
    _require_file(record_path + ".hea", "a WFDB header")
    try:
        record = wfdb.rdrecord(record_path)
    except _READ_ERRORS as error:  # wfdb raises several kinds on malformed files
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
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
    import pandas as pd

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
        raise ECGInputError(f"{path}: non-numeric value {frame[lead_columns].iat[row, col]!r} "
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


def read_ptbxl_table(folder, low_rate=False):
    """Read PTB-XL's ``ptbxl_database.csv`` and map its SCP codes to our classes.

    Parameters
    ----------
    folder : str or os.PathLike
        The PTB-XL folder (containing ``ptbxl_database.csv`` and ``records500/``...).
    low_rate : bool
        Use the 100 Hz records (``filename_lr``) instead of the 500 Hz ones (``filename_hr``).

    Returns
    -------
    dict
        ``exam_id`` (n,) int64 (the ``ecg_id``), ``strat_fold`` (n,) int64, ``patient_id``
        (n,) int64 (-1 where absent), ``labels`` (n, 6) float32 in ``CLASSES`` order (a class
        is positive when its SCP code is listed, whatever its likelihood: PTB-XL gives rhythm
        statements a likelihood of 0) and ``records``, the record paths relative to ``folder``.
    """
    import pandas as pd

    table_path = os.path.join(os.fspath(folder), PTBXL_DATABASE)
    _require_file(table_path, "PTB-XL's database table")
    frame = pd.read_csv(table_path)
    file_column = "filename_lr" if low_rate else "filename_hr"
    required = ["ecg_id", "scp_codes", "strat_fold", file_column]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ECGInputError(f"{table_path}: missing columns {', '.join(missing)}; "
                            "fix: give the unmodified ptbxl_database.csv")
    if frame.empty:
        raise ECGInputError(f"{table_path}: no records; fix: give the full ptbxl_database.csv")
    labels = np.stack([_ptbxl_labels(codes, table_path, ecg_id)
                       for codes, ecg_id in zip(frame["scp_codes"], frame["ecg_id"])])
    patient = frame["patient_id"] if "patient_id" in frame.columns else pd.Series(-1, frame.index)
    return {
        "exam_id": frame["ecg_id"].to_numpy(np.int64),
        "strat_fold": frame["strat_fold"].to_numpy(np.int64),
        "patient_id": patient.fillna(-1).to_numpy(np.int64),
        "labels": labels,  # (n, 6)
        "records": [str(name) for name in frame[file_column]],
    }


def _ptbxl_labels(codes, table_path, ecg_id):
    """Return the (6,) float32 label row of one PTB-XL ``scp_codes`` dict-string."""
    try:
        statements = ast.literal_eval(codes)
    except (ValueError, SyntaxError):
        statements = None
    if not isinstance(statements, dict):
        raise ECGInputError(f"{table_path}: ecg_id {ecg_id}: scp_codes {codes!r} is not a dict; "
                            "fix: give the unmodified ptbxl_database.csv") from None
    present = {PTBXL_TO_CLASSES[code] for code in statements if code in PTBXL_TO_CLASSES}
    return np.array([name in present for name in CLASSES], dtype=np.float32)


# --- Planning a conversion --------------------------------------------------------------
@dataclass
class _Source:
    """One record to convert: a name and a loader of (signal, fs, lead_names, units)."""

    name: str
    load: Callable


def _plan(inputs, fs, units, leads, low_rate):
    """Validate every input up front and return (sources, PTB-XL table or None)."""
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
        return _plan_ptbxl(ptbxl[0], fs, units, leads, low_rate)
    sources = []
    for path in inputs:
        sources.extend(_plan_one(path, fs, units, leads))
    if not sources:
        raise ECGInputError(f"{', '.join(map(str, inputs))}: no records found; "
                            "fix: name WFDB records, CSV or .npy files")
    return sources, None


def _is_ptbxl_folder(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, PTBXL_DATABASE))


def _plan_ptbxl(folder, fs, units, leads, low_rate):
    table = read_ptbxl_table(folder, low_rate)
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
    """Return the sources of one input path (a directory of WFDB records gives several)."""
    if os.path.isdir(path):
        headers = sorted(Path(path).glob("*.hea"))
        if not headers:
            raise ECGInputError(f"{path}: folder has no WFDB records (.hea) nor {PTBXL_DATABASE}; "
                                "fix: name the record files instead")
        return [_Source(str(h.with_suffix("")), _wfdb_loader(h, fs, units, leads))
                for h in headers]
    extension = os.path.splitext(path)[1].lower()
    if extension in _WFDB_EXTENSIONS or (not extension and os.path.isfile(path + ".hea")):
        record = _wfdb_record_path(path)
        _require_file(record + ".hea", "a WFDB header")
        return [_Source(record, _wfdb_loader(record, fs, units, leads))]
    if extension == ".csv":
        _require_file(path, "a CSV file")
        _require_options(path, fs=fs, units=units)
        return [_Source(path, lambda: read_csv(path, fs=fs, units=units))]
    if extension == ".npy":
        return _plan_npy(path, fs, units, leads)
    _require_file(path, "an ECG file")
    raise ECGInputError(f"{path}: unknown file type {extension or '(no extension)'!r}; fix: give "
                        "a WFDB record (.hea/.dat), a .csv, a .npy or a PTB-XL folder")


def _plan_npy(path, fs, units, leads):
    array = _load_npy(path, fs, units, leads)
    if array.ndim == 2:
        return [_Source(path, lambda: read_npy(path, fs=fs, units=units, leads=leads))]
    if array.ndim != 3:
        raise ECGInputError(f"{path}: expected a 2-D or 3-D array, got shape {array.shape}; "
                            "fix: save (n_samples, n_leads) or (n_records, n_samples, n_leads)")
    _orient(array[0], leads, path)  # fail now, not after converting part of the file
    return [_Source(f"{path}[{i}]", _npy_row_loader(path, i, fs, units, leads))
            for i in range(array.shape[0])]


def _npy_row_loader(path, index, fs, units, leads):
    def load():
        row = np.load(path, mmap_mode="r")[index]
        return _orient(np.asarray(row), leads, f"{path}[{index}]"), float(fs), list(leads), units
    return load


def _wfdb_loader(record, fs, units, leads):
    """Loader of a WFDB record; --fs/--units/--leads, when given, override its header."""
    def load():
        signal, header_fs, names, header_units = read_wfdb(record)
        if leads is not None and len(leads) != len(names):
            raise ECGInputError(f"{record}: --leads names {len(leads)} channels, the record has "
                                f"{len(names)}; fix: drop --leads or name every channel")
        return (signal, header_fs if fs is None else float(fs),
                names if leads is None else list(leads), header_units if units is None else units)
    return load


def _wfdb_record_path(path):
    path = os.fspath(path)
    stem, extension = os.path.splitext(path)
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


# --- Writing ------------------------------------------------------------------------------
def convert(inputs, output, *, fs=None, units=None, leads=None, low_rate=False, progress=True):
    """Convert ECG recordings into one HDF5 file of the data contract.

    Parameters
    ----------
    inputs : sequence of str or os.PathLike
        WFDB records (``.hea``/``.dat`` or the bare record name), folders of WFDB
        records, ``.csv`` files, ``.npy`` files (2-D: one record; 3-D: one per row),
        or a PTB-XL folder (alone).
    output : str or os.PathLike
        The HDF5 file to write (atomically: an earlier file survives a failure).
    fs : float, optional
        Sampling rate in Hz; required for CSV and .npy, overrides WFDB headers.
    units : str, optional
        V, mV, uV/µV or 1e-4V; required for CSV and .npy, overrides WFDB headers.
    leads : sequence of str, optional
        Channel names; required for .npy, overrides WFDB headers.
    low_rate : bool
        PTB-XL: use the 100 Hz records instead of the 500 Hz ones.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``output``, ``n_records``, ``labels`` (bool) and, with labels, ``prevalence``
        (class -> fraction positive).

    Raises
    ------
    ECGInputError
        For any bad input; no output file is left behind.
    """
    if units is not None:
        units_factor(units, "--units")
    if leads is not None:
        leads = [str(name).strip() for name in leads]
    sources, table = _plan(list(inputs), fs, units, leads, low_rate)
    n = len(sources)
    with atomic_output(output) as tmp_path, h5py.File(tmp_path, "w") as file:
        tracings = _create_layout(file, n)
        metadata = {key: [] for key in ("source", "sampling_rate", "n_samples", "units",
                                        "lead_names", "derived_leads")}
        for row, source in enumerate(tqdm(sources, desc="converting", unit="record",
                                          disable=not progress, file=sys.stderr)):
            signal, record_fs, names, record_units = source.load()
            tracings[row], derived = _convert_record(signal, record_fs, names, record_units,
                                                     source.name)
            _append_metadata(metadata, source.name, record_fs, np.shape(signal)[0],
                             record_units, names, derived)
        _write_records_group(file, metadata)
        _write_ids_and_labels(file, n, table)
    summary = {"output": os.fspath(output), "n_records": n, "labels": table is not None}
    if table is not None:
        summary["prevalence"] = dict(zip(CLASSES, table["labels"].mean(axis=0).tolist()))
    return summary


def _create_layout(file, n):
    """Create the ``tracings`` dataset (contiguous, (n, 4096, 12) float32) and attributes."""
    tracings = file.create_dataset("tracings", shape=(n, N_SAMPLES, len(LEADS)), dtype="float32")
    for target in (file, tracings):
        target.attrs["units"] = "1e-4 V"
        target.attrs["unit_volts"] = UNIT_VOLTS
        target.attrs["sampling_rate"] = SAMPLING_RATE
        target.attrs["leads"] = list(LEADS)
    file.attrs["created_by"] = "ecg_convert"
    return tracings


def _append_metadata(metadata, name, fs, n_samples, units, names, derived):
    metadata["source"].append(name)
    metadata["sampling_rate"].append(float(fs))
    metadata["n_samples"].append(int(n_samples))
    unit_list = [units] if isinstance(units, str) else list(dict.fromkeys(units))
    metadata["units"].append(",".join(map(str, unit_list)))
    metadata["lead_names"].append(",".join(map(str, names)))
    metadata["derived_leads"].append(",".join(derived))


def _write_records_group(file, metadata):
    group = file.create_group("records")
    group.attrs["description"] = ("per-record metadata of the sources: name, original "
                                  "sampling rate (Hz) and length, units, channel names, "
                                  "derived limb leads (comma-separated)")
    text = h5py.string_dtype()
    for key, values in metadata.items():
        if key == "sampling_rate":
            group.create_dataset(key, data=np.array(values, dtype=np.float64))
        elif key == "n_samples":
            group.create_dataset(key, data=np.array(values, dtype=np.int64))
        else:
            group.create_dataset(key, data=np.array(values, dtype=object), dtype=text)


def _write_ids_and_labels(file, n, table):
    if table is None:
        file.create_dataset("exam_id", data=np.arange(n, dtype=np.int64))
        return
    file.create_dataset("exam_id", data=table["exam_id"])
    labels = file.create_dataset("labels", data=table["labels"])
    labels.attrs["classes"] = list(CLASSES)
    labels.attrs["source"] = "PTB-XL scp_codes: " + ", ".join(
        f"{code}->{name}" for code, name in PTBXL_TO_CLASSES.items())
    file.create_dataset("strat_fold", data=table["strat_fold"])
    file.create_dataset("patient_id", data=table["patient_id"])


# --- Command line ---------------------------------------------------------------------------
def build_parser():
    """Return the argparse parser of the ``convert`` command."""
    prog = "datasets.py convert" if Path(sys.argv[0]).name == "datasets.py" else None
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert ECG recordings (WFDB, CSV, .npy, PTB-XL) into a CODE-style HDF5 "
        f"file: tracings (N, {N_SAMPLES}, {len(LEADS)}) float32 in 1e-4 V at {SAMPLING_RATE} Hz, "
        f"leads {', '.join(LEADS)}. Leads are matched by name, missing limb leads derived, "
        "signals resampled (polyphase) and zero-padded or centre-cropped.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="WFDB records (.hea/.dat or bare name), folders of WFDB records, "
                        ".csv files (header row naming the leads), .npy files ((n_samples, "
                        "n_leads) or (n_records, n_samples, n_leads)), or a PTB-XL folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.hdf5",
                        help="HDF5 file to write (replaced only on success)")
    parser.add_argument("--fs", type=float, help="sampling rate in Hz (required for CSV and "
                        ".npy; overrides WFDB headers)")
    parser.add_argument("--units", help=f"signal units: {UNIT_CHOICES} (required for CSV and "
                        ".npy; overrides WFDB headers)")
    parser.add_argument("--leads", type=lambda text: text.split(","), metavar="I,II,...",
                        help="comma-separated channel names (required for .npy; overrides WFDB "
                        "headers)")
    parser.add_argument("--ptbxl-100hz", action="store_true",
                        help="PTB-XL: convert the 100 Hz records instead of the 500 Hz ones")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    """Run the ``convert`` command; returns 0, raises ECGInputError on bad input."""
    args = build_parser().parse_args(argv)
    summary = convert(args.inputs, args.output, fs=args.fs, units=args.units, leads=args.leads,
                      low_rate=args.ptbxl_100hz, progress=not args.quiet)
    print(f"wrote {summary['n_records']} records to {summary['output']}")
    for name, fraction in summary.get("prevalence", {}).items():
        print(f"  {name:6s} {fraction:7.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
