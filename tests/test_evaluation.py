"""The library behind validate.py, without a model: threshold rules, measures and their
bootstrap, calibration, subgroups, splits and the scale sweep (no TensorFlow)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ecgcode.common import ECGInputError
from ecgcode.evaluation import measures
from ecgcode.evaluation import metrics as em
from ecgcode.evaluation.subgroups import age_bands, parse_age_edges, sex_values, subgroup_table
from ecgcode.evaluation.sweep import COLUMNS, scale_sweep, sweep_markdown
from ecgcode.evaluation.validation import LabelledECGs, make_split
from ecgcode.model.calibration import (
    apply_calibration,
    calibrate_outputs,
    fit_calibration,
)
from ecgcode.model.thresholds import (
    binarize,
    f1_optimal_thresholds,
    parse_rule,
    rule_text,
    rule_threshold,
    rule_thresholds,
)


def scored(n=300, seed=0, prevalence=0.25, decimals=2):
    """Labels and scores that separate them imperfectly, with ties (rounded scores)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    s = np.round(np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1), decimals)
    return y, s


def rates(y, s, threshold):
    """(sensitivity, specificity) of ``s > threshold``."""
    predicted = binarize(s, threshold).astype(bool)
    y = y.astype(bool)
    return (predicted & y).sum() / y.sum(), (~predicted & ~y).sum() / (~y).sum()


def every_cut(s):
    """Thresholds that realise every distinct decision on ``s`` (and calling none)."""
    values = np.unique(s)
    return np.r_[values[0] - 1, (values[1:] + values[:-1]) / 2, values[-1]]


# --- Threshold rules ---------------------------------------------------------------------
def test_the_f1_rule_is_the_f1_optimal_threshold():
    y, s = scored()
    assert rule_threshold(y, s, "f1") == f1_optimal_thresholds(y[:, None], s[:, None])[0]


def test_youden_maximises_sensitivity_plus_specificity():
    y, s = scored(seed=1)
    best = max(sum(rates(y, s, t)) for t in every_cut(s))
    assert sum(rates(y, s, rule_threshold(y, s, "youden"))) == pytest.approx(best)


@pytest.mark.parametrize(("rule", "target"), [("sensitivity", 0.9), ("sensitivity", 0.5),
                                            ("sensitivity", 1.0), ("specificity", 0.99),
                                            ("specificity", 0.8)])
def test_a_minimum_rule_keeps_the_best_other_rate_reaching_the_target(rule, target):
    """sensitivity=X: the best specificity among thresholds reaching X; specificity=X: the
    best sensitivity."""
    y, s = scored(seed=2 if rule == "sensitivity" else 3)
    held, other = (0, 1) if rule == "sensitivity" else (1, 0)
    reached = rates(y, s, rule_threshold(y, s, f"{rule}={target}"))
    assert reached[held] >= target
    candidates = [rates(y, s, t) for t in every_cut(s) if rates(y, s, t)[held] >= target]
    assert reached[other] == pytest.approx(max(pair[other] for pair in candidates))


def test_a_rule_without_the_exams_it_needs_gives_none():
    s = np.linspace(0, 1, 20)
    negatives, positives = np.zeros(20), np.ones(20)
    assert rule_threshold(negatives, s, "f1") is None
    assert rule_threshold(negatives, s, "youden") is None
    assert rule_threshold(negatives, s, "sensitivity=0.9") is None
    assert rule_threshold(negatives, s, "specificity=0.99") is not None  # negatives suffice
    assert rule_threshold(positives, s, "specificity=0.99") is None
    thresholds = rule_thresholds(np.c_[negatives, positives], np.c_[s, s], "f1", ["A", "B"])
    assert thresholds["A"] is None and thresholds["B"] is not None


@pytest.mark.parametrize("text", ["f2", "sensitivity", "sensitivity=0", "specificity=1.5",
                                  "youden=0.3", "specificity=high"])
def test_a_bad_rule_is_one_line(text):
    with pytest.raises(ECGInputError, match="a rule is f1, youden, sensitivity=X"):
        parse_rule(text)


def test_rule_text_is_canonical():
    assert rule_text(" Sensitivity=0.90 ") == "sensitivity=0.9"
    assert rule_text("YOUDEN") == "youden"


# --- Measures and their bootstrap --------------------------------------------------------
def test_weighted_measures_equal_scikit_learn_on_resamples():
    y, s = scored(n=200, seed=4)
    indices = em.bootstrap_indices(len(y), 20, 123)
    weights = measures.resample_weights(indices, len(y))
    assert weights.sum(axis=1).tolist() == [len(y)] * 20
    auroc = measures.weighted_auroc(y, s, weights)
    auprc = measures.weighted_average_precision(y, s, weights)
    brier = measures.weighted_brier(y, s, weights)
    for r in range(len(indices)):
        drawn_y, drawn_s = y[indices[r]], s[indices[r]]
        assert auroc[r] == pytest.approx(roc_auc_score(drawn_y, drawn_s))
        assert auprc[r] == pytest.approx(average_precision_score(drawn_y, drawn_s))
        assert brier[r] == pytest.approx(brier_score_loss(drawn_y, drawn_s))


