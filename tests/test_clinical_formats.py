"""Clinical ECG exports (GE MUSE, HL7 aECG, DICOM, SCP-ECG, Philips) into the data contract.

Uses the real example files of ../shared/ecg-samples/formats/ and checks every decoding against
an independent one of the same file (defusedxml + base64, pydicom, sierraecg), and the HL7 and
SCP-ECG examples (the same tracing) against each other.
"""

import base64
import binascii
import re
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.signal import resample_poly

from ecgcode.cli import convert as convert_cli
from ecgcode.common import LEADS, UNITS_PER_MV, ECGInputError, run_cli
from ecgcode.data.formats import convert as ecg_convert
from ecgcode.data.formats.clinical import read_clinical

FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "ecg-samples" / "formats"
pytestmark = pytest.mark.skipif(not FORMATS.is_dir(),
                                reason=f"the example ECG exports are not in {FORMATS}")
FILES = {
    "GE MUSE XML": FORMATS / "ge-muse" / "guangxi_teaching_sinus_rhythm.xml",
    "HL7 aECG": FORMATS / "hl7-aecg" / "Example_aECG.xml",
    "SCP-ECG": FORMATS / "scp-ecg" / "Example.scp",
    "DICOM waveform": FORMATS / "dicom" / "waveform_ecg.dcm",
    "Philips XML": FORMATS / "philips" / "2020-5-18_15-48-11.xml",
}
TWELVE = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
HL7_ORDER = "I,II,V1,V2,V3,V4,V5,V6,III,aVR,aVL,aVF"
EXPECTED = {  # format: (lead names as stored, rate in Hz, original samples, derived limb leads)
    "GE MUSE XML": ("I,II,V1,V2,V3,V4,V5,V6", 500, 5000, "DIII,aVR,aVL,aVF"),
    "HL7 aECG": (HL7_ORDER, 500, 5000, ""),
    "SCP-ECG": (HL7_ORDER, 500, 5000, ""),
    "DICOM waveform": (TWELVE, 1000, 10000, ""),
    "Philips XML": (TWELVE, 500, 5500, ""),
}
HL7 = "{urn:hl7-org:v3}"


def convert_one(path, tmp_path):
    """Convert one file; return (tracing (4096, 12), records/ as a dict of Python values)."""
    output = tmp_path / "out.hdf5"
    ecg_convert.convert([path], output, progress=False)
    with h5py.File(output) as file:
        records = {key: (value.asstr()[0] if value.dtype.kind == "O" else value[0])
                   for key, value in file["records"].items()}
        return file["tracings"][0], records


@pytest.mark.parametrize("name", list(FILES))
def test_each_format_converts_with_its_leads_rate_and_amplitude(name, tmp_path):
    tracing, records = convert_one(FILES[name], tmp_path)
    lead_names, rate, n_samples, derived = EXPECTED[name]
    assert records["format"] == name
    assert records["lead_names"] == lead_names and records["derived_leads"] == derived
    assert records["sampling_rate"] == rate and records["n_samples"] == n_samples
    assert records["units"] == "uV" and records["device"]
    peak = np.abs(tracing).max(axis=0) / UNITS_PER_MV  # (12,) in mV
    assert np.all((peak > 0.2) & (peak < 4)), peak  # 0.2 to 4 mV: a real ECG, in the contract


def test_format_is_recognised_by_content_not_only_extension(tmp_path):
    renamed = tmp_path / "exported.txt"
    renamed.write_bytes(FILES["GE MUSE XML"].read_bytes())
    tracing, records = convert_one(renamed, tmp_path)
    reference, _ = convert_one(FILES["GE MUSE XML"], tmp_path)
    assert records["format"] == "GE MUSE XML"
    np.testing.assert_array_equal(tracing, reference)


def test_own_diagnosis_statements_are_kept(tmp_path):
    assert "RITMO SINUSALE" in convert_one(FILES["DICOM waveform"], tmp_path)[1]["statements"]
    assert "Sinus rhythm" in convert_one(FILES["Philips XML"], tmp_path)[1]["statements"]


