"""Tests of train.py: run folder, resume after kill -9, faults, distribution, full model.

Most tests train a tiny model (one strided convolution, dropout, a dense layer) on 40
synthetic ECGs; the slow ones (subprocesses, the paper's full model) stay at a few steps.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import row_ids

from ecgcode import data as ecg_data
from ecgcode.cli import train
from ecgcode.common import CLASSES, N_CLASSES, ECGInputError, run_cli
from ecgcode.model import modelfiles
from ecgcode.model.thresholds import f1_max_thresholds, f1_optimal_thresholds
from ecgcode.training import recipe, run_setup
from ecgcode.training import run as training_run
from ecgcode.training import state as ts
from ecgcode.training.report import INTERRUPTED

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--epochs", "2", "--batch-size", "8", "--val-split", "0.25", "--no-jit"]


def tiny_model(n_classes=N_CLASSES):
    """A tiny functional model with the project's input and output shapes and a dropout."""
    signal_in = keras.Input((4096, 12), name="signal")
    x = keras.layers.Conv1D(4, 16, strides=64)(signal_in)  # (batch, 64, 4)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Flatten()(x)  # (batch, 256)
    out = keras.layers.Dense(n_classes, activation="sigmoid", dtype="float32")(x)
    return keras.Model(signal_in, out)


def train_tiny(argv, **kwargs):
    """Run train.main through run_cli (as the command line does) with the tiny model."""
    try:
        return run_cli(lambda a: train.main(a, model_factory=tiny_model, **kwargs), argv)
    except SystemExit as exit_:
        return exit_.code


class AtBatch(keras.callbacks.Callback):
    """Calls ``action(model)`` at the end of batch ``batch`` of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch, batch, action):
        super().__init__()
        self.at, self.action, self.epoch = (epoch, batch), action, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.action(self.model)


@pytest.fixture
def data(make_hdf5):
    """40 labelled tracings."""
    return make_hdf5("data.hdf5", 40, labels=True)


# --- Units ----------------------------------------------------------------------------
def test_f1_max_thresholds_match_brute_force():
    rng = np.random.default_rng(0)
    y = (rng.random((200, len(CLASSES))) < 0.3).astype(float)
    s = np.clip(y * 0.3 + rng.random(y.shape) * 0.7, 0, 1).round(2)  # ties on purpose
    result = f1_max_thresholds(y, s, CLASSES)
    for k, name in enumerate(CLASSES):
        best = max(_f1(y[:, k], s[:, k] > t) for t in np.r_[-1, np.unique(s[:, k])])
        entry = result[name]
        assert entry["f1"] == pytest.approx(best)
        assert _f1(y[:, k], s[:, k] > entry["threshold"]) == pytest.approx(entry["f1"])
    no_positives = f1_max_thresholds(np.zeros((5, 6)), rng.random((5, 6)), CLASSES)
    assert no_positives["AF"]["threshold"] is None
    optimal = f1_optimal_thresholds(y.astype(int), s)  # generate_figures' choice: the same cut
    assert [result[name]["threshold"] for name in CLASSES] == pytest.approx(optimal)


def _f1(y, predicted):
    tp = np.sum(predicted & (y > 0.5))
    return 2 * tp / (predicted.sum() + (y > 0.5).sum())


def test_epoch_seed_depends_only_on_seed_and_epoch():
    assert ts.epoch_seed(0, 3) == ts.epoch_seed(0, 3)
    assert len({ts.epoch_seed(s, e) for s in range(3) for e in range(5)}) == 15


def test_split_inputs_by_extension(tmp_path):
    assert run_setup.split_inputs(["a.hdf5", "b.h5", "l.csv"])[1].endswith("l.csv")
    with pytest.raises(ECGInputError, match="unknown file type"):
        run_setup.split_inputs(["a.hdf5", "notes.txt"])
    with pytest.raises(ECGInputError, match="several label CSVs"):
        run_setup.split_inputs(["a.hdf5", "x.csv", "y.csv"])


# --- What the recipe adds to Keras: each test fails when its piece stops working --------
def test_validation_metrics_give_keras_binary_crossentropy_and_sklearn_scores(make_hdf5):
    from sklearn.metrics import roc_auc_score

    from ecgcode.training.callbacks import ValidationMetrics

    collection = ecg_data.open_collection([make_hdf5("val.hdf5", 24, labels=True)])
    labels = np.random.default_rng(3).integers(0, 2, (24, N_CLASSES)).astype(np.float32)
    batches = ecg_data.make_dataset(collection, labels, batch_size=8)
    validation = ValidationMetrics(batches, CLASSES)
    validation.set_model(tiny_model())
    logs = {}
    validation.on_epoch_begin(0)
    validation.on_epoch_end(0, logs)
    y, p = validation.y_true, np.clip(validation.y_score.astype(np.float64), 1e-7, 1 - 1e-7)
    expected = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))  # (n, classes) -> scalar
    assert logs["val_loss"] == pytest.approx(expected, rel=1e-6)
    np.testing.assert_array_equal(y, labels)  # file order, every row once
    assert validation.scores["auroc_AF"] == pytest.approx(roc_auc_score(y[:, 4], p[:, 4]))
    assert validation.train_seconds >= 0


def test_seed_states_give_a_reloaded_model_the_same_dropout_masks(tmp_path):
    """.keras files leave out dropout's generator state (keras-team/keras#19796)."""
    from ecgcode.training.workarounds import capture_seed_states, restore_seed_states

    model = tiny_model()
    x = np.ones((2, 4096, 12), np.float32)  # (2, 4096, 12)
    for _ in range(3):
        model(x, training=True)  # advances the generator
    model.save(tmp_path / "m.keras")
    states = capture_seed_states(model)
    assert states, "no seed_generator_state variable found: Keras renamed it?"
    reloaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    if capture_seed_states(reloaded) == states:
        pytest.fail("Keras now saves dropout's generator state: the work-around can go")
    restore_seed_states(reloaded, states)
    np.testing.assert_array_equal(model(x, training=True), reloaded(x, training=True))


