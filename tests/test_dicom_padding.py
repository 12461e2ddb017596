"""DICOM Waveform Padding Value: padding only at the start or end of a channel, signal elsewhere.

The DICOM files are written here with pydicom from the shared HL7 aECG example
(../shared/ecg-samples/formats/), read by the project's own HL7 reader: its 12 x 5000 samples are
whole multiples of 2.5 uV, and 1269 of them are 0, the padding value of these files.
"""

from pathlib import Path

import h5py
import numpy as np
import pytest

from ecgcode.common import LEADS, ECGInputError
from ecgcode.data.formats import convert as ecg_convert
from ecgcode.data.formats.clinical import read_clinical

FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "ecg-samples" / "formats"
pytestmark = pytest.mark.skipif(not FORMATS.is_dir(),
                                reason=f"the example ECG exports are not in {FORMATS}")
HL7_FILE = FORMATS / "hl7-aecg" / "Example_aECG.xml"
SHARED_DICOM = FORMATS / "dicom" / "waveform_ecg.dcm"
SCALE_UV = 2.5  # the HL7 example's step, written as the DICOM Channel Sensitivity
SCP_LEAD_CODES = {"I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
                  "III": 61, "aVR": 62, "aVL": 63, "aVF": 64}  # SCPECG 5.6.3-9-N (PS3.16)
TRAILING = 7  # true padding samples written after the tracing, in every channel


@pytest.fixture(scope="module")
def hl7():
    return read_clinical(HL7_FILE)


def hl7_codes(record):
    """The HL7 tracing as int16 counts of 2.5 uV, (n_samples, 12), and the quantisation error."""
    counts = np.round(record.signal / SCALE_UV)
    return counts.astype(np.int16), np.abs(counts * SCALE_UV - record.signal).max()


def channel(name):
    """A Channel Definition Sequence item: an SCP-ECG coded lead, 2.5 uV per count."""
    from pydicom.dataset import Dataset

    source, unit, item = Dataset(), Dataset(), Dataset()
    source.CodeValue, source.CodingSchemeDesignator = f"5.6.3-9-{SCP_LEAD_CODES[name]}", "SCPECG"
    source.CodeMeaning = f"Lead {name}"
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "uV", "UCUM", "microvolt"
    item.ChannelSourceSequence, item.ChannelSensitivityUnitsSequence = [source], [unit]
    item.ChannelSensitivity, item.ChannelSensitivityCorrectionFactor = SCALE_UV, 1
    item.ChannelBaseline, item.WaveformBitsStored = 0, 16
    return item


