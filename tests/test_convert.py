"""Tests of ecgcode.data.formats.convert: real-world ECG records into the HDF5 data contract."""

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.signal import resample_poly

from ecgcode.cli import convert as convert_cli
from ecgcode.common import CLASSES, LEADS, N_SAMPLES, UNITS_PER_MV, ECGInputError, run_cli
from ecgcode.data.formats import convert as ecg_convert

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PTB_RECORD = SHARED / "ecg-samples" / "s0010_re"
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside wfdb
PTBXL_NAMES = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def random_leads(n_samples, seed=0):
    """Return a (n_samples, 12) signal in mV whose limb leads obey Einthoven's laws."""
    rng = np.random.default_rng(seed)
    lead_i, lead_ii = rng.normal(0, 0.5, size=(2, n_samples))
    limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2,
            lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    precordial = rng.normal(0, 0.5, size=(6, n_samples))
    return np.column_stack([*limb, *precordial])  # (n_samples, 12)


def write_csv(path, signal, names):
    pd.DataFrame(signal, columns=names).to_csv(path, index=False)
    return path


# --- to_contract --------------------------------------------------------------------------
def test_to_contract_reorders_scales_and_pads():
    signal = random_leads(4000)  # 10 s at 400 Hz: no resampling
    shuffled = [11, 3, 0, 7, 1, 5, 2, 9, 4, 6, 8, 10]
    names = ["v6", "AVR", "DI", "v2", "ii", "aVF", "III", "V4", "avl", "V1", "V3", "V5"]
    out = ecg_convert.to_contract(signal[:, shuffled], 400, names, "mV")
    assert out.shape == (N_SAMPLES, 12) and out.dtype == np.float32
    # 96 padded samples, split evenly
    np.testing.assert_allclose(out[48:48 + 4000], signal * UNITS_PER_MV, rtol=1e-6, atol=1e-6)
    assert not out[:48].any() and not out[48 + 4000:].any()


@pytest.mark.parametrize(("units", "mv_per_unit"), [("V", 1e3), ("mV", 1), ("uV", 1e-3),
                                                     ("\u00b5V", 1e-3), ("1e-4 V", 0.1)])
def test_to_contract_units(units, mv_per_unit):
    signal = random_leads(N_SAMPLES)
    out = ecg_convert.to_contract(signal, 400, PTBXL_NAMES, units)
    np.testing.assert_allclose(out, signal * mv_per_unit * UNITS_PER_MV, rtol=1e-5, atol=1e-6)


def test_the_contract_scale_is_the_original_studys_2_units_per_mv():
    """The literal scale, pinned once: 1 mV = 2 units (V x 2000, uV x 0.002, 1e-4 V x 0.2)."""
    assert UNITS_PER_MV == 2.0
    assert ecg_convert.units_factor("mV") == 2.0
    assert ecg_convert.units_factor("V") == 2000.0
    assert ecg_convert.units_factor("uV") == pytest.approx(0.002)
    assert ecg_convert.units_factor("1e-4 V") == pytest.approx(0.2)


def test_to_contract_derives_limb_leads_from_i_and_ii():
    signal = random_leads(N_SAMPLES)
    keep = [0, 1, *range(6, 12)]
    out = ecg_convert.to_contract(signal[:, keep], 400, [PTBXL_NAMES[k] for k in keep], "mV")
    np.testing.assert_allclose(out, signal * UNITS_PER_MV, rtol=1e-5, atol=1e-5)
    _, derived = ecg_convert.match_leads(signal[:, keep], [PTBXL_NAMES[k] for k in keep], "mV")
    assert derived == ["DIII", "aVR", "aVL", "aVF"]


def test_to_contract_derives_from_other_independent_pair():
    signal = random_leads(N_SAMPLES)
    keep = [2, 4, *range(6, 12)]  # III and aVL only
    out = ecg_convert.to_contract(signal[:, keep], 400, [PTBXL_NAMES[k] for k in keep], "mV")
    np.testing.assert_allclose(out, signal * UNITS_PER_MV, rtol=1e-5, atol=1e-5)


def test_resampling_memory_stays_near_the_output_size():
    """scipy's resample_poly computes only the output samples (upfirdn): an INCART-like
    10 min at 257 Hz to 400 Hz (up 400, down 257) makes no upsampled copy, which would hold
    400 x 154,200 x 12 float64 samples (5.9 GB)."""
    x = np.random.default_rng(0).normal(0, 100, (257 * 600, 12))  # (154200, 12)
    tracemalloc.start()
    try:
        y = ecg_convert.resample_to_contract_rate(x, 257)  # (240000, 12)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.shape == (240000, 12)
    assert peak < 4 * y.nbytes + 2 * x.nbytes
    np.testing.assert_array_equal(y, resample_poly(x, 400, 257, axis=0))


