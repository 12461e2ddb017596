"""Small valid EDF, ISHNE Holter and MFER files, written byte by byte from their specifications.

Each writer takes integer samples ``counts`` (n_samples, n_leads), lead names, a sampling rate
and a resolution in microvolts per count, so that a test knows the physical signal:
``counts * uv_per_count`` microvolts, i.e. ``counts * uv_per_count / 1000 * UNITS_PER_MV`` in
tracing units.

* EDF (https://www.edfplus.info/specs/edf.html): a 256-byte ASCII header, 256 bytes per
  signal, then data records of little-endian int16 (one second each here).
* ISHNE Holter (Badilini 1998): ``ISHNE1.0``, a CRC-CCITT of the header, a 512-byte fixed
  header of little-endian fields, then the leads' int16 samples interleaved.
* MFER (ISO 22077-1): big-endian tag-length-value definitions (preamble, channels, block,
  data type, sampling, sensitivity, per-channel lead codes in MWF_ATT) and one MWF_WAV frame.
"""

import binascii
import struct

import numpy as np

ISHNE_LEAD_CODES = {"I": 5, "II": 6, "III": 7, "aVR": 8, "aVL": 9, "aVF": 10,
                    **{f"V{k}": 10 + k for k in range(1, 7)}, "X": 2, "Y": 3, "Z": 4}
MFER_LEAD_CODES = {"I": 1, "II": 2, **{f"V{k}": 2 + k for k in range(1, 7)},
                   "III": 61, "aVR": 62, "aVL": 63, "aVF": 64}


def twelve_lead_counts(n_samples, seed=0):
    """(n_samples, 12) int16 counts whose limb leads obey Einthoven's laws (to +-1 count)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 400
    lead_i = 200 * np.sin(2 * np.pi * 1.1 * t) + rng.normal(0, 20, n_samples)
    lead_ii = 300 * np.sin(2 * np.pi * 1.3 * t + 0.5) + rng.normal(0, 20, n_samples)
    limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2,
            lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    precordial = rng.normal(0, 150, (6, n_samples))
    return np.round(np.column_stack([*limb, *precordial])).astype(np.int16)


def _field(text, width):
    return str(text).encode("ascii").ljust(width)[:width]


def write_edf(path, counts, labels, fs=400, uv_per_count=2.5, dim="uV"):
    """Write an EDF file of whole one-second data records (``fs`` samples per record)."""
    counts = np.asarray(counts, dtype="<i2")  # (n_samples, n_signals)
    n_records = len(counts) // fs
    ns = counts.shape[1]
    scale = uv_per_count * (1 if dim == "uV" else 1e-3)
    header = b"".join([
        _field("0", 8), _field("X X X X", 80), _field("Startdate 01-JAN-2020 X X X", 80),
        _field("01.01.20", 8), _field("10.00.00", 8), _field(256 * (ns + 1), 8),
        _field("", 44), _field(n_records, 8), _field(1, 8), _field(ns, 4),
    ])
    signals = [
        [_field(label, 16) for label in labels], [_field("AgAgCl", 80)] * ns,
        [_field(dim, 8)] * ns, [_field(f"{-32768 * scale:g}", 8)] * ns,
        [_field(f"{32767 * scale:g}", 8)] * ns, [_field(-32768, 8)] * ns,
        [_field(32767, 8)] * ns, [_field("HP:0.05Hz LP:150Hz", 80)] * ns,
        [_field(fs, 8)] * ns, [_field("", 32)] * ns,
    ]
    data = counts[:n_records * fs].reshape(n_records, fs, ns).transpose(0, 2, 1)  # record-major
    path.write_bytes(header + b"".join(b"".join(column) for column in signals) + data.tobytes())
    return path


def write_ishne(path, counts, labels, fs=400, nv_per_count=2500, checksum=True):
    """Write an ISHNE Holter ``.ecg`` file (variable block empty, CRC of the header)."""
    counts = np.asarray(counts, dtype="<i2")  # (n_samples, n_leads)
    n_leads = counts.shape[1]
    codes = [ISHNE_LEAD_CODES.get(label, 0) for label in labels] + [-9] * (12 - n_leads)
    fixed = b"".join([
        struct.pack("<iiiih", 0, len(counts), 522, 522, 1),  # sizes, offsets, version
        _field("Test", 40), _field("Patient", 40), _field("ID-1", 20),
        struct.pack("<hh3h3h3h3hh", 1, 1, 1, 1, 1970, 1, 6, 2020, 1, 6, 2020, 9, 30, 0,
                    n_leads),
        struct.pack("<12h", *codes), struct.pack("<12h", *([1] * 12)),
        struct.pack("<12h", *([nv_per_count] * n_leads + [0] * (12 - n_leads))),
        struct.pack("<h", 0), _field("digital", 40), struct.pack("<h", fs),
        _field("", 80), _field("", 80), _field("", 88),
    ])
    assert len(fixed) == 512, len(fixed)
    crc = binascii.crc_hqx(fixed, 0xFFFF) if checksum else 0
    path.write_bytes(b"ISHNE1.0" + struct.pack("<H", crc) + fixed + counts.tobytes())
    return path


def _tlv(tag, value):
    length = len(value)
    if length < 0x80:
        return bytes([tag, length]) + value
    return bytes([tag, 0x84]) + struct.pack(">I", length) + value


def write_mfer(path, counts, labels, fs=400, uv_per_count=2.5, block=400):
    """Write an MFER file: one frame of ``len(counts) // block`` sequences of int16 blocks."""
    counts = np.asarray(counts, dtype=">i2")  # (n_samples, n_channels)
    n_seq = len(counts) // block
    n_channels = counts.shape[1]
    mantissa = round(uv_per_count * 10)  # uv_per_count uV = mantissa x 1e-7 V
    definitions = [
        _tlv(0x40, b"MFR MFER test file, ISO 22077-1".ljust(32)),  # MWF_PRE
        _tlv(0x01, b"\x00"),  # MWF_BLE: big endian
        _tlv(0x08, struct.pack(">H", 2)),  # MWF_WFM: long-term ECG
        _tlv(0x05, bytes([n_channels])),  # MWF_CHN
        _tlv(0x04, struct.pack(">H", block)),  # MWF_BLK
        _tlv(0x0A, b"\x00"),  # MWF_DTP: int16
        _tlv(0x0B, bytes([0, 0]) + struct.pack(">H", fs)),  # MWF_IVL: fs Hz (unit 0: Hz)
        _tlv(0x0C, bytes([0, 0xF9]) + struct.pack(">H", mantissa)),  # MWF_SEN: x 1e-7 V
    ]
    for channel, label in enumerate(labels):  # MWF_ATT (0x3F), channel number, then MWF_LDN
        content = _tlv(0x09, bytes([MFER_LEAD_CODES.get(label, 0)]))
        definitions.append(bytes([0x3F, channel, len(content)]) + content)
    frame = counts[:n_seq * block].reshape(n_seq, block, n_channels).transpose(0, 2, 1)
    definitions += [_tlv(0x1E, frame.tobytes()), b"\x80\x00"]  # MWF_WAV, MWF_END
    path.write_bytes(b"".join(definitions))
    return path


TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]

WRITERS = {"EDF": (write_edf, ".edf"), "ISHNE Holter": (write_ishne, ".ecg"),
           "MFER": (write_mfer, ".mwf")}
"""Format name (as ``records/format`` states it) -> (writer, file extension)."""
