"""The amplitude scale (issue 28): one constant, recorded in every file and model, never mixed.

Files and models the tests make here, plus the shared real records (CinC 2021, PTB, clinical
exports) where they are present: the original scale is 2 units per mV; old files (1e-4 V) and
old models are recognised as 10; predict.py and train.py bring inputs to the model's scale;
the inspection tells x5, x10 and /5 from the right scale on real ECGs.
"""

import json
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import SHARED, run_main, synthetic_tracings, write_hdf5

from ecgcode.common import LEGACY_UNITS_PER_MV, UNITS_PER_MV
from ecgcode.data import open_collection
from ecgcode.data.rows import RowReader
from ecgcode.data.scale import (
    MANY_RECORDS,
    Scale,
    bring_to_scale,
    estimate_units_per_mv,
    likely_factor,
    model_scale,
    recorded_scale,
    scale_warning,
)

CINC = SHARED / "ecg-samples" / "cinc2021"
FORMATS = SHARED / "ecg-samples" / "formats"
needs_cinc = pytest.mark.skipif(not CINC.is_dir(), reason=f"{CINC} is absent (the shared "
                                "CinC 2021 records; public at physionet.org/content/challenge-2021)")


def legacy_file(path, x):
    """An HDF5 file as earlier versions of the project wrote it: 1e-4 V attributes."""
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("tracings", data=x)
        dataset.attrs.update(units="1e-4 V", unit_volts=1e-4)
        handle.create_dataset("exam_id", data=np.arange(len(x), dtype=np.int64))
    return os.fspath(path)


# --- Item 1: one constant ----------------------------------------------------------------
def test_the_scale_is_the_original_studys_two_units_per_mv():
    assert UNITS_PER_MV == 2.0 and LEGACY_UNITS_PER_MV == 10.0


