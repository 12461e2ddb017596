"""Convert real-world ECG recordings into the project's HDF5 data contract.

Reads WFDB records (PhysioNet ``.hea`` + ``.dat``/``.mat``, CinC 2020/2021 ``#Dx:`` labels),
CSV files with one column per lead, ``.npy`` arrays, the PTB-XL collection, CPSC 2018 ``.mat``
records with their ``REFERENCE.csv``, clinical exports (GE MUSE XML, HL7 aECG, DICOM
waveform, SCP-ECG, Philips XML) and long-term recordings (EDF/EDF+, ISHNE Holter, MFER), all
recognised by content, and writes one CODE-style HDF5 file:

* ``tracings``  (N, 4096, 12) float32 at ``UNITS_PER_MV`` (the original study's scale, 1 mV =
  2 units), leads in ``ecgcode.common.LEADS`` order, 400 Hz;
* ``exam_id``   (N,) int64: PTB-XL's ``ecg_id``, else 0..N-1 in input order;
* ``labels``    (N, n_classes) float32 with attributes ``classes`` and ``source`` (PTB-XL:
  the paper's six, or PTB-XL's own statements with ``--ptbxl-labels``; and conversions whose
  every record carries diagnoses: CinC ``#Dx``, CPSC ``REFERENCE.csv``, the paper's six);
* ``strat_fold`` and ``patient_id`` (N,) int64 (PTB-XL only);
* ``records/``  a group of per-record metadata, one (N,) dataset each: ``source``
  (file or record name), ``sampling_rate`` (original Hz), ``n_samples`` (original
  length), ``units`` and ``lead_names`` (as found in the source, comma-separated),
  ``derived_leads`` (limb leads computed from others, comma-separated, often empty),
  ``format`` (source format), ``device`` (cart manufacturer and model), ``statements`` (the
  file's own diagnosis statements, ``; ``-separated) and ``codes`` (every CinC ``#Dx``
  SNOMED CT code, or the CPSC codes, comma-separated). With ``--windows``, one entry per
  window (the record's metadata repeated) and ``record``, ``window``, ``start_s``, ``end_s``.
  Per-record metadata are datasets rather than attributes because HDF5 attributes are
  limited to 64 KiB, too small for the 21,799 records of PTB-XL.

The file and the ``tracings`` dataset carry attributes ``units_per_mv`` (2.0) and ``units``
("mV x 2 (1 mV = 2 units)"); the dataset also ``sampling_rate`` (400) and ``leads``, the
file ``created_by``. Strings in
``records/`` read back as bytes in h5py (use ``dataset.asstr()[()]``).

Each record is processed by :func:`to_contract`: leads matched by name
(case-insensitive, ``I``/``DI``, ``aVR``/``AVR``, ...), reordered, missing limb leads
derived from the others, units converted to the contract's scale, resampled to 400 Hz with a
polyphase filter and centred (zero-padded on both sides or centre-cropped) to 4096
samples. With ``--windows``, :func:`to_windows` cuts a longer record at
:func:`window_starts` instead: every stride, plus a final window ending at the last sample.

Reading the sources (WFDB, CSV, .npy, PTB-XL; input planning) lives in
``ecgcode.data.formats.readers`` (its public readers are re-exported here), the clinical
exports in ``ecgcode.data.formats.clinical`` and the challenge collections in
``ecgcode.data.formats.challenge``.

Its command line is ``python datasets.py convert INPUT... -o OUT.hdf5`` (``ecgcode.cli.convert``).
"""

import os
import sys
import tempfile
from fractions import Fraction

import h5py
import numpy as np
from scipy.signal import resample_poly
from tqdm import tqdm

from ecgcode.common import (
    CLASSES,
    LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    UNITS_PER_MV,
    ECGInputError,
    atomic_output,
    plain,
)
from ecgcode.data.formats.ptbxl_labels import PTBXL_TO_CLASSES
from ecgcode.data.formats.ptbxl_labels import describe as describe_ptbxl_labels
from ecgcode.data.formats.readers import (
    PTBXL_DATABASE,
    canonical_lead,
    plan_inputs,
    read_csv,
    read_npy,
    read_ptbxl_table,
    read_wfdb,
)
from ecgcode.data.hdf5 import create_tracings

