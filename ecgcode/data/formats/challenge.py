"""Challenge collections: PhysioNet/CinC 2020-2021 WFDB records and CPSC 2018 ``.mat`` records.

* CinC 2020/2021: a WFDB record (``.hea`` + a ``.mat`` signal file, read by ``wfdb``) whose
  header comment ``#Dx:`` lists SNOMED CT codes. Every code is kept (``records/snomed_codes``);
  those in :data:`SNOMED_TO_CLASSES` become our labels. ``#Age:`` and ``#Sex:`` give
  validate.py's subgroups (:func:`read_cinc_demographics`).
* CPSC 2018: a MATLAB file holding a struct ``ECG`` whose field ``data`` is (12, n) in mV at
  500 Hz, leads I, II, III, aVR, aVL, aVF, V1-V6; labels (up to three codes per record) are in
  the ``REFERENCE.csv`` next to it, mapped by :data:`CPSC_TO_CLASSES`.
"""

import functools
import os

import numpy as np

from ecgcode.common import CLASSES, ECGInputError, first_line

SNOMED_TO_CLASSES = {
    "270492004": "1dAVb",  # first-degree AV block
    "59118001": "RBBB", "713427006": "RBBB",  # right bundle branch block / complete RBBB
    "164909002": "LBBB", "733534002": "LBBB",  # left bundle branch block / complete LBBB
    "426177001": "SB",  # sinus bradycardia
    "164889003": "AF",  # atrial fibrillation
    "427084000": "ST",  # sinus tachycardia
}  # fmt: skip
"""SNOMED CT code of a CinC ``#Dx:`` statement -> our class name."""

CPSC_CODES = {1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC",
              8: "STD", 9: "STE"}
"""CPSC 2018 REFERENCE.csv label codes and their names."""

CPSC_TO_CLASSES = {2: "AF", 3: "1dAVb", 4: "LBBB", 5: "RBBB"}
"""CPSC 2018 label code -> our class name (Normal and the others are negatives)."""

CPSC_REFERENCE = "REFERENCE.csv"
CPSC_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
CPSC_RATE = 500.0


def labels_from_classes(names):
    """Return the (6,) float32 0/1 row of ``CLASSES`` for a collection of class names."""
    present = set(names)
    return np.array([name in present for name in CLASSES], dtype=np.float32)


# --- CinC 2020/2021 -----------------------------------------------------------------------
def dx_codes(comments):
    """Return the SNOMED CT codes of a WFDB header's ``#Dx:`` comment, in their order.

    Parameters
    ----------
    comments : sequence of str
        The header's comment lines without ``#`` (``wfdb``'s ``record.comments``).

    Returns
    -------
    list of str, or None when no comment starts with ``Dx:``
    """
    for comment in comments:
        key, _, value = str(comment).partition(":")
        if key.strip().lower() == "dx":
            return [code.strip() for code in value.split(",") if code.strip()]
    return None


def header_demographics(comments):
    """The age and sex a CinC header states (``#Age: 74``, ``#Sex: Male``).

    Parameters
    ----------
    comments : sequence of str
        The header's comment lines without ``#``.

    Returns
    -------
    (float, str)
        The age in years (NaN when absent or not a number, as CinC's ``NaN``) and the sex
        as ``"female"`` or ``"male"`` (``""`` when absent or another value).
    """
    fields = {}
    for comment in comments:
        key, _, value = str(comment).partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    try:
        age = float(fields.get("age", "nan"))
    except ValueError:
        age = float("nan")
    sex = {"male": "male", "m": "male", "female": "female", "f": "female"}.get(
        fields.get("sex", "").lower(), "")
    return age, sex


def read_cinc_demographics(record_path):
    """:func:`header_demographics` of a WFDB record's header; (NaN, "") when it is unreadable."""
    import wfdb  # deferred: only this format's reader needs it

    try:
        header = wfdb.rdheader(os.fspath(record_path))
    except (ValueError, OSError, IndexError, KeyError):
        return float("nan"), ""
    return header_demographics(header.comments or [])


def read_cinc_codes(record_path):
    """Return the ``#Dx:`` SNOMED CT codes of a WFDB record's header (None when absent).

    Raises
    ------
    ECGInputError
        A ``#Dx:`` code that is not a number (a garbled header).
    """
    import wfdb  # deferred: only this format's reader needs it

    try:
        header = wfdb.rdheader(os.fspath(record_path))
    except (ValueError, OSError, IndexError, KeyError) as error:
        raise ECGInputError(f"{record_path}: cannot read WFDB header ({first_line(error)}); "
                            "fix: check that the .hea is complete") from None
    codes = dx_codes(header.comments or [])
    bad = [code for code in codes or [] if not code.isdigit()]
    if bad:
        raise ECGInputError(f"{record_path}.hea: #Dx code {bad[0]!r} is not a SNOMED CT code; "
                            "fix: list numeric codes, comma-separated (#Dx: 164889003,59118001)")
    return codes


