"""Read clinical ECG files: GE MUSE XML, HL7 aECG, DICOM, SCP-ECG, Philips XML, EDF, ISHNE, MFER.

The resting-ECG exports (GE MUSE XML, HL7 aECG, DICOM waveform, SCP-ECG, Philips XML) and
the long-term (Holter) recordings (EDF/EDF+, ISHNE Holter ``.ecg``, MFER) are read alike.

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

DICOM's Waveform Padding Value marks samples that hold no signal, but it is also an ordinary
sample value (0 often is): ecgdatakit turns every sample equal to it into NaN, so here only a
run of them touching the start or the end of a channel is missing (rows missing in every channel
are cropped, a channel missing throughout is dropped, other missing samples become 0 as the
contract pads); the others are signal and get their value back (:func:`_dicom_padding`).
"""

import os
import sys
import warnings
from dataclasses import dataclass, replace
from xml.etree.ElementTree import ParseError

import numpy as np

from ecgcode.common import ECGInputError, first_line

CLINICAL_FORMATS = {  # ecgdatakit's source_format -> our name of the format
    "ge_muse_xml": "GE MUSE XML",
    "hl7_aecg": "HL7 aECG",
    "dicom_waveform": "DICOM waveform",
    "scp_ecg": "SCP-ECG",
    "sierra_xml": "Philips XML",
    "edf": "EDF",
    "edf_plus": "EDF+",
    "ishne_holter": "ISHNE Holter",
    "mfer": "MFER",
}
"""The clinical formats read here (others that ecgdatakit knows are refused: untested)."""

_PARSER_FORMATS = {"GEMuseXMLParser": "ge_muse_xml", "HL7aECGParser": "hl7_aecg",
                   "DICOMWaveformParser": "dicom_waveform", "SCPECGParser": "scp_ecg",
                   "SierraXMLParser": "sierra_xml", "EDFParser": "edf",
                   "ISHNEHolterParser": "ishne_holter", "MFERParser": "mfer"}

FORMAT_EXTENSIONS = {".edf": "EDF", ".ecg": "ISHNE Holter", ".mwf": "MFER", ".mfer": "MFER",
                     ".mfr": "MFER"}
"""Extensions that name one binary format; such a file that is not recognised is damaged."""

_DICOM = CLINICAL_FORMATS["dicom_waveform"]

_MEDIAN_WORDS = ("MEDIAN", "REPRESENTATIVE", "AVERAGE")
"""A DICOM multiplex group whose label holds one of these is median beats to ecgdatakit."""

_PCM_DTYPES = {(8, "SB"): "i1", (8, "UB"): "u1", (16, "SS"): "i2", (16, "US"): "u2",
               (32, "SL"): "i4", (32, "UL"): "u4", (64, "SV"): "i8", (64, "UV"): "u8"}
"""DICOM Waveform Bits Allocated and Sample Interpretation -> numpy dtype (PS3.3 C.10.9.1.5;
the ECG IODs allow only SB and SS, so mu-law and A-law are not handled here)."""

_DEFAULT_INTERPRETATION = {8: "SB", 16: "SS", 32: "SL", 64: "SV"}  # as ecgdatakit, when absent

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
    from ecgdatakit import FileParser  # deferred: only this format's reader needs it

    try:
        found = FileParser.detect_format(os.fspath(path))
    except (OSError, ValueError):
        return None
    if found is None or found["parser"] not in _PARSER_FORMATS:
        return None
    return CLINICAL_FORMATS[_PARSER_FORMATS[found["parser"]]]


def unrecognised_error(path):
    """The error for a file whose extension names a format that its content is not, or None."""
    name = FORMAT_EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())
    if name is None:
        return None
    return ECGInputError(f"{path}: not a readable {name} file (its first bytes are not those of "
                         f"{name}: truncated, empty or damaged?); {_FIX}")


def read_clinical(path):
    """Read the rhythm waveform of a clinical ECG export.

    Parameters
    ----------
    path : str or os.PathLike
        A GE MUSE XML, HL7 aECG, DICOM 12-lead/general ECG waveform, SCP-ECG, Philips
        Sierra/PageWriter XML, EDF/EDF+ (not BDF), ISHNE Holter or MFER file.

    Returns
    -------
    ClinicalRecord

    Raises
    ------
    ECGInputError
        Unreadable, truncated or corrupted file (including an SCP-ECG checksum mismatch),
        no rhythm waveform, leads of different rates, samples without physical units, or a
        DICOM waveform that is all Waveform Padding Value.

    Notes
    -----
    DICOM: a sample equal to Waveform Padding Value is missing only in a run touching the
    start or the end of its channel; elsewhere it is signal (see the module docstring).
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
    missing = None
    if format_name == _DICOM:
        leads, missing = _dicom_padding(path, leads)
    signal, units = _physical_signal(leads, path, format_name)  # (n_samples, n_leads)
    if missing is not None:
        signal[missing] = 0.0  # missing samples, as the contract pads a short recording
    return ClinicalRecord(signal, _common_rate(leads, path, format_name),
                          [str(lead.label) for lead in leads], units, format_name,
                          _device(record), _statements(record))


def _parse(path):
    """ecgdatakit's ECGRecord with raw samples; any failure becomes an ECGInputError."""
    from ecgdatakit import (  # deferred: only this format's reader needs it
        ChecksumWarning,
        ECGDataKitError,
        FileParser,
    )

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
    from defusedxml import DefusedXmlException  # deferred: only this format's reader needs it
    from defusedxml.ElementTree import parse  # deferred: only this format's reader needs it

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