def test_ece_is_the_reliability_diagrams_weighted_gap():
    y, s = scored(n=400, seed=5)
    observed, predicted, sizes = measures.reliability_curve(y, s)
    expected = np.sum(sizes / len(y) * np.abs(observed - predicted))
    assert measures.point_measures(y, s)["ece"] == pytest.approx(expected)


def test_undefined_measures_are_nan_and_have_no_interval():
    y = np.zeros((50, 2))
    y[:2, 1] = 1  # two positives: many resamples have none
    s = np.tile(np.linspace(0, 1, 50)[:, None], (1, 2))
    table = measures.score_table(y, s, ["none", "rare"], em.bootstrap_indices(50, 200, 1))
    none, rare = table.iloc[0], table.iloc[1]
    assert np.isnan(none["auroc"]) and np.isnan(none["auprc"]) and np.isnan(none["auroc_low"])
    assert np.isfinite(none["ece"]) and np.isfinite(none["ece_low"])
    assert np.isfinite(rare["auroc"]) and np.isnan(rare["auroc_low"])  # too often undefined


def test_intervals_contain_the_point_and_table2_matches_metrics():
    y, s = scored(n=300, seed=6)
    y2, s2 = np.c_[y, y], np.c_[s, s]
    indices = em.bootstrap_indices(300, 200, 123)
    table = measures.score_table(y2, s2, ["A", "B"], indices)
    for measure in measures.SCORE_MEASURES:
        assert (table[f"{measure}_low"] <= table[measure]).all()
        assert (table[measure] <= table[f"{measure}_high"]).all()
    at = measures.threshold_table(y2, s2, {"A": 0.5, "B": None}, ["A", "B"], indices)
    expected = em.scores_table(y2[:, :1], binarize(s2[:, :1], 0.5))[0]
    assert at.loc[0, ["precision", "recall", "specificity", "f1"]].tolist() == \
        pytest.approx(expected.tolist())
    assert at.loc[1, ["threshold", "f1", "f1_low"]].isna().all()


# --- Calibration -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_calibration_fixes_overconfident_probabilities(method):
    rng = np.random.default_rng(7)
    truth = rng.random(4000)  # the real chance of each exam
    y = (rng.random(4000) < truth).astype(int)
    z = np.log(truth / (1 - truth)) * 3  # overconfident: logits three times too large
    p = 1 / (1 + np.exp(-z))
    fitted = fit_calibration(y[:, None], p[:, None], ["A"], method)
    after = apply_calibration(p[:, None], fitted, ["A"])[:, 0]
    assert measures.point_measures(y, after)["ece"] < measures.point_measures(y, p)["ece"] / 2
    if method == "temperature":
        assert fitted["classes"]["A"]["temperature"] == pytest.approx(3, rel=0.15)


def test_calibrated_outputs_keep_the_decisions():
    y, s = scored(n=300, seed=8)
    p = np.c_[s, s[::-1]].clip(0.01, 0.99)
    labels = np.c_[y, y[::-1]]
    fitted = fit_calibration(labels, p, ["A", "B"], "platt")
    thresholds = {"A": 0.42, "B": None}
    calibrated, mapped = calibrate_outputs(p, thresholds, fitted, ["A", "B"])
    assert not np.allclose(calibrated[:, 0], p[:, 0])
    assert mapped["B"] is None
    np.testing.assert_array_equal(binarize(calibrated[:, 0], mapped["A"]),
                                  binarize(p[:, 0], 0.42))
    assert calibrate_outputs(p, thresholds, None, ["A", "B"]) == (p, thresholds)


def test_a_class_of_one_label_keeps_its_probabilities():
    p = np.linspace(0.1, 0.9, 10)[:, None]
    fitted = fit_calibration(np.zeros((10, 1)), p, ["A"], "temperature")
    assert fitted["classes"]["A"] is None
    np.testing.assert_array_equal(apply_calibration(p, fitted, ["A"]), p)


# --- Subgroups ---------------------------------------------------------------------------
def test_age_bands_and_sex_values():
    bands = age_bands([5, 39.9, 40, 59, 60, 85, np.nan, -1, "NaN", "74"], (40, 60, 80))
    assert bands.tolist() == ["<40", "<40", "40-59", "40-59", "60-79", ">=80", "", "", "",
                              "60-79"]
    assert sex_values(["Male", "F", "unknown", b"female"]).tolist() == \
        ["male", "female", "", "female"]
    assert sex_values([1, 0, 1.0], is_male=True).tolist() == ["male", "female", "male"]
    with pytest.raises(ECGInputError, match="--age-bands '60,40'"):
        parse_age_edges("60,40")