def test_resampling_computes_in_float64():
    x = np.random.default_rng(1).normal(0, 100, (5000, 12)).astype(np.float32)  # (5000, 12)
    y = ecg_convert.resample_to_contract_rate(x, 500)  # (4000, 12)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, resample_poly(x.astype(np.float64), 4, 5, axis=0))


def test_to_contract_resamples_and_crops():
    fs, seconds = 500, 12
    t = np.arange(fs * seconds) / fs
    signal = np.sin(2 * np.pi * 1.0 * t)[:, None] * np.ones(12)  # 1 Hz sine, 6000 samples
    out = ecg_convert.to_contract(signal, fs, PTBXL_NAMES, "mV")
    # 4800 samples at 400 Hz, centre-cropped: start at sample 352 (0.88 s)
    t_out = (352 + np.arange(N_SAMPLES)) / 400
    np.testing.assert_allclose(out[:, 6], UNITS_PER_MV * np.sin(2 * np.pi * t_out),
                               atol=1e-3 * UNITS_PER_MV)


@pytest.mark.parametrize(("names", "units", "message"), [
    (PTBXL_NAMES[:11] + ["X"], "mV", "missing leads V6"),
    (["I", "X", "Y", "Z", "W", "Q"] + PTBXL_NAMES[6:], "mV", "cannot derive limb leads"),
    (PTBXL_NAMES, "mmHg", "unknown units"),
    (PTBXL_NAMES[:11] + ["II"], "mV", "appears twice"),
])
def test_to_contract_errors(names, units, message):
    with pytest.raises(ECGInputError, match=message):
        ecg_convert.to_contract(random_leads(1000), 400, names, units)


def test_to_contract_rejects_non_finite():
    signal = random_leads(1000)
    signal[5:8, 1] = np.nan
    with pytest.raises(ECGInputError, match=r"3 non-finite values .* leads DII"):
        ecg_convert.to_contract(signal, 400, PTBXL_NAMES, "mV", source="rec.csv")


# --- The real PTB record ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ptb_conversion(tmp_path_factory):
    if not PTB_RECORD.with_suffix(".hea").exists():
        pytest.skip(f"real PTB record not found at {PTB_RECORD}")
    output = tmp_path_factory.mktemp("ptb") / "ptb.hdf5"
    summary = ecg_convert.convert([str(PTB_RECORD) + ".hea"], output, progress=False)
    return summary, output


def test_ptb_record_converted(ptb_conversion):
    summary, output = ptb_conversion
    source, fs, names, units = ecg_convert.read_wfdb(PTB_RECORD)
    assert source.shape == (38400, 15) and fs == 1000 and set(units) == {"mV"}
    assert names[:3] == ["i", "ii", "iii"] and names[-3:] == ["vx", "vy", "vz"]
    assert summary["n_records"] == 1
    with h5py.File(output) as file:
        tracing = file["tracings"][0]  # (4096, 12)
        assert file["tracings"].shape == (1, N_SAMPLES, 12)
        assert file["exam_id"][()].tolist() == [0]
        records = file["records"]
        assert records["sampling_rate"][0] == 1000 and records["n_samples"][0] == 38400
        assert records["lead_names"].asstr()[0].endswith("v6,vx,vy,vz")
        assert records["units"].asstr()[0] == "mV"
        assert list(file["tracings"].attrs["leads"]) == list(LEADS)
    # 38.4 s at 400 Hz = 15360 samples, centre-cropped from sample 5632
    expected_ii = resample_poly(source[:, 1], 2, 5)[5632:5632 + N_SAMPLES] * UNITS_PER_MV
    np.testing.assert_allclose(tracing[:, 1], expected_ii, rtol=1e-5, atol=1e-4)
    expected_v6 = resample_poly(source[:, 11], 2, 5)[5632:5632 + N_SAMPLES] * UNITS_PER_MV
    np.testing.assert_allclose(tracing[:, 11], expected_v6, rtol=1e-5, atol=1e-4)
    # Einthoven: I + III = II within the recording's quantisation (1 count = 0.0005 mV)
    einthoven_error = tracing[:, 0] + tracing[:, 2] - tracing[:, 1]
    assert np.abs(einthoven_error).max() < 0.005 * UNITS_PER_MV
    assert np.abs(tracing[:, 1]).max() > 0.1 * UNITS_PER_MV


