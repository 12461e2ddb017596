"""generate_figures.py / ecgcode/evaluation/: the paper's numbers from CODE-test, and the metrics.

The reference values are the published ones: Table 2 of Ribeiro et al., Nat Commun 11:1760
(2020) (``ecgcode.evaluation.metrics.PUBLISHED_TABLE2``, which the demo prints too), and its
supplementary tables, as released with the study (companion repository
antonior92/automatic-ecg-diagnosis, outputs/tables/*.csv; its confusion matrices are
``ecgcode.evaluation.metrics.PUBLISHED_CONFUSION``). The CODE-test files are the copy shipped
with the package (``ecgcode.common.CODE_TEST_DIR``), so none of these tests skips in a fresh
clone; one checks that copy byte for byte against ``../shared/code-test`` when present.

306 published values are checked, each to the digits published (the bootstrap fingerprint
to 1e-12): Table 2 (6 diagnoses x 4 metrics x 4 predictors = 96), McNemar p-values (6 pairs
x 6 = 36), kappa between predictors (6 x 6 = 36), kappa of the DNN and the two cardiologists
(3 x 6 = 18), the confusion matrices of the four predictors (4 x 6 x 4 cells = 96) and the
DNN's bootstrap fingerprint (6 x 4 = 24).
"""

import filecmp
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2
from sklearn.metrics import precision_recall_fscore_support

from ecgcode.cli import generate_figures as gf
from ecgcode.common import CLASSES, CODE_TEST_DIR, CODE_TEST_DOI, ECGInputError, run_cli
from ecgcode.evaluation import metrics as em
from ecgcode.evaluation import paper
from ecgcode.model.thresholds import binarize, f1_optimal_thresholds, parse_thresholds

ROOT = Path(__file__).resolve().parents[1]

CODE_TEST = Path(CODE_TEST_DIR)
SHARED_CODE_TEST = ROOT.parent / "shared" / "code-test"
"""The reference copy of the CODE-test files, when the shared data folder is there."""

# --- Published reference values ------------------------------------------------------
PAIRS = ["DNN vs cardio.", "DNN vs emerg.", "DNN vs stud.", "cardio. vs emerg.",
         "cardio. vs stud.", "emerg. vs stud."]
PUBLISHED_MCNEMAR = [  # Supplementary Table (McNemar p-values), rows PAIRS, columns CLASSES
    [0.225, 0.414, 0.083, 1.000, 0.180, 0.096], [0.007, 0.166, 0.025, 0.705, 0.157, 0.655],
    [0.009, 0.655, 0.025, 0.157, 0.052, 0.058], [0.108, 0.366, 0.317, 0.564, 0.763, 0.206],
    [0.102, 0.739, 0.414, 0.046, 0.206, 0.782], [0.853, 0.248, 1.000, 0.083, 0.439, 0.059]]
PUBLISHED_KAPPA = [  # Supplementary Table 2(a)
    [0.656, 0.917, 0.945, 0.830, 0.780, 0.864], [0.684, 0.792, 0.909, 0.796, 0.595, 0.930],
    [0.642, 0.928, 0.912, 0.760, 0.574, 0.855], [0.656, 0.824, 0.923, 0.912, 0.515, 0.847],
    [0.612, 0.871, 0.889, 0.880, 0.700, 0.792], [0.615, 0.799, 0.852, 0.907, 0.508, 0.897]]
PUBLISHED_KAPPA_ANNOTATORS = [  # Supplementary Table 2(b): DNN/cardiologist 1/cardiologist 2
    [0.758, 0.928, 0.964, 0.770, 0.696, 0.847], [0.852, 0.942, 1.000, 0.770, 0.746, 0.884],
    [0.741, 0.955, 0.964, 0.844, 0.831, 0.902]]
