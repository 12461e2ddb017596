"""The paper's tables and figures (Ribeiro et al., Nat Commun 11:1760, 2020) on CODE-test.

generate_figures.py's library (its options and ``main`` live in ``ecgcode.cli``): the
inputs of paper mode (the CODE-test annotations and the original network's scores shipped
in ``code_test/``; the 6th of 10 seeds by micro-averaged average precision) and of evaluation
mode (any gold standard and model scores, with optional annotators); Table 2, the
supplementary tables, McNemar and kappa (:func:`compute_tables`); Figure 2 and
Supplementary Figures 1-2; the one-page ``report.md``.

Only numpy/pandas/scikit-learn/statsmodels/matplotlib are used; TensorFlow is not imported.
"""

import os

import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from sklearn.metrics import average_precision_score, precision_recall_curve

from ecgcode.common import CLASSES, CODE_TEST_DIR, CODE_TEST_DOI, ECGInputError, atomic_output
from ecgcode.evaluation import metrics as em
from ecgcode.evaluation.output import markdown_table, new_figure
from ecgcode.model.thresholds import binarize, f1_optimal_thresholds, parse_thresholds

ANNOTATOR_FILES = {
    "cardio.": "cardiology_residents.csv",
    "emerg.": "emergency_residents.csv",
    "stud.": "medical_students.csv",
}
"""Table 2's human predictors and their files in the annotations folder."""

PAPER_ANNOTATIONS = os.path.join(CODE_TEST_DIR, "annotations")
PAPER_PREDICTIONS = os.path.join(CODE_TEST_DIR, "dnn_predicts")
"""Paper mode's default folders: the CODE-test copy shipped in ``ecgcode/evaluation/code_test/``."""
PAPER_HINT = (f"--annotations and --predictions take folders laid out as the CODE-test release "
              f"(doi:{CODE_TEST_DOI}); leave them out to read the copy shipped with the package")
"""What a missing paper-mode file's error suggests."""

CARDIOLOGIST_FILES = {"Cardiologist 1": "cardiologist1.csv", "Cardiologist 2": "cardiologist2.csv"}
N_SEEDS = 10
SPLITS = {"random": "normal_order", "by date": "date_order", "by patient": "individual_patients"}
"""Supplementary Figure 2's alternative splits and their file suffixes."""

MARKERS = ("o", "v", "s", "d", "^", "P", "X", "*")
COLORS = ("tab:blue", "tab:red", "tab:green", "0.25", "tab:purple", "tab:orange", "tab:brown")


# --- Inputs ----------------------------------------------------------------------------
def load_paper_inputs(annotations, predictions, thresholds_text):
    """Read CODE-test and pick the paper's DNN. Returns a dict of arrays and metadata."""
    paths = [os.path.join(annotations, f) for f in
             ["gold_standard.csv", *ANNOTATOR_FILES.values(), *CARDIOLOGIST_FILES.values()]]
    seed_paths = [os.path.join(predictions, "other_seeds", f"model_{i}.npy")
                  for i in range(1, N_SEEDS + 1)]
    split_paths = {name: os.path.join(predictions, "other_splits", f"model_{suffix}.npy")
                   for name, suffix in SPLITS.items()}
    for path in [*paths, *seed_paths, *split_paths.values()]:
        em.require_file(path, PAPER_HINT)
    y_true, _ = em.read_labels(paths[0])
    seeds = [em.read_scores(p)[0] for p in seed_paths]
    selected = em.select_median_model(y_true, seeds)
    if thresholds_text == "columns":
        raise ECGInputError("--thresholds columns: only with --gold and a .csv of predictions")
    thresholds = parse_thresholds(thresholds_text, y_true, seeds[selected])
    predictors = {"DNN": binarize(seeds[selected], thresholds)}
    for name, filename in ANNOTATOR_FILES.items():
        predictors[name] = em.read_labels(os.path.join(annotations, filename))[0]
    cardiologists = {name: em.read_labels(os.path.join(annotations, f))[0]
                     for name, f in CARDIOLOGIST_FILES.items()}
    splits = {name: em.read_scores(p)[0] for name, p in split_paths.items()}
    splits["original DNN"] = seeds[selected]
    for name, values in [*predictors.items(), *splits.items()]:
        if len(values) != len(y_true):
            raise ECGInputError(f"{name}: {len(values)} exams, gold standard has {len(y_true)}")
    return {"y_true": y_true, "predictors": predictors, "scores": seeds[selected],
            "seeds": seeds, "selected": selected, "thresholds": thresholds,
            "cardiologists": cardiologists, "splits": splits, "classes": tuple(CLASSES)}


