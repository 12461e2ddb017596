"""Read clinical resting-ECG exports: GE MUSE XML, HL7 aECG, DICOM waveform, SCP-ECG, Philips XML.

The decoding is ``ecgdatakit``'s (Apache-2.0): it reads DICOM with ``pydicom`` and decodes
SCP-ECG's Huffman/difference encoding and Philips' XLI compression. Every XML file is first
parsed with ``defusedxml`` here (ecgdatakit's Philips parser uses ``xmltodict`` with entities
disabled, its MUSE and HL7 parsers ``defusedxml``), so entity bombs and external references
are refused before any other parser sees the file. This module asks it for the **raw** samples and their scale
(``auto_scale=False``) and applies ``samples x resolution + offset`` itself, so that the units
stated by the file go through the project's own unit check (:func:`units_factor`), and turns
every failure into the project's one-line :class:`ECGInputError`.

Only the rhythm (full-length) waveform is read, never the median beats. The format is
recognised by content (a ``.txt`` holding MUSE XML is read as MUSE XML).
"""

import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from ecgcode.common import ECGInputError, first_line

CLINICAL_FORMATS = {  # ecgdatakit's source_format -> our name of the format
    "ge_muse_xml": "GE MUSE XML",
    "hl7_aecg": "HL7 aECG",
    "dicom_waveform": "DICOM waveform",
    "scp_ecg": "SCP-ECG",
    "sierra_xml": "Philips XML",
}
"""The clinical formats read here (others that ecgdatakit knows are refused: untested)."""

_PARSER_FORMATS = {"GEMuseXMLParser": "ge_muse_xml", "HL7aECGParser": "hl7_aecg",
                   "DICOMWaveformParser": "dicom_waveform", "SCPECGParser": "scp_ecg",
                   "SierraXMLParser": "sierra_xml"}

_FIX = "fix: re-export the ECG from the cart or management system, or check the file is complete"


@dataclass
class ClinicalRecord:
    """One clinical ECG in physical units, with what the file says about itself.

    Attributes
    ----------
    signal : np.ndarray, shape (n_samples, n_leads), float64
    fs : float
    lead_names : list of str
    units : list of str
        One per lead, as stated by the file.
    format : str
        One of ``CLINICAL_FORMATS``' values.
    device : str
        Manufacturer and model, when the file names them.
    statements : str
        The file's own diagnosis statements, ``"; "``-separated (often empty).
    """

    signal: np.ndarray
    fs: float
    lead_names: list
    units: list
    format: str
    device: str = ""
    statements: str = ""


def detect_clinical_format(path):
    """Return our name of the clinical format of ``path`` (sniffed by content), or None.

    Parameters
    ----------
    path : str or os.PathLike
        An existing file.
    """
    from ecgdatakit import FileParser

    try:
        found = FileParser.detect_format(os.fspath(path))
    except (OSError, ValueError):
        return None
    if found is None or found["parser"] not in _PARSER_FORMATS:
        return None
    return CLINICAL_FORMATS[_PARSER_FORMATS[found["parser"]]]


def read_clinical(path):
    """Read the rhythm waveform of a clinical ECG export.

    Parameters
    ----------
    path : str or os.PathLike
        A GE MUSE XML, HL7 aECG, DICOM 12-lead/general ECG waveform, SCP-ECG or Philips
        Sierra/PageWriter XML file.

    Returns
    -------
    ClinicalRecord

    Raises
    ------
    ECGInputError
        Unreadable, truncated or corrupted file (including an SCP-ECG checksum mismatch),
        no rhythm waveform, leads of different rates, or samples without physical units.
    """
    path = os.fspath(path)
    record = _parse(path)
    format_name = CLINICAL_FORMATS.get(record.source_format)
    if format_name is None:
        raise ECGInputError(f"{path}: {record.source_format} files are not supported; fix: "
                            f"give one of {', '.join(CLINICAL_FORMATS.values())}")
    leads = [lead for lead in record.leads if np.size(lead.samples) > 0]
    if not leads:
        raise ECGInputError(f"{path}: {format_name} file has no rhythm waveform; {_FIX}")
    signal, units = _physical_signal(leads, path, format_name)  # (n_samples, n_leads)
    return ClinicalRecord(signal, _common_rate(leads, path, format_name),
                          [str(lead.label) for lead in leads], units, format_name,
                          _device(record), _statements(record))