# Smallest of the 1000 bootstrap values of the DNN (the study's released bootstrap data,
# first row of the sorted resamples): a fingerprint of the exact RandomState(123) draw.
PUBLISHED_DNN_BOOTSTRAP_MIN = [
    [0.5882352941176471, 0.7391304347826086, 0.983729662077597, 0.6896551724137931],
    [0.6923076923076923, 1.0, 0.9860583016476553, 0.8181818181818181],
    [1.0, 1.0, 1.0, 1.0],
    [0.5, 0.7058823529411765, 0.9864364981504316, 0.6363636363636364],
    [1.0, 0.2, 1.0, 0.33333333333333337],
    [0.7560975609756098, 0.8604651162790697, 0.987389659520807, 0.8266666666666665]]



@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """Run the whole script once with its defaults (the shipped CODE-test files, png only)."""
    out = tmp_path_factory.mktemp("paper")
    assert gf.main(["--out", str(out), "--format", "png"]) == 0
    return out


def read_pairwise(path):
    return pd.read_csv(path, index_col=0)


# --- The shipped CODE-test files ------------------------------------------------------
SHIPPED = sorted(p.relative_to(CODE_TEST).as_posix() for p in CODE_TEST.rglob("*")
                 if p.is_file() and p.name != "README.md")


def test_the_shipped_files_are_complete_and_attributed():
    expected = {f"annotations/{name}" for name in (
        "gold_standard.csv", *paper.ANNOTATOR_FILES.values(), *paper.CARDIOLOGIST_FILES.values(),
        "dnn.csv")}
    expected |= {"attributes.csv", "dnn_predicts/model.npy"}
    expected |= {f"dnn_predicts/other_seeds/model_{i}.npy" for i in range(1, paper.N_SEEDS + 1)}
    expected |= {f"dnn_predicts/other_splits/model_{s}.npy" for s in paper.SPLITS.values()}
    assert set(SHIPPED) == expected
    assert Path(paper.PAPER_ANNOTATIONS) == CODE_TEST / "annotations"
    assert Path(paper.PAPER_PREDICTIONS) == CODE_TEST / "dnn_predicts"
    readme = (CODE_TEST / "README.md").read_text(encoding="utf-8")
    described = [p for p in SHIPPED if not p.startswith("dnn_predicts/other_")]
    for needed in (CODE_TEST_DOI, "CC BY 4.0", "10.1038/s41467-020-15432-4", "other_seeds",
                   "other_splits", *described):
        assert needed in readme, f"the README beside the data does not mention {needed}"


@pytest.mark.skipif(not SHARED_CODE_TEST.is_dir(),
                    reason=f"{SHARED_CODE_TEST} is absent: no reference copy to compare the "
                           "shipped files with")
def test_the_shipped_files_are_byte_identical_to_the_shared_copy():
    shared = sorted(p.relative_to(SHARED_CODE_TEST).as_posix()
                    for p in SHARED_CODE_TEST.rglob("*") if p.is_file())
    assert SHIPPED == shared
    differ = [name for name in SHIPPED
              if not filecmp.cmp(CODE_TEST / name, SHARED_CODE_TEST / name, shallow=False)]
    assert differ == []


# --- The paper's numbers ---------------------------------------------------------------
def test_table2_equals_published_table(paper_run):
    table = pd.read_csv(paper_run / "tables" / "scores.csv", header=[0, 1], index_col=0)
    assert list(table.index) == list(CLASSES)
    assert list(table.columns.get_level_values(0).unique()) == list(em.METRICS)
    assert list(table.columns.get_level_values(1).unique()) == list(em.TABLE2_PREDICTORS)
    published = em.published_table2()
    assert published.shape == (6, 16)
    assert np.array_equal(np.round(table[published.columns].to_numpy(), 3),
                          published.to_numpy())
    text = (paper_run / "tables" / "scores.csv").read_text().splitlines()
    assert text[2] == ("1dAVb,0.867,0.905,0.639,0.605,0.929,0.679,0.821,0.929,"
                       "0.995,0.997,0.984,0.979,0.897,0.776,0.719,0.732")


