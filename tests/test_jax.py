"""train.py and predict.py under KERAS_BACKEND=jax (issue 15, item 4).

The backend is fixed per process, so the JAX runs happen in two subprocesses (one start-up
each, ~10 s) that run several jobs in turn and record their exit statuses:

1. (with two JAX CPU devices) a data-parallel run; a whole 2-epoch run; ``--distribute
   mirrored`` (refused); a run stopped by Ctrl-C; a run killed with SIGKILL in epoch 2;
2. ``--resume`` of the killed run; predict.py on its run folder; predict.py on the paper's
   model saved by this (TensorFlow) process.

The tests then compare run folders, weights and predictions. The unit tests of
``ecgcode.model.backend`` at the end need neither JAX nor a GPU.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from test_train import BASE, train_tiny, weights_of

from ecgcode.cli import predict
from ecgcode.common import CLASSES, ECGInputError, run_cli
from ecgcode.model import backend as kb
from ecgcode.model import modelfiles, network
from ecgcode.training import state as ts

ROOT = Path(__file__).resolve().parents[1]
try:
    import jax

    HAVE_JAX = True
except ImportError:
    HAVE_JAX = False
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (pip install jax): "
                               "the KERAS_BACKEND=jax tests need it")
JAX_ARGS = ["--epochs", "2", "--batch-size", "8", "--val-split", "0.2", "--deterministic"]
"""32 training rows (4 batches), 8 validation rows (1 batch: one compilation)."""

JOBS = textwrap.dedent("""
    import json, os, signal, sys, time
    started = time.perf_counter()
    spec = json.loads(sys.argv[1])
    sys.path[:0] = [spec["root"], os.path.join(spec["root"], "tests")]
    import keras
    import numpy as np
    from ecgcode.cli import predict
    from ecgcode.cli import train
    from ecgcode.common import run_cli
    from test_train import AtBatch, tiny_model

    class DumpWeights(keras.callbacks.Callback):
        def __init__(self, path):
            super().__init__()
            self.path = path

        def on_train_end(self, logs=None):
            np.savez(self.path, *self.model.get_weights())

    def kill(model):
        os.kill(os.getpid(), signal.SIGKILL)

    def interrupt(model):
        raise KeyboardInterrupt

    results = {"backend": keras.backend.backend(), "status": []}
    for job in spec["jobs"]:
        if job["script"] == "train":
            callbacks = [DumpWeights(job["dump"])] if job.get("dump") else []
            if job.get("kill_at"):
                callbacks.append(AtBatch(*job["kill_at"], kill))
            if job.get("interrupt_at"):
                callbacks.append(AtBatch(*job["interrupt_at"], interrupt))
            main = lambda a: train.main(a, model_factory=tiny_model, extra_callbacks=callbacks)
        else:
            main = predict.main
        print(f"=== {time.perf_counter() - started:.1f} s: {job['script']} "
              f"{' '.join(job['argv'])}", flush=True)
        try:
            status = run_cli(main, job["argv"])
        except SystemExit as exit_:  # run_cli's exit 2 on bad input
            status = exit_.code
        results["status"].append(status)
        with open(spec["results"], "w") as handle:
            json.dump(results, handle)
    print(f"=== {time.perf_counter() - started:.1f} s: done", flush=True)