def test_build_before_fit_builds_the_compiled_loss_from_zeros():
    """The JAX work-around calls Keras' private Trainer._symbolic_build (keras#20394)."""
    from ecgcode.training.workarounds import build_before_fit

    model = recipe.compile_model(tiny_model())
    assert not model._compile_loss.built
    build_before_fit(model, "jax")
    assert model._compile_loss.built and model.optimizer.built


def test_the_multi_worker_work_arounds_find_their_keras_names():
    """The patches replace Keras-private names; the two-worker test below runs them."""
    import inspect

    from keras.src.backend.tensorflow import trainer as tf_trainer

    fit_source = inspect.getsource(tf_trainer.TensorFlowTrainer.fit)
    assert "self._maybe_symbolic_build(iterator=" in fit_source
    assert "reduce_per_replica(" in inspect.getsource(tf_trainer)
    assert list(inspect.signature(tf_trainer.reduce_per_replica).parameters) == [
        "values", "strategy", "reduction"]


def test_each_epoch_order_depends_on_seed_and_epoch_alone(data):
    """One dataset per epoch, seeded by (seed, epoch): a resume sees the same orders."""
    import tensorflow as tf

    collection = ecg_data.open_collection([data])
    rows = np.arange(30)
    training = run_setup.TrainingData(collection, np.zeros((40, N_CLASSES), np.float32),
                                      CLASSES, rows, np.arange(30, 40), np.arange(0))
    device = run_setup.Device("tensorflow", tf.distribute.get_strategy(), "none", True, "CPU",
                              False, "float32", "")
    options = dict(run_setup.DEFAULTS, batch_size=8)
    run = training_run.Run(options, training, device, "run", "run", ts.new_state())

    def order(epoch):
        return np.concatenate([row_ids(x) for x, _ in run.train_batches(epoch)])

    second = order(1)
    assert order(0).tolist() != second.tolist()
    assert order(1).tolist() == second.tolist() and sorted(second) == list(range(30))


