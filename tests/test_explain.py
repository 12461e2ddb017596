"""Integrated-gradients explanations: where the attribution falls, completeness, CLI, sheet."""

import json

import keras
import numpy as np
import pytest
from conftest import run_main, write_hdf5

from ecgcode.cli import predict
from ecgcode.common import CLASSES, INPUT_SHAPE, LEADS, UNITS_PER_MV
from ecgcode.data.synthetic.generate import generate
from ecgcode.inference import explain, plotting
from ecgcode.model.network import get_model

WINDOW = (1000, 1400)
"""Samples [1000, 1400) (2.5 s to 3.5 s) of lead DII: all the window model looks at."""

WINDOW_LEAD = LEADS.index("DII")

COMPLETENESS_TOLERANCE = 0.03
"""|sum of attributions - (F(x) - F(0))| <= 3 % of |F(x) - F(0)| with 32 steps (measured:
about 1.6 % for the paper's model, halving with each doubling of the steps)."""


def window_model():
    """Output depends only on lead DII inside WINDOW (crop, then a fixed lead selection)."""
    keras.utils.set_random_seed(7)
    signal = keras.Input(INPUT_SHAPE, name="signal")  # (batch, 4096, 12)
    x = keras.layers.Cropping1D((WINDOW[0], INPUT_SHAPE[0] - WINDOW[1]))(signal)  # (b, 400, 12)
    select = keras.layers.Conv1D(1, 1, use_bias=False, trainable=False)
    x = select(x)  # (batch, 400, 1): lead DII only
    x = keras.layers.Conv1D(8, 16, activation="tanh")(x)  # (batch, 385, 8)
    x = keras.layers.GlobalAveragePooling1D()(x)  # (batch, 8)
    out = keras.layers.Dense(len(CLASSES), activation="sigmoid")(x)  # (batch, 6)
    model = keras.Model(signal, out)
    kernel = np.zeros((1, INPUT_SHAPE[1], 1), np.float32)
    kernel[0, WINDOW_LEAD, 0] = 0.5 / UNITS_PER_MV  # 0.5 per mV: order-one activations
    select.set_weights([kernel])
    dense = model.layers[-1]
    dense.set_weights([dense.get_weights()[0] * 10, dense.get_weights()[1]])  # a visible output
    return model


@pytest.fixture(scope="module")
def ecgs():
    return generate(3, seed=4)[0]  # (3, 4096, 12) synthetic ECGs at UNITS_PER_MV


def test_attribution_mass_falls_in_the_window_the_model_reads(ecgs):
    model = window_model()
    classes = np.argmax(model.predict(ecgs, verbose=0), axis=1)
    result = explain.integrated_gradients(model, ecgs, classes, steps=32)
    mass = np.abs(result.attributions)  # (3, 4096, 12)
    inside = mass[:, WINDOW[0]:WINDOW[1], WINDOW_LEAD].sum(axis=1)  # (3,)
    assert np.all(inside / mass.sum(axis=(1, 2)) >= 0.9)
    assert np.all(np.abs(result.outputs - result.baseline_outputs) > 0.01)  # not all zero
    # The input itself is spread over all leads and samples: a method returning it fails.
    input_mass = np.abs(ecgs)
    assert np.all(input_mass[:, WINDOW[0]:WINDOW[1], WINDOW_LEAD].sum(axis=1)
                  / input_mass.sum(axis=(1, 2)) < 0.1)


@pytest.mark.slow
def test_paper_model_attributions_are_complete(ecgs):
    keras.utils.set_random_seed(5)
    model = get_model()
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 0.05, bias + 0.1])  # outputs away from 0 and 1
    x = ecgs[:2]
    classes = np.argmax(model.predict(x, verbose=0), axis=1)
    result = explain.integrated_gradients(model, x, classes, steps=32)
    assert result.attributions.shape == (2, 4096, 12)
    assert np.isfinite(result.attributions).all()
    difference = result.outputs - result.baseline_outputs
    assert np.max(np.abs(difference)) > 0.02  # a difference worth explaining
    assert np.all(np.abs(result.completeness_gap) <= COMPLETENESS_TOLERANCE * np.abs(difference))
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(result.outputs, probabilities[[0, 1], classes], atol=1e-5)


def test_top_class_or_the_chosen_one():
    scores = np.array([[0.1, 0.7, 0.2, 0, 0, 0], [0.9, 0.1, 0, 0, 0, 0.3]])
    assert list(explain.chosen_classes(scores)) == [1, 0]
    assert list(explain.chosen_classes(scores, "AF")) == [4, 4]
    with pytest.raises(ValueError, match="unknown class"):
        explain.chosen_classes(scores, "MI")


def _bands(figure):
    """{(lead, rhythm): RGBA band (samples, 4)} of a saliency sheet."""
    images = figure.axes[0].get_images()
    segments = plotting.sheet_segments()
    assert len(images) == len(segments)  # one band per segment
    return {(s["lead"], s["rhythm"]): image.get_array()[0] for s, image in zip(segments, images)}


