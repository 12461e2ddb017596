"""Bad input as a new user meets it (issue 16): one-line errors, no TensorFlow noise, fixes.

One test (or a few) per item: NaN tracings in train.py (refused up front or skipped),
validation before TensorFlow is imported and its start-up noise filtered, NaN exams named
by file and row, plain numbers in messages, a CSV path for make_dataset's labels, lead
problems told apart, and predict.py's model checked before its inputs' amplitudes.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
from conftest import run_main as status_of
from conftest import synthetic_tracings, write_hdf5

from ecgcode import data as datasets
from ecgcode.cli import datasets as datasets_cli
from ecgcode.cli import predict, train
from ecgcode.common import CLASSES, plain
from ecgcode.data.hdf5 import Collection
from ecgcode.data.screening import input_error_in_pipeline
from ecgcode.inference import outputs
from ecgcode.model import quiet

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--epochs", "1", "--batch-size", "8", "--val-split", "0.25", "--no-jit"]


def tiny_model():
    signal = keras.Input((4096, 12))  # (batch, 4096, 12)
    x = keras.layers.Conv1D(2, 16, strides=128)(signal)  # (batch, 32, 2)
    x = keras.layers.Flatten()(x)  # (batch, 64)
    return keras.Model(signal, keras.layers.Dense(len(CLASSES), activation="sigmoid")(x))


def with_nonfinite(path, rows, n=40):
    """A labelled file of ``n`` tracings whose ``rows`` hold a NaN (inf for the last one)."""
    x = synthetic_tracings(n)
    for k, row in enumerate(rows):
        x[row, 100, 3] = np.inf if k == len(rows) - 1 else np.nan
    return write_hdf5(path, n, data=x, labels=True)


def run_script(code, cwd):
    """Run ``code`` in a fresh interpreter with the repository on the path."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