def load_evaluation_inputs(gold, predictions, annotators, name, thresholds_text, classes=None):
    """Read a user's gold standard, model scores and optional annotators.

    ``classes`` (default: see ``ecgcode.evaluation.metrics.gold_classes``) are matched by
    name in the gold standard, the predictions CSV and each annotator's CSV.
    """
    classes = em.gold_classes(gold, classes)
    y_true, gold_ids = em.read_labels(gold, classes)
    scores, ids = em.read_scores(predictions, classes)
    scores = em.align(scores, ids, gold_ids, predictions)
    if thresholds_text == "columns":
        decisions, ids = em.read_decision_columns(predictions, classes)
        thresholds = None
        predictors = {name: em.align(decisions, ids, gold_ids, predictions)}
    else:
        thresholds = parse_thresholds(thresholds_text, y_true, scores, classes)
        predictors = {name: binarize(scores, thresholds)}
    for spec in annotators:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise ECGInputError(f"--annotator {spec!r}: write NAME=FILE")
        values, ids = em.read_labels(path, classes)
        predictors[label] = em.align(values, ids, gold_ids, path)
    return {"y_true": y_true, "predictors": predictors, "scores": scores, "seeds": None,
            "selected": None, "thresholds": thresholds, "cardiologists": None, "splits": None,
            "classes": classes}


# --- Tables ----------------------------------------------------------------------------
def compute_tables(data, seed=123, n_bootstrap=1000):
    """All tables as DataFrames (keyed by file stem) and the resampled scores for plots."""
    y_true, predictors, classes = data["y_true"], data["predictors"], data["classes"]
    indices = em.bootstrap_indices(len(y_true), n_bootstrap, seed)
    tables = {"scores": em.table2_frame(y_true, predictors, classes),
              "confusion_matrices": em.confusion_frame(y_true, predictors, classes)}
    tables["bootstrap_ci"], resampled = em.bootstrap_frame(y_true, predictors, indices, classes)
    if len(predictors) > 1:
        tables["mcnemar"] = em.pairwise_frame(
            predictors, lambda a, b: em.mcnemar_pvalues(y_true, a, b), classes=classes)
        tables["kappa"] = em.pairwise_frame(predictors, em.kappas, classes=classes)
    if data["cardiologists"]:
        raters = {"DNN": predictors["DNN"], **data["cardiologists"]}
        tables["kappa_annotators"] = em.pairwise_frame(raters, em.kappas)
    if data["seeds"]:
        tables["model_selection"] = seed_table(y_true, data["seeds"], data["selected"])
    split_resampled = None
    if data["splits"]:
        split_predictions = {name: binarize(s, f1_optimal_thresholds(y_true, s))
                             for name, s in data["splits"].items()}
        tables["splits_bootstrap_ci"], split_resampled = em.bootstrap_frame(
            y_true, split_predictions, indices)
    return tables, resampled, split_resampled


def seed_table(y_true, seeds, selected):
    """Micro-averaged average precision of every seed, its rank and the selected one."""
    precision = [average_precision_score(y_true, s, average="micro") for s in seeds]
    rank = np.argsort(np.argsort(precision)) + 1
    return pd.DataFrame({"model": [f"model_{i + 1}" for i in range(len(seeds))],
                         "micro_average_precision": precision, "rank": rank,
                         "selected": [i == selected for i in range(len(seeds))]})


