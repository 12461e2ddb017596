"""validate.py end to end with a small model (its ONNX export, so no TensorFlow runs):
the report, gold CSVs, subgroups, splits, the scale sweep, thresholds and calibration
written back and used by predict.py and the service, bad input, the shared CinC records."""

import json
import os
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import SHARED, run_main, synthetic_tracings, write_hdf5
from sklearn.metrics import roc_auc_score

from ecgcode.cli import predict, validate
from ecgcode.common import CLASSES
from ecgcode.inference import service
from ecgcode.inference.predictor import load_predictor
from ecgcode.model.calibration import apply_calibration
from ecgcode.model.runtimes import read_metadata
from ecgcode.model.thresholds import binarize, read_thresholds

CINC = SHARED / "ecg-samples" / "cinc2021"
N = 80
FAST = ["--n-bootstrap", "50", "--quiet"]


@pytest.fixture(scope="module")
def onnx_model(small_models):
    return small_models[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory, onnx_model):
    """80 exams of varied amplitude whose labels follow the model's scores (with noise);
    LBBB has no positive exam. Returns (folder, HDF5 with labels, HDF5 without, scores)."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    x = synthetic_tracings(N, seed=3) * rng.uniform(0.3, 3, (N, 1, 1)).astype(np.float32)
    scores = load_predictor(onnx_model).predict(x)  # (80, 6)
    noisy = scores + rng.normal(0, 0.15, scores.shape)
    labels = (noisy > np.quantile(noisy, 0.7, axis=0)).astype(np.float32)
    labels[:, CLASSES.index("LBBB")] = 0
    with_labels = write_hdf5(folder / "labelled.hdf5", N, data=x, labels=labels)
    without = write_hdf5(folder / "plain.hdf5", N, data=x)
    gold = pd.DataFrame(labels.astype(int), columns=CLASSES)
    gold.insert(0, "exam_id", 1000 + np.arange(N))
    gold["age"] = rng.integers(20, 95, N)
    gold["sex"] = rng.choice(["M", "F"], N)
    gold["site"] = np.where(np.arange(N) < 40, "north", "south")
    gold["patient_id"] = np.arange(N) // 2
    gold.sample(frac=1, random_state=1).to_csv(folder / "gold.csv", index=False)  # shuffled
    return folder, with_labels, without, scores


def run(argv, capsys):
    return run_main(validate.main, [str(a) for a in argv], capsys)


def report_of(out):
    return (out / "report.md").read_text()


# --- The report --------------------------------------------------------------------------
def test_the_report_on_an_hdf5_file_with_labels(data, onnx_model, tmp_path, capsys):
    _, labelled, _, scores = data
    out = tmp_path / "out"
    status, stdout, err = run([labelled, onnx_model, "--out", out, "--n-bootstrap", "50"],
                              capsys)
    assert status == 0, err
    report = report_of(out)
    for heading in ("## Discrimination and calibration (all 80 exams)",
                    "## The paper's Table-2 metrics at the model's thresholds",
                    "### f1", "### youden", "### sensitivity=0.9", "### specificity=0.99"):
        assert heading in report
    assert "chosen on **a random 50% of the exams (40 exams; seed 0)** and measured on " \
           "**the other 40 exams**" in report
    assert "LBBB: no positive exam among the 80" in report and "LBBB: no positive" in err
    for name in ("roc_precision_recall", "reliability"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    table = pd.read_csv(out / "tables" / "discrimination_calibration.csv").set_index("class")
    labels = pd.read_csv(out / "tables" / "model_thresholds.csv").set_index("class")
    assert labels.loc["AF", "threshold"] == 0.5  # the export stores none
    for k, name in enumerate(CLASSES):
        if name == "LBBB":
            assert np.isnan(table.loc[name, "auroc"])
            continue
        with h5py.File(labelled) as handle:
            y = handle["labels"][:, k]
        assert table.loc[name, "auroc"] == pytest.approx(roc_auc_score(y, scores[:, k]),
                                                         abs=1e-4)
    assert "| class | exams | positives | AUROC | AUPRC | ECE |" in stdout


def test_a_gold_csv_gives_subgroups_and_a_split_by_column(data, onnx_model, tmp_path,
                                                          capsys):
    folder, _, plain, _ = data
    out = tmp_path / "out"
    status, _, err = run([plain, onnx_model, "--labels", folder / "gold.csv", "--out", out,
                          "--tune-split", "site=north", "--min-subgroup", "25", *FAST], capsys)
    assert status == 0, err
    report = report_of(out)
    assert "chosen on **the 40 exams with site in north**" in report
    assert "measured on **the other 40 exams**" in report
    subgroups = pd.read_csv(out / "tables" / "subgroups.csv")
    assert set(subgroups["attribute"]) == {"age", "sex", "site"}
    assert set(subgroups.loc[subgroups["attribute"] == "sex", "group"]) == {"female", "male"}
    assert subgroups.groupby("attribute")["exams"].sum().tolist() == [N * 6] * 3
    assert "### site" in report and "| north | 40 |" in report


def test_the_scale_sweep_repeats_the_discrimination_per_factor(data, onnx_model, tmp_path,
                                                               capsys):
    _, labelled, _, _ = data
    out = tmp_path / "out"
    status, stdout, err = run([labelled, onnx_model, "--out", out, "--scale-sweep",
                               "0.5,1,2", "--n-bootstrap", "20"], capsys)
    assert status == 0, err
    sweep = pd.read_csv(out / "tables" / "scale_sweep.csv")
    assert sweep["factor"].unique().tolist() == [0.5, 1, 2]
    at_one = sweep[sweep["factor"] == 1].set_index("class")["auroc"]
    scores = pd.read_csv(out / "tables" / "discrimination_calibration.csv").set_index("class")
    pd.testing.assert_series_equal(at_one, scores["auroc"], check_names=False, atol=1e-4)
    assert not np.allclose(sweep[sweep["factor"] == 2]["auroc"].dropna(), at_one.dropna())
    assert "## Amplitude scale sweep" in report_of(out)
    assert "| auroc at factor |" in stdout and "| x0.5 |" in stdout


# --- What goes back ----------------------------------------------------------------------
def test_an_out_that_is_a_file_is_one_line(data, onnx_model, tmp_path, capsys):
    _, labelled, _, _ = data
    taken = tmp_path / "taken.md"
    taken.write_text("an earlier report")
    status, _, err = run([labelled, onnx_model, "--out", taken], capsys)
    assert status == 2 and err.count("\n") == 1 and "is not a folder" in err
    assert taken.read_text() == "an earlier report"


def test_units_per_mv_states_the_scale_of_a_file_that_records_none(data, onnx_model, tmp_path,
                                                                     capsys):
    _, labelled, _, _ = data
    with h5py.File(labelled) as source:
        x, labels = source["tracings"][()], source["labels"][()]
    at_ten = write_hdf5(tmp_path / "at_ten.hdf5", N, data=x * np.float32(5), labels=labels)
    tables = []
    for path, extra in ((labelled, []), (at_ten, ["--units-per-mv", "10"])):
        out = tmp_path / f"report_{os.path.basename(path)}"
        status, _, err = run([path, onnx_model, "--out", out, "--n-bootstrap", "20", *extra],
                             capsys)
        assert status == 0, err
        assert ("rescaled by x0.2" in err) == bool(extra)
        tables.append(pd.read_csv(out / "tables" / "discrimination_calibration.csv"))
    pd.testing.assert_series_equal(tables[0]["auroc"], tables[1]["auroc"], atol=1e-6)


def test_thresholds_written_into_a_run_folder_serve_predict(data, small_models, tmp_path, capsys):
    _, labelled, _, scores = data
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    shutil.copy(small_models[0], run_folder / "model_best.keras")
    shutil.copy(small_models[1], run_folder / "model_best.onnx")  # predict.py runs the export
    trained = {"epoch": 3, "classes": {name: {"threshold": 0.5} for name in CLASSES}}
    (run_folder / "thresholds.json").write_text(json.dumps(trained))
    status, _, err = run([labelled, run_folder, "--out", tmp_path / "out", "--write-thresholds",
                          "--write-rule", "youden", *FAST], capsys)
    assert status == 0, err
    written = json.loads((run_folder / "thresholds.json").read_text())
    assert written["replaces"] == trained
    chosen_by = written["chosen_by"]
    assert chosen_by["rule"] == "youden" and chosen_by["tool"] == "validate.py"
    assert chosen_by["chosen_on"]["exams"] == 40 and chosen_by["measured_on"]["exams"] == 40
    assert chosen_by["chosen_on"]["rows_sha256"] != chosen_by["measured_on"]["rows_sha256"]
    assert chosen_by["data"][0]["fingerprint"]["method"] == "sha256"
    assert written["classes"]["LBBB"]["threshold"] is None
    rules = pd.read_csv(tmp_path / "out" / "tables" / "rules.csv")
    youden = rules[rules["rule"] == "youden"].set_index("class")
    assert written["classes"]["AF"]["threshold"] == pytest.approx(youden.loc["AF", "threshold"],
                                                                  rel=1e-5)
    thresholds = read_thresholds(run_folder / "thresholds.json")
    output = tmp_path / "p.csv"
    status, _, err = run_main(predict.main, [labelled, str(run_folder), "--output-file",
                                             str(output), "--quiet"], capsys)
    assert status == 0, err
    table = pd.read_csv(output)
    np.testing.assert_allclose(table["AF"], scores[:, CLASSES.index("AF")], rtol=1e-5)
    expected = binarize(scores[:, CLASSES.index("AF")], thresholds["AF"])
    np.testing.assert_array_equal(table["AF_pred"], expected)
    assert table["LBBB_pred"].isna().all()


def test_thresholds_and_calibration_written_into_an_onnx_export(data, onnx_model, tmp_path,
                                                                capsys):
    _, labelled, _, scores = data
    export = tmp_path / "copy.onnx"
    shutil.copy(onnx_model, export)
    status, _, err = run([labelled, export, "--out", tmp_path / "out", "--calibrate", "platt",
                          "--write-thresholds", *FAST], capsys)
    assert status == 0, err
    metadata = read_metadata(export)
    thresholds = json.loads(metadata["thresholds"])
    calibration = json.loads(metadata["calibration"])
    assert calibration["method"] == "platt"
    assert json.loads(metadata["thresholds_provenance"])["rule"] == "f1"
    assert json.loads(metadata["classes"]) == list(CLASSES)  # the rest is kept
    assert "## Calibration fitted on the 40 choosing exams, measured on 40" in \
        report_of(tmp_path / "out")
    output = tmp_path / "p.csv"
    status, stdout, err = run_main(predict.main, [labelled, str(export), "--output-file",
                                                  str(output)], capsys)
    assert status == 0, err
    assert "probabilities recalibrated (platt:" in stdout
    table = pd.read_csv(output)
    calibrated = apply_calibration(scores, calibration, CLASSES)
    np.testing.assert_allclose(table[list(CLASSES)], calibrated, rtol=1e-4, atol=1e-6)
    for k, name in enumerate(CLASSES):  # the decisions of the raw thresholds on raw scores
        if thresholds[name] is not None:
            np.testing.assert_array_equal(table[f"{name}_pred"],
                                          binarize(scores[:, k], thresholds[name]))
    predictor = load_predictor(str(export))
    served = service.Service(predictor, predictor.thresholds, calibration=calibration)
    with open(labelled, "rb") as handle:
        results = served.predict_files([("exams.hdf5", handle.read())])
    assert results[0]["probabilities"]["AF"] == pytest.approx(
        calibrated[0, CLASSES.index("AF")], rel=1e-4)
    assert served.health()["calibration"] == calibration


def test_a_json_file_and_the_same_exams_said_so(data, onnx_model, tmp_path, capsys):
    _, labelled, _, _ = data
    target = tmp_path / "chosen.json"
    status, _, err = run([labelled, onnx_model, "--out", tmp_path / "out", "--tune-split",
                          "none", "--rules", "specificity=0.95,f1", "--write-thresholds",
                          target, *FAST], capsys)
    assert status == 0, err
    written = json.loads(target.read_text())
    assert written["chosen_by"]["same_exams"] is True
    assert written["chosen_by"]["rule"] == "specificity=0.95"
    assert written["classes"]["LBBB"]["threshold"] is not None  # negatives suffice
    assert "**The same exams chose and measured the thresholds" in report_of(tmp_path / "out")


# --- Bad input ---------------------------------------------------------------------------
def gold_variant(folder, name, change):
    frame = pd.read_csv(folder / "gold.csv")
    frame = change(frame)
    path = folder / name
    frame.to_csv(path, index=False)
    return path


BAD = {
    "no model class labelled": (lambda f: gold_variant(f, "xy.csv", lambda g: g[["exam_id"]]
                                                       .assign(X=0, Y=1)),
                                [], "no label column for any of the model's classes"),
    "a class not labelled": (lambda f: gold_variant(f, "norbbb.csv",
                                                    lambda g: g.drop(columns="RBBB")),
                             ["--classes", "RBBB,AF"], "no labels for RBBB"),
    "unknown class": (lambda f: f / "gold.csv", ["--classes", "NOPE"],
                      "the model has no class NOPE"),
    "mismatched rows": (lambda f: gold_variant(f, "short.csv",
                                               lambda g: g.drop(columns="exam_id").head(10)),
                        [], "10 rows but the collection has 80 tracings"),
    "exam ids absent": (lambda f: gold_variant(f, "few.csv", lambda g: g.head(50)),
                        [], "30 of 80 exam ids of the tracings are not in the CSV"),
    "labels not 0/1": (lambda f: gold_variant(f, "two.csv", lambda g: g.assign(AF=2)),
                       [], "label values are not 0 or 1"),
    "missing CSV": (lambda f: f / "absent.csv", [], "absent.csv: label CSV not found"),
    "bad split": (lambda f: f / "gold.csv", ["--tune-split", "2"],
                  "--tune-split '2': give a fraction"),
    "bad rule": (lambda f: f / "gold.csv", ["--rules", "f1,sensitivity=2"],
                 "--rules 'sensitivity=2': a rule is"),
    "write rule not reported": (lambda f: f / "gold.csv",
                                ["--write-thresholds", "t.json", "--write-rule", "youden",
                                 "--rules", "f1"], "--write-rule youden: not among --rules f1"),
    "bad factors": (lambda f: f / "gold.csv", ["--scale-sweep", "0,1"],
                    "--scale-sweep '0,1': give positive factors"),
    "bad write target": (lambda f: f / "gold.csv", ["--write-thresholds", "t.txt"],
                         "--write-thresholds t.txt: name a .json file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(case, data, onnx_model, tmp_path, capsys):
    folder, _, plain, _ = data
    make_labels, options, message = BAD[case]
    argv = [plain, onnx_model, "--labels", make_labels(folder), "--out", tmp_path / "out",
            *options, *FAST]
    status, stdout, err = run(argv, capsys)
    assert status == 2, (stdout, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_refusals_before_the_model_loads(data, small_models, tmp_path, capsys):
    _, labelled, plain, _ = data
    for argv, message in [
        ([plain, small_models[1]], "no 'labels' dataset in the file(s)"),
        ([small_models[1]], "give the labelled ECGs and then the MODEL"),
        ([labelled, small_models[0], "--write-thresholds"], "predict.py reads no thresholds from"),
    ]:
        status, _, err = run([*argv, "--out", tmp_path / "out", *FAST], capsys)
        assert status == 2 and err.count("\n") == 1 and message in err, err


# --- Converted recordings ----------------------------------------------------------------
def test_converted_recordings_with_a_record_column(onnx_model, tmp_path, capsys):
    """Recordings converted on the fly (.npy here), labelled by a gold CSV's record column."""
    rng = np.random.default_rng(5)
    signals = synthetic_tracings(12, seed=4)[:, ::4]  # (12, 1024, 12), read as 100 Hz
    np.save(tmp_path / "batch.npy", signals)
    names = [f"batch.npy[{i}]" for i in range(12)]
    gold = pd.DataFrame({"record": names[::-1], **{c: rng.integers(0, 2, 12) for c in CLASSES}})
    gold.to_csv(tmp_path / "gold.csv", index=False)
    out = tmp_path / "out"
    leads = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
    status, _, err = run([tmp_path / "batch.npy", onnx_model, "--labels", tmp_path / "gold.csv",
                          "--fs", "100", "--units", "mV", "--leads", leads, "--out", out,
                          "--tune-split", "none", *FAST], capsys)
    assert status == 0, err
    table = pd.read_csv(out / "tables" / "discrimination_calibration.csv").set_index("class")
    expected = gold.set_index("record").loc[names]
    assert table["positives"].tolist() == expected[list(CLASSES)].sum().tolist()


