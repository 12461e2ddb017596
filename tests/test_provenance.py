"""Provenance: what a model was trained on travels inside its files (issue 23 item 2).

A tiny model (test_train's) is trained once on a tiny synthetic file; its run folder's
model files, its exports, predict.py's warning and a fine-tuned run are checked against
it.
"""

import datetime
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pandas as pd
import pytest
from conftest import write_hdf5
from test_train import BASE, tiny_model, train_tiny

import ecgcode
from ecgcode.cli import model as model_module
from ecgcode.cli import predict
from ecgcode.common import CLASSES, run_cli
from ecgcode.data.hdf5 import is_synthetic_file
from ecgcode.data.synthetic.generate import write_synthetic
from ecgcode.model import provenance as prov
from ecgcode.model.metadata import read_model_provenance
from ecgcode.model.modelfiles import save_model
from ecgcode.model.runtimes import read_metadata, read_provenance
from ecgcode.training import state as ts

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "ecg-samples"
CLINICAL = SAMPLES / "formats" / "hl7-aecg" / "Example_aECG.xml"
WARNING = "was trained only on synthetic ECGs"
RUN_MODELS = ("model_best.keras", "model_best.h5", "model_last.keras", "model_last.h5",
              "final_model.h5")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """(run folder, synthetic training file): the tiny model trained 2 epochs on 40 exams."""
    folder = tmp_path_factory.mktemp("synthetic_run")
    data = write_synthetic(folder / "train_synthetic.hdf5", 40, seed=0, progress=False)
    out = folder / "run"
    assert train_tiny([data, "--out", str(out), *BASE]) == 0
    return out, data


def run_predict(argv, capsys):
    status = run_cli(predict.main, [str(arg) for arg in argv] + ["--quiet"])
    return status, capsys.readouterr().err


# --- The record in every model file of a run -------------------------------------------------
def test_every_model_file_of_a_run_records_its_synthetic_data(synthetic_run):
    out, data = synthetic_run
    state = ts.read_state(str(out))
    checkpoint = ts.checkpoint_path(str(out), state)
    for path in [out / name for name in RUN_MODELS] + [Path(checkpoint)]:
        record = read_model_provenance(path)
        assert record is not None, path
        assert record["project"] == {"name": "ecg-code-keras", "version": ecgcode.__version__}
        assert record["classes"] == list(CLASSES)
        created = datetime.datetime.fromisoformat(record["created"])
        assert created.utcoffset() == datetime.timedelta(0)
        assert abs(datetime.datetime.now(datetime.timezone.utc) - created).total_seconds() < 3600
        (item,) = record["data"]
        assert item["path"] == os.path.abspath(data)
        assert item["bytes"] == os.path.getsize(data) and item["exams"] == 40
        assert item["fingerprint"] == {"method": "sha256", "sha256": sha256(data)}
        assert item["synthetic"] is True and record["synthetic_only"] is True
        assert record["labels"] is None and record["initialised_from"] is None