# --- Independent decodings ---------------------------------------------------------------------
def muse_rhythm_uv(path):
    """Lead name -> (n,) uV from the MUSE rhythm waveform, decoded with defusedxml + base64."""
    from defusedxml import ElementTree

    root = ElementTree.parse(path).getroot()
    rhythm = next(waveform for waveform in root.iter("Waveform")
                  if waveform.findtext("WaveformType").strip() == "Rhythm")
    leads = {}
    for lead in rhythm.iter("LeadData"):
        assert lead.findtext("LeadAmplitudeUnits") == "MICROVOLTS"
        counts = np.frombuffer(base64.b64decode(lead.findtext("WaveFormData")), "<i2")
        leads[lead.findtext("LeadID")] = counts * float(lead.findtext("LeadAmplitudeUnitsPerBit"))
    return leads


def hl7_rhythm_uv(path):
    """Lead name -> (n,) uV from the HL7 rhythm sequence set: digits x scale + origin."""
    from defusedxml import ElementTree

    root = ElementTree.parse(path).getroot()
    series = next(s for s in root.iter(f"{HL7}series")
                  if s.find(f"{HL7}code").get("code") == "RHYTHM")
    leads = {}
    for sequence in series.find(f"{HL7}component/{HL7}sequenceSet").iter(f"{HL7}sequence"):
        code = sequence.find(f"{HL7}code").get("code")
        if code.startswith("MDC_ECG_LEAD_"):
            value = sequence.find(f"{HL7}value")
            assert value.find(f"{HL7}scale").get("unit") == "uV"
            digits = np.array(value.findtext(f"{HL7}digits").split(), dtype=float)
            origin = value.find(f"{HL7}origin")
            origin_uv = float(origin.get("value")) * {"uV": 1, "mV": 1000}[origin.get("unit")]
            leads[code.removeprefix("MDC_ECG_LEAD_")] = (
                digits * float(value.find(f"{HL7}scale").get("value")) + origin_uv)
    return leads


def column(record, lead):
    """One lead of a ClinicalRecord, by name (case-insensitive)."""
    names = [name.upper() for name in record.lead_names]
    return record.signal[:, names.index(lead.upper())]


def test_muse_matches_a_base64_decoding():
    record = read_clinical(FILES["GE MUSE XML"])
    for lead, expected in muse_rhythm_uv(FILES["GE MUSE XML"]).items():
        np.testing.assert_allclose(column(record, lead), expected, rtol=1e-12)


@pytest.mark.parametrize("origin", [None, '<origin value="0.1" unit="mV"/>'])
def test_hl7_matches_digits_times_scale_plus_origin(origin, tmp_path):
    path = FILES["HL7 aECG"]
    if origin is not None:  # the example's origin is 0 uV: also check one that matters
        path = tmp_path / "ecg.xml"
        path.write_bytes(edit_text(FILES["HL7 aECG"], "utf-8", r'<origin value="0" unit="uV"/>',
                                   origin))
    record = read_clinical(path)
    leads = hl7_rhythm_uv(path)
    assert len(leads) == 12
    for lead, expected in leads.items():
        np.testing.assert_allclose(column(record, lead), expected, rtol=1e-12)


@pytest.mark.parametrize(("correction", "baseline"), [(None, None), (2.0, 5.0)])
def test_dicom_matches_pydicom_waveform_array(correction, baseline, tmp_path):
    import pydicom

    dataset = pydicom.dcmread(FILES["DICOM waveform"])
    if correction is not None:  # the example has 1 and 0: also check a file where they matter
        for group in dataset.WaveformSequence:
            for channel in group.ChannelDefinitionSequence:
                channel.ChannelSensitivityCorrectionFactor = correction
                channel.ChannelBaseline = baseline
    path = tmp_path / "ecg.dcm"
    dataset.save_as(path)
    group = [g.MultiplexGroupLabel for g in dataset.WaveformSequence].index("RHYTHM")
    expected = dataset.waveform_array(group)  # (10000, 12), sensitivity x correction + baseline
    np.testing.assert_allclose(read_clinical(path).signal, expected, rtol=1e-9, atol=1e-9)


def test_philips_matches_sierraecg_times_resolution():
    sierraecg = pytest.importorskip("sierraecg")
    leads = sierraecg.read_file(str(FILES["Philips XML"])).leads
    record = read_clinical(FILES["Philips XML"])
    for lead in leads:  # XLI-decoded counts; the file's resolution is 5 uV per count
        np.testing.assert_allclose(column(record, lead.label), lead.samples * 5.0, rtol=1e-12)


