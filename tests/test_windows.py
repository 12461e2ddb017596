"""Long recordings cut into 4096-sample windows: the rule, convert --windows, predict --windows."""

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import run_main, write_hdf5

from ecgcode.common import CLASSES, LEADS, N_SAMPLES, UNITS_PER_MV, ECGInputError
from ecgcode.data.formats import convert as ecg_convert

keras = pytest.importorskip("keras")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "ecg-samples"
LONG_RECORD = SHARED / "cinc2021" / "PTB_PTBXL" / "S0005.hea"  # 115.2 s at 1000 Hz
NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def ramp_leads(n_samples, seed=0):
    """(n_samples, 12) signal in mV: a distinct ramp per lead, limb leads consistent."""
    rng = np.random.default_rng(seed)
    lead_i = np.arange(n_samples) / n_samples + rng.normal(0, 0.01, n_samples)
    lead_ii = rng.normal(0, 0.5, n_samples)
    limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2,
            lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    return np.column_stack([*limb, *rng.normal(0, 0.5, (6, n_samples))])


def write_csv(path, n_samples, seed=0):
    pd.DataFrame(ramp_leads(n_samples, seed), columns=NAMES).to_csv(path, index=False)
    return str(path)


# --- The rule ---------------------------------------------------------------------------
@pytest.mark.parametrize(("length", "stride", "starts"), [
    (4096, 4096, [0]),                       # exactly one window
    (100, 4096, [0]),                        # short: one (padded) window
    (4097, 4096, [0, 1]),                    # one sample more: a final window at the end
    (8192, 4096, [0, 4096]),                 # fits exactly: no extra window
    (12000, 4096, [0, 4096, 7904]),          # tail window ends at the last sample
    (10000, 2000, [0, 2000, 4000, 5904]),    # overlap, then the tail
    (6096, 1000, [0, 1000, 2000]),           # 2000 + 4096 = 6096: the last fits exactly
])
def test_window_starts(length, stride, starts):
    got = ecg_convert.window_starts(length, stride)
    assert got.tolist() == starts
    assert got[-1] + N_SAMPLES >= length  # every sample is scored
    assert np.all(np.diff(got) <= stride)


