"""PhysioNet/CinC 2021 WFDB records (``#Dx:`` SNOMED CT labels) and CPSC 2018 ``.mat`` records."""

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.io import loadmat, savemat

from ecgcode.cli import convert as convert_cli
from ecgcode.common import CLASSES, UNITS_PER_MV, ECGInputError, run_cli
from ecgcode.data.formats import convert as ecg_convert
from ecgcode.data.formats.challenge import SNOMED_TO_CLASSES, dx_codes
from ecgcode.data.scale import Scale, scale_warning

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "ecg-samples"
CINC = SAMPLES / "cinc2021"
CPSC = SAMPLES / "formats" / "cpsc2018"
pytestmark = [
    pytest.mark.skipif(not CINC.is_dir() or not CPSC.is_dir(),
                       reason=f"the CinC 2021 and CPSC 2018 samples are not in {SAMPLES}"),
    pytest.mark.filterwarnings("ignore:The inplace keyword"),  # inside wfdb
]
README_COUNTS = {"AF": 8, "1dAVb": 4, "RBBB": 5, "SB": 8, "ST": 3, "LBBB": 0}
"""Positives among the 70 CinC records, as counted by ../shared/README.md."""


def read_output(path):
    with h5py.File(path) as file:
        records = {key: (value.asstr()[()] if value.dtype.kind == "O" else value[()])
                   for key, value in file["records"].items()}
        return (file["tracings"][()], file["labels"][()] if "labels" in file else None,
                dict(file["labels"].attrs) if "labels" in file else None, records)


def header_dx(header):
    """The #Dx codes of a header, read as plain text (independently of wfdb)."""
    line = next(line for line in header.read_text().splitlines() if line.startswith("#Dx:"))
    return [code.strip() for code in line[4:].split(",")]


@pytest.fixture(scope="module")
def cinc_output(tmp_path_factory):
    output = tmp_path_factory.mktemp("cinc") / "cinc.hdf5"
    folders = sorted(path for path in CINC.iterdir() if path.is_dir())
    summary = ecg_convert.convert(folders, output, progress=False)
    return summary, *read_output(output)


def test_cinc_dx_codes_become_labels_and_are_all_kept(cinc_output):
    summary, _, labels, attrs, records = cinc_output
    headers = sorted(CINC.glob("*/*.hea"))
    assert summary["n_records"] == len(headers) == 70 and summary["labels"]
    assert list(attrs["classes"]) == list(CLASSES) and "SNOMED" in attrs["source"]
    counts = dict(zip(CLASSES, labels.sum(axis=0).astype(int).tolist()))
    assert counts == README_COUNTS
    for row, header in enumerate(headers):
        codes = header_dx(header)
        assert records["codes"][row] == ",".join(codes)  # every code, mapped or not
        expected = {SNOMED_TO_CLASSES[code] for code in codes if code in SNOMED_TO_CLASSES}
        assert {name for name, v in zip(CLASSES, labels[row]) if v} == expected


def test_cinc_records_have_their_rates_leads_and_amplitudes(cinc_output):
    _, tracings, _, _, records = cinc_output
    assert set(records["sampling_rate"]) == {500.0, 1000.0}
    assert set(records["lead_names"]) == {"I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"}
    assert set(records["format"]) == {"WFDB (CinC #Dx)"} and not any(records["derived_leads"])
    peak = np.abs(tracings).max(axis=1) / UNITS_PER_MV  # (70, 12) in mV
    assert np.median(peak) > 0.3 and np.median(peak) < 3  # typically 0.3-3 mV
    # real records at the scale the file records: the amplitude check stays silent
    assert scale_warning(tracings, Scale(UNITS_PER_MV, "recorded"), "cinc.hdf5") is None


def test_cinc_matches_an_independent_decoding_of_its_mat_file(tmp_path):
    header = CINC / "CPSC_CPSC-Extra" / "A0001.hea"
    fields = [line.split() for line in header.read_text().splitlines()[1:13]]
    gains = np.array([float(field[2].split("/")[0]) for field in fields])  # counts per mV
    counts = loadmat(header.with_suffix(".mat"))["val"]  # (12, n) int16
    output = tmp_path / "a.hdf5"
    ecg_convert.convert([header.with_suffix(".mat")], output, progress=False)  # the .mat names it
    tracing = read_output(output)[0][0]
    expected = ecg_convert.to_contract((counts / gains[:, None]).T, 500,
                                       [field[-1] for field in fields], "mV")
    np.testing.assert_allclose(tracing, expected, rtol=1e-6, atol=1e-5)


def test_dx_codes_parsing():
    assert dx_codes(["Age: 74", "Dx: 59118001, 426783006"]) == ["59118001", "426783006"]
    assert dx_codes(["Age: 74"]) is None