__all__ = [  # readers re-exported for existing callers
    "LIMB_LEADS", "PTBXL_DATABASE", "PTBXL_TO_CLASSES", "UNIT_CHOICES", "canonical_lead",
    "centre", "convert", "match_leads", "read_csv", "read_npy", "read_ptbxl_table", "read_wfdb",
    "resample_to_contract_rate", "stride_samples", "to_contract", "to_windows", "units_factor",
    "window_starts",
]

# --- Units and limb leads --------------------------------------------------------------
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

_MV_PER_UNIT = {  # millivolts in one unit of each name
    "v": 1e3, "volt": 1e3, "volts": 1e3,
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "nv": 1e-6, "nanovolt": 1e-6, "nanovolts": 1e-6,
    "1e-4v": 0.1, "0.1mv": 0.1, "100uv": 0.1,
}  # fmt: skip

UNIT_CHOICES = "V, mV, uV (or \u00b5V), nV, 1e-4V"


def units_factor(units, source="input"):
    """Return the factor that converts values in ``units`` to the contract's scale.

    The contract's scale is ``UNITS_PER_MV`` (the original study's, 1 mV = 2 units), so
    a value in mV is multiplied by 2, in uV by 0.002.

    Raises
    ------
    ECGInputError
        When the units are not one of V, mV, uV/µV or 1e-4 V.
    """
    key = str(units).strip().lower().replace(" ", "")
    if key not in _MV_PER_UNIT:
        raise ECGInputError(
            f"{source}: unknown units {units!r}; fix: give the units as one of {UNIT_CHOICES}"
        )
    return _MV_PER_UNIT[key] * UNITS_PER_MV


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
    leads : np.ndarray, shape (n_samples, 12), float64, at ``UNITS_PER_MV``, ``LEADS`` order
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

    The ratio is the Fraction 400 / fs (fs rounded to a denominator of at most 1000);
    ``scipy.signal.resample_poly`` resamples in float64 (its defaults: a Kaiser-windowed FIR
    low-pass, zero padding), computing only the output samples, so memory stays near the
    size of the output even for long records.
    """
    rate = Fraction(SAMPLING_RATE) / Fraction(fs).limit_denominator(1000)
    if rate == 1:
        return signal
    signal = np.asarray(signal, dtype=np.float64)  # (n_samples, n_leads)
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
        At ``UNITS_PER_MV``, ``ecgcode.common.LEADS`` order, 400 Hz, centred.

    Raises
    ------
    ECGInputError
        Missing leads that cannot be derived, unknown units, bad rate, empty or
        non-finite signal.
    """
    return _convert_record(signal, fs, lead_names, units, source)[0]


def _convert_record(signal, fs, lead_names, units, source):
    """Return (tracing (4096, 12) float32, derived limb leads) for one recording."""
    resampled, derived = _contract_leads(signal, fs, lead_names, units, source)
    return _as_float32(centre(resampled), source), derived  # (4096, 12)


def _contract_leads(signal, fs, lead_names, units, source):
    """Return (leads (n_samples * 400 / fs, 12) float64 at UNITS_PER_MV, 400 Hz, derived leads)."""
    _check_rate(fs, source)
    signal = np.asarray(signal, dtype=np.float64)  # (n_samples, n_channels)
    if signal.ndim != 2 or signal.shape[0] == 0:
        raise ECGInputError(f"{source}: empty or malformed signal of shape {signal.shape}; "
                            "fix: give a (n_samples, n_leads) recording")
    with np.errstate(over="ignore", invalid="ignore"):  # damaged files: inf/NaN, refused next
        leads, derived = match_leads(signal, lead_names, units, source)  # (n_samples, 12)
    _check_finite(leads, source)
    return resample_to_contract_rate(leads, fs), derived  # (n_samples * 400 / fs, 12)


def _as_float32(tracing, source):
    """``tracing`` as float32, refusing values that float32 cannot hold."""
    if np.abs(tracing).max() > np.finfo(np.float32).max:  # would become inf in float32
        raise ECGInputError(f"{source}: values too large for float32 after conversion to "
                            f"{UNITS_PER_MV:g} units per mV; fix: check the file (damaged?) "
                            "and its --units")
    return tracing.astype(np.float32)


# --- Windows of long recordings ---------------------------------------------------------
MAX_WINDOW_STRIDE_S = N_SAMPLES / SAMPLING_RATE
"""The largest --window-stride in seconds (10.24 s: windows that touch, no sample unscored)."""