# --- CSV, npy and WFDB inputs, and the CLI ------------------------------------------------------
def test_csv_with_extra_columns_and_cli(tmp_path):
    signal = random_leads(2500)  # 5 s at 500 Hz
    frame = pd.DataFrame(signal, columns=["DI", "DII", "DIII", "aVR", "aVL", "aVF",
                                          "V1", "V2", "V3", "V4", "V5", "V6"])
    frame.insert(0, "time", np.arange(2500) / 500)
    frame.to_csv(tmp_path / "rec.csv", index=False)
    output = tmp_path / "out.hdf5"
    status = run_cli(convert_cli.main, [str(tmp_path / "rec.csv"), "-o", str(output),
                                        "--fs", "500", "--units", "uV", "-q"])
    assert status == 0
    with h5py.File(output) as file:
        tracing = file["tracings"][0]
    expected = resample_poly(signal / 1000 * UNITS_PER_MV, 4, 5, axis=0)  # (2000, 12)
    np.testing.assert_allclose(tracing[1048:1048 + 2000], expected, rtol=1e-4, atol=1e-6)


def test_npy_lead_major_2d_and_3d(tmp_path):
    signal = random_leads(N_SAMPLES)
    np.save(tmp_path / "one.npy", signal.T.astype(np.float32))  # (12, 4096), lead-major
    batch = np.stack([signal, 2 * signal, 3 * signal])  # (3, 4096, 12)
    np.save(tmp_path / "three.npy", batch)
    output = tmp_path / "out.hdf5"
    summary = ecg_convert.convert([tmp_path / "one.npy", tmp_path / "three.npy"], output,
                                  fs=400, units="mV", leads=PTBXL_NAMES, progress=False)
    assert summary["n_records"] == 4
    with h5py.File(output) as file:
        tracings = file["tracings"][()]
        assert file["exam_id"][()].tolist() == [0, 1, 2, 3]
        assert file["records/source"].asstr()[3].endswith("three.npy[2]")
    for row, scale in enumerate([1, 1, 2, 3]):
        np.testing.assert_allclose(tracings[row], signal * UNITS_PER_MV * scale, rtol=1e-5,
                                   atol=1e-4)


def test_wfdb_in_microvolts_with_uppercase_names(tmp_path):
    import wfdb

    signal = random_leads(2500) * 1000  # uV
    wfdb.wrsamp("rec", fs=250, units=["uV"] * 12, sig_name=PTBXL_NAMES, p_signal=signal,
                fmt=["16"] * 12, adc_gain=[1.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    out = ecg_convert.to_contract(*ecg_convert.read_wfdb(tmp_path / "rec.dat"))
    expected = resample_poly(np.round(signal) / 1000 * UNITS_PER_MV, 8, 5, axis=0)  # (4000, 12)
    np.testing.assert_allclose(out[48:4048], expected, rtol=1e-4, atol=1e-4)


def test_wfdb_millivolt_record_is_written_at_exactly_2_units_per_mv(tmp_path):
    """A WFDB record in mV becomes exactly 2x its values, the literal scale the file records.

    The expected values come from wfdb's own decoding (rdsamp: (digital - baseline) / gain),
    not from the converter's reader, and the factor is the literal 2, not the constant.
    """
    import wfdb

    signal = random_leads(4000, seed=3)  # 10 s at 400 Hz: no resampling, 48 samples of padding
    wfdb.wrsamp("mv", fs=400, units=["mV"] * 12, sig_name=PTBXL_NAMES, p_signal=signal,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(tmp_path))
    decoded, fields = wfdb.rdsamp(str(tmp_path / "mv"))  # (4000, 12) in mV
    assert fields["units"] == ["mV"] * 12 and fields["fs"] == 400
    output = tmp_path / "mv.hdf5"
    assert run_cli(convert_cli.main, [str(tmp_path / "mv.hea"), "-o", str(output), "-q"]) == 0
    with h5py.File(output) as file:
        tracing = file["tracings"][0]  # (4096, 12)
        for attrs in (file["tracings"].attrs, file.attrs):
            assert attrs["units_per_mv"] == 2.0
            assert attrs["units"] == "mV x 2 (1 mV = 2 units)"
            assert "unit_volts" not in attrs
    np.testing.assert_allclose(tracing[48:4048], 2.0 * decoded, rtol=1e-6, atol=1e-6)
    assert not tracing[:48].any() and not tracing[4048:].any()


# --- PTB-XL ------------------------------------------------------------------------------------
def make_ptbxl(folder):
    import wfdb

    rows = []
    codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'1AVB': 100.0, 'AFIB': 0.0, 'CRBBB': 80.0}",
             "{'CLBBB': 100.0, 'SBRAD': 0.0, 'IRBBB': 100.0}", "{'STACH': 0.0}"]
    for k, (ecg_id, scp) in enumerate(zip([7, 3, 42, 9], codes)):
        names = {}
        for rate, suffix in ((500, "hr"), (100, "lr")):
            directory = folder / f"records{rate}" / "00000"
            directory.mkdir(parents=True, exist_ok=True)
            wfdb.wrsamp(f"{ecg_id:05d}_{suffix}", fs=rate, units=["mV"] * 12,
                        sig_name=PTBXL_NAMES, p_signal=random_leads(10 * rate, seed=k),
                        fmt=["16"] * 12, write_dir=str(directory))
            names[suffix] = f"records{rate}/00000/{ecg_id:05d}_{suffix}"
        rows.append({"ecg_id": ecg_id, "patient_id": 100.0 + k, "scp_codes": scp,
                     "strat_fold": k + 1, "filename_lr": names["lr"], "filename_hr": names["hr"]})
    pd.DataFrame(rows).to_csv(folder / "ptbxl_database.csv", index=False)
    return folder