# --- CPSC 2018 ----------------------------------------------------------------------------------
def test_cpsc_folder_converts_with_reference_labels(tmp_path):
    output = tmp_path / "cpsc.hdf5"
    ecg_convert.convert([CPSC], output, progress=False)
    tracings, labels, attrs, records = read_output(output)
    names = [Path(source).stem for source in records["source"]]
    assert names == ["A1980", "A1981", "A1982", "A1983", "A1984"]
    assert list(records["codes"]) == ["6", "8", "3", "1", "8"]  # REFERENCE.csv
    assert list(records["statements"]) == ["PAC", "STD", "I-AVB", "Normal", "STD"]
    expected = np.zeros((5, 6), np.float32)
    expected[2, CLASSES.index("1dAVb")] = 1  # code 3 (I-AVB); PAC, STD, Normal are negatives
    np.testing.assert_array_equal(labels, expected)
    assert "REFERENCE.csv" in attrs["source"] and set(records["sampling_rate"]) == {500.0}
    data = loadmat(CPSC / "A1980.mat")["ECG"]["data"][0, 0]  # (12, n) mV
    cpsc_order = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    np.testing.assert_allclose(tracings[0], ecg_convert.to_contract(data.T, 500, cpsc_order, "mV"),
                               atol=1e-5)


def test_cpsc_record_without_reference_has_no_labels(tmp_path):
    shutil.copy(CPSC / "A1982.mat", tmp_path / "A1982.mat")
    output = tmp_path / "one.hdf5"
    ecg_convert.convert([tmp_path / "A1982.mat"], output, progress=False)
    _, labels, _, records = read_output(output)
    assert labels is None and records["format"][0] == "CPSC 2018"


# --- Malformed records ----------------------------------------------------------------------------
def cinc_copy(tmp_path, edit_header=None, mat_bytes=None):
    """A copy of A0001 (header edited by ``edit_header``, signal file by ``mat_bytes``)."""
    source = CINC / "CPSC_CPSC-Extra" / "A0001"
    text = source.with_suffix(".hea").read_text()
    (tmp_path / "A0001.hea").write_text(edit_header(text) if edit_header else text)
    mat = source.with_suffix(".mat").read_bytes()
    mat = mat if mat_bytes is None else mat_bytes(mat)
    if mat is not None:  # None: no signal file at all
        (tmp_path / "A0001.mat").write_bytes(mat)
    return tmp_path / "A0001.hea"


def cpsc_copy(tmp_path, content=None, reference=None, truncate=False):
    path = tmp_path / "A1980.mat"
    if content is None:
        data = (CPSC / "A1980.mat").read_bytes()
        path.write_bytes(data[:len(data) // 2] if truncate else data)
    else:
        savemat(path, content)
    if reference is not None:
        (tmp_path / "REFERENCE.csv").write_text(reference)
    return path


MALFORMED = {
    "cinc truncated signal": (lambda t: cinc_copy(t, mat_bytes=lambda m: m[:len(m) // 2]),
                              "cannot read WFDB record"),
    "cinc corrupted #Dx": (lambda t: cinc_copy(t, lambda h: h.replace("#Dx: 59118001",
                                                                      "#Dx: 5911x8001")),
                           "is not a SNOMED CT code"),
    "cinc empty signal": (lambda t: cinc_copy(t, mat_bytes=lambda m: b""),
                          "cannot read WFDB record"),
    "cinc missing signal": (lambda t: cinc_copy(t, mat_bytes=lambda m: None),
                            "cannot read WFDB record"),
    "cinc wrong units": (lambda t: cinc_copy(t, lambda h: h.replace("1000/mV", "1000/mmHg")),
                         "unknown units 'mmHg'"),
    "cpsc truncated": (lambda t: cpsc_copy(t, truncate=True), "cannot read MATLAB file"),
    "cpsc missing struct": (lambda t: cpsc_copy(t, {"val": np.zeros((12, 10))}),
                            "no struct ECG with a field data (found: val)"),
    "cpsc wrong shape": (lambda t: cpsc_copy(t, {"ECG": {"data": np.zeros((8, 10))}}),
                         "ECG.data has shape (8, 10)"),
    "cpsc bad reference": (lambda t: cpsc_copy(t, reference="Recording,First_label\nA1980,12\n"),
                           "label '12' is not a CPSC code"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_records_give_the_one_line_error(case, tmp_path, capsys):
    make, message = MALFORMED[case]
    bad = make(tmp_path)
    output = tmp_path / "out.hdf5"
    with pytest.raises(ECGInputError, match=re.escape(message)):
        ecg_convert.convert([bad], output, progress=False)
    with pytest.raises(SystemExit) as stop:
        run_cli(convert_cli.main, [str(bad), "-o", str(output), "-q"])
    assert stop.value.code == 2 and not output.exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "fix:" in lines[-1]
