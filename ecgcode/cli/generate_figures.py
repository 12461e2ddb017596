"""Reproduce the tables and figures of Ribeiro et al. (Nat Commun 11:1760, 2020) on CODE-test.

Two modes:

* paper mode (default): reads the CODE-test annotations and the original network's scores
  (10 seeds, 3 alternative splits), shipped with the package, and writes Table 2, the
  supplementary tables, Figure 2, Supplementary Figures 1-2 and a one-page ``report.md``;
* evaluation mode (``--gold FILE --predictions FILE``): the same tables and figures for any
  model's scores against any gold standard, with optional annotators to compare against.

The tables, figures and report are ``ecgcode.evaluation.paper``; this module is the
program's options and ``main``. TensorFlow is not imported.
"""

import argparse
import os
import sys
import time

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ecgcode.common import CODE_TEST_DOI, ECGInputError, run_cli
from ecgcode.evaluation import paper
from ecgcode.evaluation.output import save_figure
from ecgcode.model.metadata import parse_classes

DESCRIPTION = """\
Reproduce the tables and figures of the CODE study (Ribeiro et al., Nat Commun 11:1760, 2020).

Paper mode (default) reads DIR/gold_standard.csv, cardiologist1/2.csv, cardiology_residents.csv,
emergency_residents.csv and medical_students.csv from --annotations, and
other_seeds/model_1..10.npy and other_splits/model_<normal_order|date_order|
individual_patients>.npy from --predictions. Both default to the CODE-test files
shipped with the package (doi:DOI, CC BY 4.0):
with no argument it reproduces the paper.
Among the 10 seeds the model ranked 6th by micro-averaged average precision is thresholded
(paper thresholds, score > t).

Evaluation mode (--gold FILE --predictions FILE) evaluates any model's output on any classes:
  * --gold: CSV with one 0/1 column per class (+ optional exam_id); the classes are --classes,
    else the paper's six (1dAVb,RBBB,LBBB,SB,AF,ST) when present, else all its 0/1 columns;
  * --predictions: .npy array (n_exams, n_classes) of scores, or a CSV (e.g. from predict.py)
    with one probability column per class name and an optional exam_id column; every file's
    columns are matched by class name; decisions are recomputed from the probabilities with
    --thresholds (paper thresholds by default, for the paper's six only) so that every model
    is judged by the same rule; '--thresholds columns' instead uses the CSV's 0/1
    <class>_pred columns as written by predict.py, and '--thresholds FILE.json' reads
    train.py's thresholds.json ({class: t} or {class: {"threshold": t}});
  * rows are matched by exam_id when both files have one, otherwise by row order;
  * --annotator NAME=FILE (repeatable) adds human (0/1) predictors for Table 2, McNemar and kappa.
""".replace("DOI", CODE_TEST_DOI)


# --- Command line ----------------------------------------------------------------------
def build_parser():
    """The argparse parser of this script."""
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", default=None,
                        help="paper mode: folder of the CODE-test annotation CSVs "
                             "(default: the copy shipped with the package)")
    parser.add_argument("--predictions", default=None,
                        help="paper mode: folder with other_seeds/ and other_splits/ "
                             "(default: the copy shipped with the package); evaluation mode: "
                             "the model's .npy/.csv")
    parser.add_argument("--gold", default=None,
                        help="evaluation mode: gold-standard CSV (switches paper mode off)")
    parser.add_argument("--annotator", action="append", default=[], metavar="NAME=FILE",
                        help="evaluation mode: a 0/1 annotation CSV to compare (repeatable)")
    parser.add_argument("--classes", metavar="A,B,...",
                        help="evaluation mode: the classes to evaluate, matched by name in "
                             "every file (default: the paper's six when the gold standard has "
                             "them, else all its 0/1 columns)")
    parser.add_argument("--name", default="model",
                        help="evaluation mode: the model's name in tables (default: %(default)s)")
    parser.add_argument("--thresholds", default="paper",
                        help="'paper' (1dAVb 0.124, RBBB 0.07, LBBB 0.05, SB 0.278, AF 0.39, "
                             "ST 0.174), 'f1' (F1-optimal on the gold standard itself: optimistic), "
                             "one number per class (comma-separated), a thresholds.json, or "
                             "(evaluation "
                             "mode, CSV) 'columns' for its <class>_pred columns; positive when "
                             "score > threshold "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="outputs",
                        help="output folder; tables/ and figures/ go inside (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=123,
                        help="seed of the legacy RandomState bootstrap draw (default: %(default)s)")
    parser.add_argument("--n-bootstrap", type=int, default=1000,
                        help="number of bootstrap resamples (default: %(default)s)")
    parser.add_argument("--format", default="pdf,png",
                        help="comma-separated figure formats (default: %(default)s)")
    return parser


def parse_formats(text):
    """Figure formats from --format, checked against matplotlib's writers."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    unknown = [f for f in formats if f not in supported]
    if not formats or unknown:
        raise ECGInputError(f"--format {text!r}: choose among {', '.join(sorted(supported))}")
    return formats


# --- Main ------------------------------------------------------------------------------
def main(argv=None):
    """Run the command line; returns 0 on success."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    formats = parse_formats(args.format)
    if args.n_bootstrap < 1:
        raise ECGInputError(f"--n-bootstrap {args.n_bootstrap}: must be at least 1")
    if args.gold:
        if not args.predictions:
            raise ECGInputError("--gold needs --predictions FILE.npy|FILE.csv (the model's scores)")
        classes = parse_classes(args.classes) if args.classes else None
        data = paper.load_evaluation_inputs(args.gold, args.predictions, args.annotator,
                                            args.name, args.thresholds, classes)
    else:
        data = paper.load_paper_inputs(args.annotations or paper.PAPER_ANNOTATIONS,
                                       args.predictions or paper.PAPER_PREDICTIONS,
                                       args.thresholds)
    print(f"computing tables ({args.n_bootstrap} bootstrap resamples)...", file=sys.stderr)
    tables, resampled, split_resampled = paper.compute_tables(data, args.seed, args.n_bootstrap)
    paper.write_tables(tables, os.path.join(args.out, "tables"))
    if "png" not in formats:
        formats.append("png")  # the report embeds PNGs
    figures = paper.draw_figures(data, tables, resampled, split_resampled)
    print("saving figures...", file=sys.stderr)
    for stem, fig in figures.items():
        save_figure(fig, stem, os.path.join(args.out, "figures"), formats)
    paper.write_report(os.path.join(args.out, "report.md"), tables, list(figures), data)
    print(tables["scores"].to_string(float_format="%.3f"))
    print(f"wrote {args.out}/tables, {args.out}/figures and {args.out}/report.md "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def cli():
    """Console-script entry point (``ecg-generate-figures``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