def test_small_subgroups_get_point_estimates_and_one_line_each():
    y, s = scored(n=120, seed=9)
    attributes = {"sex": np.array(["female"] * 100 + ["male"] * 15 + [""] * 5, dtype=object)}
    frame, notes = subgroup_table(y[:, None], s[:, None], attributes, ["A"], n_bootstrap=50,
                                  min_exams=30)
    assert frame["group"].tolist() == ["female", "male"]
    assert frame["exams"].tolist() == [100, 15]
    female, male = frame.iloc[0], frame.iloc[1]
    assert np.isfinite(female["auroc_low"]) and np.isnan(male["auroc_low"])
    assert notes == ["subgroup sex=male: 15 exams, fewer than 30: no interval, point estimates "
                     + "only"]


# --- Splits ------------------------------------------------------------------------------
def labelled(n, patients=None, frame=None):
    """A LabelledECGs with just what make_split reads."""
    from types import SimpleNamespace

    collection = SimpleNamespace(n=n)
    table = SimpleNamespace(frame=frame, source="gold.csv")
    return LabelledECGs(collection, np.zeros((n, 1)), ("A",), (), None, {}, patients,
                        "gold.csv", table)


def test_a_random_split_is_disjoint_and_keeps_patients_together():
    patients = np.repeat(np.arange(25), 4)
    split = make_split("0.5", labelled(100, patients), seed=1)
    assert not set(split.tune) & set(split.measure)
    assert sorted([*split.tune, *split.measure]) == list(range(100))
    assert not set(patients[split.tune]) & set(patients[split.measure])
    assert "whole patients" in split.tune_text and not split.same


def test_a_column_split_and_none():
    frame = pd.DataFrame({"strat_fold": [9, 10, 9, 10, 1]})
    split = make_split("strat_fold=9", labelled(5, frame=frame))
    assert split.tune.tolist() == [0, 2] and split.measure.tolist() == [1, 3, 4]
    same = make_split("none", labelled(5))
    assert same.same and "optimistic" in same.measure_text


@pytest.mark.parametrize(("spec", "message"), [
    ("1.5", "give a fraction between 0 and 1"), ("half", "give a fraction"),
    ("strat_fold=3", "leaves 0 exams to choose"),
])
def test_a_bad_split_is_one_line(spec, message):
    frame = pd.DataFrame({"strat_fold": [9, 10, 9]})
    with pytest.raises(ECGInputError, match=message):
        make_split(spec, labelled(3, frame=frame))


# --- The scale sweep ---------------------------------------------------------------------
def amplitude_model(x):
    """Probabilities that rise with the amplitude of lead I, and peak at one amplitude for
    the second class: (n, 4096, 12) -> (n, 2)."""
    amplitude = np.abs(np.asarray(x)[:, :, 0]).max(axis=1)  # (n,)
    first = 1 / (1 + np.exp(-(amplitude - 10)))
    second = np.exp(-((np.log(amplitude) - np.log(10)) ** 2))
    return np.stack([first, second], axis=1).astype(np.float32)


def test_scale_sweep_multiplies_the_inputs_and_measures_each_factor():
    rng = np.random.default_rng(10)
    amplitudes = rng.uniform(2, 20, 60).astype(np.float32)
    tracings = np.zeros((60, 4096, 12), np.float32)
    tracings[:, 100, 0] = amplitudes
    labels = np.c_[amplitudes > 10, np.zeros(60)]  # the second class has no positive exam
    seen = []

    def predict(x):
        seen.append(np.abs(x[:, :, 0]).max(axis=1))
        return amplitude_model(x)

    frame = scale_sweep(predict, tracings, labels, ["big", "none"],
                        thresholds={"big": 0.5, "none": None}, factors=(0.5, 1, 2))
    assert list(frame.columns) == list(COLUMNS)
    assert frame["factor"].tolist() == [0.5, 0.5, 1, 1, 2, 2]
    np.testing.assert_allclose(seen[0], amplitudes * 0.5, rtol=1e-6)
    np.testing.assert_allclose(seen[2], amplitudes * 2, rtol=1e-6)
    big = frame[frame["class"] == "big"].set_index("factor")
    assert big.loc[1.0, "f1"] == pytest.approx(1.0)  # 'amplitude > 10' at its own scale
    assert big.loc[2.0, "f1"] < 1 and big.loc[0.5, "recall"] < 1
    assert big["positives"].tolist() == [int((amplitudes > 10).sum())] * 3
    none = frame[frame["class"] == "none"]
    assert none["auroc"].isna().all() and none["f1"].isna().all()
    assert none["positives"].tolist() == [0, 0, 0]


def test_sweep_markdown_has_a_row_per_factor_and_a_column_per_class():
    frame = pd.DataFrame({"factor": [1.0, 1.0, 0.2, 0.2], "class": ["B", "A", "B", "A"],
                          "auroc": [0.9, 0.8, 0.6, np.nan], "auprc": 0.5, "f1": 0.5,
                          "precision": 0.5, "recall": 0.5, "positives": 3})
    lines = sweep_markdown(frame, "auroc").splitlines()
    assert lines[0] == "| auroc at factor | B | A |"
    assert lines[2:] == ["| x0.2 | 0.600 | nan |", "| x1 | 0.900 | 0.800 |"]