def test_hl7_and_scp_examples_of_the_same_tracing_agree(tmp_path):
    hl7, scp = read_clinical(FILES["HL7 aECG"]), read_clinical(FILES["SCP-ECG"])
    assert [n.upper() for n in hl7.lead_names] == [n.upper() for n in scp.lead_names]
    assert hl7.fs == scp.fs == 500
    # tolerance 0: both hold the same 2.5 uV steps, and SCP's Huffman/difference coding is
    # lossless, so every one of the 12 x 5000 samples agrees exactly
    np.testing.assert_array_equal(scp.signal, hl7.signal)
    tracing_hl7, _ = convert_one(FILES["HL7 aECG"], tmp_path)
    tracing_scp, _ = convert_one(FILES["SCP-ECG"], tmp_path)
    np.testing.assert_array_equal(tracing_scp, tracing_hl7)
    assert tracing_hl7.shape == (4096, len(LEADS))
    # and the conversion is the uV signal at the contract's scale, resampled 500 -> 400 Hz
    order = [[n.upper() for n in hl7.lead_names].index(name.upper().removeprefix("D"))
             for name in LEADS]
    expected = resample_poly(hl7.signal[:, order] / 1000 * UNITS_PER_MV, 4, 5, axis=0)
    np.testing.assert_allclose(tracing_hl7[48:4048], expected, rtol=1e-5, atol=1e-4)


# --- Malformed variants: the project's one-line error -------------------------------------------
def edit_text(path, encoding, pattern, replacement):
    text = path.read_bytes().decode(encoding)
    edited, count = re.subn(pattern, replacement, text, flags=re.DOTALL)
    assert count, pattern
    return edited.encode(encoding)


def scp_without_section(data, section_id):
    """An SCP-ECG record whose section 0 no longer points to ``section_id`` (CRCs redone)."""
    data = bytearray(data)
    start = 6  # after the record's CRC (2 bytes) and length (4): section 0 (CRC, id, length...)
    length = struct.unpack_from("<I", data, start + 4)[0]
    for entry in range(start + 16, start + length, 10):  # pointers: id, length, index
        if struct.unpack_from("<H", data, entry)[0] == section_id:
            struct.pack_into("<HII", data, entry, section_id, 0, 0)
    struct.pack_into("<H", data, start, binascii.crc_hqx(bytes(data[start + 2:start + length]),
                                                         0xFFFF))
    struct.pack_into("<H", data, 0, binascii.crc_hqx(bytes(data[2:]), 0xFFFF))
    return bytes(data)


def dicom_edit(edit):
    def variant(path):
        import io

        import pydicom

        dataset = pydicom.dcmread(path)
        edit(dataset)
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        return buffer.getvalue()
    return variant


def dicom_units_to_mmhg(dataset):
    for group in dataset.WaveformSequence:
        for channel in group.ChannelDefinitionSequence:
            unit = channel.ChannelSensitivityUnitsSequence[0]
            unit.CodeValue, unit.CodeMeaning = "mm[Hg]", "millimeter of mercury"


def corrupt(data, at, size=64):
    return data[:at] + bytes(range(256))[:size] + data[at + size:]


