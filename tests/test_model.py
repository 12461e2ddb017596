"""The paper's network, and loading/saving it in every format the project accepts."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from ecgcode.cli import model as model_module
from ecgcode.common import CLASSES, INPUT_SHAPE, ECGInputError
from ecgcode.model import modelfiles, network
from ecgcode.model.modelfiles import load_model, save_model
from ecgcode.model.network import get_model
from ecgcode.training.transfer import transfer_weights

keras = pytest.importorskip("keras")


def _unsaturate(net):
    """Shrink the output layer so that sigmoids stay away from 0 and 1 (comparable outputs)."""
    kernel, bias = net.layers[-1].get_weights()
    net.layers[-1].set_weights([kernel * 0.01, bias + 0.1])
    return net


@pytest.fixture(scope="module")
def paper_model():
    keras.utils.set_random_seed(0)
    return _unsaturate(get_model())


@pytest.fixture(scope="module")
def ecgs():
    return np.random.default_rng(0).normal(0, 1, (3, *INPUT_SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def tf_keras_model():
    """The same architecture built and saved by tf.keras 2.x (the tf_keras package)."""
    tf_keras = pytest.importorskip("tf_keras")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(network, "keras", tf_keras)
        tf_keras.utils.set_random_seed(1)
        legacy = get_model()
    # Give the batch-norm statistics non-trivial values so that loading them matters.
    for layer in legacy.layers:
        if "batch_normalization" in layer.name:
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * 1.1, beta + 0.1, mean + 0.2, variance * 1.5])
    return _unsaturate(legacy)


def test_parameter_count_is_the_papers(paper_model):
    assert paper_model.count_params() == 6_425_638


def test_shapes_and_names(paper_model, ecgs):
    assert paper_model.inputs[0].name == "signal"
    assert tuple(paper_model.inputs[0].shape) == (None, 4096, 12)
    out = paper_model.predict(ecgs, verbose=0)
    assert out.shape == (3, 6)
    assert np.all((out > 0.01) & (out < 0.99))
    # Keras 2.2.4 names, as in the published weights
    names = [layer.name for layer in paper_model.layers]
    assert names[:4] == ["signal", "conv1d_1", "batch_normalization_1", "activation_1"]
    assert names[-1] == "dense_1"
    assert sum(name.startswith("conv1d_") for name in names) == 13


def test_residual_unit_structure(paper_model):
    lengths = [
        tuple(layer.output.shape[1:])
        for layer in paper_model.layers
        if layer.name.startswith("add_")
    ]
    assert lengths == [(1024, 128), (256, 196), (64, 256), (16, 320)]
    dropouts = [layer.rate for layer in paper_model.layers if layer.name.startswith("dropout")]
    assert dropouts == [0.2] * 8
    kernels = {
        layer.kernel_size
        for layer in paper_model.layers
        if layer.name.startswith("conv1d") and layer.kernel_size != (1,)
    }
    assert kernels == {(16,)}


def test_other_class_count_and_logits():
    logits = get_model(n_classes=3, last_layer="linear")
    assert logits.outputs[0].shape[-1] == 3
    assert logits.layers[-1].get_config()["activation"] == "linear"


@pytest.mark.slow
def test_save_writes_keras_and_h5_that_load_back(tmp_path, paper_model, ecgs):
    keras_path, h5_path = save_model(paper_model, tmp_path / "net")
    assert keras_path.endswith("net.keras") and h5_path.endswith("net.h5")
    expected = paper_model.predict(ecgs, verbose=0)
    for path in (keras_path, h5_path):
        np.testing.assert_allclose(load_model(path).predict(ecgs, verbose=0), expected, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.h5", "net.keras"]


@pytest.mark.slow
def test_h5_loads_without_this_project(tmp_path, paper_model, ecgs):
    save_model(paper_model, tmp_path / "net")
    np.save(tmp_path / "x.npy", ecgs)
    code = (
        "import sys, numpy as np, keras\n"
        "m = keras.models.load_model('net.h5')\n"
        "assert not {'model', 'ecgcode'} & set(sys.modules)\n"
        "np.save('y.npy', m.predict(np.load('x.npy'), verbose=0))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True)
    expected = paper_model.predict(ecgs, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


def test_failed_save_keeps_the_earlier_file(tmp_path, paper_model, monkeypatch):
    save_model(paper_model, tmp_path / "net")
    before = (tmp_path / "net.keras").read_bytes()

    def crash(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(paper_model), "save", crash)
    with pytest.raises(RuntimeError):
        save_model(paper_model, tmp_path / "net")
    assert (tmp_path / "net.keras").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.h5", "net.keras"]


@pytest.mark.slow
def test_tf_keras_2_h5_full_model(tmp_path, tf_keras_model, ecgs):
    path = tmp_path / "tfkeras2.h5"
    tf_keras_model.save(path)
    with h5py.File(path) as f:
        assert f.attrs["keras_version"].startswith("2.")
    expected = tf_keras_model.predict(ecgs, verbose=0)
    np.testing.assert_allclose(load_model(path).predict(ecgs, verbose=0), expected, atol=1e-5)


def _to_keras_224_config(layer_configs):
    """Rewrite tf.keras 2.x layer configurations into the form Keras 2.2.4 wrote."""
    for layer in layer_configs:
        config = layer["config"]
        for key in ("groups", "dtype") if layer["class_name"] != "InputLayer" else ():
            config.pop(key, None)
        for key, value in list(config.items()):
            if isinstance(value, dict) and value.get("class_name") == "HeNormal":
                config[key] = {
                    "class_name": "VarianceScaling",
                    "config": {"scale": 2.0, "mode": "fan_in", "distribution": "normal",
                               "seed": None},
                }
            elif isinstance(value, dict) and "class_name" in value:
                value.pop("module", None)
                value.pop("registered_name", None)
        layer.pop("module", None)
        layer["inbound_nodes"] = [
            [[node[0], node[1], node[2], {}] for node in nodes]
            for nodes in layer.get("inbound_nodes", [])
        ]
    return layer_configs


@pytest.mark.slow
def test_keras_224_h5_full_model(tmp_path, tf_keras_model, ecgs):
    path = tmp_path / "published_like.hdf5"
    tf_keras_model.save(tmp_path / "tmp.h5")
    shutil.copy(tmp_path / "tmp.h5", path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["class_name"] = "Model"
        config["config"]["name"] = "model_1"
        _to_keras_224_config(config["config"]["layers"])
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f["model_weights"].attrs["keras_version"] = b"2.2.4"
        f.attrs.pop("training_config", None)
    expected = tf_keras_model.predict(ecgs, verbose=0)
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict(ecgs, verbose=0), expected, atol=1e-5)
    # A configuration this Keras cannot rebuild falls back to the paper's architecture.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.models, "load_model", _raise_unknown_layer)
        rebuilt = load_model(path)
    np.testing.assert_allclose(rebuilt.predict(ecgs, verbose=0), expected, atol=1e-5)
    # train.py --init from such a file: the backbone transfers, a 2-class head is new.
    target = get_model(n_classes=2)
    summary = transfer_weights(target, str(path), ("A", "B"))
    assert summary["head"] == "new" and summary["source_classes"] == list(CLASSES)
    for name in ("conv1d_1", "batch_normalization_9", "conv1d_13"):
        for new, old in zip(target.get_layer(name).get_weights(),
                            loaded.get_layer(name).get_weights()):
            np.testing.assert_array_equal(new, old)


def _raise_unknown_layer(*args, **kwargs):
    raise TypeError("Could not locate class 'Model'")


@pytest.mark.slow
def test_weights_only_h5_by_name_and_by_order(tmp_path, tf_keras_model, ecgs):
    by_name = tmp_path / "weights.h5"
    tf_keras_model.save_weights(by_name)
    by_order = tmp_path / "renamed_weights.h5"
    shutil.copy(by_name, by_order)
    with h5py.File(by_order, "r+") as f:  # names no longer match: only the order can
        names = [modelfiles._as_str(n) for n in f.attrs["layer_names"]]
        for name in names:
            f.move(name, "x" + name)
        f.attrs["layer_names"] = [("x" + n).encode() for n in names]
    expected = tf_keras_model.predict(ecgs, verbose=0)
    for path in (by_name, by_order):
        np.testing.assert_allclose(load_model(path).predict(ecgs, verbose=0), expected, atol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_truncated_file_is_a_clear_error(tmp_path, paper_model, suffix):
    path = save_model(paper_model, tmp_path / "net")[0 if suffix == ".keras" else 1]
    with open(path, "rb") as f:
        data = f.read()
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ECGInputError, match="broken"):
        load_model(broken)


def test_tracings_file_instead_of_model(tmp_path):
    path = tmp_path / "exams.hdf5"
    with h5py.File(path, "w") as f:
        f["tracings"] = np.zeros((2, *INPUT_SHAPE), "float32")
    with pytest.raises(ECGInputError, match="no Keras model.*tracings"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(ECGInputError, match="not found"):
        load_model(tmp_path / "nope.h5")


def test_other_input_shape_or_class_count_is_refused(tmp_path):
    inputs = keras.Input((1000, 12))
    other = keras.Model(inputs, keras.layers.Dense(6)(keras.layers.Flatten()(inputs)))
    other.save(tmp_path / "other.keras")
    other.save(tmp_path / "other.h5")
    for name in ("other.keras", "other.h5"):
        with pytest.raises(ECGInputError, match="input"):
            load_model(tmp_path / name)
    save_model(get_model(n_classes=5), tmp_path / "five")
    for name in ("five.keras", "five.h5"):
        with pytest.raises(ECGInputError, match="5 outputs"):
            load_model(tmp_path / name)


def test_cli_prints_parameter_count(capsys):
    model_module.main([])
    assert "Parameters: 6,425,638" in capsys.readouterr().out


def test_h5_save_keeps_the_optimizer_for_later_keras_saves(tmp_path):
    net = get_model(n_classes=2)
    net.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    net.optimizer.build(net.trainable_variables)  # optimizer state to save
    save_model(net, tmp_path / "first", formats=(".h5",))
    save_model(net, tmp_path / "second", formats=(".keras",))
    restored = keras.models.load_model(tmp_path / "second.keras")
    assert isinstance(restored.optimizer, keras.optimizers.Adam)
    assert len(restored.optimizer.variables) == len(net.optimizer.variables)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.h5", "second.keras"]