def write_dicom(path, codes, names, fs, padding=0):
    """A 12-lead ECG DICOM file: one RHYTHM group of int16 ``codes`` (n_samples, n_channels)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    group = Dataset()
    group.MultiplexGroupLabel, group.WaveformOriginality = "RHYTHM", "ORIGINAL"
    group.NumberOfWaveformChannels, group.NumberOfWaveformSamples = codes.shape[1], codes.shape[0]
    group.SamplingFrequency, group.WaveformBitsAllocated = fs, 16
    group.WaveformSampleInterpretation = "SS"
    group.ChannelDefinitionSequence = [channel(name) for name in names]
    if padding is not None:
        group.add_new("WaveformPaddingValue", "OW", np.int16(padding).astype("<i2").tobytes())
    group.add_new("WaveformData", "OW", codes.astype("<i2").tobytes())  # sample-major
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG Waveform Storage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.Modality, dataset.Manufacturer = "ECG", "ecgcode test"
    dataset.WaveformSequence = [group]
    dataset.save_as(path, enforce_file_format=True)
    return path


def padded_twin(hl7, path, leading=0, trailing=TRAILING, padding=0):
    """The HL7 tracing as DICOM, with ``padding``-valued samples before and after it."""
    codes, _ = hl7_codes(hl7)
    codes = np.pad(codes, ((leading, trailing), (0, 0)), constant_values=padding)
    return write_dicom(path, codes, hl7.lead_names, hl7.fs, padding)


def convert_one(path, folder):
    """Convert one file the way ``datasets.py convert`` does; return (tracing, records/)."""
    output = folder / f"{Path(path).stem}.hdf5"
    ecg_convert.convert([path], output, progress=False)
    with h5py.File(output) as file:
        records = {key: (value.asstr()[0] if value.dtype.kind == "O" else value[0])
                   for key, value in file["records"].items()}
        return file["tracings"][0], records


def test_the_hl7_tracing_has_many_samples_equal_to_the_padding_value(hl7):
    codes, quantisation = hl7_codes(hl7)
    assert quantisation == 0  # whole 2.5 uV steps: the DICOM counts are exact
    mid = codes[1:-1] == 0
    assert mid.sum() > 1000 and mid.any(axis=0).all()  # in every lead, mid-signal


def test_mid_signal_padding_values_are_signal_and_trailing_padding_is_cropped(hl7, tmp_path,
                                                                              capsys):
    record = read_clinical(padded_twin(hl7, tmp_path / "padded.dcm"))
    assert record.format == "DICOM waveform" and record.fs == hl7.fs
    assert record.lead_names == hl7.lead_names and record.units == hl7.units
    assert np.isfinite(record.signal).all()
    assert record.signal.shape == hl7.signal.shape  # the 7 rows of padding are cropped
    codes, quantisation = hl7_codes(hl7)
    np.testing.assert_allclose(record.signal, hl7.signal, rtol=0, atol=quantisation + 1e-9)
    assert (record.signal[codes == 0] == 0).all()  # the 1269 padding-valued samples, as signal
    assert "7 rows cropped" in capsys.readouterr().err


def test_dicom_twin_converts_like_its_hl7_original(hl7, tmp_path):
    tracing, records = convert_one(padded_twin(hl7, tmp_path / "padded.dcm"), tmp_path)
    reference, hl7_records = convert_one(HL7_FILE, tmp_path)
    assert records["format"] == "DICOM waveform"
    assert records["n_samples"] == hl7_records["n_samples"] == 5000
    assert tracing.shape == (4096, len(LEADS)) and np.isfinite(tracing).all()
    # the counts are exact (quantisation 0): only float32 rounding may differ
    np.testing.assert_allclose(tracing, reference, rtol=0, atol=1e-6)


def test_padding_at_the_start_of_one_lead_only_is_missing(hl7, tmp_path):
    codes, _ = hl7_codes(hl7)
    codes = np.pad(codes, ((0, TRAILING), (0, 0)))  # trailing padding in every lead
    codes[:40, 3] = 0  # lead V2 starts late: its first 40 samples are padding
    record = read_clinical(write_dicom(tmp_path / "late.dcm", codes, hl7.lead_names, hl7.fs))
    assert record.signal.shape == hl7.signal.shape  # no row is padding in every lead
    np.testing.assert_array_equal(record.signal[:40, 3], 0.0)  # missing: 0, as the contract pads
    np.testing.assert_array_equal(record.signal[40:], hl7.signal[40:])
    np.testing.assert_array_equal(np.delete(record.signal, 3, axis=1)[:40],
                                  np.delete(hl7.signal, 3, axis=1)[:40])


def test_rows_padded_in_every_lead_at_both_ends_are_cropped(hl7, tmp_path):
    record = read_clinical(padded_twin(hl7, tmp_path / "both.dcm", leading=25, trailing=30))
    np.testing.assert_array_equal(record.signal, hl7.signal)


def test_a_lead_padded_throughout_is_dropped(hl7, tmp_path):
    codes, _ = hl7_codes(hl7)
    codes[:, hl7.lead_names.index("aVF")] = 0
    record = read_clinical(write_dicom(tmp_path / "no_avf.dcm", codes, hl7.lead_names, hl7.fs))
    assert record.lead_names == [name for name in hl7.lead_names if name != "aVF"]
    np.testing.assert_array_equal(record.signal, np.delete(hl7.signal, 11, axis=1))


def test_a_file_of_padding_only_gives_the_one_line_error(hl7, tmp_path):
    codes = np.zeros((5000, 12), dtype=np.int16)
    path = write_dicom(tmp_path / "empty.dcm", codes, hl7.lead_names, hl7.fs)
    with pytest.raises(ECGInputError, match="only padding") as error:
        read_clinical(path)
    assert str(path) in str(error.value) and "fix:" in str(error.value)
    assert "\n" not in str(error.value)


def test_without_a_padding_value_zeros_are_signal(hl7, tmp_path):
    codes, _ = hl7_codes(hl7)
    path = write_dicom(tmp_path / "none.dcm", codes, hl7.lead_names, hl7.fs, padding=None)
    np.testing.assert_array_equal(read_clinical(path).signal, hl7.signal)


@pytest.mark.parametrize("padding", [0, -32768])
def test_shared_dicom_with_a_padding_value_reads_as_without(padding, tmp_path):
    import pydicom

    dataset = pydicom.dcmread(SHARED_DICOM)  # its padding value is absent
    for group in dataset.WaveformSequence:
        group.add_new("WaveformPaddingValue", "OW", np.int16(padding).astype("<i2").tobytes())
    path = tmp_path / "padding.dcm"
    dataset.save_as(path)
    np.testing.assert_array_equal(read_clinical(path).signal, read_clinical(SHARED_DICOM).signal)