def stride_samples(seconds, option="--window-stride"):
    """Return the window stride in samples at 400 Hz for a stride of ``seconds``.

    Raises
    ------
    ECGInputError
        Unless 0 < ``seconds`` <= 10.24 (and at least one sample at 400 Hz).
    """
    samples = round(float(seconds) * SAMPLING_RATE) if np.isfinite(seconds) else 0
    if not 1 <= samples <= N_SAMPLES:
        raise ECGInputError(
            f"{option} {plain(seconds)}: the stride must be more than 0 and at most "
            f"{MAX_WINDOW_STRIDE_S:g} s ({N_SAMPLES} samples at {SAMPLING_RATE} Hz, so that "
            f"every sample is scored); fix: give e.g. {option} 5 for half-overlapping windows")
    return samples


def window_starts(n_samples, stride=N_SAMPLES, window=N_SAMPLES):
    """Start samples of the windows that cover a recording of ``n_samples`` samples.

    The rule: windows start at 0, ``stride``, ``2 * stride``, ... as long as they fit;
    when the last of them ends before the recording does, one final window ends at the
    last sample, so that every sample is scored. A recording of at most ``window``
    samples gives the one window at 0 (padded as :func:`centre` pads it).

    Parameters
    ----------
    n_samples : int
        Length of the recording at 400 Hz.
    stride : int
        Samples between the starts of consecutive windows (1 to ``window``).
    window : int
        Samples per window (4096).

    Returns
    -------
    np.ndarray, shape (n_windows,), int64
    """
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_samples - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < n_samples:
        starts = np.append(starts, n_samples - window)
    return starts


def to_windows(signal, fs, lead_names, units, source="input", stride=N_SAMPLES):
    """Convert one recording into the data contract as windows of 4096 samples.

    As :func:`to_contract` (leads, units, resampling), but instead of a centre crop the
    recording at 400 Hz is cut at :func:`window_starts`.

    Returns
    -------
    tracings : np.ndarray, shape (n_windows, 4096, 12), float32
    start_s, end_s : np.ndarray, shape (n_windows,), float64
        Time of each window's first sample and of the end of its last one, in seconds
        from the start of the recording (a short record: 0 and its duration).
    """
    read, start_s, end_s, _ = _record_windows(signal, fs, lead_names, units, source, stride)
    return read(0, len(start_s)), start_s, end_s


def _record_windows(signal, fs, lead_names, units, source, stride):
    """(read, start_s (k,), end_s (k,), derived limb leads) of one recording's k windows.

    ``read(i, j)`` returns windows i to j - 1, (j - i, 4096, 12) float32, so that a long
    recording's windows need not all be in memory at once.
    """
    resampled, derived = _contract_leads(signal, fs, lead_names, units, source)  # (n, 12)
    length = resampled.shape[0]
    if length <= N_SAMPLES:
        tracing = _as_float32(centre(resampled), source)[np.newaxis]  # (1, 4096, 12)
        return (lambda i, j: tracing[i:j]), np.zeros(1), np.array([length / SAMPLING_RATE]), \
            derived
    starts = window_starts(length, stride)

    def read(i, j):
        return np.stack([_as_float32(resampled[start:start + N_SAMPLES], source)
                         for start in starts[i:j]])  # (j - i, 4096, 12)

    return read, starts / SAMPLING_RATE, (starts + N_SAMPLES) / SAMPLING_RATE, derived


def _check_rate(fs, source):
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise ECGInputError(f"{source}: invalid sampling rate {plain(fs)}; "
                            "fix: pass --fs with the rate in Hz")


def _check_finite(leads, source):
    bad = ~np.isfinite(leads)  # (n_samples, 12)
    if bad.any():
        bad_leads = [lead for lead, column in zip(LEADS, bad.T) if column.any()]
        raise ECGInputError(
            f"{source}: {int(bad.sum())} non-finite values (NaN/inf) in leads "
            f"{', '.join(bad_leads)}; fix: repair or drop this record"
        )


