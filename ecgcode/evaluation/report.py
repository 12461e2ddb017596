"""validate.py's outputs: the tables as CSV, the figures and the one-page ``report.md``.

:func:`write_report` writes, in the output folder, ``tables/*.csv`` (every number with
its interval), ``figures/`` (ROC and precision-recall curves, the reliability diagram and
the scale sweep) and ``report.md``, which shows them on one page with the exams that
chose the thresholds and those that measured them. Every file is written atomically.
"""

import os

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from ecgcode.evaluation.measures import (
    N_BINS,
    SCORE_MEASURES,
    THRESHOLD_MEASURES,
    reliability_curve,
)
from ecgcode.evaluation.output import markdown_table, new_figure, save_figure, write_text
from ecgcode.evaluation.sweep import sweep_markdown
from ecgcode.model.calibration import describe_calibration

NAMES = {"auroc": "AUROC", "auprc": "AUPRC", "ece": "ECE", "brier": "Brier",
         "precision": "precision", "recall": "sensitivity", "specificity": "specificity",
         "f1": "F1"}
"""Column headings of the report's tables."""


# --- Numbers ---------------------------------------------------------------------------
def with_interval(value, low, high, decimals=3):
    """``"0.912 (0.850-0.960)"``; ``"undefined"`` for NaN; no brackets without an interval."""
    if not np.isfinite(value):
        return "undefined"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{decimals}f}"
    return f"{value:.{decimals}f} ({low:.{decimals}f}-{high:.{decimals}f})"


def interval_frame(table, measures, index="class", keep=("exams", "positives")):
    """A table of :mod:`ecgcode.evaluation.measures` with each measure and its interval in
    one text cell, indexed by ``index``."""
    out = table.set_index(index)[[c for c in keep if c in table.columns]].astype(object)
    for measure in measures:
        out[NAMES.get(measure, measure)] = [
            with_interval(*values) for values in
            table[[measure, f"{measure}_low", f"{measure}_high"]].to_numpy(dtype=float)]
    return out


def threshold_cells(thresholds):
    """Thresholds as text: three significant digits, ``none`` without one."""
    return ["none" if t is None or not np.isfinite(t) else f"{t:.3g}" for t in thresholds]


# --- Tables ----------------------------------------------------------------------------
def tables_of(result):
    """Every table of a ``Validation`` as a DataFrame, keyed by file stem."""
    rules = [table.assign(rule=rule) for rule, table in result.rules.items()]
    tables = {"discrimination_calibration": result.scores,
              "model_thresholds": result.at_thresholds,
              "rules": pd.concat(rules, ignore_index=True)[
                  ["rule", *rules[0].columns.drop("rule")]] if rules else None,
              "calibration_fitted": result.calibrated,
              "subgroups": result.subgroups if len(result.subgroups) else None,
              "scale_sweep": result.sweep}
    return {stem: frame for stem, frame in tables.items() if frame is not None}


def write_tables(tables, folder):
    """Write each table as ``folder/<stem>.csv`` (atomically); returns the paths."""
    paths = []
    for stem, frame in tables.items():
        paths.append(os.path.join(folder, f"{stem}.csv"))
        write_text(paths[-1], frame.to_csv(index=False, float_format="%.6g"))
    return paths


