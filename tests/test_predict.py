"""Tests of predict.py: outputs, original command form, shards, run folders, bad inputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import run_main as run_script
from conftest import synthetic_tracings, write_hdf5

from ecgcode.cli import predict
from ecgcode.common import CLASSES, PAPER_THRESHOLDS, ECGInputError
from ecgcode.inference import outputs
from ecgcode.model import modelfiles, network
from ecgcode.model.thresholds import FALLBACK_THRESHOLD, fill_missing, read_thresholds

keras = pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[1]


# --- Helpers -----------------------------------------------------------------------
def write_tracings(path, n, seed, exam_ids=True, transpose=False, scale=1.0):
    """A small CODE-style file of conftest's synthetic ECGs; returns the signals written.

    ``exam_ids``: True (1000 * (seed + 1) + row), False (none) or an array.
    """
    signals = synthetic_tracings(n, seed) * np.float32(scale)  # (n, 4096, 12)
    if exam_ids is True:
        exam_ids = np.arange(n) + 1000 * (seed + 1)
    data = signals.transpose(0, 2, 1) if transpose else signals
    write_hdf5(path, n, data=data, exam_ids=exam_ids)
    return signals


def tiny_model(input_shape=(4096, 12), n_outputs=6, seed=0):
    """A functional model small enough for fast tests, with input-dependent outputs."""
    keras.utils.set_random_seed(seed)
    signal = keras.Input(shape=input_shape, name="signal")  # (batch, 4096, 12)
    x = keras.layers.Conv1D(4, 16, strides=64)(signal)  # (batch, 64, 4)
    x = keras.layers.Flatten()(x)  # (batch, 256)
    outputs = keras.layers.Dense(n_outputs, activation="sigmoid")(x)  # (batch, 6)
    return keras.Model(signal, outputs)


def run_main(argv, capsys):
    """Run predict.main as the command line does; return (status, stdout, stderr)."""
    return run_script(predict.main, argv, capsys)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny model, saved as .keras and as legacy .h5 and .hdf5."""
    folder = tmp_path_factory.mktemp("models")
    model = tiny_model()
    paths = {}
    for extension in (".keras", ".h5", ".hdf5"):
        paths[extension] = str(folder / f"tiny{extension}")
        model.save(paths[extension])
    return model, paths


@pytest.fixture
def exams(tmp_path):
    """One file of 5 exams; returns (path, signals)."""
    path = str(tmp_path / "exams.hdf5")
    return path, write_tracings(path, 5, seed=1)


# --- Outputs -----------------------------------------------------------------------
@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_npy_equals_model_predict(models, exams, tmp_path, capsys, extension):
    model, paths = models
    path, signals = exams
    out = tmp_path / "out.npy"
    status, _, err = run_main([path, paths[extension], "--output-file", str(out)], capsys)
    assert status == 0, err
    predicted = np.load(out)
    assert predicted.dtype == np.float32 and predicted.shape == (5, 6)
    np.testing.assert_allclose(predicted, model.predict(signals, verbose=0), rtol=1e-5, atol=1e-6)


def test_csv_agrees_with_npy_and_thresholds(models, exams, tmp_path, capsys):
    _, paths = models
    path, _ = exams
    npy, csv = tmp_path / "p.npy", tmp_path / "p.csv"
    for out in (npy, csv):
        argv = [path, paths[".keras"], "--output-file", str(out), "--paper-thresholds", "--quiet"]
        assert run_main(argv, capsys)[0] == 0
    scores = np.load(npy)
    frame = pd.read_csv(csv)
    assert list(frame.columns) == ["exam_id", *CLASSES, *(f"{c}_pred" for c in CLASSES)]
    assert frame["exam_id"].tolist() == list(range(2000, 2005))
    np.testing.assert_array_equal(frame[list(CLASSES)].to_numpy(np.float32), scores)
    for column, name in enumerate(CLASSES):
        expected = (scores[:, column] > PAPER_THRESHOLDS[name]).astype(int)
        np.testing.assert_array_equal(frame[f"{name}_pred"].to_numpy(), expected)


def test_csv_without_exam_ids_or_thresholds_uses_row_index(models, tmp_path, capsys):
    _, paths = models
    path = str(tmp_path / "noids.hdf5")
    write_tracings(path, 3, seed=2, exam_ids=False)
    out = tmp_path / "p.csv"
    assert run_main([path, paths[".keras"], "--output_file", str(out)], capsys)[0] == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["row", *CLASSES]
    assert frame["row"].tolist() == [0, 1, 2]