# --- Writing ------------------------------------------------------------------------------
def convert(inputs, output, *, fs=None, units=None, leads=None, low_rate=False,
            ptbxl_labels="paper", progress=True, window_stride=None):
    """Convert ECG recordings into one HDF5 file of the data contract.

    Parameters
    ----------
    inputs : sequence of str or os.PathLike
        WFDB records (``.hea``/``.dat``/``.mat`` or the bare record name), folders of WFDB
        or CPSC 2018 records, CPSC 2018 ``.mat`` files, clinical exports (GE MUSE XML, HL7
        aECG, DICOM waveform, SCP-ECG, Philips XML), long-term recordings (EDF/EDF+, ISHNE
        Holter, MFER), ``.csv`` files, ``.npy`` files (2-D: one record; 3-D: one per row),
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
    ptbxl_labels : str
        PTB-XL: the label set written (``ecgcode.data.formats.ptbxl_labels.LABEL_SETS``).
    progress : bool
        Show a tqdm progress bar on stderr.
    window_stride : int, optional
        Cut every record into windows of 4096 samples, this many samples (at 400 Hz) apart
        (:func:`window_starts`), one output row each, instead of centre-cropping it; the
        ``records/`` datasets then describe each row's record and add ``record``,
        ``window``, ``start_s`` and ``end_s``, ``exam_id`` numbers the rows and labels
        are repeated for each window of a record.

    Returns
    -------
    dict
        ``output``, ``n_records``, ``n_rows`` (windows, or records), ``labels`` (bool) and,
        with labels, ``prevalence`` (class -> fraction positive).

    Raises
    ------
    ECGInputError
        For any bad input; no output file is left behind.
    """
    if units is not None:
        units_factor(units, "--units")
    if leads is not None:
        leads = [str(name).strip() for name in leads]
    sources, table = plan_inputs(list(inputs), fs, units, leads, low_rate, ptbxl_labels)
    n = len(sources)
    with atomic_output(output) as tmp_path, h5py.File(tmp_path, "w") as file:
        metadata = {key: [] for key in ("source", "sampling_rate", "n_samples", "units",
                                        "lead_names", "derived_leads", *_INFO_KEYS)}
        records = tqdm(sources, desc="converting", unit="record", disable=not progress,
                       file=sys.stderr)
        if window_stride is None:
            infos = _write_records(file, records, metadata)
            counts = None
        else:
            infos, counts = _write_windows(file, records, metadata, window_stride)
            metadata = _per_window(metadata, counts)
        _write_records_group(file, metadata)
        table = table if table is not None else _table_from_records(infos)
        if counts is not None and table is not None:
            table = _table_per_window(table, counts)
        n_rows = len(file["tracings"])
        _write_ids_and_labels(file, n_rows, table)
    summary = {"output": os.fspath(output), "n_records": n, "n_rows": n_rows,
               "labels": table is not None}
    if table is not None:
        summary["prevalence"] = dict(zip(table["classes"], table["labels"].mean(axis=0).tolist()))
    return summary


def _write_records(file, sources, metadata):
    """One centred row per record; returns the records' RecordInfo."""
    tracings = _create_layout(file, len(sources))
    infos = []
    for row, source in enumerate(sources):
        signal, record_fs, names, record_units, info = source.load()
        tracings[row], derived = _convert_record(signal, record_fs, names, record_units,
                                                 source.name)
        _append_metadata(metadata, source.name, record_fs, np.shape(signal)[0],
                         record_units, names, derived)
        _append_info(metadata, info)
        infos.append(info)
    return infos


def _write_windows(file, sources, metadata, stride):
    """Every record's windows, one row each; returns (RecordInfo per record, starts and ends).

    The number of rows is known only once every record is read, so the windows go to a
    scratch HDF5 file first and are then copied into the contiguous ``tracings``.
    """
    infos, starts, ends = [], [], []
    with tempfile.TemporaryDirectory(prefix="ecg-windows-") as folder, \
            h5py.File(os.path.join(folder, "windows.hdf5"), "w") as scratch:
        rows = scratch.create_dataset("windows", shape=(0, N_SAMPLES, len(LEADS)),
                                      maxshape=(None, N_SAMPLES, len(LEADS)), dtype="float32",
                                      chunks=(1, N_SAMPLES, len(LEADS)))
        for source in sources:
            signal, record_fs, names, record_units, info = source.load()
            read, start_s, end_s, derived = _record_windows(
                signal, record_fs, names, record_units, source.name, stride)
            first = len(rows)
            rows.resize(first + len(start_s), axis=0)
            for begin in range(0, len(start_s), _COPY_ROWS):
                end = min(begin + _COPY_ROWS, len(start_s))
                rows[first + begin:first + end] = read(begin, end)  # (end - begin, 4096, 12)
            _append_metadata(metadata, source.name, record_fs, np.shape(signal)[0],
                             record_units, names, derived)
            _append_info(metadata, info)
            infos.append(info)
            starts.append(start_s)
            ends.append(end_s)
        tracings = _create_layout(file, len(rows))
        for begin in range(0, len(rows), _COPY_ROWS):
            tracings[begin:begin + _COPY_ROWS] = rows[begin:begin + _COPY_ROWS]
    return infos, (starts, ends)


