"""Exports for serving (ONNX, TFLite, SavedModel): same predictions, metadata, CLI."""

import os

import keras
import numpy as np
import pytest
from conftest import distinctive_paper_model

from ecgcode.cli import model as model_module
from ecgcode.common import CLASSES, INPUT_SHAPE, UNITS_PER_MV, ECGInputError, run_cli
from ecgcode.data.synthetic.generate import generate
from ecgcode.model import export, runtimes
from ecgcode.model.modelfiles import save_model

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

TOLERANCE = 1e-4


def tiny_model(n_classes=6):
    signal = keras.Input(INPUT_SHAPE, name="signal")  # (batch, 4096, 12)
    x = keras.layers.Conv1D(4, 16, strides=64)(signal)  # (batch, 64, 4)
    x = keras.layers.Flatten()(x)  # (batch, 256)
    out = keras.layers.Dense(n_classes, activation="sigmoid", dtype="float32")(x)
    return keras.Model(signal, out)


@pytest.fixture(scope="module")
def paper_model():
    return distinctive_paper_model(5)


@pytest.fixture(scope="module")
def ecgs():
    realistic = generate(3, seed=2)[0]  # (3, 4096, 12) synthetic ECGs at UNITS_PER_MV
    noise = np.random.default_rng(0).normal(0, 1, (2, *INPUT_SHAPE)).astype("float32")
    return np.concatenate([realistic, noise])  # (5, 4096, 12)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, paper_model):
    return export.export_model(paper_model, tmp_path_factory.mktemp("export") / "ecg")


@pytest.mark.slow
def test_all_three_exports_are_written(exported):
    assert exported == {
        "onnx": exported["saved_model"] + ".onnx",
        "tflite": exported["saved_model"] + ".tflite",
        "saved_model": exported["saved_model"],
    }
    folder = os.path.dirname(exported["onnx"])
    assert sorted(os.listdir(folder)) == ["ecg", "ecg.onnx", "ecg.tflite"]  # no temp files
    assert os.path.isfile(os.path.join(exported["saved_model"], "saved_model.pb"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", export.FORMATS)
def test_runtime_gives_the_keras_predictions(exported, paper_model, ecgs, kind):
    expected = paper_model.predict(ecgs, verbose=0)
    predicted = runtimes.predict_export(exported[kind], ecgs, batch_size=2)  # batches 2, 2, 1
    assert predicted.shape == (5, 6) and predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, expected, atol=TOLERANCE, rtol=0)
    assert expected.std() > 0.01  # the comparison is not between constants


@pytest.mark.slow
@pytest.mark.parametrize("kind", export.FORMATS)
def test_metadata_holds_the_class_names(exported, kind):
    assert runtimes.read_classes(exported[kind]) == CLASSES
    metadata = runtimes.read_metadata(exported[kind])
    assert metadata["sampling_rate_hz"] == "400"
    assert metadata["units_per_mv"] == f"{UNITS_PER_MV:g}"  # the scale the model expects
    assert f"(1 mV = {UNITS_PER_MV:g} units)" in metadata["input"]


@pytest.mark.slow
def test_onnx_interface(exported):
    session = onnxruntime.InferenceSession(exported["onnx"], providers=["CPUExecutionProvider"])
    (signal,), (probabilities,) = session.get_inputs(), session.get_outputs()
    assert (signal.name, signal.shape, signal.type) == ("signal", ["batch", 4096, 12],
                                                        "tensor(float)")
    assert (probabilities.name, probabilities.shape) == ("probabilities", ["batch", 6])
    assert '"1dAVb"' in session.get_modelmeta().custom_metadata_map["classes"]


@pytest.mark.slow
def test_saved_model_stores_each_weight_once(exported, paper_model):
    folder = os.path.join(exported["saved_model"], "variables")
    stored = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
    assert stored < 1.05 * 4 * paper_model.count_params()  # float32, not twice (keras#23553)


@pytest.mark.slow
def test_saved_model_serving_signature(exported):
    import tensorflow as tf

    serve = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    spec = serve.structured_input_signature[1]["signal"]
    assert tuple(spec.shape) == (None, 4096, 12) and spec.dtype == tf.float32
    assert list(serve.structured_outputs) == ["probabilities"]


@pytest.mark.slow
def test_tflite_signature(exported):
    runner = runtimes._tflite_runner(exported["tflite"])
    assert runner(np.zeros((3, *INPUT_SHAPE), np.float32)).shape == (3, 6)


def test_class_names_default_and_given():
    assert export.class_names(tiny_model(6)) == CLASSES
    assert export.class_names(tiny_model(3)) == ("class_0", "class_1", "class_2")
    assert export.class_names(tiny_model(2), ["normal", "abnormal"]) == ("normal", "abnormal")
    with pytest.raises(ECGInputError, match="one name per output"):
        export.class_names(tiny_model(2), ["a", "b", "c"])


def test_mixed_precision_model_is_exported_in_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = tiny_model(3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = generate(2, seed=1)[0]
    paths = export.export_model(mixed, tmp_path / "mixed", formats=("onnx",), classes="abc")
    expected = export.float32_model(mixed).predict(x, verbose=0)
    np.testing.assert_allclose(runtimes.predict_export(paths["onnx"], x), expected, atol=TOLERANCE)
    assert runtimes.read_classes(paths["onnx"]) == ("a", "b", "c")


def test_other_folder_is_never_replaced(tmp_path):
    precious = tmp_path / "out"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ECGInputError, match="not a SavedModel folder"):
        export.export_model(tiny_model(), precious)
    assert os.listdir(precious) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_existing_saved_model_is_replaced(tmp_path):
    first = export.export_model(tiny_model(2), tmp_path / "m", formats=("saved_model",))
    export.export_model(tiny_model(3), tmp_path / "m", formats=("saved_model",))
    assert runtimes.read_classes(first["saved_model"]) == ("class_0", "class_1", "class_2")
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_unknown_format_refused():
    with pytest.raises(ECGInputError, match="unknown export format coreml"):
        export.export_paths("x", ("onnx", "coreml"))


def test_cli_exports_a_run_folder_and_checks_it(tmp_path, capsys):
    run = tmp_path / "run"
    save_model(tiny_model(), run / "model_best")
    out = tmp_path / "served" / "ecg"
    assert run_cli(model_module.main, ["export", str(run), str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, suffix in zip(lines, (".onnx", ".tflite", "/")):
        assert line.startswith(f"wrote {out}{suffix}:") and "MB, max |diff| vs Keras" in line
        difference = float(line.rsplit(" ", 1)[1])
        assert difference < TOLERANCE


def test_cli_missing_model_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(model_module.main, ["export", str(tmp_path / "nope.keras"), str(tmp_path / "o")])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "MODEL not found" in error and "\n" not in error