@pytest.mark.slow
def test_original_command_form(models, exams, tmp_path):
    """`python predict.py tracings.hdf5 model.hdf5 --output_file out.npy`, as in the study."""
    model, paths = models
    path, signals = exams
    out = tmp_path / "out.npy"
    result = subprocess.run(
        [sys.executable, str(REPO / "predict.py"), path, paths[".hdf5"], "--output_file", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(out), model.predict(signals, verbose=0), atol=1e-6)


def test_multi_shard_keeps_order_and_ids(models, tmp_path, capsys):
    model, paths = models
    shards, signals, ids = [], [], []
    for seed, (n, first_id) in enumerate([(3, 70), (1, 5), (4, 900)]):
        shard = str(tmp_path / f"exams_part{seed}.hdf5")
        shard_ids = np.arange(first_id, first_id + n)
        signals.append(write_tracings(shard, n, seed=seed, exam_ids=shard_ids))
        shards.append(shard)
        ids.extend(shard_ids.tolist())
    out = tmp_path / "p.csv"
    argv = [*shards, paths[".keras"], "--output-file", str(out), "--batch-size", "3"]
    assert run_main(argv, capsys)[0] == 0
    frame = pd.read_csv(out)
    assert frame["exam_id"].tolist() == ids
    expected = model.predict(np.concatenate(signals), verbose=0)
    np.testing.assert_allclose(frame[list(CLASSES)].to_numpy(), expected, rtol=1e-5, atol=1e-6)


def test_run_folder_uses_best_model_and_thresholds(models, exams, tmp_path, capsys):
    model, _ = models
    path, signals = exams
    run = tmp_path / "run1"
    run.mkdir()
    model.save(run / "model_best.keras")
    # train.py's format; a class without positive validation exams has no threshold.
    classes = {name: {"threshold": 0.5, "precision": 0.9} for name in CLASSES}
    classes["ST"] = {"threshold": None, "precision": None}
    content = {"epoch": 3, "rule": "positive when score > threshold", "classes": classes}
    (run / "thresholds.json").write_text(json.dumps(content))
    out = tmp_path / "p.csv"
    status, _, err = run_main([path, str(run), "--output-file", str(out)], capsys)
    assert status == 0
    assert "warning: no threshold for ST" in err
    frame = pd.read_csv(out)
    expected = model.predict(signals, verbose=0)
    np.testing.assert_allclose(frame[list(CLASSES)].to_numpy(), expected, atol=1e-6)
    decided = [f"{c}_pred" for c in CLASSES[:-1]]
    np.testing.assert_array_equal(frame[decided].to_numpy(), expected[:, :-1] > 0.5)
    assert frame["ST_pred"].isna().all()


def test_load_thresholds_formats(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({name: 0.25 for name in CLASSES}))
    assert read_thresholds(str(plain)) == {name: 0.25 for name in CLASSES}
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"thresholds": {name: {"threshold": 0.1} for name in CLASSES}}))
    assert read_thresholds(str(nested)) == {name: 0.1 for name in CLASSES}
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"AF": 0.3}))
    with pytest.raises(ECGInputError, match="1dAVb"):
        read_thresholds(str(partial))


def test_a_null_threshold_is_filled_by_one_rule():
    notes = []
    values, filled = fill_missing({"A": 0.2, "B": None}, ("A", "B", "C"), say=notes.append)
    assert values == {"A": 0.2, "B": FALLBACK_THRESHOLD, "C": FALLBACK_THRESHOLD}
    assert notes == [f"note: no validation threshold for B, C; using {FALLBACK_THRESHOLD}"]
    assert filled == ["B", "C"]


def test_plot_option_draws_sheet(models, exams, tmp_path, capsys):
    _, paths = models
    path, _ = exams
    out = tmp_path / "p.npy"
    argv = [path, paths[".keras"], "--output-file", str(out), "--plot", "4", "--quiet"]
    assert run_main(argv, capsys)[0] == 0
    sheet = tmp_path / "p_row4.png"
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_end_to_end_with_paper_model(exams, tmp_path, capsys):
    path, signals = exams
    paper = network.get_model()
    keras_path, _ = modelfiles.save_model(paper, tmp_path / "paper")
    out = tmp_path / "p.npy"
    argv = [path, keras_path, "--output-file", str(out), "--quiet"]
    assert run_main(argv, capsys)[0] == 0
    expected = paper.predict(signals, verbose=0)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-5)


# --- Bad inputs --------------------------------------------------------------------
def assert_one_line_error(status, err, *fragments):
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_tracings_file(models, tmp_path, capsys):
    _, paths = models
    missing = str(tmp_path / "nope.hdf5")
    status, _, err = run_main([missing, paths[".keras"], "--output-file", str(tmp_path / "o.npy")],
                              capsys)
    assert_one_line_error(status, err, "nope.hdf5")


