"""The .h5 files the project writes load in tf.keras 2.x (tf_keras) and in Keras 3, alike."""

import json
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
from conftest import distinctive_paper_model

from ecgcode.common import INPUT_SHAPE
from ecgcode.model.legacy_h5 import tf_keras2_model_config, tf_keras2_training_config
from ecgcode.model.modelfiles import load_model, save_model

tf_keras = pytest.importorskip("tf_keras")


@pytest.fixture(scope="module")
def trained_paper_model():
    """The paper's model compiled as train.py compiles it, with non-trivial BN statistics."""
    net = distinctive_paper_model(3)
    net.compile(optimizer=keras.optimizers.Adam(3e-4), loss="binary_crossentropy")
    net.optimizer.build(net.trainable_variables)
    return net


@pytest.fixture(scope="module")
def ecgs():
    return np.random.default_rng(1).normal(0, 1, (3, *INPUT_SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def saved_h5(tmp_path_factory, trained_paper_model):
    (path,) = save_model(trained_paper_model, tmp_path_factory.mktemp("h5") / "net", (".h5",))
    return path


@pytest.mark.slow
def test_tf_keras_loads_the_h5_as_a_new_user_would(saved_h5, trained_paper_model, ecgs):
    loaded = tf_keras.models.load_model(saved_h5)  # compile=True, the default
    expected = trained_paper_model.predict(ecgs, verbose=0)
    np.testing.assert_allclose(loaded.predict(ecgs, verbose=0), expected, atol=1e-6)
    assert loaded.count_params() == 6_425_638
    assert [layer.name for layer in loaded.layers][:3] == ["signal", "conv1d_1",
                                                           "batch_normalization_1"]
    assert np.isclose(float(loaded.optimizer.learning_rate.numpy()), 3e-4)
    assert loaded.loss.__name__ == "binary_crossentropy"


@pytest.mark.slow
def test_keras_3_still_loads_it_compiled(saved_h5, trained_paper_model, ecgs):
    expected = trained_paper_model.predict(ecgs, verbose=0)
    for loaded in (keras.models.load_model(saved_h5), load_model(saved_h5, compile=True)):
        np.testing.assert_allclose(loaded.predict(ecgs, verbose=0), expected, atol=1e-6)
        assert isinstance(loaded.optimizer, keras.optimizers.Adam)
        assert np.isclose(float(loaded.optimizer.learning_rate), 3e-4)


@pytest.mark.slow
def test_jax_backend_loads_it(saved_h5, trained_paper_model, ecgs, tmp_path):
    pytest.importorskip("jax")
    np.save(tmp_path / "x.npy", ecgs)
    code = (
        "import numpy as np, keras\n"
        "assert keras.backend.backend() == 'jax'\n"
        f"m = keras.models.load_model({os.fspath(saved_h5)!r}, compile=False)\n"
        "np.save('y.npy', np.asarray(m.predict(np.load('x.npy'), verbose=0)))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    expected = trained_paper_model.predict(ecgs, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


def test_file_holds_the_tf_keras_2_spellings(saved_h5):
    with h5py.File(saved_h5) as f:
        config = json.loads(f.attrs["model_config"])
    text = json.dumps(config)
    for keras3_only in ('"batch_shape"', '"DTypePolicy"', '"__keras_tensor__"', '"module"',
                        '"optional"', '"quantization_config"', '"input_axes"'):
        assert keras3_only not in text
    layers = {layer["name"]: layer for layer in config["config"]["layers"]}
    assert layers["signal"]["config"]["batch_input_shape"] == [None, 4096, 12]
    assert layers["add_1"]["inbound_nodes"] == [[["conv1d_4", 0, 0, {}], ["conv1d_2", 0, 0, {}]]]
    assert config["config"]["input_layers"] == ["signal", 0, 0]  # one tensor, not a list


def test_keras_3_model_keeps_a_single_tensor_input(saved_h5, recwarn):
    loaded = keras.models.load_model(saved_h5, compile=False)
    loaded(np.zeros((1, *INPUT_SHAPE), np.float32))
    assert not [w for w in recwarn if "structure of `inputs`" in str(w.message)]


def test_mixed_precision_policy_survives(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        signal = keras.Input(INPUT_SHAPE, name="signal")  # (batch, 4096, 12)
        x = keras.layers.Conv1D(4, 16, strides=64)(signal)  # (batch, 64, 4)
        x = keras.layers.Flatten()(x)
        out = keras.layers.Dense(6, activation="sigmoid", dtype="float32")(x)  # (batch, 6)
        tiny = keras.Model(signal, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    (path,) = save_model(tiny, tmp_path / "tiny", (".h5",))
    loaded = tf_keras.models.load_model(path, compile=False)
    assert loaded.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert loaded.layers[-1].dtype_policy.name == "float32"
    assert keras.models.load_model(path).layers[1].compute_dtype == "bfloat16"


def test_keras_3_optimizer_features_are_kept_for_keras_3():
    ema = {"optimizer_config": {"class_name": "Adam", "config": {"use_ema": True, "beta_1": 0.9}}}
    assert tf_keras2_training_config(ema) == ema
    plain = {"loss": "mse", "optimizer_config": {"class_name": "Adam", "config": {
        "use_ema": False, "ema_momentum": 0.99, "loss_scale_factor": None, "beta_1": 0.9}}}
    assert tf_keras2_training_config(plain)["optimizer_config"]["config"] == {"beta_1": 0.9}


def test_unknown_node_input_is_refused():
    config = {"class_name": "Functional", "config": {
        "input_layers": ["a", 0, 0], "output_layers": ["b", 0, 0],
        "layers": [{"class_name": "Dense", "name": "b", "config": {},
                    "inbound_nodes": [{"args": [3.0], "kwargs": {}}]}]}}
    with pytest.raises(ValueError, match="tf.keras 2.x format"):
        tf_keras2_model_config(config)


def test_a_model_the_rewrite_does_not_cover_is_saved_for_keras_3(tmp_path):
    sequential = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.warns(UserWarning, match="tf.keras 2.x cannot load it"):
        (path,) = save_model(sequential, tmp_path / "seq", (".h5",))
    assert len(keras.models.load_model(path).weights) == 2