""")


def run_jobs(tmp_path, name, jobs, devices=1):
    """Start a KERAS_BACKEND=jax process running ``jobs`` in turn; return (process, results).

    ``devices`` > 1 splits the CPU into that many JAX devices (XLA's host device count).
    """
    script = tmp_path / "jobs.py"
    script.write_text(JOBS)
    results = tmp_path / f"{name}.json"
    spec = {"root": str(ROOT), "results": str(results), "jobs": [
        dict(job, argv=[str(a) for a in job["argv"]]) for job in jobs]}
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "XLA_FLAGS")}
    environment.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    if devices > 1:
        environment["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    process = subprocess.Popen([sys.executable, str(script), json.dumps(spec)], cwd=tmp_path,
                               env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    return process, results


def wait(process, results, timeout=240):
    """(return code, output, recorded results) of a finished ``run_jobs`` process."""
    output, _ = process.communicate(timeout=timeout)
    recorded = json.loads(results.read_text()) if results.is_file() else {"status": []}
    return process.returncode, output, recorded


def paper_model_under_tensorflow(folder, data):
    """Save the paper's model (random weights, non-trivial BatchNorm statistics) and its
    TensorFlow predictions of ``data``; return (model path, predictions)."""

    keras.utils.set_random_seed(3)
    net = network.get_model()
    rng = np.random.default_rng(3)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    dense = net.layers[-1]
    dense.kernel.assign(dense.kernel * 0.05)  # probabilities away from 0 and 1
    path = modelfiles.save_model(net, folder / "paper", formats=(".keras",))[0]
    out = folder / "paper_tf.npy"
    assert run_cli(predict.main, [data, path, "--output-file", str(out), "--quiet"]) == 0
    return path, np.load(out)


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    """Both JAX processes, the TensorFlow reference predictions, and their outputs."""
    from conftest import write_hdf5

    tmp = tmp_path_factory.mktemp("jax")
    data = write_hdf5(tmp / "data.hdf5", 40, labels=True)
    few = write_hdf5(tmp / "few.hdf5", 6, seed=5)
    first = run_jobs(tmp, "first", [
        {"script": "train", "argv": [data, *JAX_ARGS, "--epochs", "1", "--out", tmp / "dp"]},
        {"script": "train", "argv": [data, *JAX_ARGS, "--distribute", "none",
                                     "--out", tmp / "whole"], "dump": str(tmp / "whole.npz")},
        {"script": "train", "argv": [data, *JAX_ARGS, "--distribute", "mirrored",
                                     "--out", tmp / "refused"]},
        {"script": "train", "argv": [data, *JAX_ARGS, "--distribute", "none",
                                     "--out", tmp / "interrupted"], "interrupt_at": [1, 1]},
        {"script": "train", "argv": [data, *JAX_ARGS, "--distribute", "none",
                                     "--out", tmp / "killed"], "kill_at": [1, 1]},
    ], devices=2)
    paper, tf_scores = paper_model_under_tensorflow(tmp, few)  # meanwhile, in this process
    first = wait(*first)
    second = wait(*run_jobs(tmp, "second", [
        {"script": "train", "argv": ["--resume", "--out", tmp / "killed"],
         "dump": str(tmp / "resumed.npz")},
        {"script": "predict", "argv": [data, tmp / "killed", "--output-file", tmp / "run.csv",
                                       "--quiet"]},
        {"script": "predict", "argv": [few, paper, "--output-file", tmp / "paper_jax.npy",
                                       "--quiet"]},
    ]))
    return types.SimpleNamespace(tmp=tmp, data=data, first=first, second=second,
                                 tf_scores=tf_scores)


@pytest.mark.slow
@needs_jax
def test_jax_run_folder_banner_refusal_and_exit_statuses(jax_runs):
    code, output, results = jax_runs.first
    assert code == -signal.SIGKILL, output  # the last job kills its process
    assert results["backend"] == "jax" and results["status"] == [0, 0, 2, 130], output
    assert (jax_runs.tmp / "interrupted" / "model_last.h5").is_file()  # saved at Ctrl-C
    assert "backend jax; device CPU; strategy none" in output and "XLA on" in output
    assert "--distribute mirrored: " in output and "keras.distribution.DataParallel" in output
    assert "Traceback" not in output
    out = jax_runs.tmp / "whole"
    for name in ("model_best.keras", "model_best.h5", "model_last.keras", "model_last.h5",
                 "final_model.h5", "history.csv", "config.json", "thresholds.json"):
        assert (out / name).is_file(), name
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["setup"]["backend"] == "jax" and config["setup"]["jit"] is True
    assert config["versions"]["jax"] == jax.__version__
    assert set(json.loads((out / "thresholds.json").read_text())["classes"]) == set(CLASSES)
    assert not (jax_runs.tmp / "refused").exists()


@pytest.mark.slow
@needs_jax
def test_jax_data_parallel_over_two_devices(jax_runs):
    """The default with several JAX devices: keras.distribution.DataParallel."""
    out = jax_runs.tmp / "dp"
    setup = json.loads((out / "config.json").read_text())["setup"]
    assert setup["strategy"] == "data-parallel" and setup["replicas"] == 2
    assert setup["global_batch"] == 16
    assert ts.read_state(out)["history"][0]["samples"] == 32  # 2 whole global batches
    saved = keras.models.load_model(out / "model_last.keras", compile=False)
    assert all(np.isfinite(w).all() for w in saved.get_weights())


@pytest.mark.slow
@needs_jax
def test_jax_killed_and_resumed_run_ends_with_the_same_weights(jax_runs):
    code, output, results = jax_runs.second
    assert code == 0 and results["status"] == [0, 0, 0], output
    tmp = jax_runs.tmp
    for a, b in zip(weights_of(tmp / "whole.npz"), weights_of(tmp / "resumed.npz"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    whole, resumed = ts.read_state(tmp / "whole"), ts.read_state(tmp / "killed")
    assert [r["loss"] for r in whole["history"]] == [r["loss"] for r in resumed["history"]]
    assert whole["seed_states"] == resumed["seed_states"] and whole["seed_states"]
    assert json.loads((tmp / "killed" / "config.json").read_text())["resumed_at_epoch"] == 1


@pytest.mark.slow
@needs_jax
def test_jax_predict_on_the_run_folder(jax_runs):
    frame = pd.read_csv(jax_runs.tmp / "run.csv")
    assert len(frame) == 40 and list(frame.columns[1:7]) == list(CLASSES)
    thresholds = json.loads((jax_runs.tmp / "killed" / "thresholds.json").read_text())
    for name in CLASSES:
        threshold = thresholds["classes"][name]["threshold"]
        if threshold is not None:
            clear = (frame[name] - threshold).abs() > 1e-6  # the .csv rounds to 9 digits
            assert (frame[f"{name}_pred"] == (frame[name] > threshold))[clear].all()


@pytest.mark.slow
@needs_jax
def test_model_saved_under_tensorflow_predicts_the_same_under_jax(jax_runs):
    tf_scores = jax_runs.tf_scores
    jax_scores = np.load(jax_runs.tmp / "paper_jax.npy")
    assert tf_scores.shape == jax_scores.shape == (6, len(CLASSES))
    assert tf_scores.std(axis=0).min() > 1e-3  # the outputs differ between ECGs
    np.testing.assert_allclose(jax_scores, tf_scores, rtol=0, atol=1e-4)


# --- ecgcode.model.backend without JAX: refusals, GPU descriptions, determinism ---------------
def test_tf_strategies_refused_under_jax_naming_the_alternative(monkeypatch):
    for name in ("mirrored", "multi-worker"):
        with pytest.raises(ECGInputError, match="keras.distribution.DataParallel") as error:
            kb.jax_strategy(name, devices=["cpu"])
        assert "\n" not in str(error.value) and "--distribute data-parallel" in str(error.value)
    monkeypatch.setenv("TF_CONFIG", "{}")
    with pytest.raises(ECGInputError, match="TF_CONFIG is set.*KERAS_BACKEND=tensorflow"):
        kb.jax_strategy("auto", devices=["cpu"])
    monkeypatch.delenv("TF_CONFIG")
    strategy, kind = kb.jax_strategy("auto", devices=["cpu"])
    assert (kind, strategy.num_replicas_in_sync, strategy.cluster_resolver) == ("none", 1, None)
    with pytest.raises(ECGInputError, match="KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"):
        kb.check_training_backend("torch")


def test_data_parallel_refused_under_tensorflow(make_hdf5, tmp_path, capsys):
    data = make_hdf5("data.hdf5", 40, labels=True)
    assert train_tiny([data, *BASE, "--distribute", "data-parallel",
                       "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "needs KERAS_BACKEND=jax" in err and "--distribute mirrored" in err
    assert not (tmp_path / "run").exists()


def test_jax_device_defaults_from_device_properties():
    def gpu(capability, kind):
        return types.SimpleNamespace(platform="gpu", compute_capability=capability,
                                     device_kind=kind)

    assert kb.jax_device_defaults([types.SimpleNamespace(platform="cpu")]) == (
        "CPU", True, "mixed_bfloat16")
    assert kb.jax_device_defaults([gpu("9.0", "NVIDIA H200")] * 2) == (
        "2 x NVIDIA H200", True, "mixed_bfloat16")
    assert kb.jax_device_defaults([gpu("7.5", "Tesla T4")])[2] == "mixed_float16"


def test_jax_determinism_flag_added_once(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    kb.set_deterministic("jax")
    kb.set_deterministic("jax")
    assert os.environ["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {kb.JAX_DETERMINISM_FLAG}"