def test_transposed_tracings(models, tmp_path, capsys):
    _, paths = models
    path = str(tmp_path / "transposed.hdf5")
    write_tracings(path, 2, seed=0, transpose=True)
    status, _, err = run_main([path, paths[".keras"], "--output-file", str(tmp_path / "o.npy")],
                              capsys)
    assert_one_line_error(status, err, "transposed.hdf5")


def test_model_of_wrong_input_shape(exams, tmp_path, capsys):
    path, _ = exams
    model_path = str(tmp_path / "wrong.keras")
    tiny_model((2048, 12), 6).save(model_path)
    status, _, err = run_main([path, model_path, "--output-file", str(tmp_path / "o.npy")], capsys)
    assert_one_line_error(status, err, "wrong.keras")


# --- Class names -------------------------------------------------------------------
def test_csv_columns_come_from_the_classes_stored_in_the_model(exams, tmp_path, capsys):
    path, _ = exams
    stem = tmp_path / "three"
    keras_path, h5_path = modelfiles.save_model(tiny_model(n_outputs=3), stem,
                                                  classes=("NORM", "MI", "CD"))
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"NORM": 0.5, "MI": 0.5, "CD": 0.5}))
    for model_path in (keras_path, h5_path):
        out = tmp_path / "o.csv"
        status, _, err = run_main([path, model_path, "--output-file", str(out),
                                   "--thresholds", str(thresholds), "--quiet"], capsys)
        assert status == 0, err
        columns = list(pd.read_csv(out).columns)
        assert columns == ["exam_id", "NORM", "MI", "CD", "NORM_pred", "MI_pred", "CD_pred"]


def test_unnamed_model_gets_class_numbers_with_a_warning_or_given_names(exams, tmp_path,
                                                                         capsys):
    path, _ = exams
    model_path = str(tmp_path / "five.keras")
    tiny_model(n_outputs=5).save(model_path)  # plain Keras: no class names stored
    out = tmp_path / "o.csv"
    status, _, err = run_main([path, model_path, "--output-file", str(out), "--quiet"], capsys)
    assert status == 0 and "stores no class names" in err and "--classes" in err
    assert list(pd.read_csv(out).columns)[1:] == [f"class_{k}" for k in range(5)]
    status, _, err = run_main([path, model_path, "--output-file", str(out), "--quiet",
                               "--classes", "a,b,c,d,e"], capsys)
    assert status == 0 and "warning" not in err
    assert list(pd.read_csv(out).columns)[1:] == list("abcde")
    status, _, err = run_main([path, model_path, "--output-file", str(out), "--quiet",
                               "--classes", "a,b"], capsys)
    assert_one_line_error(status, err, "--classes", "5 outputs")


def test_paper_thresholds_refused_for_other_classes(exams, tmp_path, capsys):
    path, _ = exams
    keras_path, _ = modelfiles.save_model(tiny_model(n_outputs=2), tmp_path / "two",
                                            classes=("A", "B"))
    status, _, err = run_main([path, keras_path, "--output-file", str(tmp_path / "o.csv"),
                               "--paper-thresholds"], capsys)
    assert_one_line_error(status, err, "--paper-thresholds", "A,B")


def test_tracings_given_as_model(exams, tmp_path, capsys):
    path, _ = exams
    other = str(tmp_path / "more.hdf5")
    write_tracings(other, 2, seed=3)
    status, _, err = run_main([path, other], capsys)
    assert_one_line_error(status, err, "more.hdf5", "last argument")


@pytest.mark.parametrize("argv", [["--output", "o.npy"], ["--bogus"]])
def test_unknown_or_abbreviated_option_is_an_error(models, exams, capsys, argv):
    _, paths = models
    path, _ = exams
    status, _, err = run_main([path, paths[".keras"], *argv], capsys)
    assert status == 2
    assert "unrecognized arguments" in err


def test_bad_output_extension_and_plot_row(models, exams, tmp_path, capsys):
    _, paths = models
    path, _ = exams
    status, _, err = run_main([path, paths[".keras"], "--output-file", "o.txt"], capsys)
    assert_one_line_error(status, err, "o.txt", ".npy or .csv")
    argv = [path, paths[".keras"], "--output-file", str(tmp_path / "o.npy"), "--plot", "5"]
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, "--plot 5")
    assert not (tmp_path / "o.npy").exists()