def write_tables(tables, folder):
    """Write every table as CSV (3 decimals) through atomic_output. Returns the paths."""
    paths = {}
    for stem, frame in tables.items():
        paths[stem] = os.path.join(folder, f"{stem}.csv")
        index = stem not in ("confusion_matrices", "bootstrap_ci", "splits_bootstrap_ci",
                             "model_selection")
        with atomic_output(paths[stem]) as tmp:
            frame.to_csv(tmp, float_format="%.3f", index=index)
    return paths


# --- Figures ---------------------------------------------------------------------------
def precision_at_recall(y_true, score, grid):
    """Precision of the first operating point (highest threshold) reaching each recall."""
    precision, recall, _ = precision_recall_curve(y_true, score)
    reached = (recall[None, :] >= grid[:, None]).sum(axis=1) - 1  # recall is non-increasing
    return precision[reached]


def draw_iso_f1(ax):
    """Dotted iso-F1 curves with their values at the right edge."""
    recall = np.linspace(0.01, 1, 400)
    for f1 in np.arange(0.2, 1.0, 0.1):
        keep = recall > f1 / 2 + 1e-3
        precision = f1 * recall[keep] / (2 * recall[keep] - f1)
        keep_plot = precision <= 1.02
        ax.plot(recall[keep][keep_plot], precision[keep_plot], color="0.6", ls=":", lw=0.8)
        ax.annotate(f"F1={f1:.1f}", (1.02, f1 / (2 - f1)), xytext=(2, 0),
                    textcoords="offset points", fontsize=7, color="0.45", va="center")