# --- 1. NaN tracings in train.py ----------------------------------------------------------
def test_train_refuses_nonfinite_rows_before_training(tmp_path, capsys):
    data = with_nonfinite(tmp_path / "data.hdf5", [3, 17])
    out = tmp_path / "run"
    status, _, err = status_of(lambda a: train.main(a, model_factory=tiny_model),
                               [data, "--out", str(out), *TINY_TRAIN], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "data.hdf5 row 3 (exam_id 1003)" in err and "row 17" in err
    assert "--skip-nonfinite" in err and not out.exists()


def test_train_skip_nonfinite_drops_and_counts_the_rows(tmp_path, capsys):
    data = with_nonfinite(tmp_path / "data.hdf5", [3, 35])  # one training, one validation row
    out = tmp_path / "run"
    status, stdout, _ = status_of(lambda a: train.main(a, model_factory=tiny_model),
                                  [data, "--out", str(out), "--skip-nonfinite", *TINY_TRAIN],
                                  capsys)
    assert status == 0
    assert "dropped 2 tracings with NaN/inf values (1 training, 1 validation" in stdout
    config = (out / "config.json").read_text()
    assert '"skip_nonfinite": true' in config and (out / "model_best.keras").is_file()


def test_nonfinite_met_during_training_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    # As if the file changed after the up-front scan: the pipeline's own check stops the run.
    monkeypatch.setattr(train, "screen_rows", lambda c, t, v, skip: (t, v))
    data = with_nonfinite(tmp_path / "data.hdf5", [3])
    status, _, err = status_of(lambda a: train.main(a, model_factory=tiny_model),
                               [data, "--out", str(tmp_path / "run"), *TINY_TRAIN], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err
    assert "epoch 1 met bad data" in lines[0] and "data.hdf5 row 3" in lines[0]
    assert "no epoch completed" in lines[0]


def test_pipeline_nonfinite_error_is_recognised():
    error = RuntimeError("InvalidArgumentError: ... NonFiniteError: 1 NaN/inf values in 1 "
                         "tracings (first: a.hdf5 row 2)\n  [[{{node PyFunc}}]]")
    assert input_error_in_pipeline(error) == "1 NaN/inf values in 1 tracings (first: a.hdf5 row 2)"
    assert input_error_in_pipeline(RuntimeError("something else")) is None


# --- 2. Validation before TensorFlow, and no start-up noise -----------------------------
def _value_2(frame):
    frame.loc[4, "AF"] = 2.0
    return frame


@pytest.mark.parametrize("damage, expected", [
    (_value_2, "(first: row 4, class AF, value 2); labels must be 0/1"),
    (lambda frame: frame.drop(columns=["ST"]), "no paper class column ST"),
    (lambda frame: frame.assign(exam_id=frame["exam_id"] + 100), "10 of 10 exam ids"),
])
def test_train_label_errors_come_before_tensorflow(tmp_path, damage, expected):
    data = write_hdf5(tmp_path / "data.hdf5", 10)
    frame = pd.DataFrame({"exam_id": 1000 + np.arange(10), **{c: 0 for c in CLASSES}})
    damage(frame).to_csv(tmp_path / "labels.csv", index=False)
    result = run_script(f"""
        import sys
        from ecgcode.cli import train
        from ecgcode.common import run_cli
        try:
            run_cli(train.main, [{data!r}, "labels.csv", "--out", "run"])
        except SystemExit as stop:
            print("status", stop.code, "tensorflow" in sys.modules)
        """, tmp_path)
    assert result.stdout.strip() == "status 2 False", result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'labels.csv'}: ")
    assert expected in lines[0]


@pytest.mark.slow
def test_predict_normal_run_shows_no_tensorflow_noise(tmp_path):
    data = write_hdf5(tmp_path / "exams.hdf5", 3)
    tiny_model().save(tmp_path / "tiny.keras")
    command = [sys.executable, str(ROOT / "predict.py"), data, "tiny.keras", "--output-file",
               "out.npy"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    for noise in ("oneDNN", "cuda drivers", "absl::InitializeLog", "cuInit"):
        assert noise not in result.stderr
    assert np.load(tmp_path / "out.npy").shape == (3, len(CLASSES))


def test_filtered_stderr_drops_noise_and_keeps_the_rest(capfd):
    with quiet.filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\n")
        os.write(2, b"I0000 00:00:1796227752.221457   12824 port.cc:153] oneDNN custom "
                    b"operations are on.\n")
        os.write(2, b"E0000 00:00:1796227752.221457   12824 x.cc:1] a real error\n")
        os.write(2, b"plain text stays\n")
    err = capfd.readouterr().err
    assert "absl" not in err and "oneDNN" not in err
    assert "a real error" in err and "plain text stays" in err


# --- 3. NaN exams named by file and row ---------------------------------------------------
def test_nonfinite_warning_names_the_shard_and_its_row():
    collection = Collection(["part0.hdf5", "part1.hdf5"], "tracings", [4, 4], 8,
                            np.arange(100, 108))
    probabilities = np.zeros((8, len(CLASSES)), dtype=np.float32)
    probabilities[[1, 6]] = np.nan
    message = outputs.nonfinite_warning(probabilities, collection)
    assert "part0.hdf5 row 1 (exam_id 101)" in message
    assert "part1.hdf5 row 2 (exam_id 106)" in message and "2 exams" in message


# --- 4. Plain numbers in messages -----------------------------------------------------------
@pytest.mark.parametrize("value, text", [(np.float64(2.0), "2"), (np.float32(0.5), "0.5"),
                                         (np.int64(7), "7"), (float("nan"), "nan"),
                                         ("x", "'x'")])
def test_plain_prints_numbers_as_a_person_writes_them(value, text):
    assert plain(value) == text


# --- 5. make_dataset takes a label CSV -------------------------------------------------------
def test_make_dataset_accepts_a_label_csv_path(tmp_path):
    data = write_hdf5(tmp_path / "data.hdf5", 6)
    labels = (np.arange(36).reshape(6, 6) % 2).astype(np.float32)
    frame = pd.DataFrame(labels, columns=list(CLASSES))
    frame.insert(0, "exam_id", 1000 + np.arange(6)[::-1])  # joined on exam_id, not by order
    frame.to_csv(tmp_path / "exams.csv", index=False)
    batches = list(datasets.make_dataset([data], labels=str(tmp_path / "exams.csv"),
                                         batch_size=6))
    np.testing.assert_array_equal(batches[0][1].numpy(), labels[::-1])


def test_make_dataset_explains_what_labels_takes(tmp_path):
    data = write_hdf5(tmp_path / "data.hdf5", 2)
    with pytest.raises(datasets.LabelError, match="pass a label CSV path"):
        datasets.make_dataset([data], labels={"AF": [0, 1]})


# --- 6. Lead problems told apart ------------------------------------------------------------
def _leads_normalised(x):
    return (x / np.ptp(x, axis=1, keepdims=True) * 2).astype(np.float32)  # each lead: ptp 2


def _swapped(x, a, b):
    order = list(range(12))
    order[a], order[b] = b, a
    return x[:, :, order]


def _flat(x, lead):
    x = x.copy()
    x[:, :, lead] = 0
    return x


@pytest.mark.parametrize("damage, expected, absent", [
    (_leads_normalised, "normalised independently", ("Einthoven's law II", "QRS amplitudes")),
    (lambda x: _swapped(x, 1, 2), "leads DII and DIII look swapped", ("normalised",)),
    (lambda x: _swapped(x, 0, 6), "leads DI and V1 look swapped", ("normalised",)),
    (lambda x: _flat(x, 0), "DI are flat", ("Einthoven", "swapped")),
    (lambda x: _flat(x, 8), "V3 are flat", ("Einthoven", "swapped")),
    (lambda x: x * 0.2, "5x too small", ("flat", "swapped", "normalised")),
    (lambda x: x * 100, "100x too large", ("flat", "swapped", "normalised")),
])
def test_signal_warnings_tell_the_causes_apart(damage, expected, absent):
    x = synthetic_tracings(12)
    assert datasets.signal_warnings(x) == []
    warnings = " | ".join(datasets.signal_warnings(damage(x)))
    assert expected in warnings and "fix" in warnings
    assert not any(text in warnings for text in absent), warnings


def test_inspect_reports_normalised_leads_instead_of_swapped(tmp_path, capsys):
    path = write_hdf5(tmp_path / "ludb_like.hdf5", 10, data=_leads_normalised(
        synthetic_tracings(10)))
    status, out, _ = status_of(datasets_cli.main, ["inspect", path], capsys)
    assert status == 0 and "normalised independently" in out and "swapped" not in out


# --- 7. predict.py checks the model before the inputs' amplitudes ----------------------------
@pytest.mark.parametrize("name, content", [("broken.keras", b"PK\x03\x04 not a zip"),
                                           ("broken.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 40)])
def test_predict_unreadable_model_fails_before_amplitude_warnings(tmp_path, capsys, name,
                                                                   content):
    data = write_hdf5(tmp_path / "small.hdf5", 3, data=synthetic_tracings(3) * 0.2)  # 5x small
    (tmp_path / name).write_bytes(content)
    status, _, err = status_of(predict.main, [data, str(tmp_path / name), "--output-file",
                                              str(tmp_path / "o.npy")], capsys)
    assert status == 2 and err.strip().splitlines() == [err.strip()]
    assert err.startswith(f"error: {tmp_path / name}") and "warning" not in err
    assert not (tmp_path / "o.npy").exists()


def test_predict_truncated_real_model_fails_before_amplitude_warnings(tmp_path, capsys):
    data = write_hdf5(tmp_path / "small.hdf5", 3, data=synthetic_tracings(3) * 0.2)
    tiny_model().save(tmp_path / "whole.h5")
    content = (tmp_path / "whole.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(content[: len(content) // 2])
    status, _, err = status_of(predict.main, [data, str(tmp_path / "cut.h5"), "--output-file",
                                              str(tmp_path / "o.npy")], capsys)
    assert status == 2 and "cut.h5" in err and "warning" not in err


def test_predict_scale_warning_still_comes_with_a_good_model(tmp_path, capsys):
    data = write_hdf5(tmp_path / "small.hdf5", 3, data=synthetic_tracings(3) * 0.2)
    tiny_model().save(tmp_path / "tiny.keras")
    status, _, err = status_of(predict.main, [data, str(tmp_path / "tiny.keras"), "--quiet",
                                              "--output-file", str(tmp_path / "o.npy")], capsys)
    assert status == 0 and "5x too small" in err and "small.hdf5" in err
    with h5py.File(data) as handle:
        assert handle["tracings"].shape == (3, 4096, 12)


def test_lead_checks_on_real_records(tmp_path, capsys):
    folder = ROOT.parent / "shared" / "ecg-samples" / "cinc2021" / "G12EC"
    if not folder.is_dir():
        pytest.skip(f"real CinC 2021 records not found at {folder}")
    output = tmp_path / "g12ec.hdf5"
    assert status_of(datasets_cli.main, ["convert", str(folder), "-o", str(output), "-q"],
                     capsys)[0] == 0
    collection = datasets.open_collection(output)
    x = datasets.RowReader(collection).read(np.arange(collection.n))  # (10, 4096, 12)
    assert datasets.signal_warnings(x) == []  # real, unmodified: no false alarm
    normalised = " | ".join(datasets.signal_warnings(_leads_normalised(x + 1e-3)))
    assert "normalised independently" in normalised and "swapped" not in normalised
    assert "DII and DIII look swapped" in datasets.signal_warnings(_swapped(x, 1, 2))[0]