def test_to_windows_cuts_the_converted_signal():
    signal = ramp_leads(12000)  # 30 s at 400 Hz: no resampling
    tracings, start_s, end_s = ecg_convert.to_windows(signal, 400, NAMES, "mV", stride=4096)
    assert tracings.shape == (3, N_SAMPLES, 12) and tracings.dtype == np.float32
    for window, start in enumerate([0, 4096, 7904]):
        np.testing.assert_allclose(tracings[window],
                                   signal[start:start + N_SAMPLES] * UNITS_PER_MV,
                                   rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(start_s, [0, 10.24, 19.76])
    np.testing.assert_allclose(end_s, [10.24, 20.48, 30.0])


def test_to_windows_of_a_short_record_is_the_centred_tracing():
    signal = ramp_leads(2000)  # 5 s
    tracings, start_s, end_s = ecg_convert.to_windows(signal, 400, NAMES, "mV")
    np.testing.assert_array_equal(tracings[0], ecg_convert.to_contract(signal, 400, NAMES, "mV"))
    assert tracings.shape == (1, N_SAMPLES, 12)
    assert start_s.tolist() == [0.0] and end_s.tolist() == [5.0]


def test_to_windows_resamples_first():
    tracings, _, end_s = ecg_convert.to_windows(ramp_leads(15000), 500, NAMES, "mV")
    assert len(tracings) == 3 and end_s[-1] == pytest.approx(30.0)  # 12000 samples at 400 Hz


@pytest.mark.parametrize(("seconds", "samples"), [(10.24, 4096), (5, 2000), (0.0025, 1)])
def test_stride_in_seconds(seconds, samples):
    assert ecg_convert.stride_samples(seconds) == samples


@pytest.mark.parametrize("seconds", [0, -1, 0.001, 10.5, float("nan"), float("inf")])
def test_bad_strides_are_refused(seconds):
    with pytest.raises(ECGInputError, match="--window-stride .*: the stride must be more than 0 "
                                            "and at most 10.24 s"):
        ecg_convert.stride_samples(seconds)


# --- convert --windows ------------------------------------------------------------------
def convert_cli(argv, capsys):
    from ecgcode.cli import datasets

    return run_main(datasets.main, ["convert", *map(str, argv)], capsys)


def test_convert_windows_writes_one_row_per_window(tmp_path, capsys):
    long = write_csv(tmp_path / "long.csv", 12000)
    short = write_csv(tmp_path / "short.csv", 2000, seed=1)
    out = tmp_path / "w.hdf5"
    status, stdout, err = convert_cli([long, short, "--fs", 400, "--units", "mV", "--windows",
                                       "-o", out, "-q"], capsys)
    assert status == 0, err
    assert "wrote 2 records as 4 windows" in stdout
    with h5py.File(out) as file:
        records = file["records"]
        assert file["tracings"].shape == (4, N_SAMPLES, 12)
        assert records["source"].asstr()[()].tolist() == [long] * 3 + [short]
        assert records["record"][()].tolist() == [0, 0, 0, 1]
        assert records["window"][()].tolist() == [0, 1, 2, 0]
        np.testing.assert_allclose(records["start_s"][()], [0, 10.24, 19.76, 0])
        np.testing.assert_allclose(records["end_s"][()], [10.24, 20.48, 30, 5])
        assert records["n_samples"][()].tolist() == [12000] * 3 + [2000]
        assert file["exam_id"][()].tolist() == [0, 1, 2, 3]
        np.testing.assert_allclose(file["tracings"][2], ramp_leads(12000)[7904:] * UNITS_PER_MV,
                                   rtol=1e-6, atol=1e-5)


def test_convert_windows_with_a_stride(tmp_path, capsys):
    long = write_csv(tmp_path / "long.csv", 10000)
    out = tmp_path / "w.hdf5"
    status, _, err = convert_cli([long, "--fs", 400, "--units", "mV", "--windows",
                                  "--window-stride", 5, "-o", out, "-q"], capsys)
    assert status == 0, err
    with h5py.File(out) as file:
        np.testing.assert_allclose(file["records/start_s"][()], [0, 5, 10, 14.76])


def test_convert_without_windows_is_unchanged(tmp_path, capsys):
    long = write_csv(tmp_path / "long.csv", 12000)
    out = tmp_path / "c.hdf5"
    status, stdout, _ = convert_cli([long, "--fs", 400, "--units", "mV", "-o", out, "-q"], capsys)
    assert status == 0 and stdout.startswith("wrote 1 records to ")
    with h5py.File(out) as file:
        assert file["tracings"].shape == (1, N_SAMPLES, 12)
        assert sorted(file["records"]) == ["codes", "derived_leads", "device", "format",
                                           "lead_names", "n_samples", "sampling_rate", "source",
                                           "statements", "units"]
        np.testing.assert_array_equal(
            file["tracings"][0], ecg_convert.to_contract(ramp_leads(12000), 400, NAMES, "mV"))


@pytest.mark.parametrize(("options", "message"), [
    (["--windows", "--window-stride", "0"], "--window-stride 0: the stride must be more than 0"),
    (["--windows", "--window-stride", "20"], "at most 10.24 s"),
    (["--window-stride", "5"], "--window-stride: only used with --windows"),
])
def test_convert_refuses_bad_strides(tmp_path, capsys, options, message):
    long = write_csv(tmp_path / "long.csv", 12000)
    out = tmp_path / "w.hdf5"
    status, _, err = convert_cli([long, "--fs", 400, "--units", "mV", *options, "-o", out],
                                 capsys)
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


@pytest.mark.skipif(not LONG_RECORD.is_file(), reason=f"{LONG_RECORD} is not in ../shared")
@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside wfdb
def test_a_long_cinc_record_keeps_its_labels_per_window(tmp_path, capsys):
    out = tmp_path / "w.hdf5"
    status, _, err = convert_cli([LONG_RECORD, "--windows", "-o", out, "-q"], capsys)
    assert status == 0, err
    with h5py.File(out) as file:
        assert len(file["tracings"]) == 12  # 115.2 s: 11 windows of 10.24 s and a final one
        assert file["records/start_s"][-1] == pytest.approx(115.2 - 10.24)
        assert file["labels"].shape == (12, len(CLASSES))
        assert (file["labels"][()] == file["labels"][0]).all()


# --- predict --windows ------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small functional model whose outputs depend on the input, saved as .keras."""
    keras.utils.set_random_seed(0)
    signal = keras.Input(shape=(N_SAMPLES, len(LEADS)))  # (batch, 4096, 12)
    x = keras.layers.Flatten()(keras.layers.Conv1D(4, 16, strides=64)(signal))  # (batch, 256)
    model = keras.Model(signal, keras.layers.Dense(len(CLASSES), activation="sigmoid")(x))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return str(path), model


def predict_cli(argv, capsys):
    from ecgcode.cli import predict

    return run_main(predict.main, [str(arg) for arg in argv], capsys)


def test_predict_windows_rows_and_summary(model_path, tmp_path, capsys):
    path, model = model_path
    long = write_csv(tmp_path / "long.csv", 12000)
    short = write_csv(tmp_path / "short.csv", 2000, seed=1)
    thresholds = tmp_path / "thresholds.json"
    values = dict(zip(CLASSES, [0.3, 0.5, 0.5, 0.5, 0.5, None]))
    thresholds.write_text(json.dumps(values))
    out = tmp_path / "scores.csv"
    status, _, err = predict_cli([long, short, path, "--fs", 400, "--units", "mV", "--windows",
                                  "--thresholds", thresholds, "--output-file", out, "--quiet"],
                                 capsys)
    assert status == 0, err
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["record", "window", "start_s", "end_s"]
    assert table["record"].tolist() == ["long.csv"] * 3 + ["short.csv"]
    assert table["window"].tolist() == [0, 1, 2, 0]
    np.testing.assert_allclose(table["start_s"], [0, 10.24, 19.76, 0])
    expected = model.predict(np.concatenate([
        ecg_convert.to_windows(ramp_leads(12000), 400, NAMES, "mV")[0],
        ecg_convert.to_windows(ramp_leads(2000, 1), 400, NAMES, "mV")[0]]), verbose=0)
    np.testing.assert_allclose(table[list(CLASSES)], expected, rtol=1e-4, atol=1e-5)

    summary = pd.read_csv(tmp_path / "scores_records.csv")
    assert summary["record"].tolist() == ["long.csv", "short.csv"]
    assert summary["n_windows"].tolist() == [3, 1]
    np.testing.assert_allclose(summary["duration_s"], [30, 5])
    for name in CLASSES:
        np.testing.assert_allclose(summary[f"{name}_max"], [expected[:3, CLASSES.index(name)].max(),
                                                            expected[3, CLASSES.index(name)]],
                                   rtol=1e-4, atol=1e-6)
    for name, threshold in values.items():
        share = summary[f"{name}_share"]
        if threshold is None:
            assert share.isna().all()
            continue
        positive = expected[:, CLASSES.index(name)] > threshold
        np.testing.assert_allclose(share, [positive[:3].mean(), positive[3]])
        assert table[f"{name}_pred"].tolist() == positive.astype(int).tolist()


def test_predict_windows_of_a_converted_file_match_those_converted_on_the_fly(
        model_path, tmp_path, capsys):
    path, _ = model_path
    long = write_csv(tmp_path / "long.csv", 10000)
    options = ["--windows", "--window-stride", 5]
    converted = tmp_path / "w.hdf5"
    assert convert_cli([long, "--fs", 400, "--units", "mV", *options, "-o", converted, "-q"],
                       capsys)[0] == 0
    for inputs, out in (([long, "--fs", 400, "--units", "mV"], "a.csv"), ([converted], "b.csv")):
        status, _, err = predict_cli([inputs[0], path, *inputs[1:], *options, "--output-file",
                                      tmp_path / out, "--quiet"], capsys)
        assert status == 0, err
    first, second = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(first, second)
    assert first["window"].tolist() == [0, 1, 2, 3]
    assert pd.read_csv(tmp_path / "b_records.csv")["n_windows"].tolist() == [4]


def test_predict_windows_of_plain_hdf5_rows(model_path, tmp_path, capsys):
    path, _ = model_path
    tracings = write_hdf5(tmp_path / "exams.hdf5", 3)
    out = tmp_path / "scores.csv"
    status, _, err = predict_cli([tracings, path, "--windows", "--output-file", out, "--quiet"],
                                 capsys)
    assert status == 0, err
    table = pd.read_csv(out)
    assert table["record"].tolist() == ["exams.hdf5[0]", "exams.hdf5[1]", "exams.hdf5[2]"]
    assert table["window"].tolist() == [0, 0, 0] and table["end_s"].tolist() == [10.24] * 3
    summary = pd.read_csv(tmp_path / "scores_records.csv")
    assert summary["n_windows"].tolist() == [1, 1, 1]
    assert not any(column.endswith("_pred") for column in table.columns)  # no thresholds
    assert summary[[f"{name}_share" for name in CLASSES]].isna().all().all()
    np.testing.assert_allclose(summary[[f"{name}_max" for name in CLASSES]],
                               table[list(CLASSES)], rtol=1e-6)


@pytest.mark.parametrize(("options", "message"), [
    (["--windows", "--window-stride", "-1"], "--window-stride -1: the stride must be more than 0"),
    (["--window-stride", "5"], "--window-stride: only used with --windows"),
    (["--windows", "--output-file", "{tmp}/scores.npy"], "fix: name the output file .csv"),
])
def test_predict_refuses_bad_window_options(model_path, tmp_path, capsys, options, message):
    path, _ = model_path
    long = write_csv(tmp_path / "long.csv", 12000)
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    status, _, err = predict_cli([long, path, "--fs", 400, "--units", "mV", *options], capsys)
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.glob("scores*"))


def test_predict_without_windows_is_unchanged(model_path, tmp_path, capsys):
    path, model = model_path
    long = write_csv(tmp_path / "long.csv", 12000)
    out = tmp_path / "scores.csv"
    status, _, err = predict_cli([long, path, "--fs", 400, "--units", "mV", "--output-file", out,
                                  "--quiet"], capsys)
    assert status == 0, err
    table = pd.read_csv(out)
    assert list(table.columns) == ["record", "row", *CLASSES]
    expected = model.predict(ecg_convert.to_contract(ramp_leads(12000), 400, NAMES, "mV")[None],
                             verbose=0)
    np.testing.assert_allclose(table[list(CLASSES)], expected, rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "scores_records.csv").exists()