_COPY_ROWS = 256
"""Windows copied at a time from the scratch file (256 x 4096 x 12 float32: 50 MB)."""


def _per_window(metadata, windows):
    """The per-record ``metadata`` repeated for each window, with the window datasets."""
    starts, ends = windows
    counts = [len(start) for start in starts]
    expanded = {key: [value for value, count in zip(values, counts) for _ in range(count)]
                for key, values in metadata.items()}
    expanded["record"] = np.repeat(np.arange(len(counts)), counts).tolist()
    expanded["window"] = [window for count in counts for window in range(count)]
    expanded["start_s"] = np.concatenate(starts).tolist()
    expanded["end_s"] = np.concatenate(ends).tolist()
    return expanded


def _table_per_window(table, windows):
    """Labels (and PTB-XL's folds and patients) repeated per window; exam_id numbers rows."""
    counts = [len(start) for start in windows[0]]
    repeated = {key: (np.repeat(value, counts, axis=0) if key in _PER_RECORD_COLUMNS else value)
                for key, value in table.items()}
    repeated["exam_id"] = np.arange(sum(counts), dtype=np.int64)
    return repeated


_PER_RECORD_COLUMNS = ("labels", "strat_fold", "patient_id")


def _create_layout(file, n):
    """Create the ``tracings`` dataset (contiguous, (n, 4096, 12) float32) and attributes."""
    tracings = create_tracings(file, n)
    file.attrs.update(tracings.attrs)
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


_INFO_KEYS = ("format", "device", "statements", "codes")
"""records/ datasets from each record's RecordInfo (see ecgcode.data.formats.readers)."""


def _append_info(metadata, info):
    for key in _INFO_KEYS:
        metadata[key].append(str(getattr(info, key)))


def _table_from_records(infos):
    """Labels of a conversion whose every record carries them (CinC #Dx, CPSC), else None."""
    if not infos or any(info.labels is None for info in infos):
        return None
    return {"exam_id": np.arange(len(infos), dtype=np.int64),
            "labels": np.stack([info.labels for info in infos]),  # (n, 6)
            "classes": tuple(CLASSES),
            "source": "; ".join(dict.fromkeys(info.label_source for info in infos))}


_NUMERIC_RECORDS = {"sampling_rate": np.float64, "n_samples": np.int64, "record": np.int64,
                    "window": np.int64, "start_s": np.float64, "end_s": np.float64}
"""records/ datasets that hold numbers (the others hold strings)."""


def _write_records_group(file, metadata):
    group = file.create_group("records")
    group.attrs["description"] = ("per-record metadata of the sources: name, original "
                                  "sampling rate (Hz) and length, units, channel names, "
                                  "derived limb leads (comma-separated), source format, "
                                  "device, the file's own diagnosis statements and codes")
    if "window" in metadata:
        group.attrs["description"] += (
            "; one entry per window: record (0-based record number), window (0-based number "
            "in its record), start_s and end_s (seconds from the start of the record)")
    text = h5py.string_dtype()
    for key, values in metadata.items():
        if key in _NUMERIC_RECORDS:
            group.create_dataset(key, data=np.array(values, dtype=_NUMERIC_RECORDS[key]))
        else:  # HDF5 strings cannot hold NUL bytes
            values = [str(value).replace("\0", "") for value in values]
            group.create_dataset(key, data=np.array(values, dtype=object), dtype=text)


def _write_ids_and_labels(file, n, table):
    if table is None:
        file.create_dataset("exam_id", data=np.arange(n, dtype=np.int64))
        return
    file.create_dataset("exam_id", data=table["exam_id"])
    labels = file.create_dataset("labels", data=table["labels"])
    labels.attrs["classes"] = list(table["classes"])
    labels.attrs["source"] = table.get("source") or describe_ptbxl_labels(table["label_set"])
    if "strat_fold" not in table:
        return
    file.create_dataset("strat_fold", data=table["strat_fold"])
    file.create_dataset("patient_id", data=table["patient_id"])