@pytest.mark.parametrize("low_rate", [False, True])
def test_ptbxl_folder(tmp_path, low_rate):
    folder = make_ptbxl(tmp_path / "ptbxl")
    output = tmp_path / "ptbxl.hdf5"
    given = folder / "ptbxl_database.csv" if low_rate else folder  # the table names its folder
    argv = [str(given), "-o", str(output), "-q"] + (["--ptbxl-100hz"] if low_rate else [])
    assert run_cli(convert_cli.main, argv) == 0
    with h5py.File(output) as file:
        assert file["tracings"].shape == (4, N_SAMPLES, 12)
        assert file["exam_id"][()].tolist() == [7, 3, 42, 9]
        assert file["strat_fold"][()].tolist() == [1, 2, 3, 4]
        assert file["patient_id"][()].tolist() == [100, 101, 102, 103]
        assert list(file["labels"].attrs["classes"]) == list(CLASSES)
        labels = file["labels"][()]
        rate = file["records/sampling_rate"][0]
        tracing = file["tracings"][0]
    expected = np.zeros((4, 6), np.float32)
    expected[1, [0, 1, 4]] = 1  # 1dAVb, RBBB, AF
    expected[2, [2, 3]] = 1  # LBBB, SB (IRBBB is not RBBB)
    expected[3, 5] = 1  # ST
    np.testing.assert_array_equal(labels, expected)
    assert rate == (100 if low_rate else 500)
    assert np.abs(tracing[:48]).max() == 0 and np.abs(tracing[48:4048]).max() > 1


def write_scp_statements(folder):
    """The rows of PTB-XL's scp_statements.csv that the mini database uses (real values)."""
    rows = [  # code, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass
        ("NORM", 1, None, None, "NORM", "NORM"), ("1AVB", 1, None, None, "CD", "_AVB"),
        ("CRBBB", 1, None, None, "CD", "CRBBB"), ("CLBBB", 1, None, None, "CD", "CLBBB"),
        ("IRBBB", 1, None, None, "CD", "IRBBB"), ("SR", None, None, 1, None, None),
        ("AFIB", None, None, 1, None, None), ("SBRAD", None, None, 1, None, None),
        ("STACH", None, None, 1, None, None), ("LVOLT", None, 1, None, None, None)]
    frame = pd.DataFrame(rows, columns=["code", "diagnostic", "form", "rhythm",
                                        "diagnostic_class", "diagnostic_subclass"])
    frame["description"] = frame["code"]
    frame.set_index("code").to_csv(folder / "scp_statements.csv")


@pytest.mark.parametrize("label_set, classes, positives", [
    ("superdiagnostic", ["CD", "NORM"], [[0, 1], [1, 0], [1, 0], [0, 0]]),
    ("subdiagnostic", ["CLBBB", "CRBBB", "IRBBB", "NORM", "_AVB"],
     [[0, 0, 0, 1, 0], [0, 1, 0, 0, 1], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]),
    ("rhythm", ["AFIB", "SBRAD", "SR", "STACH"],
     [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]),
    ("all", ["1AVB", "AFIB", "CLBBB", "CRBBB", "IRBBB", "NORM", "SBRAD", "SR", "STACH"], None),
])
def test_ptbxl_label_sets(tmp_path, label_set, classes, positives):
    folder = make_ptbxl(tmp_path / "ptbxl")
    write_scp_statements(folder)
    output = tmp_path / "out.hdf5"
    argv = [str(folder), "-o", str(output), "-q", "--ptbxl-labels", label_set]
    assert run_cli(convert_cli.main, argv) == 0
    with h5py.File(output) as file:
        assert [c.decode() if isinstance(c, bytes) else c
                for c in file["labels"].attrs["classes"]] == classes
        labels = file["labels"][()]
        assert file["strat_fold"][()].tolist() == [1, 2, 3, 4]
    assert labels.shape == (4, len(classes))
    if positives is not None:
        np.testing.assert_array_equal(labels, positives)
    else:
        assert labels.sum() == 9  # every statement of the four records