def test_supplementary_tables_equal_published(paper_run):
    tables = paper_run / "tables"
    mcnemar = read_pairwise(tables / "mcnemar.csv")
    kappa = read_pairwise(tables / "kappa.csv")
    assert list(mcnemar.index) == PAIRS and list(kappa.index) == PAIRS
    assert np.array_equal(mcnemar.to_numpy(), np.array(PUBLISHED_MCNEMAR))
    assert np.array_equal(kappa.to_numpy(), np.array(PUBLISHED_KAPPA))
    annotators = read_pairwise(tables / "kappa_annotators.csv")
    assert list(annotators.index) == ["DNN vs Cardiologist 1", "DNN vs Cardiologist 2",
                                      "Cardiologist 1 vs Cardiologist 2"]
    assert np.array_equal(annotators.to_numpy(), np.array(PUBLISHED_KAPPA_ANNOTATORS))


def test_confusion_matrices_equal_published(paper_run):
    """All four predictors' 2x2 counts, cell by cell, as in the original repository."""
    confusion = pd.read_csv(paper_run / "tables" / "confusion_matrices.csv")
    published = em.published_confusion()
    assert published.shape == (len(em.TABLE2_PREDICTORS) * len(CLASSES) * 4, 5)
    pd.testing.assert_frame_equal(confusion, published, check_exact=True)
    assert (confusion.groupby(["predictor", "diagnosis"])["count"].sum() == 827).all()


def test_published_confusion_matrices_give_published_table2():
    """The two transcriptions agree: Table 2, to 3 decimals, from the published counts."""
    rows = {name: np.array(em.PUBLISHED_CONFUSION[name]) for name in em.TABLE2_PREDICTORS}
    blocks = {name: em.metrics_from_counts(r[:, 3], r[:, 1], r[:, 2], r[:, 0])
              for name, r in rows.items()}
    values = np.stack([blocks[name][:, m] for m in range(len(em.METRICS))
                       for name in em.TABLE2_PREDICTORS], axis=1)
    assert np.array_equal(np.round(values, 3), em.published_table2().to_numpy())


def test_the_confusion_comparison_sees_every_predictor():
    """It can fail: one exam's decision changed, for any of the four predictors, is caught."""
    data = paper.load_paper_inputs(paper.PAPER_ANNOTATIONS, paper.PAPER_PREDICTIONS, "paper")
    published = em.published_confusion()
    pd.testing.assert_frame_equal(em.confusion_frame(data["y_true"], data["predictors"]),
                                  published, check_exact=True)
    for name in em.TABLE2_PREDICTORS:
        altered = {k: v.copy() for k, v in data["predictors"].items()}
        altered[name][0, 0] = 1 - altered[name][0, 0]
        with pytest.raises(AssertionError):
            pd.testing.assert_frame_equal(em.confusion_frame(data["y_true"], altered),
                                          published, check_exact=True)


def test_selected_seed_reproduces_released_dnn_predictions():
    gold, _ = em.read_labels(str(CODE_TEST / "annotations" / "gold_standard.csv"))
    data = paper.load_paper_inputs(paper.PAPER_ANNOTATIONS, paper.PAPER_PREDICTIONS, "paper")
    released = pd.read_csv(CODE_TEST / "annotations" / "dnn.csv", index_col=0)[list(CLASSES)]
    assert data["selected"] == 0  # model_1 is 6th of 10 by micro-averaged average precision
    assert np.array_equal(data["predictors"]["DNN"], released.to_numpy())
    # the F1-optimal thresholds of that model give the same decisions on CODE-test
    optimal = binarize(data["scores"], f1_optimal_thresholds(gold, data["scores"]))
    assert np.array_equal(optimal, released.to_numpy())