def test_sheet_shades_where_the_attribution_is():
    tracing = generate(1, seed=0)[0][0]  # (4096, 12)
    start, _ = plotting.sheet_window(INPUT_SHAPE[0])  # sheet time 0
    attribution = np.zeros(INPUT_SHAPE, np.float32)
    attribution[start + 400:start + 600, LEADS.index("DII")] = 1.0  # 1.0 s to 1.5 s of II
    attribution[start + 2200:start + 2400, LEADS.index("V1")] = -1.0  # 5.5 s to 6.0 s of V1
    bands = _bands(explain.draw_saliency_sheet(tracing, attribution, "RBBB"))
    for key, band in bands.items():
        shaded = np.flatnonzero(band[:, 3] > 0.3)  # samples from the segment's start
        if key in (("DII", False), ("DII", True)):  # II's first column and the rhythm strip
            assert 380 <= shaded.min() <= 420 and 580 <= shaded.max() <= 620
            assert np.allclose(band[shaded[0], :3], [0x7B / 255, 0x32 / 255, 0x94 / 255])
        elif key == ("V1", False):  # V1 shows 5.0 s to 7.5 s
            assert 180 <= shaded.min() <= 220 and 380 <= shaded.max() <= 420
            assert np.allclose(band[shaded[0], :3], [0, 0x88 / 255, 0x37 / 255])  # against
        else:
            assert band[:, 3].max() == 0, key


# --- predict.py --explain ----------------------------------------------------------------
def tiny_model():
    keras.utils.set_random_seed(0)
    signal = keras.Input(INPUT_SHAPE, name="signal")  # (batch, 4096, 12)
    x = keras.layers.Conv1D(4, 16, strides=64)(signal)  # (batch, 64, 4)
    x = keras.layers.Flatten()(x)  # (batch, 256)
    return keras.Model(signal, keras.layers.Dense(6, activation="sigmoid")(x))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, ecgs):
    folder = tmp_path_factory.mktemp("explain")
    model = tiny_model()
    model.save(folder / "tiny.keras")
    tracings = str(folder / "exams.hdf5")
    write_hdf5(tracings, 3, data=ecgs, exam_ids=np.array([11, 12, 13]))
    return tracings, str(folder / "tiny.keras"), model


def run_predict(argv, capsys):
    return run_main(predict.main, argv, capsys)


def test_predict_explain_writes_attributions_index_and_sheets(inputs, ecgs, tmp_path, capsys):
    tracings, model_path, model = inputs
    out = tmp_path / "scores.csv"
    argv = [tracings, model_path, "--output-file", str(out), "--explain", "2",
            "--explain", "0", "--explain-steps", "8", "--quiet"]
    assert run_predict(argv, capsys)[0] == 0
    attributions = np.load(tmp_path / "scores_saliency.npy")
    assert attributions.shape == (2, 4096, 12) and attributions.dtype == np.float32
    index = json.loads((tmp_path / "scores_saliency.json").read_text())
    assert [entry["row"] for entry in index["exams"]] == [2, 0]
    assert [entry["exam_id"] for entry in index["exams"]] == [13, 11]
    top = np.argmax(model.predict(ecgs[[2, 0]], verbose=0), axis=1)
    assert [entry["class"] for entry in index["exams"]] == [CLASSES[i] for i in top]
    direct = explain.integrated_gradients(model, ecgs[[2, 0]], top, steps=8).attributions
    np.testing.assert_allclose(attributions, direct, atol=1e-6)
    for row in (2, 0):
        assert (tmp_path / f"scores_row{row}_saliency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_explain_class_and_summary(inputs, tmp_path, capsys):
    tracings, model_path, _ = inputs
    out = tmp_path / "p.npy"
    argv = [tracings, model_path, "--output-file", str(out), "--explain", "1",
            "--explain-class", "AF", "--explain-steps", "4"]
    status, stdout, _ = run_predict(argv, capsys)
    assert status == 0
    index = json.loads((tmp_path / "p_saliency.json").read_text())
    assert index["exams"][0]["class"] == "AF" and "integrated gradients" in index["method"]
    assert f"wrote {tmp_path / 'p_row1_saliency.png'}" in stdout
    assert "explained row 1: AF p=" in stdout and "attributions sum to" in stdout


@pytest.mark.parametrize("argv, fragment", [
    (["--explain", "3"], "--explain 3: no such exam"),
    (["--explain", "0", "--explain-steps", "0"], "--explain-steps 0: must be a positive"),
])
def test_predict_explain_bad_arguments(inputs, tmp_path, capsys, argv, fragment):
    tracings, model_path, _ = inputs
    status, _, stderr = run_predict(
        [tracings, model_path, "--output-file", str(tmp_path / "o.npy"), *argv], capsys
    )
    assert status == 2 and fragment in stderr and stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_mixed_precision_model_is_explained_in_float32(ecgs):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = tiny_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    float32 = tiny_model()  # same seed: same weights, float32 layers
    mixed_result = explain.integrated_gradients(mixed, ecgs[:1], [0], steps=8)
    float32_result = explain.integrated_gradients(float32, ecgs[:1], [0], steps=8)
    np.testing.assert_allclose(mixed_result.attributions, float32_result.attributions, atol=1e-6)