def test_existing_output_survives_failures(models, exams, tmp_path, capsys, monkeypatch):
    _, paths = models
    path, _ = exams
    for name in ("o.npy", "o.csv"):
        out = tmp_path / name
        out.write_bytes(b"earlier results")
        bad_model = str(tmp_path / "missing.keras")
        status, _, err = run_main([path, bad_model, "--output-file", str(out)], capsys)
        assert_one_line_error(status, err, "missing.keras")
        assert out.read_bytes() == b"earlier results"

    def crash_while_writing(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outputs, "write_csv_rows", crash_while_writing)
    out = tmp_path / "o.csv"
    with pytest.raises(RuntimeError, match="disk full"):
        predict.main([path, paths[".keras"], "--output-file", str(out), "--quiet"])
    assert out.read_bytes() == b"earlier results"
    assert sorted(os.listdir(tmp_path)) == ["exams.hdf5", "o.csv", "o.npy"]


# --- Warnings ----------------------------------------------------------------------
@pytest.mark.parametrize("scale, fragment", [(0.2, "about 5x too small"),
                                             (100.0, "about 100x too large")])
def test_scale_warning(models, tmp_path, capsys, scale, fragment):
    _, paths = models
    path = str(tmp_path / "scaled.hdf5")
    write_tracings(path, 3, seed=4, scale=scale)
    argv = [path, paths[".keras"], "--output-file", str(tmp_path / "o.npy"), "--quiet"]
    status, _, err = run_main(argv, capsys)
    assert status == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and fragment in warnings[0] and "scaled.hdf5" in warnings[0]


def test_no_warning_on_ecg_scale_and_nan_exam_reported(models, tmp_path, capsys):
    _, paths = models
    path = str(tmp_path / "nan.hdf5")
    signals = write_tracings(path, 4, seed=5)
    with h5py.File(path, "a") as handle:
        signals[2, 100:300, 3] = np.nan
        handle["tracings"][2] = signals[2]
    out = tmp_path / "o.npy"
    status, _, err = run_main([path, paths[".keras"], "--output-file", str(out), "--quiet"], capsys)
    assert status == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "exam_id 6002" in warnings[0]
    predicted = np.load(out)
    assert np.isnan(predicted[2]).all() and np.isfinite(np.delete(predicted, 2, axis=0)).all()


def test_run_folder_without_model(exams, tmp_path, capsys):
    path, _ = exams
    run = tmp_path / "empty_run"
    run.mkdir()
    status, _, err = run_main([path, str(run)], capsys)
    assert_one_line_error(status, err, "empty_run", "model_best.keras")


# --- Precision ----------------------------------------------------------------------
def test_bfloat16_precision_is_opt_in_and_close_to_float32(models, exams, tmp_path, capsys):
    _, paths = models
    path, _ = exams
    outputs_of = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.npy"
        status, _, err = run_main([path, paths[".keras"], "--output-file", str(out), "--quiet",
                                   "--precision", precision], capsys)
        assert status == 0, err
        outputs_of[precision] = np.load(out)
    assert outputs_of["bfloat16"].dtype == np.float32
    difference = np.abs(outputs_of["bfloat16"] - outputs_of["float32"]).max()
    assert 0 < difference < 0.02  # bfloat16 really computed, and close


def test_a_model_saved_in_mixed_precision_predicts_in_float32_by_default(models, exams,
                                                                          tmp_path, capsys):
    from ecgcode.model.precision import with_policy

    model, paths = models
    path, _ = exams
    mixed_file = tmp_path / "mixed.keras"
    with_policy(model, "mixed_bfloat16").save(mixed_file)  # as a resume checkpoint is saved
    outputs = {}
    for name, model_file in (("mixed", mixed_file), ("float32", paths[".keras"])):
        out = tmp_path / f"{name}.npy"
        status, _, err = run_main([path, str(model_file), "--output-file", str(out), "--quiet"],
                                  capsys)
        assert status == 0, err
        outputs[name] = np.load(out)
    np.testing.assert_array_equal(outputs["mixed"], outputs["float32"])


def test_with_policy_keeps_the_output_layer_in_float32(models):
    from ecgcode.model.precision import native_bfloat16_cpu, with_policy

    model, _ = models
    mixed = with_policy(model, "mixed_bfloat16")
    assert [layer.compute_dtype for layer in mixed.layers[1:-1]] == ["bfloat16"] * (
        len(mixed.layers) - 2)
    assert mixed.layers[-1].compute_dtype == "float32"
    assert with_policy(with_policy(mixed, "float32"), "float32").layers[1].compute_dtype == "float32"
    assert native_bfloat16_cpu({"avx2", "avx512_bf16"}) == "avx512_bf16"
    assert native_bfloat16_cpu({"avx2", "fma"}) is None