def test_bootstrap_reproduces_the_original_resamples(paper_run):
    data = paper.load_paper_inputs(paper.PAPER_ANNOTATIONS, paper.PAPER_PREDICTIONS, "paper")
    indices = em.bootstrap_indices(827, 1000, 123)
    resampled = em.bootstrap_scores(data["y_true"], data["predictors"]["DNN"], indices)
    np.testing.assert_allclose(resampled.min(axis=0), PUBLISHED_DNN_BOOTSTRAP_MIN,
                               rtol=0, atol=1e-12)
    intervals = pd.read_csv(paper_run / "tables" / "bootstrap_ci.csv")
    assert list(intervals.columns) == ["predictor", "diagnosis", "metric", "low", "high"]
    assert len(intervals) == 4 * len(CLASSES) * len(em.METRICS)
    low, high = np.sort(resampled, axis=0)[[25, 975]]
    row = intervals[(intervals.predictor == "DNN") & (intervals.diagnosis == "1dAVb")
                    & (intervals.metric == "F1 score")].iloc[0]
    assert (row.low, row.high) == (round(low[0, 3], 3), round(high[0, 3], 3))
    assert (intervals.low <= intervals.high).all()


def test_figures_and_report_are_written(paper_run):
    for stem in ("figure2_precision_recall", "supplementary_figure1_bootstrap",
                 "supplementary_figure2_splits"):
        png = paper_run / "figures" / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (paper_run / "report.md").read_text()
    assert "figures/figure2_precision_recall.png" in report
    assert "| 1dAVb | 0.867 | 0.905 |" in report
    splits = pd.read_csv(paper_run / "tables" / "splits_bootstrap_ci.csv")
    assert set(splits.predictor) == {"random", "by date", "by patient", "original DNN"}
    leftovers = [p for p in paper_run.rglob("*") if ".tmp" in p.name]
    assert not leftovers


# --- Metrics against scikit-learn and scipy -------------------------------------------
def random_labels(n=200, seed=0, rate=0.2):
    return (np.random.default_rng(seed).random((n, len(CLASSES))) < rate).astype(int)


def test_scores_table_matches_scikit_learn():
    y_true, y_pred = random_labels(seed=1), random_labels(seed=2)
    y_pred[:, 0] = 0  # a class never predicted: precision and F1 are 0, as in scikit-learn
    table = em.scores_table(y_true, y_pred)
    for k in range(len(CLASSES)):
        p, r, f, _ = precision_recall_fscore_support(y_true[:, k], y_pred[:, k],
                                                     average="binary", zero_division=0)
        negatives = y_true[:, k] == 0
        specificity = np.mean(y_pred[negatives, k] == 0)
        np.testing.assert_allclose(table[k], [p, r, specificity, f], atol=1e-12)


def test_bootstrap_indices_use_the_legacy_draw():
    indices = em.bootstrap_indices(7, 3, seed=5)
    expected = np.random.RandomState(5).randint(7, size=21).reshape(3, 7)
    assert np.array_equal(indices, expected)
    assert np.array_equal(indices, em.bootstrap_indices(7, 3, seed=5))


def test_mcnemar_is_chi_square_without_correction():
    y_true, y_a, y_b = random_labels(seed=3), random_labels(seed=4), random_labels(seed=5)
    wrong_a, wrong_b = y_a != y_true, y_b != y_true
    b = np.sum(wrong_a & ~wrong_b, axis=0)
    c = np.sum(~wrong_a & wrong_b, axis=0)
    expected = chi2.sf((b - c) ** 2 / (b + c), df=1)
    np.testing.assert_allclose(em.mcnemar_pvalues(y_true, y_a, y_b), expected, rtol=1e-10)
    assert np.isnan(em.mcnemar_pvalues(y_true, y_a, y_a)).all()  # never disagree