def snomed_labels(codes):
    """Return the (6,) float32 label row of a list of SNOMED CT codes."""
    return labels_from_classes(SNOMED_TO_CLASSES[code] for code in codes
                               if code in SNOMED_TO_CLASSES)


# --- CPSC 2018 ------------------------------------------------------------------------------
def is_cpsc_mat(path):
    """True when ``path`` is a ``.mat`` file without a WFDB header next to it (CPSC 2018)."""
    stem, extension = os.path.splitext(os.fspath(path))
    return extension.lower() == ".mat" and not os.path.isfile(stem + ".hea")


def read_cpsc(path):
    """Read one CPSC 2018 record.

    Returns
    -------
    signal : np.ndarray, shape (n_samples, 12), float64, in mV
    fs : float (500)
    lead_names : list of str
    units : str ("mV")
    """
    from scipy.io import loadmat  # deferred: only this format's reader needs it

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ECGInputError(f"{path}: file not found (expected a CPSC 2018 .mat); "
                            "fix: check the path")
    try:
        content = loadmat(path)
    except (ValueError, OSError, TypeError, NotImplementedError) as error:
        raise ECGInputError(f"{path}: cannot read MATLAB file ({first_line(error, 120)}); "
                            "fix: give an unmodified CPSC 2018 record") from None
    data = _cpsc_data(content, path)  # (12, n_samples)
    return data.T.astype(np.float64), CPSC_RATE, list(CPSC_LEADS), "mV"


def _cpsc_data(content, path):
    struct = content.get("ECG")
    names = getattr(getattr(struct, "dtype", None), "names", None) or ()
    if struct is None or "data" not in names:
        found = ", ".join(key for key in content if not key.startswith("__"))
        raise ECGInputError(f"{path}: no struct ECG with a field data (found: {found or 'none'})"
                            "; fix: give a CPSC 2018 record (ECG.data, 12 x n in mV)")
    data = np.asarray(struct["data"].flat[0])
    if data.ndim != 2 or data.shape[0] != len(CPSC_LEADS) or not np.issubdtype(data.dtype,
                                                                               np.number):
        raise ECGInputError(f"{path}: ECG.data has shape {data.shape} (dtype {data.dtype}), "
                            "expected 12 x n numbers; fix: give an unmodified CPSC 2018 record")
    return data


def cpsc_codes(path):
    """Return the REFERENCE.csv label codes of a CPSC 2018 record, or None when not listed.

    The table is looked for next to the record; without one the record has no labels.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    table_path = os.path.join(folder, CPSC_REFERENCE)
    if not os.path.isfile(table_path):
        return None
    stat = os.stat(table_path)
    return _cpsc_reference(table_path, stat.st_mtime_ns, stat.st_size).get(
        os.path.splitext(name)[0])


@functools.lru_cache(maxsize=8)
def _cpsc_reference(table_path, mtime_ns, size):
    """Record name -> list of int codes, from one REFERENCE.csv (cached per file version)."""
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    try:
        frame = pd.read_csv(table_path, dtype=str)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise ECGInputError(f"{table_path}: cannot read CSV ({first_line(error, 100)}); "
                            "fix: give the unmodified CPSC 2018 REFERENCE.csv") from None
    if "Recording" not in frame.columns or "First_label" not in frame.columns:
        raise ECGInputError(f"{table_path}: needs columns Recording, First_label[, Second_label,"
                            " Third_label]; fix: give the unmodified CPSC 2018 REFERENCE.csv")
    label_columns = [column for column in frame.columns if column.endswith("_label")]
    table = {}
    for _, row in frame.iterrows():
        codes = [str(row[column]).strip() for column in label_columns
                 if isinstance(row[column], str) and row[column].strip()]
        bad = [code for code in codes if not code.isdigit() or int(code) not in CPSC_CODES]
        if bad:
            raise ECGInputError(f"{table_path}: record {row['Recording']}: label {bad[0]!r} is "
                                "not a CPSC code 1-9; fix: give the unmodified REFERENCE.csv")
        table[str(row["Recording"]).strip()] = [int(code) for code in codes]
    return table


def cpsc_labels(codes):
    """Return the (6,) float32 label row of a list of CPSC 2018 codes."""
    return labels_from_classes(CPSC_TO_CLASSES[code] for code in codes if code in CPSC_TO_CLASSES)