def plot_precision_recall(data, table2):
    """Figure 2: precision-recall curves per class, the seeds' band and operating points."""
    y_true, grid, classes = data["y_true"], np.linspace(0, 1, 1001), data["classes"]
    columns = min(3, len(classes))
    rows = -(-len(classes) // columns)
    fig, axes = new_figure((4.35 * columns, 4.3 * rows), rows, columns)
    axes = np.atleast_1d(axes)
    for ax in axes.flat[len(classes):]:
        ax.set_axis_off()  # panels beyond the last class
    for k, (ax, name) in enumerate(zip(axes.flat, classes)):
        draw_iso_f1(ax)
        if data["seeds"]:
            band = np.array([precision_at_recall(y_true[:, k], s[:, k], grid)
                             for s in data["seeds"]])
            ax.fill_between(grid, band.min(0), band.max(0), color="tab:blue", alpha=0.25,
                            lw=0, label=f"range of {len(data['seeds'])} seeds")
        selected = precision_at_recall(y_true[:, k], data["scores"][:, k], grid)
        curve_label = "selected model" if data["seeds"] else f"{next(iter(data['predictors']))} scores"
        ax.plot(grid, selected, color="tab:blue", lw=1.6, label=curve_label)
        for j, predictor in enumerate(data["predictors"]):
            ax.plot(table2.loc[name, ("Recall", predictor)],
                    table2.loc[name, ("Precision", predictor)], MARKERS[j % len(MARKERS)],
                    color=COLORS[j % len(COLORS)], ms=8, mec="white", mew=0.8, label=predictor,
                    ls="none", clip_on=False, zorder=5)
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), title=name, aspect="equal")
        ax.set_xlabel("Recall (sensitivity)")
        ax.set_ylabel("Precision (PPV)")
    axes.flat[0].legend(loc="lower left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    return fig


def grouped_boxplot(ax, resampled, metric_index, classes=CLASSES, ylabel=""):
    """Box plots of one metric: groups per class, one colored box per predictor."""
    names, order = list(resampled), list(classes)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        columns = [resampled[name][:, k, metric_index] for k in range(len(order))]
        positions = np.arange(len(order)) - 0.4 + width * (j + 0.5)
        ax.boxplot(columns, positions=positions, widths=width * 0.85, patch_artist=True,
                   boxprops={"facecolor": COLORS[j % len(COLORS)], "alpha": 0.75, "lw": 0.6},
                   medianprops={"color": "black", "lw": 1}, whiskerprops={"lw": 0.7},
                   capprops={"lw": 0.7}, flierprops={"marker": ".", "ms": 2, "alpha": 0.4})
    ax.set_xticks(np.arange(len(order)), order)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return [Patch(facecolor=COLORS[j % len(COLORS)], alpha=0.75, label=n)
            for j, n in enumerate(names)]


def plot_bootstrap(resampled, classes=CLASSES):
    """Supplementary Figure 1: bootstrap box plots of every metric."""
    fig, axes = new_figure((13, 8), 2, 2)
    for m, (ax, metric) in enumerate(zip(axes.flat, em.METRICS)):
        handles = grouped_boxplot(ax, resampled, m, classes, ylabel=metric)
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def plot_splits(split_resampled):
    """Supplementary Figure 2: F1 box plots of the alternative splits."""
    fig, ax = new_figure((10, 4.5))
    handles = grouped_boxplot(ax, split_resampled, em.METRICS.index("F1 score"),
                              ylabel="F1 score")
    ax.legend(handles=handles, loc="lower left", fontsize=9, ncol=len(handles))
    lowest = min(r[:, :, em.METRICS.index("F1 score")].min() for r in split_resampled.values())
    ax.set_ylim(min(0.4, lowest - 0.02), 1.03)
    fig.tight_layout()
    return fig


def draw_figures(data, tables, resampled, split_resampled):
    """{file stem: figure}: Figure 2 and Supplementary Figure 1 (and 2, given the splits)."""
    figures = {"figure2_precision_recall": plot_precision_recall(data, tables["scores"]),
               "supplementary_figure1_bootstrap": plot_bootstrap(resampled, data["classes"])}
    if split_resampled:
        figures["supplementary_figure2_splits"] = plot_splits(split_resampled)
    return figures


# --- Report ----------------------------------------------------------------------------
REPORT_SENTENCES = {
    "scores": "Table 2: precision, recall, specificity and F1 score of each predictor against "
              "the gold standard.",
    "mcnemar": "McNemar's test p-values (chi-square, 1 dof, no continuity correction) on "
               "which exams each pair of predictors gets right; small values mean the two "
               "err differently.",
    "kappa": "Cohen's kappa between pairs of predictors (agreement beyond chance).",
    "kappa_annotators": "Cohen's kappa between the DNN and the two certified cardiologists "
                        "whose agreement defines the gold standard.",
    "model_selection": "Micro-averaged average precision of the seeds; the model ranked just "
                       "above the median is the one reported.",
}
FIGURE_SENTENCES = {
    "figure2_precision_recall": "Figure 2: precision-recall curve of the selected model per "
                                "diagnosis, the band spanned by the seeds, iso-F1 curves and "
                                "the operating points of all predictors.",
    "supplementary_figure1_bootstrap": "Supplementary Figure 1: each metric over the bootstrap "
                                       "resamples of the exams.",
    "supplementary_figure2_splits": "Supplementary Figure 2: F1 score over bootstrap resamples "
                                    "for networks trained on alternative splits, each at its "
                                    "F1-optimal threshold.",
}


def write_report(path, tables, figure_stems, data):
    """Write a one-page markdown report with every table and figure and one sentence each."""
    lines = ["# Results on the test set", ""]
    if data["selected"] is not None:
        lines += [f"Selected DNN: seed model_{data['selected'] + 1} (6th of {N_SEEDS} by "
                  "micro-averaged average precision), thresholds "
                  + ", ".join(f"{c} {t:.3f}" for c, t in zip(data["classes"],
                                                               data["thresholds"]))
                  + " (positive when score > threshold).", ""]
    for stem, sentence in REPORT_SENTENCES.items():
        if stem in tables:
            frame = tables[stem].set_index("model") if stem == "model_selection" else tables[stem]
            lines += [f"## {stem}", "", sentence, "", markdown_table(frame), ""]
    note = ("95% bootstrap intervals (2.5 and 97.5 percentiles over resampled exams) are in "
            "`tables/bootstrap_ci.csv`; confusion matrices in `tables/confusion_matrices.csv`.")
    lines += ["## bootstrap_ci", "", note, ""]
    for stem in figure_stems:
        image = f"![{stem}](figures/{stem}.png)"
        lines += [f"## {stem}", "", FIGURE_SENTENCES[stem], "", image, ""]
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