# --- Figures ---------------------------------------------------------------------------
def plot_curves(result):
    """ROC (top) and precision-recall (bottom) curves of every class on all exams, with
    the model's operating point; a class without positive exams gets an empty panel."""
    classes, y, p = result.classes, result.labels, result.probabilities
    fig, axes = new_figure((2.9 * len(classes), 5.8), 2, len(classes))
    axes = np.asarray(axes).reshape(2, len(classes))
    for k, name in enumerate(classes):
        roc_ax, pr_ax = axes[:, k]
        roc_ax.plot([0, 1], [0, 1], color="0.7", ls=":", lw=0.8)
        positives = y[:, k] > 0.5
        if 0 < positives.sum() < len(positives):
            fpr, tpr, _ = roc_curve(positives, p[:, k])
            roc_ax.plot(fpr, tpr, color="tab:blue", lw=1.4)
            precision, recall, _ = precision_recall_curve(positives, p[:, k])
            pr_ax.step(recall, precision, where="post", color="tab:blue", lw=1.4)
            pr_ax.axhline(positives.mean(), color="0.7", ls=":", lw=0.8)
            row = result.at_thresholds.set_index("class").loc[name]
            if np.isfinite(row["threshold"]):
                roc_ax.plot(1 - row["specificity"], row["recall"], "o", color="tab:red",
                            ms=5, label="model's threshold")
                pr_ax.plot(row["recall"], row["precision"], "o", color="tab:red", ms=5)
        else:
            roc_ax.text(0.5, 0.5, "undefined:\nno positive\nor negative exam",
                        ha="center", va="center", fontsize=8)
        roc_ax.set(xlim=(0, 1), ylim=(0, 1.02), title=name, xlabel="1 - specificity")
        pr_ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="sensitivity (recall)")
    axes[0, 0].set_ylabel("sensitivity")
    axes[1, 0].set_ylabel("precision")
    fig.tight_layout()
    return fig


def plot_reliability(result):
    """The reliability diagram: observed frequency of positives against the mean
    probability of each bin (marker area: the bin's exams), per class, on all exams."""
    classes, y, p = result.classes, result.labels, result.probabilities
    fig, axes = new_figure((2.9 * len(classes), 3.1), 1, len(classes))
    axes = np.atleast_1d(axes)
    for k, (ax, name) in enumerate(zip(axes, classes)):
        ax.plot([0, 1], [0, 1], color="0.7", ls=":", lw=0.8)
        observed, predicted, sizes = reliability_curve(y[:, k], p[:, k])
        ax.plot(predicted, observed, color="tab:blue", lw=1)
        ax.scatter(predicted, observed, s=12 + 120 * sizes / sizes.max(), color="tab:blue",
                   alpha=0.7, zorder=3)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), title=name, xlabel="mean probability")
    axes[0].set_ylabel("observed frequency")
    fig.tight_layout()
    return fig


def plot_sweep(sweep):
    """AUROC against the factor the inputs were multiplied by, one line per class."""
    fig, ax = new_figure((5.5, 3.6))
    for name, rows in sweep.groupby("class", sort=False):
        ax.plot(rows["factor"], rows["auroc"], "o-", lw=1.2, ms=4, label=name)
    ax.set_xscale("log")
    factors = sorted(sweep["factor"].unique())
    ax.set_xticks(factors, [f"{f:g}" for f in factors])
    ax.axvline(1, color="0.7", ls=":", lw=0.8)
    ax.set(xlabel="inputs multiplied by", ylabel="AUROC", ylim=(0, 1.02))
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