@pytest.mark.slow
def test_h5_with_provenance_still_loads_without_this_project(synthetic_run, tmp_path):
    out, _ = synthetic_run
    with h5py.File(out / "model_best.h5") as handle:
        assert json.loads(handle.attrs["provenance"])["synthetic_only"] is True
    code = textwrap.dedent(f"""
        import importlib.util, sys
        import keras
        for name in ("model_best.h5", "model_best.keras", "final_model.h5"):
            model = keras.models.load_model({str(out)!r} + "/" + name, compile=False)
            assert model.outputs[0].shape[-1] == 6, name
        if importlib.util.find_spec("tf_keras"):
            import tf_keras
            model = tf_keras.models.load_model({str(out)!r} + "/model_best.h5", compile=False)
            assert model.output_shape == (None, 6)
        assert not any(name.startswith("ecgcode") for name in sys.modules)
        print("loaded")
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0 and "loaded" in done.stdout, done.stderr[-2000:]


def test_files_without_provenance_read_none(tmp_path):
    keras_path, h5_path = save_model(tiny_model(), tmp_path / "plain")
    assert read_model_provenance(keras_path) is None and read_model_provenance(h5_path) is None
    plain = tmp_path / "keras_only.h5"
    tiny_model().save(plain)  # as another project (or the original study) writes it
    assert prov.model_provenance(str(plain)) is None
    assert prov.synthetic_model_warning(prov.model_provenance(str(plain)), str(plain),
                                       [str(plain)]) is None


# --- Fingerprints and the test of "synthetic" -----------------------------------------------
def test_synthetic_is_the_generator_attribute_alone(synthetic_run, tmp_path):
    _, data = synthetic_run
    assert is_synthetic_file(data)
    assert not is_synthetic_file(write_hdf5(tmp_path / "real.hdf5", 3))
    assert not is_synthetic_file(tmp_path / "missing.hdf5")
    text = tmp_path / "notes.txt"
    text.write_text("not HDF5")
    assert not is_synthetic_file(text)


def test_large_files_get_a_sampled_fingerprint_that_says_so(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    content = bytearray(os.urandom(10_000))
    path.write_bytes(content)
    assert prov.fingerprint(path) == {"method": "sha256", "sha256": sha256(path)}
    monkeypatch.setattr(prov, "FULL_HASH_LIMIT", 5_000)
    monkeypatch.setattr(prov, "BLOCK_BYTES", 100)
    monkeypatch.setattr(prov, "SAMPLED_BLOCKS", 8)
    sampled = prov.fingerprint(path)
    assert sampled["method"] == "sha256-sampled" and sampled["sha256"] != sha256(path)
    assert (sampled["blocks"], sampled["block_bytes"]) == (8, 100)
    offsets = prov.sampled_offsets(10_000, 8, 100)
    assert offsets[0] == 0 and offsets[-1] == 10_000 - 100 and len(offsets) == 8
    content[offsets[3] + 50] ^= 0xFF  # a byte inside a sampled block
    path.write_bytes(content)
    assert prov.fingerprint(path)["sha256"] != sampled["sha256"]
    content[offsets[3] + 50] ^= 0xFF
    path.write_bytes(bytes(content) + b"x")  # another size
    assert prov.fingerprint(path)["sha256"] != sampled["sha256"]


# --- Exports ----------------------------------------------------------------------------------
def test_export_metadata_carries_the_provenance(synthetic_run, tmp_path, capsys):
    pytest.importorskip("onnx")
    out, _ = synthetic_run
    stem = tmp_path / "exported"
    assert run_cli(model_module.main, ["export", str(out), str(stem), "--formats", "onnx",
                                       "--no-check"]) == 0
    onnx_path = str(stem) + ".onnx"
    expected = read_model_provenance(out / "model_best.keras")
    assert json.loads(read_metadata(onnx_path)["provenance"]) == expected
    assert read_provenance(onnx_path) == prov.model_provenance(onnx_path) == expected


def test_model_summary_shows_the_provenance(synthetic_run, capsys):
    out, data = synthetic_run
    assert model_module.main([str(out / "model_best.h5")]) is None
    printed = capsys.readouterr().out
    assert "Provenance: trained by ecg-code-keras" in printed
    assert os.path.abspath(data) in printed and "40 exams, synthetic" in printed
    assert "not a diagnostic model" in printed


# --- predict.py's warning ---------------------------------------------------------------------
def test_warning_once_for_real_inputs_and_never_for_synthetic_ones(synthetic_run, tmp_path,
                                                                   capsys):
    out, data = synthetic_run
    real = [write_hdf5(tmp_path / f"real{k}.hdf5", 3, seed=k) for k in range(2)]
    status, err = run_predict([*real, out, "--output-file", tmp_path / "a.csv"], capsys)
    assert status == 0 and err.count(WARNING) == 1, err
    (line,) = [line for line in err.splitlines() if WARNING in line]
    assert line.startswith("warning: ") and "train_synthetic.hdf5" in line
    assert "not diagnostic" in line and "F1 0.0-0.5" in line
    status, err = run_predict([data, out, "--output-file", tmp_path / "b.csv"], capsys)
    assert status == 0 and WARNING not in err, err
    status, err = run_predict([data, real[0], out, "--output-file", tmp_path / "c.csv"], capsys)
    assert status == 0 and err.count(WARNING) == 1, err


def test_no_warning_for_a_model_without_provenance(tmp_path, capsys):
    _, h5_path = save_model(tiny_model(), tmp_path / "plain")
    real = write_hdf5(tmp_path / "real.hdf5", 3)
    status, err = run_predict([real, h5_path, "--output-file", tmp_path / "p.npy"], capsys)
    assert status == 0 and WARNING not in err, err


@pytest.mark.skipif(not CLINICAL.is_file(), reason=f"the example ECG files are not in {SAMPLES}")
@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside wfdb
def test_warning_once_for_converted_clinical_files(synthetic_run, tmp_path, capsys):
    out, _ = synthetic_run
    wfdb = SAMPLES / "cinc2021" / "G12EC" / "E00001.hea"
    inputs = [CLINICAL] + ([wfdb] if wfdb.is_file() else [])
    status, err = run_predict([*inputs, out, "--output-file", tmp_path / "c.csv"], capsys)
    assert status == 0 and err.count(WARNING) == 1, err
    assert len(pd.read_csv(tmp_path / "c.csv")) == len(inputs)


# --- Fine-tuning ------------------------------------------------------------------------------
def test_fine_tuning_records_the_model_it_started_from(synthetic_run, tmp_path, capsys):
    source, _ = synthetic_run
    data = write_hdf5(tmp_path / "real.hdf5", 40)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"exam_id": 1000 + pd.RangeIndex(40), "AF": [k % 2 for k in range(40)],
                  "SB": [k % 3 == 0 for k in range(40)]}).astype(int).to_csv(labels, index=False)
    out = tmp_path / "tuned"
    assert train_tiny([data, str(labels), "--out", str(out), *BASE, "--epochs", "1",
                       "--classes", "AF,SB", "--init", str(source)]) == 0
    record = read_model_provenance(out / "model_best.keras")
    assert record["classes"] == ["AF", "SB"] and record["synthetic_only"] is False
    assert record["data"][0]["synthetic"] is False
    assert record["labels"]["path"] == os.path.abspath(labels)
    assert record["labels"]["fingerprint"]["sha256"] == sha256(labels)
    start = record["initialised_from"]
    assert start["path"] == str(source / "model_best.keras")
    assert start["fingerprint"]["sha256"] == sha256(source / "model_best.keras")
    assert start["provenance"] == read_model_provenance(source / "model_best.keras")
    assert start["provenance"]["synthetic_only"] is True
    status, err = run_predict([data, out, "--output-file", tmp_path / "t.npy"], capsys)
    assert status == 0 and WARNING not in err, err  # trained on real data in the end


# --- The fast path and the service read the record too -----------------------------------
@pytest.fixture(scope="module")
def synthetic_onnx(synthetic_run, tmp_path_factory):
    """The synthetic run's ONNX export (its metadata carries the provenance)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    out, _ = synthetic_run
    stem = tmp_path_factory.mktemp("onnx") / "synthetic"
    assert run_cli(model_module.main, ["export", str(out), str(stem), "--formats", "onnx",
                                       "--no-check"]) == 0
    return str(stem) + ".onnx"


def test_onnx_export_warns_once_for_real_inputs(synthetic_run, synthetic_onnx, tmp_path,
                                                capsys):
    _, data = synthetic_run
    real = [write_hdf5(tmp_path / f"real{k}.hdf5", 3, seed=k) for k in range(2)]
    status, err = run_predict([*real, synthetic_onnx, "--output-file", tmp_path / "a.csv"],
                              capsys)
    assert status == 0 and err.count(WARNING) == 1, err
    status, err = run_predict([data, synthetic_onnx, "--output-file", tmp_path / "b.csv"],
                              capsys)
    assert status == 0 and WARNING not in err, err


def test_service_repeats_the_warning_in_each_real_result(synthetic_run, synthetic_onnx,
                                                         tmp_path):
    from ecgcode.inference import service
    from ecgcode.inference.predictor import load_predictor

    _, data = synthetic_run
    answering = service.Service(load_predictor(synthetic_onnx))
    assert answering.health()["provenance"]["synthetic_only"] is True
    real = Path(write_hdf5(tmp_path / "real.hdf5", 2))
    results = answering.predict_files([("real.hdf5", real.read_bytes()),
                                       ("syn.hdf5", Path(data).read_bytes())])
    warned = {(r["file"], WARNING in " ".join(r.get("warnings", []))) for r in results}
    assert warned == {("real.hdf5", True), ("syn.hdf5", False)}, warned
    assert len(results) == 2 + 40  # one result per exam