def _dicom_padding(path, leads):
    """Tell padding from signal among the DICOM samples that ecgdatakit made NaN.

    Every sample equal to Waveform Padding Value is NaN in ``leads``. Only a run of them
    touching the start or the end of a channel is padding; the others are signal and get the
    padding value back. Rows that are padding in every channel at the start or the end are
    cropped, a channel that is padding throughout is dropped.

    Returns
    -------
    leads : list of ecgdatakit Lead
        The channels that hold signal, their samples cropped.
    missing : np.ndarray or None, shape (n_samples, n_leads), bool
        The padding left in them (None when there is none).
    """
    samples = np.stack([np.asarray(lead.samples, dtype=np.float64) for lead in leads], axis=1)
    padded = np.isnan(samples)  # (n_samples, n_channels): a channel's samples are integers
    if not padded.any():
        return leads, None
    start_run = np.logical_and.accumulate(padded, axis=0)  # padding from the first sample on
    end_run = np.logical_and.accumulate(padded[::-1], axis=0)[::-1]  # ... up to the last one
    edge = start_run | end_run
    if (padded & ~edge).any():
        samples[padded & ~edge] = _dicom_padding_value(path, samples.shape)
    kept = ~edge.all(axis=0)
    if not kept.any():
        raise ECGInputError(f"{path}: {_DICOM} holds only padding (every sample equals its "
                            f"Waveform Padding Value); {_FIX}")
    start = int(start_run[:, kept].sum(axis=0).min())
    stop = len(samples) - int(end_run[:, kept].sum(axis=0).min())
    _warn_padding(path, edge, [lead.label for lead in leads], kept, stop - start)
    leads = [replace(lead, samples=samples[start:stop, channel])
             for channel, lead in enumerate(leads) if kept[channel]]
    missing = edge[start:stop][:, kept]  # (stop - start, n_kept)
    return leads, missing if missing.any() else None


def _warn_padding(path, edge, labels, kept, length):
    """One warning line: how much of the DICOM waveform was padding, and what became of it."""
    if not edge.any():
        return
    dropped = [str(label) for label, keep in zip(labels, kept) if not keep]
    zeroed = int(edge[:, kept].sum()) - (len(edge) - length) * int(kept.sum())
    parts = [f"{len(edge) - length} rows cropped", f"{zeroed} samples set to 0"]
    if dropped:
        parts.append(f"leads {', '.join(dropped)} dropped (padding throughout)")
    print(f"warning: {path}: {int(edge.sum())} samples at the start or end of the leads equal the "
          f"DICOM Waveform Padding Value and are missing: {', '.join(parts)}", file=sys.stderr)


def _dicom_padding_value(path, shape):
    """Waveform Padding Value of the rhythm group of ``shape`` (n_samples, n_channels).

    The group is the one ecgdatakit reads: the first with Waveform Data that is not median
    beats. NaN when the value cannot be read (the samples then stay NaN and are refused).
    """
    import pydicom  # deferred: only this format's reader needs it

    try:
        dataset = pydicom.dcmread(path)
        for group in dataset.get("WaveformSequence") or []:
            if _is_rhythm_group(group, shape):
                return _pcm_value(group, _little_endian(dataset))
    except (OSError, ValueError, TypeError, KeyError, AttributeError, EOFError):
        pass  # the file was read by ecgdatakit a moment ago: only a damaged value gets here
    return np.nan


def _is_rhythm_group(group, shape):
    label = str(group.get("MultiplexGroupLabel") or "").upper()
    return ("WaveformData" in group and not any(word in label for word in _MEDIAN_WORDS)
            and (int(group.get("NumberOfWaveformSamples") or 0),
                 int(group.get("NumberOfWaveformChannels") or 0)) == shape)


def _little_endian(dataset):
    """Byte order of the dataset's values: its transfer syntax, else how it was read."""
    file_meta = getattr(dataset, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is not None and syntax.is_transfer_syntax:
        return bool(syntax.is_little_endian)
    encoding = getattr(dataset, "original_encoding", (None, None))
    return True if encoding[1] is None else bool(encoding[1])


def _pcm_value(group, little_endian):
    """The group's Waveform Padding Value as a sample value (NaN when absent or not PCM)."""
    raw = group.get("WaveformPaddingValue")
    bits = int(group.get("WaveformBitsAllocated") or 0)
    interpretation = str(group.get("WaveformSampleInterpretation") or "").strip().upper()
    code = _PCM_DTYPES.get((bits, interpretation or _DEFAULT_INTERPRETATION.get(bits, "")))
    if code is None or not isinstance(raw, (bytes, bytearray)) or len(raw) < bits // 8:
        return np.nan
    dtype = np.dtype(code).newbyteorder("<" if little_endian else ">")
    return float(np.frombuffer(bytes(raw[:dtype.itemsize]), dtype=dtype)[0])


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