# --- The page --------------------------------------------------------------------------
def report_lines(result, header, figure_stems, n_bootstrap):
    """The Markdown lines of ``report.md``.

    Parameters
    ----------
    result : ecgcode.evaluation.validation.Validation
    header : list of str
        Lines naming the model, the ECGs, the labels and any warning.
    figure_stems : sequence of str
        The figures written (PNG, in ``figures/``).
    n_bootstrap : int
    """
    split, n = result.split, len(result.labels)
    lines = ["# Validation report", "", *header]
    lines += [(f"Thresholds by rule{' and the calibration' if result.calibration else ''} "
              f"were chosen on **{split.tune_text}** and measured on "
              f"**{split.measure_text}**."), ""]
    if split.same:
        lines += [("**The same exams chose and measured the thresholds: their measures are "
                  "optimistic.** Give `--tune-split 0.5` (or `COLUMN=VALUE`) for an honest "
                  "measure."), ""]
    lines += [f"## Discrimination and calibration (all {n} exams)", "",
              (f"95 % bootstrap intervals over {n_bootstrap} resamples of the exams; ECE: "
              f"expected calibration error over {N_BINS} equal-width probability bins."), "",
              markdown_table(interval_frame(result.scores, SCORE_MEASURES), corner="class"),
              ""]
    at = interval_frame(result.at_thresholds, THRESHOLD_MEASURES, keep=("positives",))
    at.insert(0, "threshold", threshold_cells(result.at_thresholds["threshold"]))
    lines += [f"## The paper's Table-2 metrics at the model's thresholds (all {n} exams)", "",
              f"Thresholds: {result.thresholds_source}; positive when the score is greater.",
              "", markdown_table(at, corner="class"), ""]
    lines += [(f"## Thresholds by rule (chosen on {len(split.tune)} exams, measured on "
              f"{len(split.measure)})"), ""]
    for rule, table in result.rules.items():
        frame = interval_frame(table, THRESHOLD_MEASURES, keep=("positives",))
        frame.insert(0, "threshold", threshold_cells(table["threshold"]))
        lines += [f"### {rule}", "", markdown_table(frame, corner="class"), ""]
    if result.calibrated is not None:
        frame = result.calibrated.set_index("class")[["positives"]].astype(object)
        for measure in ("ece", "brier"):
            for when in ("before", "after"):
                frame[f"{NAMES[measure]} {when}"] = [
                    with_interval(*values) for values in result.calibrated[
                        [f"{measure}_{when}", f"{measure}_{when}_low",
                         f"{measure}_{when}_high"]].to_numpy(dtype=float)]
        lines += [(f"## Calibration fitted on the {len(split.tune)} choosing exams, measured "
                  f"on {len(split.measure)}"), "", describe_calibration(result.calibration),
                  "", markdown_table(frame, corner="class"), ""]
    lines += _subgroup_lines(result)
    if result.sweep is not None:
        lines += ["## Amplitude scale sweep", "",
                  ("AUROC with the inputs multiplied by each factor: a model fed at the scale "
                  "it expects peaks near x1."), "", sweep_markdown(result.sweep, "auroc"), ""]
    if result.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in result.notes], ""]
    for stem in figure_stems:
        lines += [f"![{stem}](figures/{stem}.png)", ""]
    return lines


def _subgroup_lines(result):
    """The subgroup section: per attribute, AUROC of every class in every group."""
    if not len(result.subgroups):
        return []
    lines = ["## Subgroups (all exams)", "",
             ("AUROC of each class in each subgroup, and its positive exams; exams without "
             "a value are left out."), ""]
    for attribute, table in result.subgroups.groupby("attribute", sort=False):
        wide = {}
        for group, rows in table.groupby("group", sort=False):
            cells = {"exams": int(rows["exams"].iloc[0])}
            for _, row in rows.iterrows():
                cells[row["class"]] = (with_interval(row["auroc"], row["auroc_low"],
                                                     row["auroc_high"])
                                       + f", {int(row['positives'])} pos.")
            wide[group] = cells
        frame = pd.DataFrame.from_dict(wide, orient="index")
        lines += [f"### {attribute}", "", markdown_table(frame, corner=attribute), ""]
    return lines


def write_report(result, folder, header, n_bootstrap, formats=("png",)):
    """Write the tables, the figures and ``report.md`` into ``folder``; returns the paths.

    Parameters
    ----------
    result : ecgcode.evaluation.validation.Validation
    folder : str
    header : list of str
        The report's opening lines (model, ECGs, labels, warnings).
    n_bootstrap : int
    formats : sequence of str
        Figure formats (PNG is always written: the report shows it).
    """
    paths = write_tables(tables_of(result), os.path.join(folder, "tables"))
    figures = {"roc_precision_recall": plot_curves(result),
               "reliability": plot_reliability(result)}
    if result.sweep is not None:
        figures["scale_sweep"] = plot_sweep(result.sweep)
    formats = list(dict.fromkeys(["png", *formats]))
    for stem, fig in figures.items():
        paths += save_figure(fig, stem, os.path.join(folder, "figures"), formats)
    report = os.path.join(folder, "report.md")
    write_text(report, "\n".join(report_lines(result, header, list(figures), n_bootstrap)))
    return [report, *paths]