@pytest.mark.skipif(not CINC.is_dir(), reason=f"the shared CinC 2021 records are not in {CINC}")
@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside wfdb
def test_the_shared_cinc_records(onnx_model, tmp_path, capsys):
    folders = sorted(path for path in CINC.iterdir() if path.is_dir())
    out = tmp_path / "out"
    status, stdout, err = run([*folders, onnx_model, "--out", out, "--scale-sweep",
                               "--n-bootstrap", "100"], capsys)
    assert status == 0, err
    scores = pd.read_csv(out / "tables" / "discrimination_calibration.csv").set_index("class")
    assert scores["exams"].tolist() == [70] * 6
    assert scores["positives"].to_dict() == {"1dAVb": 4, "RBBB": 5, "LBBB": 0, "SB": 8,
                                             "AF": 8, "ST": 3}  # ../shared/README.md's counts
    assert np.isnan(scores.loc["LBBB", "auroc"]) and np.isfinite(scores.loc["AF", "auroc"])
    subgroups = pd.read_csv(out / "tables" / "subgroups.csv")
    groups = subgroups.groupby("attribute")["group"].unique()
    assert sorted(groups["database"]) == sorted(path.name for path in folders)
    assert set(groups["sex"]) == {"female", "male"} and "<40" in set(groups["age"])
    sex = subgroups[(subgroups["attribute"] == "sex") & (subgroups["class"] == "AF")]
    assert sex["exams"].sum() == 70
    report = report_of(out)
    assert "labels: the 'labels' of the converted recordings (CinC #Dx SNOMED CT)" in report
    assert "subgroup database=G12EC: 10 exams, fewer than 30" in report
    assert len(pd.read_csv(out / "tables" / "scale_sweep.csv")) == 5 * 6
    assert "| x5 |" in stdout


def test_label_errors_come_before_a_keras_model_loads(data, small_models, tmp_path, capsys,
                                                      monkeypatch):
    """A .keras file names its classes without being loaded: no TensorFlow for a bad CSV."""
    monkeypatch.setattr(validate, "load_predictor",
                        lambda *args, **kwargs: pytest.fail("the model was loaded"))
    folder, _, plain, _ = data
    labels = gold_variant(folder, "only_xy.csv", lambda g: g[["exam_id"]].assign(X=0, Y=1))
    status, _, err = run([plain, small_models[0], "--labels", labels, "--out",
                          tmp_path / "out", *FAST], capsys)
    assert status == 2 and "no label column for any of the model's classes" in err, err