def _parse(path):
    """ecgdatakit's ECGRecord with raw samples; any failure becomes an ECGInputError."""
    from ecgdatakit import ChecksumWarning, ECGDataKitError, FileParser

    if not os.path.isfile(path):
        raise ECGInputError(f"{path}: file not found (expected an ECG file); fix: check the path")
    if _looks_like_xml(path):
        _screen_xml(path)
    if detect_clinical_format(path) is None:
        raise ECGInputError(f"{path}: not recognised as any of "
                            f"{', '.join(CLINICAL_FORMATS.values())}; {_FIX}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", ChecksumWarning)
        warnings.filterwarnings("ignore", message="auto_scale=False")  # we scale them below
        try:
            record = FileParser.parse(path, auto_scale=False)
        except ChecksumWarning as warning:
            raise ECGInputError(f"{path}: checksum mismatch ({first_line(warning, 100)}): the "
                                f"file is corrupted; {_FIX}") from None
        except (ECGDataKitError, ValueError, OSError, EOFError, KeyError, IndexError,
                TypeError, AttributeError, UnicodeError) as error:
            # ecgdatakit's own errors, and what pydicom/numpy/struct raise on broken bytes
            message = first_line(error, 140)
            raise ECGInputError(f"{path}: cannot read this ECG file ({message}); {_FIX}") from None
    for message in dict.fromkeys(first_line(warning.message, 200) for warning in caught):
        print(f"warning: {path}: {message}", file=sys.stderr)  # one line each, as the CLIs do
    return record


def _looks_like_xml(path):
    """True when the file starts (after a byte-order mark and blanks) with ``<``."""
    with open(path, "rb") as handle:
        head = handle.read(256)
    for mark, encoding in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"),
                           (b"\xfe\xff", "utf-16-be")):
        if head.startswith(mark):
            return head[len(mark):].decode(encoding, "ignore").lstrip().startswith("<")
    return head.lstrip().startswith(b"<")


def _screen_xml(path):
    """Parse ``path`` with defusedxml: refuse entity declarations and external references."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import parse

    try:
        parse(path)
    except DefusedXmlException as error:
        raise ECGInputError(f"{path}: unsafe XML refused ({type(error).__name__}: entity "
                            "declarations or external references, as in XML bombs); fix: "
                            "export the ECG again from the cart or management system") from None
    except ParseError as error:
        raise ECGInputError(f"{path}: malformed XML ({first_line(error, 100)}); {_FIX}") from None


def _physical_signal(leads, path, format_name):
    """Stack ``samples x resolution + offset`` of each lead; return (signal, units per lead)."""
    length = min(np.size(lead.samples) for lead in leads)  # leads of one rhythm group
    columns, units = [], []
    for lead in leads:
        _check_scale(lead, path, format_name)
        raw = np.asarray(lead.samples, dtype=np.float64)[:length]  # (n_samples,)
        columns.append(raw * float(lead.resolution) + float(lead.offset or 0.0))
        units.append(str(lead.resolution_unit))
    return np.stack(columns, axis=1), units  # (n_samples, n_leads)


def _check_scale(lead, path, format_name):
    """Refuse a lead whose amplitude is not in a voltage unit or has no (finite, non-zero) scale."""
    where = f"{path}: {format_name} lead {lead.label}"
    if not lead.resolution_unit:
        stated = getattr(lead, "adc_resolution_unit", "") or ""
        problem = f"amplitude units {stated!r} are not a voltage" if stated else "no amplitude units"
        raise ECGInputError(f"{where}: {problem}; fix: export the waveform with its amplitude in "
                            "V, mV or uV (as the cart writes it)")
    if not np.isfinite(lead.resolution) or lead.resolution == 0:
        raise ECGInputError(f"{where}: invalid amplitude scale {lead.resolution!r} "
                            f"{lead.resolution_unit}/bit; {_FIX}")


def _common_rate(leads, path, format_name):
    rates = sorted({float(lead.sampling_rate) for lead in leads})
    if len(rates) != 1:
        raise ECGInputError(f"{path}: {format_name} leads have different sampling rates "
                            f"({', '.join(f'{rate:g}' for rate in rates)} Hz); fix: export "
                            "the 12 leads of the rhythm waveform at one rate")
    return rates[0]


def _device(record):
    device = record.recording.device
    return " ".join(part for part in (device.manufacturer, device.model) if part).strip()


def _statements(record):
    """The file's diagnosis statements, ``"text (reason)"``, ``"; "``-separated."""
    texts = []
    for statement in record.interpretation.statements:
        text, *details = [statement] if isinstance(statement, str) else list(statement)
        text, detail = str(text).strip(), " ".join(str(d) for d in details if d).strip()
        texts.append(f"{text} ({detail})" if text and detail else text or str(detail))
    return "; ".join(text for text in texts if text)