def test_the_converter_writes_twice_the_millivolts_of_an_independent_decoding(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    record = SHARED / "ecg-samples" / "s0010_re"
    if not record.with_suffix(".hea").is_file():
        pytest.skip(f"{record}.hea is absent (PTB record s0010_re, physionet.org/content/ptbdb)")
    from scipy.signal import resample_poly

    from ecgcode.data.formats.convert import convert

    output = tmp_path / "ptb.hdf5"
    convert([os.fspath(record) + ".hea"], os.fspath(output), progress=False)
    signal = wfdb.rdrecord(os.fspath(record)).p_signal[:, :12]  # (38400, 12) mV at 1000 Hz
    lead_ii = resample_poly(signal[:, 1], 2, 5)  # (15360,) at 400 Hz
    start = (len(lead_ii) - 4096) // 2
    with h5py.File(output) as handle:
        tracing = handle["tracings"][0]
        assert handle["tracings"].attrs["units_per_mv"] == 2.0
        assert handle.attrs["units_per_mv"] == 2.0
        assert "1 mV = 2 units" in handle["tracings"].attrs["units"]
    np.testing.assert_allclose(tracing[:, 1], 2 * lead_ii[start:start + 4096], atol=1e-4)


# --- Item 2: every file and model records its scale; the rules for what records none ------
def test_files_record_their_scale_and_old_files_are_recognised(tmp_path):
    from ecgcode.data.synthetic.generate import write_synthetic

    new = write_synthetic(tmp_path / "new.hdf5", 2, progress=False)
    plain = write_hdf5(tmp_path / "plain.hdf5", 2)
    old = legacy_file(tmp_path / "old.hdf5", synthetic_tracings(2))
    scales = open_collection([new, plain, old]).scales
    assert scales == [Scale(2.0, "recorded"), Scale(2.0, "assumed"), Scale(10.0, "legacy")]
    given = open_collection([new, plain, old], units_per_mv=4).scales
    assert [s.units_per_mv for s in given] == [2.0, 4.0, 10.0]  # only files that record none
    notes = open_collection([old, new, plain], units_per_mv=4).notes  # one per ignored file
    assert [note.split(":")[0] for note in notes] == [old, new]
    assert all("applies only to files that record none" in note for note in notes)
    assert recorded_scale({"unit_volts": 1e-4}) == Scale(10.0, "legacy")


def test_models_record_their_scale_and_old_models_are_recognised(tmp_path):
    from ecgcode.model.metadata import H5_ATTRIBUTE, KERAS_ENTRY, read_model_scale
    from ecgcode.model.modelfiles import save_model
    from ecgcode.model.network import get_model

    keras_path, h5_path = save_model(get_model(), tmp_path / "net")
    assert read_model_scale(keras_path)[0] == Scale(2.0, "recorded")
    assert read_model_scale(h5_path)[0] == Scale(2.0, "recorded")
    with h5py.File(h5_path, "a") as handle:  # as an earlier version wrote it: names only
        del handle.attrs["units_per_mv"]
    assert read_model_scale(h5_path)[0] == Scale(10.0, "legacy")
    with zipfile.ZipFile(keras_path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries[KERAS_ENTRY] = json.dumps({"classes": json.loads(entries[KERAS_ENTRY])["classes"]})
    with zipfile.ZipFile(keras_path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    assert read_model_scale(keras_path)[0] == Scale(10.0, "legacy")
    with h5py.File(h5_path, "a") as handle:  # as the original study's weights: nothing
        del handle.attrs[H5_ATTRIBUTE]
    assert read_model_scale(h5_path)[0] == Scale(2.0, "assumed")
    assert read_model_scale(h5_path, given=10)[0] == Scale(10.0, "--model-units-per-mv")
    scale, note = model_scale("m.onnx", 2.0, True, given=10)
    assert scale.units_per_mv == 2.0 and "applies only to models that record none" in note


def test_exports_carry_the_models_scale(tmp_path):
    pytest.importorskip("onnxruntime")
    from conftest import small_model_and_export

    from ecgcode.inference.predictor import load_predictor
    from ecgcode.model.runtimes import read_metadata

    _, onnx_path = small_model_and_export(tmp_path)
    assert read_metadata(onnx_path)["units_per_mv"] == "2"
    assert load_predictor(onnx_path).scale == Scale(2.0, "recorded")


def test_bad_units_per_mv_is_one_line(tmp_path, capsys):
    from ecgcode.cli import datasets

    path = write_hdf5(tmp_path / "a.hdf5", 2)
    for value in ("0", "-2", "nan"):
        status, _, err = run_main(datasets.main, ["inspect", path, "--units-per-mv", value],
                                  capsys)
        assert status == 2 and err.count("\n") == 1 and "--units-per-mv" in err


# --- Item 3: no silent mixing ------------------------------------------------------------
def test_rescaled_rows_are_read_at_the_target_scale(tmp_path):
    x = synthetic_tracings(3)
    new = write_hdf5(tmp_path / "new.hdf5", 3, data=x)
    old = legacy_file(tmp_path / "old.hdf5", x * np.float32(5))
    collection, notes = bring_to_scale(open_collection([new, old]), Scale(2.0, "recorded"))
    assert len(notes) == 1 and old in notes[0] and "x0.2" in notes[0]
    rows = RowReader(collection).read([4, 0, 3, 1])  # mixed files, any order
    np.testing.assert_allclose(rows, x[[1, 0, 0, 1]], rtol=1e-6, atol=1e-6)


def test_predictions_on_a_file_at_10_units_equal_those_at_2_units(tmp_path, capsys):
    from conftest import small_model_and_export

    from ecgcode.cli import predict

    keras_path, onnx_path = small_model_and_export(tmp_path)
    x = synthetic_tracings(4)
    new = write_hdf5(tmp_path / "new.hdf5", 4, data=x)
    old = legacy_file(tmp_path / "old.hdf5", x * np.float32(5))
    for model in (keras_path, onnx_path):
        outputs = []
        for path in (new, old):
            out = tmp_path / f"{os.path.basename(path)}.{os.path.basename(model)}.npy"
            status, _, err = run_main(predict.main, [path, model, "--output-file",
                                                     os.fspath(out), "--quiet"], capsys)
            assert status == 0, err
            assert ("rescaled by x0.2" in err) == (path == old)
            outputs.append(np.load(out))
        np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)
        assert np.ptp(outputs[0]) > 0.05  # the model tells the exams apart


def test_a_legacy_model_gets_inputs_at_10_units_per_mv(tmp_path, capsys):
    from conftest import small_model_and_export

    from ecgcode.cli import predict
    from ecgcode.inference.predictor import load_predictor, original_scale_model

    keras_path, _ = small_model_and_export(tmp_path)
    legacy = tmp_path / "legacy.keras"
    with zipfile.ZipFile(keras_path) as source, zipfile.ZipFile(legacy, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "ecgcode.json":
                info = json.loads(data)
                info.pop("units_per_mv")
                data = json.dumps(info)
            target.writestr(name, data)
    x = synthetic_tracings(3)
    path = write_hdf5(tmp_path / "x.hdf5", 3, data=x)
    out = tmp_path / "p.npy"
    status, _, err = run_main(predict.main, [path, os.fspath(legacy), "--output-file",
                                             os.fspath(out), "--quiet"], capsys)
    assert status == 0 and "rescaled by x5" in err
    predictor = load_predictor(os.fspath(legacy))
    expected = predictor.predict(x * np.float32(5))
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    explained = original_scale_model(predictor)  # --explain: tracings at UNITS_PER_MV
    np.testing.assert_allclose(np.asarray(explained.predict(x, verbose=0)), expected, atol=1e-5)


def test_plots_draw_every_file_at_its_own_scale(tmp_path):
    from ecgcode.inference.plotting import read_exams

    x = synthetic_tracings(2)
    new = write_hdf5(tmp_path / "new.hdf5", 2, data=x)
    old = legacy_file(tmp_path / "old.hdf5", x * np.float32(5))
    plain = write_hdf5(tmp_path / "plain.hdf5", 2, data=x * np.float32(5))
    for path, given in ((new, None), (old, None), (plain, 10.0)):
        tracing, _ = read_exams(path, [1], units_per_mv=given)[0]
        np.testing.assert_allclose(tracing, x[1], rtol=1e-6, atol=1e-6)


def test_training_brings_every_file_to_the_runs_scale_and_records_it(tmp_path, capsys):
    from ecgcode.cli import train
    from ecgcode.model.metadata import read_model_provenance, read_model_scale
    from ecgcode.model.modelfiles import model_file

    x = synthetic_tracings(24)
    new = write_hdf5(tmp_path / "new.hdf5", 12, data=x[:12], labels=True)
    old = tmp_path / "old.hdf5"
    legacy_file(old, x[12:] * np.float32(5))
    with h5py.File(old, "a") as handle:
        handle.create_dataset("labels", data=np.zeros((12, 6), np.float32)).attrs[
            "classes"] = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
    out = tmp_path / "run"
    status, _, err = run_main(train.main, [new, os.fspath(old), "--out", os.fspath(out),
                                           "--epochs", "1", "--batch-size", "8",
                                           "--val-split", "0.25"], capsys)
    assert status == 0, err
    assert f"{old}: rescaled by x0.2" in err
    best = model_file(os.fspath(out))
    assert read_model_scale(best)[0] == Scale(2.0, "recorded")
    record = read_model_provenance(best)
    assert record["units_per_mv"] == 2.0
    assert [item["units_per_mv"] for item in record["data"]] == [2.0, 10.0]
    config = json.loads((out / "config.json").read_text())
    assert config["inputs"]["read_at_units_per_mv"] == 2.0


# --- Item 4: telling a wrong scale from a right one ---------------------------------------
def test_likely_factor_snaps_to_one_two_five():
    assert [likely_factor(r) for r in (4.3, 8.4, 0.19, 0.42, 1000 / 2.1)] == [5, 10, 0.2, 0.5,
                                                                                500]


@needs_cinc
def test_the_shared_cinc_records_at_each_scale(tmp_path):
    from ecgcode.data.formats.convert import convert

    output = tmp_path / "cinc.hdf5"
    convert([os.fspath(folder) for folder in sorted(CINC.iterdir()) if folder.is_dir()],
            os.fspath(output), progress=False)
    with h5py.File(output) as handle:
        x = handle["tracings"][()]  # (70, 4096, 12) at 2 units per mV
    assert len(x) == 70 >= MANY_RECORDS
    declared = Scale(UNITS_PER_MV, "recorded")
    assert scale_warning(x, declared, "f") is None
    assert scale_warning(x / 2, declared, "f") is None  # mV: 2x is not told apart
    for factor, words in ((5, "5x too large"), (10, "10x too large"), (0.2, "5x too small")):
        warning = scale_warning(x * factor, declared, "f")
        assert warning and words in warning
    for record in x:  # one record at a time: silent at the right scale, warned when 5x off
        assert scale_warning(record[None], declared, "r") is None
        for factor in (5, 10, 0.2):
            assert scale_warning(record[None] * factor, declared, "r")
    estimate = estimate_units_per_mv(x)
    assert 0.5 * UNITS_PER_MV < estimate < 2 * UNITS_PER_MV


def clinical_files():
    names = ["ge-muse/guangxi_teaching_sinus_rhythm.xml", "hl7-aecg/Example_aECG.xml",
             "scp-ecg/Example.scp", "dicom/waveform_ecg.dcm",
             "philips/2020-5-18_15-48-11.xml", "cpsc2018/A1980.mat"]
    return [FORMATS / name for name in names] + [SHARED / "ecg-samples" / "s0010_re.hea"]


@pytest.mark.parametrize("path", clinical_files(), ids=lambda path: path.name)
def test_converted_clinical_files_raise_no_scale_warning_but_x5_does(tmp_path, path):
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared clinical samples)")
    from ecgcode.data.formats.convert import convert

    output = tmp_path / "one.hdf5"
    convert([os.fspath(path)], os.fspath(output), progress=False)
    with h5py.File(output) as handle:
        x = handle["tracings"][()]
    declared = Scale(UNITS_PER_MV, "recorded")
    assert scale_warning(x, declared, "f") is None
    assert "too large" in scale_warning(x * 5, declared, "f")
    assert "too small" in scale_warning(x / 5, declared, "f")


def test_inspect_names_the_factor_and_never_says_multiply_by_10(tmp_path, capsys):
    from ecgcode.cli import datasets

    x = synthetic_tracings(12)
    right = write_hdf5(tmp_path / "right.hdf5", 12, data=x)
    status, out, _ = run_main(datasets.main, ["inspect", right], capsys)
    assert status == 0 and "WARNING" not in out and "2 units per mV" in out
    old_values = write_hdf5(tmp_path / "oldvalues.hdf5", 12, data=x * np.float32(5))
    status, out, _ = run_main(datasets.main, ["inspect", old_values], capsys)
    assert "5x too large" in out and "--units-per-mv 10" in out and "multiply by 10" not in out
    status, out, _ = run_main(datasets.main, ["inspect", old_values, "--units-per-mv", "10"],
                              capsys)
    assert status == 0 and "WARNING" not in out and "10 units per mV" in out


def test_the_service_rescales_and_says_so(tmp_path):
    pytest.importorskip("onnxruntime")
    from conftest import small_model_and_export

    from ecgcode.inference import service
    from ecgcode.inference.predictor import load_predictor

    _, onnx_path = small_model_and_export(tmp_path)
    answering = service.Service(load_predictor(onnx_path))
    x = synthetic_tracings(2)
    new = write_hdf5(tmp_path / "new.hdf5", 2, data=x)
    old = legacy_file(tmp_path / "old.hdf5", x * np.float32(5))
    results = answering.predict_files([(os.path.basename(p), Path(p).read_bytes())
                                       for p in (new, old)])
    assert answering.health()["units_per_mv"] == 2.0
    by_file = {}
    for result in results:
        by_file.setdefault(result["file"], []).append(result)
    assert not any("rescaled" in w for r in by_file["new.hdf5"] for w in r.get("warnings", []))
    assert all(any("rescaled by x0.2" in w for w in r["warnings"]) for r in by_file["old.hdf5"])
    for a, b in zip(by_file["new.hdf5"], by_file["old.hdf5"]):
        for name, p in a["probabilities"].items():
            assert abs(p - b["probabilities"][name]) < 1e-5
