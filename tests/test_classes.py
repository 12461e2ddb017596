"""Own class sets and fine-tuning: --classes, row selection by column, --init, class names.

Logic tests train the tiny model of test_train on a few synthetic ECGs; the end-to-end test
pretrains a small convolutional network on synthetic ECGs with the six abnormalities and
fine-tunes it to a new two-class task.
"""

import json
import zipfile

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
from test_train import BASE, tiny_model, train_tiny

from ecgcode.cli import model as model_module
from ecgcode.cli import predict, train
from ecgcode.common import CLASSES, ECGInputError, run_cli
from ecgcode.data import load_labels, open_collection
from ecgcode.data.labels import LabelColumnsError
from ecgcode.model import metadata, modelfiles
from ecgcode.training.transfer import freeze_backbone, transfer_weights, weighted_layers


def _own_labels_csv(tmp_path, n, seed=0):
    """A CODE-15%-like CSV: exam_id, other 0/1 columns (is_male, death) and three classes."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"exam_id": 1000 + np.arange(n),
                          "is_male": rng.integers(0, 2, n), "death": rng.integers(0, 2, n),
                          "NORM": rng.integers(0, 2, n), "MI": rng.integers(0, 2, n),
                          "CD": rng.integers(0, 2, n), "age": rng.integers(20, 90, n),
                          "fold": np.arange(n) % 10 + 1})
    path = tmp_path / "own.csv"
    frame.to_csv(path, index=False)
    return str(path)


# --- Choosing the label columns ------------------------------------------------------------
def test_classes_chosen_by_name_in_the_given_order(make_hdf5, tmp_path):
    collection = open_collection(make_hdf5("x.hdf5", 12))
    csv = _own_labels_csv(tmp_path, 12)
    table = load_labels(collection, csv, classes=("CD", "NORM"))
    frame = pd.read_csv(csv)
    assert table.classes == ("CD", "NORM")
    np.testing.assert_array_equal(table.labels, frame[["CD", "NORM"]].to_numpy())


def test_without_classes_the_error_lists_the_zero_one_columns(make_hdf5, tmp_path):
    collection = open_collection(make_hdf5("x.hdf5", 12))
    with pytest.raises(LabelColumnsError) as error:
        load_labels(collection, _own_labels_csv(tmp_path, 12))
    message = str(error.value)
    assert "\n" not in message and "--classes" in message
    for column in ("is_male", "death", "NORM", "MI", "CD"):
        assert column in message
    assert "age" not in message.split("0/1 columns")[1]  # not a 0/1 column
    with pytest.raises(LabelColumnsError, match="XX"):
        load_labels(collection, _own_labels_csv(tmp_path, 12), classes=("NORM", "XX"))


def test_paper_six_are_the_default_even_with_other_zero_one_columns(make_hdf5, tmp_path):
    collection = open_collection(make_hdf5("x.hdf5", 8))
    frame = pd.DataFrame((np.arange(48).reshape(8, 6) % 2), columns=list(CLASSES))
    frame.insert(0, "exam_id", 1000 + np.arange(8))
    frame["is_male"], frame["death"] = 1, 0
    frame.to_csv(tmp_path / "code15.csv", index=False)
    assert load_labels(collection, tmp_path / "code15.csv").classes == CLASSES


def test_hdf5_labels_with_other_classes(make_hdf5):
    path = make_hdf5("x.hdf5", 8, labels=True, classes=("A", "B", "C", "D", "E", "F"))
    with pytest.raises(LabelColumnsError, match="--classes"):
        load_labels(path)
    table = load_labels(path, classes=("F", "A"))
    with h5py.File(path) as handle:
        np.testing.assert_array_equal(table.labels, handle["labels"][()][:, [5, 0]])


def test_parse_classes_refuses_empty_and_repeated_names():
    assert metadata.parse_classes("NORM, MI,CD") == ("NORM", "MI", "CD")
    for bad in ("", "A,,B", "A,B,A"):
        with pytest.raises(ECGInputError):
            metadata.parse_classes(bad)


# --- Class names inside the model files ----------------------------------------------------
def test_class_names_are_stored_in_every_model_file_and_plain_keras_still_loads(tmp_path):
    net = tiny_model(3)
    keras_path, h5_path = modelfiles.save_model(net, tmp_path / "m", classes=("x", "y", "z"))
    with h5py.File(h5_path) as handle:
        assert list(handle.attrs["classes"]) == ["x", "y", "z"]
    assert metadata.KERAS_ENTRY in zipfile.ZipFile(keras_path).namelist()
    for path in (keras_path, h5_path):
        assert metadata.read_model_classes(path) == ("x", "y", "z")
        loaded = keras.models.load_model(path, compile=False)
        assert loaded.outputs[0].shape[-1] == 3
    assert metadata.read_model_classes(modelfiles.save_model(tiny_model(), tmp_path / "p")[1]) \
        == CLASSES


# --- A run on other classes ---------------------------------------------------------------
@pytest.mark.slow
def test_run_on_own_classes_names_everything(make_hdf5, tmp_path):
    data = make_hdf5("x.hdf5", 40)
    csv = _own_labels_csv(tmp_path, 40)
    out = tmp_path / "run"
    assert train_tiny([data, csv, "--out", str(out), *BASE, "--classes", "MI,NORM"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == ["MI", "NORM"] and config["options"]["classes"] == ["MI", "NORM"]
    assert list(json.loads((out / "thresholds.json").read_text())["classes"]) == ["MI", "NORM"]
    history = pd.read_csv(out / "history.csv")
    assert {"val_auroc_MI", "val_ap_NORM"} <= set(history.columns)
    assert not any("1dAVb" in column for column in history.columns)
    for name in ("model_best.keras", "model_best.h5", "model_last.keras", "model_last.h5",
                 "final_model.h5"):
        assert metadata.read_model_classes(str(out / name)) == ("MI", "NORM"), name
    assert train_tiny(["--resume", "--out", str(out), "--epochs", "3"]) == 0  # classes kept
    assert train_tiny(["--resume", "--out", str(out), "--classes", "CD"]) == 2
    scores = tmp_path / "scores.csv"  # predict.py on the run folder: its names and thresholds
    assert run_cli(predict.main, [data, str(out), "--output-file", str(scores), "--quiet"]) == 0
    assert list(pd.read_csv(scores).columns) == ["exam_id", "MI", "NORM", "MI_pred", "NORM_pred"]


def test_classes_cannot_change_on_resume_of_a_paper_run(make_hdf5, tmp_path, capsys):
    data = make_hdf5("x.hdf5", 40, labels=True)
    out = tmp_path / "run"
    assert train_tiny([data, "--out", str(out), *BASE, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert train_tiny(["--resume", "--out", str(out), "--classes", "AF"]) == 2
    assert "cannot change on --resume" in capsys.readouterr().err
    assert train_tiny(["--resume", "--out", str(out), "--classes", ",".join(CLASSES)]) == 0


def test_train_without_classes_on_other_columns_is_a_one_line_error(make_hdf5, tmp_path, capsys):
    data = make_hdf5("x.hdf5", 20)
    out = tmp_path / "run"
    assert train_tiny([data, _own_labels_csv(tmp_path, 20), "--out", str(out), *BASE]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--classes" in err and "is_male" in err
    assert not out.exists()


def test_validation_and_test_rows_chosen_by_column_values(make_hdf5, tmp_path, capsys):
    data = make_hdf5("x.hdf5", 40)
    csv = _own_labels_csv(tmp_path, 40)
    out = tmp_path / "run"
    argv = [data, csv, "--out", str(out), *BASE, "--epochs", "1", "--classes", "NORM,MI,CD",
            "--val-where", "fold=9", "--test-where", "fold=10"]
    assert train_tiny(argv) == 0
    inputs = json.loads((out / "config.json").read_text())["inputs"]
    assert (inputs["train_rows"], inputs["validation_rows"], inputs["held_out_rows"]) == (32, 4, 4)
    assert "4 held out" in capsys.readouterr().out
    bad = [*argv[:2], "--out", str(tmp_path / "r2"), *BASE, "--classes", "MI",
           "--val-where", "fold"]
    assert train_tiny(bad) == 2


def test_val_where_reads_an_hdf5_column_such_as_ptbxl_strat_fold(make_hdf5, tmp_path):
    data = make_hdf5("x.hdf5", 20, labels=True)
    with h5py.File(data, "a") as handle:
        handle["strat_fold"] = np.arange(20) % 10 + 1
    out = tmp_path / "run"
    assert train_tiny([data, "--out", str(out), *BASE, "--epochs", "1",
                       "--val-where", "strat_fold=9,10"]) == 0
    inputs = json.loads((out / "config.json").read_text())["inputs"]
    assert inputs["validation_rows"] == 4 and inputs["held_out_rows"] == 0


# --- Fine-tuning ------------------------------------------------------------------------------
def test_init_transfers_every_weight_for_the_same_classes_and_reorders_the_head(tmp_path):
    source = tiny_model(3)
    path = modelfiles.save_model(source, tmp_path / "src", classes=("a", "b", "c"))[0]
    same = tiny_model(3)
    summary = transfer_weights(same, path, ("a", "b", "c"))
    assert summary["head"] == "transferred"
    for new, old in zip(same.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(new, old)
    reordered = tiny_model(3)
    assert transfer_weights(reordered, path, ("c", "a", "b"))["head"].endswith("reordered")
    kernel = source.layers[-1].get_weights()[0]
    np.testing.assert_array_equal(reordered.layers[-1].get_weights()[0], kernel[:, [2, 0, 1]])


def test_init_with_other_classes_keeps_a_new_head(tmp_path):
    source = tiny_model()
    path = modelfiles.save_model(source, tmp_path / "src")[1]  # .h5, the paper's six
    keras.utils.set_random_seed(5)
    target = tiny_model(2)
    summary = transfer_weights(target, path, ("X", "Y"))
    assert summary["head"] == "new" and summary["source_classes"] == list(CLASSES)
    for new, old in zip(weighted_layers(target)[:-1], weighted_layers(source)[:-1]):
        for a, b in zip(new.get_weights(), old.get_weights()):
            np.testing.assert_array_equal(a, b)
    kernel, bias = target.layers[-1].get_weights()
    assert not kernel.any() and not bias.any()  # no prevalence given: outputs start at 0.5
    transfer_weights(target, path, ("X", "Y"), prevalence=[0.1, 0.5])
    np.testing.assert_allclose(target.layers[-1].get_weights()[1], [np.log(1 / 9), 0], atol=1e-6)
    with pytest.raises(ECGInputError, match="same architecture"):
        transfer_weights(keras.Sequential([keras.Input((4096, 12)), keras.layers.Flatten(),
                                           keras.layers.Dense(2)]), path, ("X", "Y"))


def test_freeze_backbone_leaves_only_the_head_trainable():
    net = tiny_model(2)
    count = freeze_backbone(net)
    kernel, bias = net.layers[-1].weights
    assert count == int(np.prod(kernel.shape) + np.prod(bias.shape))
    assert [w.name for w in net.trainable_weights] == [kernel.name, bias.name]


def test_init_and_resume_do_not_combine_and_freeze_needs_init(make_hdf5, tmp_path, capsys):
    data = make_hdf5("x.hdf5", 20, labels=True)
    out = tmp_path / "run"
    assert train_tiny(["--resume", "--out", str(out), "--init", data]) == 2
    assert "--init" in capsys.readouterr().err
    assert train_tiny([data, "--out", str(out), *BASE, "--freeze-backbone"]) == 2
    assert "--init" in capsys.readouterr().err


def test_run_from_init_with_frozen_backbone(make_hdf5, tmp_path, capsys):
    data = make_hdf5("x.hdf5", 40)
    csv = _own_labels_csv(tmp_path, 40)
    source = tiny_model()
    source_path = modelfiles.save_model(source, tmp_path / "src")[1]
    out = tmp_path / "run"
    assert train_tiny([data, csv, "--out", str(out), *BASE, "--classes", "NORM,CD",
                       "--init", source_path, "--freeze-backbone"]) == 0
    assert "weights: from" in capsys.readouterr().out
    tuned = keras.models.load_model(out / "model_best.keras", compile=False)
    for new, old in zip(weighted_layers(tuned)[:-1], weighted_layers(source)[:-1]):
        for a, b in zip(new.get_weights(), old.get_weights()):
            np.testing.assert_array_equal(a, b)  # frozen: unchanged after training


# --- End to end: pretrain on six classes, fine-tune to two -----------------------------------
def small_convnet(n_classes):
    """A small 1-D CNN (about 20k parameters) that learns the synthetic abnormalities."""
    signal = keras.Input((4096, 12), name="signal")
    x = keras.layers.Conv1D(16, 16, strides=4, activation="relu")(signal)  # (batch, 1021, 16)
    x = keras.layers.Conv1D(32, 16, strides=4, activation="relu")(x)  # (batch, 252, 32)
    x = keras.layers.Conv1D(32, 8, strides=2, activation="relu")(x)  # (batch, 123, 32)
    x = keras.layers.GlobalAveragePooling1D()(x)  # (batch, 32)
    outputs = keras.layers.Dense(n_classes, activation="sigmoid", dtype="float32")(x)
    return keras.Model(signal, outputs)


def _derived_labels(labels):
    """The new task: bundle branch block (RBBB or LBBB) and abnormal rate (SB or ST)."""
    return np.stack([labels[:, [1, 2]].max(axis=1), labels[:, [3, 5]].max(axis=1)], axis=1)


def _two_class_csv(path, tracings_path):
    with h5py.File(tracings_path) as handle:
        labels, ids = _derived_labels(handle["labels"][()]), handle["exam_id"][()]
    frame = pd.DataFrame({"exam_id": ids, "bbb": labels[:, 0], "rate": labels[:, 1]})
    frame.to_csv(path, index=False)
    return frame


def _run(argv):
    return run_cli(lambda a: train.main(a, model_factory=small_convnet), argv)


@pytest.mark.slow
def test_fine_tuned_model_beats_a_fresh_one_on_held_out_exams(tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    from ecgcode.data.synthetic.generate import write_synthetic

    pretrain = write_synthetic(tmp_path / "pre.hdf5", 600, seed=1, progress=False,
                               prevalence="balanced")
    task = write_synthetic(tmp_path / "task.hdf5", 320, seed=2, progress=False,
                           prevalence="balanced")
    held_out = write_synthetic(tmp_path / "test.hdf5", 200, seed=3, progress=False,
                               prevalence="balanced")
    csv = tmp_path / "task.csv"
    _two_class_csv(csv, task)
    common = ["--batch-size", "32", "--no-jit", "--seed", "0", "--val-split", "0.2"]
    assert _run([pretrain, "--out", str(tmp_path / "pre"), "--epochs", "8", *common]) == 0
    few = ["--epochs", "1", "--steps-per-epoch", "8", "--classes", "bbb,rate", *common]
    assert _run([task, str(csv), "--out", str(tmp_path / "fresh"), *few]) == 0
    assert _run([task, str(csv), "--out", str(tmp_path / "tuned"), *few,
                 "--init", str(tmp_path / "pre")]) == 0
    source = keras.models.load_model(tmp_path / "pre" / "model_best.keras", compile=False)
    with h5py.File(held_out) as handle:
        x, labels = handle["tracings"][()], handle["labels"][()]
    y = _derived_labels(labels)
    results = {}
    for name in ("fresh", "tuned"):
        net = keras.models.load_model(tmp_path / name / "model_last.keras", compile=False)
        first = weighted_layers(net)[0].get_weights()[0]
        distance = np.linalg.norm(first - weighted_layers(source)[0].get_weights()[0])
        scores = net.predict(x, verbose=0)
        auroc = np.mean([roc_auc_score(y[:, k], scores[:, k]) for k in range(2)])
        results[name] = {"distance": float(distance / np.linalg.norm(first)), "auroc": float(auroc)}
    print("fine-tuning numbers:", json.dumps(results))
    assert results["tuned"]["distance"] < 0.1 < results["fresh"]["distance"]
    assert results["tuned"]["auroc"] > results["fresh"]["auroc"] + 0.03  # measured 0.756, 0.703


# --- The class names in the other tools ------------------------------------------------------
def test_explain_and_export_use_the_stored_class_names(make_hdf5, tmp_path, capsys):
    from ecgcode.model import runtimes
    data = make_hdf5("x.hdf5", 3)
    keras_path, _ = modelfiles.save_model(tiny_model(3), tmp_path / "own", classes=("a", "b", "c"))
    out = tmp_path / "p.npy"
    argv = [data, keras_path, "--output-file", str(out), "--explain", "0",
            "--explain-class", "b", "--explain-steps", "2", "--quiet"]
    assert run_cli(predict.main, argv) == 0
    index = json.loads((tmp_path / "p_saliency.json").read_text())
    assert index["exams"][0]["class"] == "b"
    with pytest.raises(SystemExit):
        run_cli(predict.main, [*argv[:-5], "--explain-class", "AF", "--quiet"])
    assert "choose one of a, b, c" in capsys.readouterr().err
    served = tmp_path / "served" / "own"
    assert run_cli(model_module.main, ["export", keras_path, str(served), "--formats", "onnx",
                                       "--no-check"]) == 0
    assert json.loads(runtimes.read_metadata(str(served) + ".onnx")["classes"]) == ["a", "b", "c"]
    run_cli(model_module.main, [keras_path])  # the summary names the stored classes
    assert "outputs: a, b, c" in capsys.readouterr().out


def test_one_default_class_rule_for_training_and_evaluation(tmp_path):
    from ecgcode.data.labels import csv_classes, read_label_csv

    frame = read_label_csv(_own_labels_csv(tmp_path, 6))
    with pytest.raises(LabelColumnsError, match="is_male"):
        csv_classes(frame, None, "own.csv")  # training: never learn metadata silently
    assert csv_classes(frame, None, "own.csv", every_zero_one=True) == (
        "is_male", "death", "NORM", "MI", "CD")  # a gold standard: all its 0/1 columns
    paper = pd.DataFrame(0, index=range(3), columns=[*CLASSES, "is_male"])
    for every in (False, True):
        assert csv_classes(paper, None, "code15.csv", every_zero_one=every) == CLASSES
        assert csv_classes(paper, ("AF",), "code15.csv", every_zero_one=every) == ("AF",)


def test_the_exam_id_join():
    from ecgcode.data.labels import ExamIdJoinError, exam_id_positions

    positions, matched = exam_id_positions([7, 5, 9], [9, 7], "a.csv")
    assert positions.tolist() == [2, 0] and matched.all()
    positions, matched = exam_id_positions([7, 5], [5, 8], "a.csv", allow_missing=True)
    assert positions.tolist() == [1, 0] and matched.tolist() == [True, False]
    with pytest.raises(ExamIdJoinError, match="a.csv: 1 of 2 exam ids of the tracings"):
        exam_id_positions([7, 5], [5, 8], "a.csv")
    with pytest.raises(ExamIdJoinError, match="a.csv: 1 duplicated exam_id values"):
        exam_id_positions([7, 7], [7], "a.csv")