def test_f1_optimal_thresholds_reach_the_best_f1():
    rng = np.random.default_rng(6)
    y_true = random_labels(seed=7)
    scores = np.clip(y_true * 0.4 + rng.random(y_true.shape) * 0.7, 0, 1)
    thresholds = f1_optimal_thresholds(y_true, scores)
    achieved = em.scores_table(y_true, binarize(scores, thresholds))[:, 3]
    for k in range(len(CLASSES)):
        best = max(em.scores_table(y_true[:, [k]], (scores[:, [k]] >= s).astype(int))[0, 3]
                   for s in np.unique(scores[:, k]))
        assert achieved[k] == pytest.approx(best)


def test_median_model_is_sixth_of_ten():
    y_true = random_labels(seed=8)
    rng = np.random.default_rng(9)
    noise = np.linspace(0.2, 2.0, 10)  # model i is worse when noise[i] is larger
    models = [y_true + s * rng.random(y_true.shape) for s in noise[::-1]]
    # models ordered from worst to best; the 6th worst (index 5) is selected
    assert em.select_median_model(y_true, models) == 5


# --- Command line and evaluation mode -------------------------------------------------
def write_csv(path, values, exam_ids=None, extra=None):
    frame = pd.DataFrame(values, columns=list(CLASSES))
    if exam_ids is not None:
        frame.insert(0, "exam_id", exam_ids)
    for name, column in (extra or {}).items():
        frame[name] = column
    frame.to_csv(path, index=False)
    return str(path)