# --- A whole run ------------------------------------------------------------------------
def test_run_folder_contents(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_tiny([data, "--out", str(out), *BASE]) == 0
    names = set(os.listdir(out))
    for name in ("model_best.keras", "model_best.h5", "model_last.keras", "model_last.h5",
                 "final_model.h5", "history.csv", "config.json", "thresholds.json", "resume"):
        assert name in names
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    for column in ("loss", "val_loss", "lr", *(f"val_auroc_{c}" for c in CLASSES),
                   *(f"val_ap_{c}" for c in CLASSES)):
        assert column in history.columns
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["epochs"] == 2 and config["options"]["batch_size"] == 8
    assert config["inputs"]["rows"] == 40 and config["inputs"]["validation_rows"] == 10
    assert "tensorflow" in config["versions"] and "git_commit" in config
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert set(thresholds["classes"]) == set(CLASSES)
    best = keras.models.load_model(out / "final_model.h5", compile=False)
    state = ts.read_state(out)
    assert thresholds["epoch"] == state["best_epoch"]
    assert np.isclose(state["best_val_loss"], history["val_loss"].min())
    assert len(best.weights) == len(tiny_model().weights)
    text = capsys.readouterr().out
    assert "Epoch 2/2" in text and "Summary:" in text and "XLA off" in text
    legacy = pytest.importorskip("tf_keras").models.load_model(out / "final_model.h5")
    x = np.random.default_rng(0).normal(0, 1, (2, 4096, 12)).astype("float32")
    np.testing.assert_allclose(legacy.predict(x, verbose=0), best.predict(x, verbose=0), atol=1e-6)
    assert "backend tensorflow; device CPU" in text and config["setup"]["backend"] == "tensorflow"


def test_two_files_and_csv_with_group_split(make_hdf5, tmp_path):
    a = make_hdf5("a.hdf5", 20)
    b = make_hdf5("b.hdf5", 20, first_id=20)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame((rng.random((40, 6)) < 0.3).astype(int), columns=list(CLASSES))
    frame.insert(0, "exam_id", 1000 + np.arange(40))
    frame["patient_id"] = np.arange(40) // 4
    frame.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "run"
    argv = [a, b, str(tmp_path / "labels.csv"), "--out", str(out), *BASE, "--epochs", "1",
            "--val-split-by", "patient_id"]
    assert train_tiny(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["inputs"]["sizes"] == [20, 20]
    assert config["inputs"]["validation_rows"] % 4 == 0  # whole patients
    bad = [*argv[:3], "--out", str(tmp_path / "r2"), "--val-split-by", "nope"]
    assert train_tiny(bad) == 2


# --- Faults ---------------------------------------------------------------------------
def test_non_empty_out_refused_without_touching_it(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert train_tiny([data, "--out", str(out), *BASE]) == 2
    assert os.listdir(out) == ["keep.txt"]
    assert "--resume" in capsys.readouterr().err


def test_resume_without_state_refused(tmp_path):
    assert train_tiny(["--resume", "--out", str(tmp_path)]) == 2


def test_labels_with_other_classes_refused(make_hdf5, tmp_path, capsys):
    bad = make_hdf5("bad.hdf5", 20, labels=True, classes=("A", "B", "C", "D", "E", "F"))
    assert train_tiny([bad, "--out", str(tmp_path / "run"), *BASE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_nan_loss_stops_and_keeps_last_good_model(data, tmp_path, capsys):
    out = tmp_path / "run"

    def poison(model):
        model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan))

    status = train_tiny([data, "--out", str(out), *BASE, "--epochs", "3"],
                        extra_callbacks=[AtBatch(1, 1, poison)])
    assert status == 2
    assert "NaN in epoch 2" in capsys.readouterr().err
    assert ts.read_state(out)["completed_epochs"] == 1
    kept = keras.models.load_model(out / "model_last.keras", compile=False)
    assert all(np.isfinite(w).all() for w in kept.get_weights())


def test_ctrl_c_saves_model_last_and_resume_finishes(data, tmp_path, capsys):
    out = tmp_path / "run"

    def interrupt(model):
        raise KeyboardInterrupt

    status = train_tiny([data, "--out", str(out), *BASE, "--epochs", "3"],
                        extra_callbacks=[AtBatch(1, 2, interrupt)])
    assert status == INTERRUPTED
    assert f"--resume --out {out}" in capsys.readouterr().err
    assert (out / "model_last.keras").is_file() and (out / "model_last.h5").is_file()
    assert ts.read_state(out)["completed_epochs"] == 1
    assert train_tiny(["--resume", "--out", str(out)]) == 0
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2, 3]


@pytest.mark.slow
def test_counters_and_lr_restored_on_resume(data, tmp_path, monkeypatch):
    """ReduceLROnPlateau must fire at the same epoch with and without a resume."""
    argv = [data, *BASE, "--epochs", "4", "--lr", "1e-9"]  # no progress: plateau at once
    paper_callbacks = recipe.paper_callbacks

    def quick_callbacks(lr):  # the same callbacks with shorter patience, to keep the test short
        reduce_lr, early = paper_callbacks(lr)
        reduce_lr.patience, early.patience = 2, 3
        return reduce_lr, early

    monkeypatch.setattr(recipe, "paper_callbacks", quick_callbacks)
    assert train_tiny([*argv, "--out", str(tmp_path / "a")]) == 0
    assert train_tiny([*argv, "--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    assert train_tiny(["--resume", "--out", str(tmp_path / "b"), "--epochs", "4"]) == 0
    a, b = ts.read_state(tmp_path / "a"), ts.read_state(tmp_path / "b")
    assert [r["lr"] for r in a["history"]] == [r["lr"] for r in b["history"]]
    assert a["counters"] == b["counters"] and a["stopped_early"] == b["stopped_early"]
    assert a["lr"] < 1e-9  # the plateau reduced it


# --- Subprocesses: kill -9 and resume, two logical CPUs, two workers --------------------
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    spec = json.loads(sys.argv[1])
    sys.path[:0] = [spec["root"], os.path.join(spec["root"], "tests")]
    import tensorflow as tf
    if spec.get("logical_cpus"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])
    import keras
    import numpy as np
    from ecgcode.cli import train
    from ecgcode.common import run_cli
    from ecgcode.training import run as training_run
    from test_train import AtBatch, tiny_model

    class DumpWeights(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            np.savez(spec["dump"], *self.model.get_weights())

    if spec.get("contexts"):  # record the input contexts of the worker's pipelines
        read_share = training_run.worker_dataset

        def recording(*args):
            with open(spec["contexts"], "a") as handle:
                handle.write(f"{args[-1].input_pipeline_id}/{args[-1].num_input_pipelines}\\n")
            return read_share(*args)

        training_run.worker_dataset = recording
    callbacks = [DumpWeights()] if spec.get("dump") else []
    if spec.get("kill_at"):
        kill = lambda model: os.kill(os.getpid(), signal.SIGKILL)
        callbacks.append(AtBatch(*spec["kill_at"], kill))
    sys.exit(run_cli(lambda a: train.main(a, model_factory=tiny_model,
                                          extra_callbacks=callbacks), spec["argv"]))
""")


def start(tmp_path, argv, env=None, **spec):
    """Start ``train.main(argv)`` with the tiny model in a new Python process."""
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT)
    spec = dict(spec, root=str(ROOT), argv=[str(a) for a in argv])
    environment = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.Popen([sys.executable, str(script), json.dumps(spec)], cwd=tmp_path,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def weights_of(path):
    with np.load(path) as arrays:
        return [arrays[k] for k in sorted(arrays.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(data, tmp_path):
    argv = [data, *BASE, "--epochs", "3", "--deterministic", "--mixed-precision"]  # bfloat16
    whole = start(tmp_path, [*argv, "--out", tmp_path / "whole"], dump=str(tmp_path / "w.npz"))
    killed = start(tmp_path, [*argv, "--out", tmp_path / "killed"], kill_at=[1, 2])
    status, output = finish(killed)
    assert status == -signal.SIGKILL, output
    assert ts.read_state(tmp_path / "killed")["completed_epochs"] == 1
    shutil.rmtree(tmp_path / "killed" / "resume")  # as if killed in the first epoch
    killed = start(tmp_path, ["--resume", "--out", tmp_path / "killed"], kill_at=[1, 2])
    status, output = finish(killed)
    assert status == -signal.SIGKILL, output
    assert ts.read_state(tmp_path / "killed")["completed_epochs"] == 1
    resumed = start(tmp_path, ["--resume", "--out", tmp_path / "killed"],
                    dump=str(tmp_path / "r.npz"))
    for process in (whole, resumed):
        status, output = finish(process)
        assert status == 0, output
    for a, b in zip(weights_of(tmp_path / "w.npz"), weights_of(tmp_path / "r.npz"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    a, b = ts.read_state(tmp_path / "whole"), ts.read_state(tmp_path / "killed")
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert a["seed_states"] == b["seed_states"] and a["counters"] == b["counters"]


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus(data, tmp_path):
    out = tmp_path / "run"
    process = start(tmp_path, [data, *BASE, "--epochs", "1", "--batch-size", "4",
                               "--distribute", "mirrored", "--out", out], logical_cpus=2)
    status, output = finish(process)
    assert status == 0, output
    setup = json.loads((out / "config.json").read_text())["setup"]
    assert setup["replicas"] == 2 and setup["global_batch"] == 8
    assert ts.read_state(out)["history"][0]["samples"] == 24  # 3 full global batches


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_local_workers_agree_on_the_weights(data, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    out = tmp_path / "run"
    argv = [data, *BASE, "--epochs", "2", "--batch-size", "4", "--distribute", "multi-worker",
            "--out", out]
    workers = [
        start(tmp_path, argv, dump=str(tmp_path / f"w{i}.npz"),
              contexts=str(tmp_path / f"contexts{i}.txt"), env={"TF_CONFIG": json.dumps(
                  {"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    for worker in workers:
        status, output = finish(worker)
        assert status == 0, output
    for a, b in zip(weights_of(tmp_path / "w0.npz"), weights_of(tmp_path / "w1.npz"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    setup = json.loads((out / "config.json").read_text())["setup"]
    assert setup["strategy"] == "multi-worker" and setup["replicas"] == 2
    assert sorted(os.listdir(tmp_path)).count("run") == 1  # only the chief wrote a folder
    history = ts.read_state(out)["history"]
    assert len(history) == 2 and history[0]["samples"] == 24  # 3 global batches of 8
    for i in range(2):  # each worker read through its own pipeline (its share: see below)
        assert set((tmp_path / f"contexts{i}.txt").read_text().split()) == {f"{i}/2"}


def test_two_workers_read_disjoint_shares_of_the_rows(make_hdf5):
    """Each worker's pipeline reads its own rows; together they read all training rows."""
    import tensorflow as tf

    from ecgcode import data as datasets

    collection = datasets.open_collection([make_hdf5("rows.hdf5", 50)], "tracings")
    labels = np.zeros((50, len(CLASSES)), np.float32)
    rows = np.arange(3, 45)  # 42 training rows
    global_batch, steps = 8, 42 // 8  # what every worker runs in one epoch
    shares = []
    for worker in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        dataset = training_run.worker_dataset(collection, labels, rows, global_batch, 7, context)
        batches = [row_ids(x) for x, _ in dataset.take(3 * steps)]  # endless: > 2 passes
        assert {len(b) for b in batches} == {global_batch // 2}
        epoch = np.concatenate(batches[:steps])
        assert len(set(epoch)) == len(epoch)  # no row twice within an epoch
        shares.append(set(np.concatenate(batches)))
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(rows)
    assert abs(len(shares[0]) - len(shares[1])) <= 5  # at most one block apart


# --- Precision and the paper's model --------------------------------------------------
def pin_cpu_flags(monkeypatch, *flags):
    """Make this CPU look as if it had exactly ``flags`` (e.g. ``avx512_bf16``)."""
    import ecgcode.model.precision

    monkeypatch.setattr(ecgcode.model.precision, "cpu_flags", lambda path=None: set(flags))


def test_native_bfloat16_cpu_trains_in_mixed_bfloat16_by_default(data, tmp_path, capsys,
                                                                   monkeypatch):
    flag = "avx512_bf16"
    pin_cpu_flags(monkeypatch, "avx2", flag)
    out = tmp_path / "run"
    assert train_tiny([data, *BASE, "--epochs", "1", "--out", str(out)]) == 0
    assert keras.mixed_precision.dtype_policy().name == "float32"  # main restores the policy
    banner = capsys.readouterr().out
    assert f"precision mixed_bfloat16 (default: this CPU computes bfloat16 natively ({flag}))" \
        in banner
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["mixed_precision"] is True  # what the run used, for --resume
    checkpoint = keras.models.load_model(out / "model_last.keras", compile=False)
    assert checkpoint.layers[1].compute_dtype == "bfloat16"  # resumes in its own policy
    for name in ("model_best.keras", "model_best.h5", "final_model.h5", "model_last.h5"):
        saved = keras.models.load_model(out / name, compile=False)
        assert {layer.compute_dtype for layer in saved.layers[1:]} == {"float32"}, name
        if name.startswith("model_last"):  # the same weights as the checkpoint
            np.testing.assert_array_equal(saved.get_weights()[0], checkpoint.get_weights()[0])


def test_amx_cpu_trains_in_float32_by_default(data, tmp_path, capsys, monkeypatch):
    """TensorFlow's bfloat16 convolutions are wrong on AMX (ecgcode.model.precision)."""
    pin_cpu_flags(monkeypatch, "avx2", "avx512_bf16", "amx_bf16")
    assert train_tiny([data, *BASE, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert "precision float32 (default: TensorFlow's bfloat16 convolutions are wrong on this " \
        "CPU's AMX (amx_bf16)" in capsys.readouterr().out


def test_onednn_is_kept_off_amx_unless_the_user_chose():
    from ecgcode.model.precision import ONEDNN_ISA_WITHOUT_AMX, keep_onednn_off_amx

    environ = {}
    assert keep_onednn_off_amx({"avx512_bf16", "amx_bf16"}, environ)
    assert environ == {"ONEDNN_MAX_CPU_ISA": ONEDNN_ISA_WITHOUT_AMX}
    chosen = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}
    assert not keep_onednn_off_amx({"amx_bf16"}, chosen)
    assert chosen == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}
    without_amx = {}
    assert not keep_onednn_off_amx({"avx512_bf16"}, without_amx) and not without_amx


def test_cpu_without_native_bfloat16_trains_in_float32_by_default(data, tmp_path, capsys,
                                                                  monkeypatch):
    pin_cpu_flags(monkeypatch, "avx2", "avx512f")
    assert train_tiny([data, *BASE, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    banner = capsys.readouterr().out
    assert "precision float32 (default: this CPU" in banner
    assert "has no native bfloat16 (no amx_bf16 nor avx512_bf16))" in banner
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["options"]["mixed_precision"] is False


def test_precision_flags_override_the_default(data, tmp_path, capsys, monkeypatch):
    pin_cpu_flags(monkeypatch, "avx512_bf16")
    assert train_tiny([data, *BASE, "--epochs", "1", "--no-mixed-precision",
                       "--out", str(tmp_path / "off")]) == 0
    assert "precision float32 (--no-mixed-precision)" in capsys.readouterr().out
    pin_cpu_flags(monkeypatch)
    try:
        assert train_tiny([data, *BASE, "--epochs", "1", "--mixed-precision",
                           "--out", str(tmp_path / "on")]) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "precision mixed_bfloat16 (--mixed-precision)" in capsys.readouterr().out
    saved = keras.models.load_model(tmp_path / "on" / "model_best.keras", compile=False)
    assert saved.outputs[0].dtype == "float32"


def test_resume_keeps_the_precision_of_the_run(data, tmp_path, capsys, monkeypatch):
    pin_cpu_flags(monkeypatch, "avx512_bf16")
    out = str(tmp_path / "run")
    try:
        assert train_tiny([data, *BASE, "--epochs", "1", "--out", out]) == 0
        capsys.readouterr()
        pin_cpu_flags(monkeypatch)  # resumed on a CPU without native bfloat16
        assert train_tiny(["--resume", "--out", out, "--epochs", "2"]) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "precision mixed_bfloat16 (as the run being resumed)" in capsys.readouterr().out
    assert train_tiny(["--resume", "--out", out, "--epochs", "3", "--no-mixed-precision"]) == 2
    assert "--mixed-precision cannot change on --resume" in capsys.readouterr().err


@pytest.mark.parametrize("device, policy, expected", [
    ("1 x NVIDIA H200", "mixed_bfloat16", "mixed_bfloat16"),
    ("1 x Tesla T4", "mixed_float16", "float32"),
])
def test_gpus_from_ampere_on_default_to_mixed_bfloat16(device, policy, expected):
    chosen, reason = run_setup.choose_precision(None, device, policy)
    assert chosen == expected and reason.startswith("default: the GPU")
    assert run_setup.choose_precision(True, device, policy)[0] == policy


def test_jax_on_a_cpu_defaults_to_float32_even_with_native_bfloat16(monkeypatch):
    pin_cpu_flags(monkeypatch, "avx512_bf16")
    assert run_setup.choose_precision(None, "CPU", "mixed_bfloat16", "tensorflow")[0] == \
        "mixed_bfloat16"
    policy, reason = run_setup.choose_precision(None, "CPU", "mixed_bfloat16", "jax")
    assert policy == "float32" and "JAX" in reason


@pytest.mark.slow
def test_full_paper_model_end_to_end(make_hdf5, tmp_path):
    data = make_hdf5("small.hdf5", 12, labels=True)
    out = tmp_path / "run"
    argv = [data, "--out", str(out), "--epochs", "1", "--batch-size", "2",
            "--steps-per-epoch", "2", "--val-split", "0.25", "--no-jit"]
    assert run_cli(train.main, argv) == 0

    best = modelfiles.load_model(out / "final_model.h5")
    assert best.count_params() == 6_425_638
    assert ts.read_state(out)["history"][0]["samples"] == 4
