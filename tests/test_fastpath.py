"""predict.py's fast path: an ONNX export run by onnxruntime, without TensorFlow or Keras.

The equality tests compare the ONNX path's output table with the Keras path's on the same
inputs; the import test runs predict.py in a fresh process and lists what it imported.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SHARED, run_main, small_model_and_export

from ecgcode.cli import model as model_module
from ecgcode.cli import predict
from ecgcode.common import CLASSES, PAPER_THRESHOLDS
from ecgcode.inference import outputs
from ecgcode.model import runtimes
from ecgcode.model.thresholds import binarize

# --- predict.py with an ONNX export ------------------------------------------------
FORMATS = SHARED / "ecg-samples" / "formats"
CLINICAL = [FORMATS / "ge-muse" / "guangxi_teaching_sinus_rhythm.xml",
            FORMATS / "hl7-aecg" / "Example_aECG.xml",
            FORMATS / "dicom" / "waveform_ecg.dcm",
            FORMATS / "scp-ecg" / "Example.scp"]
needs_shared = pytest.mark.skipif(not FORMATS.is_dir(),
                                  reason=f"the example clinical files are not in {FORMATS}")
FORBIDDEN = ("tensorflow", "keras", "jax", "tf_keras", "matplotlib")
TOLERANCE = 1e-4


def predict_csv(inputs, model, out, capsys, *options):
    status, _, err = run_main(predict.main, [*map(str, inputs), str(model), "--output-file",
                                             str(out), "--quiet", *options], capsys)
    assert status == 0, err
    return pd.read_csv(out)


def assert_same_table(onnx_table, keras_table):
    assert list(onnx_table.columns) == list(keras_table.columns)
    numbers = list(CLASSES)
    pd.testing.assert_frame_equal(onnx_table.drop(columns=numbers),
                                  keras_table.drop(columns=numbers))
    np.testing.assert_allclose(onnx_table[numbers], keras_table[numbers], rtol=0,
                               atol=TOLERANCE)
    assert keras_table[numbers].std().max() > 100 * TOLERANCE  # outputs depend on inputs


def test_onnx_gives_the_keras_table_on_hdf5(small_models, make_hdf5, tmp_path, capsys):
    tracings = make_hdf5("exams.hdf5", 5)
    keras_table = predict_csv([tracings], small_models[0], tmp_path / "keras.csv", capsys,
                              "--paper-thresholds")
    onnx_table = predict_csv([tracings], small_models[1], tmp_path / "onnx.csv", capsys,
                             "--paper-thresholds", "--batch-size", "2")
    assert "exam_id" in onnx_table and "AF_pred" in onnx_table
    assert_same_table(onnx_table, keras_table)
    npy = tmp_path / "onnx.npy"
    predict_csv([tracings], small_models[1], tmp_path / "again.csv", capsys)
    assert run_main(predict.main, [tracings, small_models[1], "--output-file", str(npy), "--quiet"],
                    capsys)[0] == 0
    np.testing.assert_allclose(np.load(npy), keras_table[list(CLASSES)], atol=TOLERANCE)


def test_onnx_path_shows_progress_unless_quiet(small_models, make_hdf5, tmp_path, capsys):
    tracings = make_hdf5("many.hdf5", 5)
    argv = [tracings, small_models[1], "--output-file", str(tmp_path / "p.csv"), "--batch-size", "2"]
    status, _, err = run_main(predict.main, argv, capsys)
    assert status == 0 and "predict: 100%" in err and "5/5" in err, err
    status, _, err = run_main(predict.main, [*argv, "--quiet"], capsys)
    assert status == 0 and "predict:" not in err, err


@needs_shared
def test_onnx_gives_the_keras_table_on_clinical_files(small_models, tmp_path, capsys):
    keras_table = predict_csv(CLINICAL, small_models[0], tmp_path / "keras.csv", capsys)
    onnx_table = predict_csv(CLINICAL, small_models[1], tmp_path / "onnx.csv", capsys)
    assert list(onnx_table["record"]) == [path.name for path in CLINICAL]
    assert_same_table(onnx_table, keras_table)


def imported_modules(argv, cwd):
    """Run predict.py's main in a fresh interpreter; return (status, forbidden modules)."""
    code = ("import json, sys\nfrom ecgcode.cli.predict import main\nstatus = main(sys.argv[1:])\n"
            f"print(json.dumps([status, sorted(m for m in sys.modules if m in {FORBIDDEN!r} or "
            f"m.split('.')[0] in {FORBIDDEN!r})]))")
    result = subprocess.run([sys.executable, "-c", code, *map(str, argv)], check=False, cwd=cwd,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_onnx_path_imports_no_tensorflow_keras_or_jax(small_models, make_hdf5, tmp_path):
    inputs = [make_hdf5("exams.hdf5", 2)]
    if FORMATS.is_dir():
        inputs.append(CLINICAL[0])  # a clinical file is read and resampled (500 Hz) too
    status, forbidden = imported_modules([*inputs, small_models[1], "--output-file",
                                          tmp_path / "out.csv", "--paper-thresholds"],
                                         tmp_path)
    assert status == 0
    assert forbidden == []


@pytest.mark.slow
def test_keras_path_is_still_keras(small_models, make_hdf5, tmp_path):
    status, forbidden = imported_modules([make_hdf5("exams.hdf5", 1), small_models[0],
                                          "--output-file", tmp_path / "out.npy"], tmp_path)
    assert status == 0 and "tensorflow" in forbidden  # the check above can fail


# --- A run folder with an ONNX export of its best model ----------------------------------
@pytest.fixture
def run_with_export(small_models, tmp_path, capsys):
    """A run folder: the small model as model_best.keras and its export model_best.onnx."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(small_models[0], run / "model_best.keras")
    assert run_main(model_module.main, ["export", str(run), str(run / "model_best"),
                                        "--formats", "onnx", "--no-check"], capsys)[0] == 0
    return run


def test_run_folder_runs_its_export_without_tensorflow(run_with_export, make_hdf5, tmp_path,
                                                       capsys):
    tracings = make_hdf5("exams.hdf5", 3)
    source = json.loads(runtimes.read_metadata(run_with_export / "model_best.onnx")
                        ["source_model"])
    assert source["file"] == "model_best.keras" and len(source["sha256"]) == 64
    status, forbidden = imported_modules([tracings, run_with_export, "--output-file",
                                          tmp_path / "out.csv"], tmp_path)
    assert status == 0 and forbidden == []
    keras_table = predict_csv([tracings], run_with_export / "model_best.keras",
                              tmp_path / "keras.csv", capsys)
    assert_same_table(pd.read_csv(tmp_path / "out.csv"), keras_table)


def test_run_folder_with_a_stale_export_runs_keras(run_with_export, make_hdf5, tmp_path,
                                                   capsys):
    tracings = make_hdf5("exams.hdf5", 3)
    newer, _ = small_model_and_export(tmp_path / "newer", seed=1)  # other weights
    shutil.copy(newer, run_with_export / "model_best.keras")
    status, _, err = run_main(predict.main, [tracings, str(run_with_export), "--output-file",
                                             str(tmp_path / "run.csv"), "--quiet"], capsys)
    assert status == 0 and "has changed since; running" in err, err
    expected = predict_csv([tracings], newer, tmp_path / "newer.csv", capsys)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run.csv"), expected)


def test_run_folder_explains_with_keras_despite_its_export(run_with_export, make_hdf5, tmp_path,
                                                           capsys):
    status, _, err = run_main(predict.main, [make_hdf5("x.hdf5", 1), str(run_with_export),
                                             "--output-file", str(tmp_path / "e.csv"),
                                             "--explain", "0", "--explain-steps", "2",
                                             "--quiet"], capsys)
    assert status == 0, err
    assert (tmp_path / "e_saliency.npy").is_file()


@pytest.mark.parametrize("options, message", [
    (["--explain", "0"], "--explain: needs the Keras model"),
    (["--precision", "bfloat16"], "--precision bfloat16: needs a Keras model"),
])
def test_keras_only_options_with_onnx_are_one_line_errors(small_models, make_hdf5, tmp_path, capsys,
                                                          options, message):
    status, _, err = run_main(predict.main, [make_hdf5("x.hdf5", 1), small_models[1], "--output-file",
                                             str(tmp_path / "o.csv"), *options], capsys)
    assert status == 2
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "o.csv").exists()


def test_damaged_or_missing_onnx_is_a_one_line_error(make_hdf5, tmp_path, capsys):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"not a model")
    for model, message in ((damaged, "not a readable ONNX model"),
                           (tmp_path / "missing.onnx", "ONNX model not found")):
        status, _, err = run_main(predict.main, [make_hdf5("x.hdf5", 1), str(model),
                                                 "--output-file", str(tmp_path / "o.csv")],
                                  capsys)
        assert status == 2 and message in err and err.count("\n") == 1


def test_thresholds_stored_in_the_export_decide(tmp_path, make_hdf5, capsys):
    pytest.importorskip("tf2onnx")
    stored = {"1dAVb": 0.5, "RBBB": 0.0, "LBBB": 1.0, "SB": None, "AF": 0.5, "ST": 0.5}
    _, onnx_path = small_model_and_export(tmp_path, thresholds=stored)
    assert json.loads(runtimes.read_metadata(onnx_path)["thresholds"]) == stored
    table = predict_csv([make_hdf5("x.hdf5", 3)], onnx_path, tmp_path / "o.csv", capsys)
    assert list(table["RBBB_pred"]) == [1, 1, 1] and list(table["LBBB_pred"]) == [0, 0, 0]
    assert table["SB_pred"].isna().all()
    expected = (table["AF"] > 0.5).astype(int)
    assert list(table["AF_pred"]) == list(expected)
    paper = predict_csv([make_hdf5("x.hdf5", 3)], onnx_path, tmp_path / "p.csv", capsys,
                        "--paper-thresholds")  # an option overrides the stored ones
    assert list(paper["LBBB_pred"]) == list((paper["LBBB"] > PAPER_THRESHOLDS["LBBB"]).astype(int))


def test_model_export_of_a_run_folder_stores_its_thresholds(small_models, tmp_path, capsys):
    pytest.importorskip("tf2onnx")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(small_models[0], run / "model_best.keras")
    per_class = {name: {"threshold": 0.25 + 0.1 * k, "f1": 0.5}
                 for k, name in enumerate(CLASSES)}
    (run / "thresholds.json").write_text(json.dumps({"classes": per_class}))
    status, _, err = run_main(model_module.main, ["export", str(run), str(tmp_path / "ecg"),
                                                  "--formats", "onnx", "--no-check"], capsys)
    assert status == 0, err
    stored = json.loads(runtimes.read_metadata(tmp_path / "ecg.onnx")["thresholds"])
    assert stored == {name: value["threshold"] for name, value in per_class.items()}


def foreign_onnx(path, input_shape, n_outputs):
    """An ONNX model written by another tool: no metadata, other names (mean over time)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *input_shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", n_outputs])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=0),  # (n, 12)
             helper.make_node("Slice", ["mean", "start", "end", "axis"], ["y0"]),
             helper.make_node("Sigmoid", ["y0"], ["y"])]
    constants = [axes, helper.make_tensor("start", TensorProto.INT64, [1], [0]),
                 helper.make_tensor("end", TensorProto.INT64, [1], [n_outputs]),
                 helper.make_tensor("axis", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "foreign", [x], [y], initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def test_foreign_onnx_without_metadata_gets_default_names_and_a_warning(make_hdf5, tmp_path,
                                                                          capsys):
    pytest.importorskip("onnxruntime")
    model = foreign_onnx(tmp_path / "foreign.onnx", (4096, 12), 3)
    status, _, err = run_main(predict.main, [make_hdf5("x.hdf5", 2), model, "--output-file",
                                             str(tmp_path / "o.csv"), "--quiet"], capsys)
    assert status == 0 and "stores no class names" in err
    table = pd.read_csv(tmp_path / "o.csv")
    assert list(table.columns) == ["exam_id", "class_0", "class_1", "class_2"]


def test_onnx_of_another_input_shape_is_a_one_line_error(make_hdf5, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = foreign_onnx(tmp_path / "other.onnx", (1000, 12), 6)
    status, _, err = run_main(predict.main, [make_hdf5("x.hdf5", 1), model, "--output-file",
                                             str(tmp_path / "o.csv")], capsys)
    assert status == 2 and "predict.py needs (batch, 4096, 12)" in err and err.count("\n") == 1


# --- The .csv without pandas ----------------------------------------------------------
def pandas_predictions(probabilities, exam_ids, thresholds, classes, names):
    """The table as predict.py built it with pandas (until the csv module wrote it)."""
    frame = pd.DataFrame()
    if names is not None:
        frame["record"] = list(names)
    if exam_ids is not None:
        frame["exam_id"] = np.asarray(exam_ids)
    else:
        frame["row"] = np.arange(len(probabilities))
    for column, name in enumerate(classes):
        frame[name] = probabilities[:, column]
    for column, name in enumerate(classes if thresholds is not None else ()):
        if thresholds[name] is None:
            frame[f"{name}_pred"] = pd.array([pd.NA] * len(probabilities), dtype="Int8")
        else:
            positive = binarize(probabilities[:, column], thresholds[name])
            frame[f"{name}_pred"] = positive.astype(np.int8)
    return frame


@pytest.mark.parametrize("exam_ids", [None, np.array([7, 8, 9], np.int64),
                                      np.array([1.5, np.nan, 3e12])])
@pytest.mark.parametrize("with_names, thresholds", [
    (False, None),
    (True, {"a": 0.5, "b": None}),
    (True, {"a": 0.0, "b": 1.0}),
])
def test_csv_is_written_as_pandas_writes_it(tmp_path, exam_ids, with_names, thresholds):
    probabilities = np.array([[0.1, 1 / 3], [np.nan, 0.999999], [np.inf, 1e-12]],
                             dtype=np.float32)  # (3, 2)
    names = ['plain.xml', 'with,comma "and" quotes.xml', "naïve\u00e9.dcm"] if with_names else None
    out = tmp_path / "o.csv"
    outputs.write_predictions(out, probabilities, exam_ids, thresholds, ("a", "b"), names)
    expected = pandas_predictions(probabilities, exam_ids, thresholds, ("a", "b"), names)
    expected.to_csv(tmp_path / "pandas.csv", index=False, float_format="%.9g")
    assert out.read_bytes() == (tmp_path / "pandas.csv").read_bytes()