def test_missing_annotations_exit_2_with_doi(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(gf.main, ["--annotations", str(tmp_path / "nowhere"),
                          "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "gold_standard.csv" in err and CODE_TEST_DOI in err
    assert "leave them out to read the copy shipped with the package" in err
    assert not (tmp_path / "out").exists()


def test_evaluation_mode_aligns_exam_ids_and_compares_annotators(tmp_path):
    n = 120
    y_true = random_labels(n, seed=10)
    scores = np.clip(y_true * 0.6 + np.random.default_rng(11).random(y_true.shape) * 0.5, 0, 1)
    ids = np.arange(5000, 5000 + n)
    gold = write_csv(tmp_path / "gold.csv", y_true, ids)
    order = np.random.default_rng(12).permutation(n)  # predictions in another order
    predictions = write_csv(tmp_path / "pred.csv", scores[order], ids[order],
                            extra={"1dAVb_pred": 1})
    reader = write_csv(tmp_path / "reader.csv", random_labels(n, seed=13))
    out = tmp_path / "out"
    status = gf.main(["--gold", gold, "--predictions", predictions, "--name", "mine",
                      "--annotator", f"reader={reader}", "--out", str(out), "--format", "png",
                      "--n-bootstrap", "50"])
    assert status == 0
    table = pd.read_csv(out / "tables" / "scores.csv", header=[0, 1], index_col=0)
    expected = em.scores_table(y_true, binarize(scores, parse_thresholds("paper")))
    np.testing.assert_allclose(table["F1 score"]["mine"], expected[:, 3], atol=5e-4)
    assert list(read_pairwise(out / "tables" / "mcnemar.csv").index) == ["mine vs reader"]
    assert (out / "figures" / "figure2_precision_recall.png").is_file()
    assert not (out / "figures" / "supplementary_figure2_splits.png").exists()


def test_evaluation_thresholds_from_columns_and_json(tmp_path):
    n = 60
    y_true = random_labels(n, seed=14)
    scores = np.random.default_rng(15).random(y_true.shape)
    decisions = {f"{c}_pred": y_true[:, k] for k, c in enumerate(CLASSES)}  # perfect
    gold = write_csv(tmp_path / "gold.csv", y_true)
    predictions = write_csv(tmp_path / "pred.csv", scores, extra=decisions)
    data = paper.load_evaluation_inputs(gold, predictions, [], "m", "columns")
    assert np.array_equal(data["predictors"]["m"], y_true)
    (tmp_path / "t.json").write_text(json.dumps(
        {"thresholds": {c: {"threshold": 0.5} for c in CLASSES}}))
    data = paper.load_evaluation_inputs(gold, predictions, [], "m", str(tmp_path / "t.json"))
    assert np.array_equal(data["predictors"]["m"], (scores > 0.5).astype(int))


@pytest.mark.parametrize("argv, message", [
    (["--thresholds", "0.1,0.2"], "--thresholds"),
    (["--format", "gif2"], "--format"),
    (["--annotator", "noequals"], "--annotator"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    y_true = random_labels(30, seed=16)
    gold = write_csv(tmp_path / "gold.csv", y_true)
    np.save(tmp_path / "pred.npy", y_true.astype(float))
    with pytest.raises(SystemExit) as stop:
        run_cli(gf.main, ["--gold", gold, "--predictions", str(tmp_path / "pred.npy"),
                          "--out", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_wrong_prediction_shape_is_reported(tmp_path, capsys):
    gold = write_csv(tmp_path / "gold.csv", random_labels(10, seed=17))
    np.save(tmp_path / "pred.npy", np.zeros((10, 4)))
    with pytest.raises(SystemExit):
        run_cli(gf.main, ["--gold", gold, "--predictions", str(tmp_path / "pred.npy"),
                          "--out", str(tmp_path / "out")])
    assert "pred.npy" in capsys.readouterr().err


def test_evaluation_of_another_class_set_matches_columns_by_name(tmp_path):
    """Four classes of one's own: columns found by name in files that order them otherwise."""
    classes = ["NORM", "MI", "STTC", "CD"]
    rng = np.random.default_rng(20)
    n = 90
    y_true = (rng.random((n, 4)) < 0.3).astype(int)
    scores = np.clip(y_true * 0.5 + rng.random((n, 4)) * 0.6, 0, 1)
    ids = np.arange(n)
    gold = pd.DataFrame(y_true, columns=classes).assign(exam_id=ids, age=rng.integers(20, 90, n))
    gold.to_csv(tmp_path / "gold.csv", index=False)
    shuffled = classes[::-1]
    pd.DataFrame(scores[:, ::-1], columns=shuffled).assign(exam_id=ids).to_csv(
        tmp_path / "pred.csv", index=False)
    reader = (rng.random((n, 4)) < 0.3).astype(int)
    pd.DataFrame(reader[:, ::-1], columns=shuffled).to_csv(tmp_path / "reader.csv", index=False)
    out = tmp_path / "out"
    assert gf.main(["--gold", str(tmp_path / "gold.csv"), "--predictions",
                    str(tmp_path / "pred.csv"), "--thresholds", "0.5,0.5,0.5,0.5",
                    "--annotator", f"reader={tmp_path / 'reader.csv'}", "--out", str(out),
                    "--format", "png", "--n-bootstrap", "20"]) == 0
    table = pd.read_csv(out / "tables" / "scores.csv", header=[0, 1], index_col=0)
    assert list(table.index) == classes  # every 0/1 column of the gold but age
    expected = em.scores_table(y_true, (scores > 0.5).astype(int))
    np.testing.assert_allclose(table["F1 score"]["model"], expected[:, 3], atol=5e-4)
    np.testing.assert_allclose(table["Recall"]["reader"],
                               em.scores_table(y_true, reader)[:, 1], atol=5e-4)
    intervals = pd.read_csv(out / "tables" / "bootstrap_ci.csv")
    assert set(intervals["diagnosis"]) == set(classes)
    assert (out / "figures" / "figure2_precision_recall.png").is_file()
    with pytest.raises(ECGInputError, match="paper"):
        paper.load_evaluation_inputs(str(tmp_path / "gold.csv"), str(tmp_path / "pred.csv"), [],
                                  "m", "paper")
    only = paper.load_evaluation_inputs(str(tmp_path / "gold.csv"), str(tmp_path / "pred.csv"), [],
                                     "m", "f1", classes=("MI",))
    assert only["y_true"].shape == (n, 1)