VARIANTS = {  # (format, variant): (make bytes from the original path, expected message part)
    ("GE MUSE XML", "truncated"): (lambda p: p.read_bytes()[:90000], "malformed XML"),
    ("GE MUSE XML", "corrupted"): (lambda p: corrupt(p.read_bytes(), 60000), "malformed XML"),
    ("GE MUSE XML", "missing"): (lambda p: edit_text(p, "utf-8", r"<Waveform>.*?</Waveform>", ""),
                                 "No rhythm waveform"),
    ("GE MUSE XML", "units"): (lambda p: edit_text(p, "utf-8", "MICROVOLTS", "FURLONGS"),
                               "units 'FURLONGS' are not a voltage"),
    ("HL7 aECG", "truncated"): (lambda p: p.read_bytes()[:250000], "malformed XML"),
    ("HL7 aECG", "corrupted"): (lambda p: corrupt(p.read_bytes(), 200000), "malformed XML"),
    ("HL7 aECG", "missing"): (lambda p: edit_text(p, "utf-8", r"<sequenceSet>.*?</sequenceSet>",
                                                  ""), "No ECG lead sequence"),
    ("HL7 aECG", "units"): (lambda p: edit_text(p, "utf-8", r'<scale value="2.5" unit="uV"/>',
                                                '<scale value="2.5" unit="mm[Hg]"/>'),
                            "units 'mm[Hg]' are not a voltage"),
    ("SCP-ECG", "truncated"): (lambda p: p.read_bytes()[:17000], "declares 34144 bytes"),
    ("SCP-ECG", "corrupted"): (lambda p: corrupt(p.read_bytes(), 20000, 16),
                               "checksum mismatch (SCP-ECG CRC mismatch in: record, Section 6)"),
    ("SCP-ECG", "missing"): (lambda p: scp_without_section(p.read_bytes(), 6),
                             "Section 6 (rhythm data) is missing"),
    ("SCP-ECG", "missing leads"): (lambda p: scp_without_section(p.read_bytes(), 3),
                                   "Section 3 (lead definition) is missing"),
    ("DICOM waveform", "truncated"): (lambda p: p.read_bytes()[:24000], "Failed to read DICOM"),
    ("DICOM waveform", "corrupted"): (lambda p: corrupt(p.read_bytes(), 300),
                                      "no usable Waveform Sequence"),
    ("DICOM waveform", "missing"): (dicom_edit(lambda d: delattr(d, "WaveformSequence")),
                                    "no usable Waveform Sequence"),
    ("DICOM waveform", "units"): (dicom_edit(dicom_units_to_mmhg),
                                  "units 'mm[Hg]' are not a voltage"),
    ("Philips XML", "truncated"): (lambda p: p.read_bytes()[:125000], "malformed XML"),
    ("Philips XML", "corrupted"): (lambda p: corrupt(p.read_bytes(), 100000),
                                   "invalid Base64 data"),
    ("Philips XML", "missing"): (lambda p: edit_text(p, "utf-16",
                                                     r"<parsedwaveforms.*?</parsedwaveforms>", ""),
                                 "parsedwaveforms"),
    ("Philips XML", "units"): (lambda p: edit_text(p, "utf-16", r'resolution(="|>)5("|<)',
                                                   r"resolution\g<1>0\g<2>"),
                               "no amplitude units"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("name", "variant"), list(VARIANTS))
def test_malformed_variants_give_the_one_line_error(name, variant, tmp_path, capsys):
    make, message = VARIANTS[(name, variant)]
    bad = tmp_path / f"bad{FILES[name].suffix}"
    bad.write_bytes(make(FILES[name]))
    with pytest.raises(ECGInputError, match=re.escape(message)):
        read_clinical(bad)
    output = tmp_path / "out.hdf5"
    with pytest.raises(SystemExit) as stop:
        run_cli(convert_cli.main, [str(bad), "-o", str(output), "-q"])
    assert stop.value.code == 2 and not output.exists()
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {bad}: ") and "fix:" in error


def test_an_unrecognised_file_names_the_formats(tmp_path):
    noise = tmp_path / "ecg.xml"
    noise.write_text("<?xml version='1.0'?><Unknown/>")
    with pytest.raises(ECGInputError, match="GE MUSE XML, HL7 aECG, DICOM waveform, SCP-ECG"):
        ecg_convert.convert([noise], tmp_path / "out.hdf5", progress=False)


@pytest.mark.parametrize("name", ["GE MUSE XML", "HL7 aECG", "Philips XML"])
def test_xml_entity_declarations_are_refused(name, tmp_path):
    encoding = "utf-16" if name == "Philips XML" else "utf-8"
    text = FILES[name].read_bytes().decode(encoding)
    declaration = '<!DOCTYPE bomb [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    start = text.index("?>") + 2  # after the XML declaration
    bomb = tmp_path / "bomb.xml"
    bomb.write_bytes((text[:start] + declaration + text[start:]).encode(encoding))
    with pytest.raises(ECGInputError, match="unsafe XML refused"):
        read_clinical(bomb)


def test_a_folder_of_exports_converts_each_recognised_file(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    for name in ("GE MUSE XML", "DICOM waveform"):
        (folder / FILES[name].name).write_bytes(FILES[name].read_bytes())
    (folder / "notes.txt").write_text("not an ECG")
    output = tmp_path / "out.hdf5"
    assert ecg_convert.convert([folder], output, progress=False)["n_records"] == 2
    with h5py.File(output) as file:
        assert sorted(file["records/format"].asstr()[()]) == ["DICOM waveform", "GE MUSE XML"]