def test_ptbxl_label_set_needs_the_statements_table(tmp_path, capsys):
    folder = make_ptbxl(tmp_path / "ptbxl")
    output = tmp_path / "out.hdf5"
    with pytest.raises(SystemExit) as stop:
        run_cli(convert_cli.main, [str(folder), "-o", str(output), "-q",
                                   "--ptbxl-labels", "superdiagnostic"])
    assert stop.value.code == 2
    assert "scp_statements.csv" in capsys.readouterr().err and not output.exists()


# --- Bad inputs: clear error, exit 2, nothing written or destroyed ------------------------------
def bad_inputs(tmp_path):
    write_csv(tmp_path / "noheader.csv", random_leads(100), [f"{x}" for x in range(12)])
    np.save(tmp_path / "ok.npy", random_leads(100))
    (tmp_path / "rec.txt").write_text("1,2,3\n")
    nan = random_leads(100)
    nan[3, 4] = np.inf
    write_csv(tmp_path / "nan.csv", nan, PTBXL_NAMES)
    write_csv(tmp_path / "ok.csv", random_leads(100), PTBXL_NAMES)
    write_csv(tmp_path / "v6.csv", random_leads(100)[:, :11], PTBXL_NAMES[:11])
    return {
        "missing file": ([tmp_path / "absent.csv", "--fs", "500", "--units", "mV"], "not found"),
        "unknown extension": ([tmp_path / "rec.txt"], "unknown file type"),
        "no lead header": ([tmp_path / "noheader.csv", "--fs", "500", "--units", "mV"],
                           "no CSV header names a lead"),
        "csv without fs": ([tmp_path / "ok.csv", "--units", "mV"], "pass --fs"),
        "npy without leads": ([tmp_path / "ok.npy", "--fs", "500", "--units", "mV"],
                              "pass --leads"),
        "npy without fs": ([tmp_path / "ok.npy", "--units", "mV", "--leads",
                            ",".join(PTBXL_NAMES)], "pass --fs"),
        "non-finite": ([tmp_path / "ok.csv", tmp_path / "nan.csv", "--fs", "500", "--units",
                        "mV"], "nan.csv: 1 non-finite values"),
        "unknown units": ([tmp_path / "ok.csv", "--fs", "500", "--units", "mmHg"],
                          "unknown units"),
        "missing lead": ([tmp_path / "ok.csv", tmp_path / "v6.csv", "--fs", "500", "--units",
                          "mV"], "missing leads V6"),
    }


@pytest.mark.parametrize("case", ["missing file", "unknown extension", "no lead header",
                                  "csv without fs", "npy without leads", "npy without fs",
                                  "non-finite", "unknown units", "missing lead"])
def test_bad_inputs_exit_2_and_keep_existing_output(tmp_path, capsys, case):
    args, message = bad_inputs(tmp_path)[case]
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"earlier result")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(convert_cli.main, [str(arg) for arg in args] + ["-o", str(output), "-q"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "fix:" in error
    assert "\n" not in error and "Traceback" not in error
    assert output.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_ptbxl_missing_records_fail_before_writing(tmp_path):
    folder = make_ptbxl(tmp_path / "ptbxl")
    (folder / "records500" / "00000" / "00042_hr.hea").unlink()
    with pytest.raises(ECGInputError, match=r"1 of 4 records .* missing \(first: .*00042_hr"):
        ecg_convert.convert([folder], tmp_path / "out.hdf5", progress=False)
    assert not (tmp_path / "out.hdf5").exists()


def test_failure_midway_leaves_no_output(tmp_path):
    write_csv(tmp_path / "a.csv", random_leads(100), PTBXL_NAMES)
    bad = random_leads(100)
    bad[0, 0] = np.nan
    write_csv(tmp_path / "b.csv", bad, PTBXL_NAMES)
    with pytest.raises(ECGInputError, match="b.csv"):
        ecg_convert.convert([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "out.hdf5",
                            fs=500, units="mV", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]
