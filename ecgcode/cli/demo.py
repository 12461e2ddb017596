"""The main job: the paper's Table 2, then the whole pipeline on synthetic ECGs, in one command.

    python demo.py                      # about 12 minutes on a 2-core CPU

1. ``generate_figures.py``: the paper's Table 2, supplementary tables and figures from the
   CODE-test files shipped with the package (seconds); the DNN's F1 printed beside the
   published values;
2. ``datasets.py synthetic``: a labelled training set and a held-out test set;
3. ``train.py``: the paper's full model and recipe, with fewer epochs and a smaller batch
   so that it fits a laptop's CPU budget (see ``--help``);
4. ``predict.py``: probabilities and 0/1 decisions on the held-out set, with the thresholds
   chosen on the validation set;
5. ``generate_figures.py --gold``: precision, recall, specificity, F1, bootstrap intervals
   and precision-recall curves on the held-out set;
6. ``validate.py``: AUROC, AUPRC, calibration and thresholds by rule on the held-out set
   (half of it chooses the thresholds, the other half measures them).

Every step is the project's own command-line tool, called as a user would call it.
"""

import argparse
import json
import os
import sys
import time

import pandas as pd

from ecgcode.cli import datasets, generate_figures, predict, train, validate
from ecgcode.common import CLASSES, ECGInputError, run_cli
from ecgcode.data.labels import load_labels
from ecgcode.evaluation import metrics as em
from ecgcode.model.runfolder import BEST_MODEL, HISTORY_NAME, RUN_THRESHOLDS_NAME, run_file
from ecgcode.model.thresholds import fill_missing, read_thresholds

DEMO_DEFAULTS = {"n_train": 1400, "n_test": 400, "epochs": 3, "batch_size": 16, "val_split": 0.1}


def build_parser():
    """The demo's options; the defaults fit about 12 minutes on a 2-core CPU."""
    parser = argparse.ArgumentParser(
        description="Reproduce the paper's Table 2 from the CODE-test files shipped with the "
        "project (seconds), then run the whole pipeline on synthetic ECGs: generate, train the "
        "paper's model, predict a held-out set, and evaluate it with the paper's tables and "
        "figures.",
        epilog="The defaults trade the paper's batch of 64 for 16: with a CPU budget of about "
        "4,000 ECG passes, batch 64 gives too few optimizer steps (~60) to learn all six "
        "classes, batch 16 gives ~240. Use --batch-size 64 --epochs 70 for the full recipe.",
    )
    parser.add_argument("--out", help="output folder (default: demo_output/DATE-TIME)")
    parser.add_argument("--n-train", type=int, default=DEMO_DEFAULTS["n_train"],
                        help="synthetic training exams, validation included (default: %(default)s)")
    parser.add_argument("--n-test", type=int, default=DEMO_DEFAULTS["n_test"],
                        help="held-out synthetic exams (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=DEMO_DEFAULTS["epochs"],
                        help="training epochs (default: %(default)s; the paper: up to 70)")
    parser.add_argument("--batch-size", type=int, default=DEMO_DEFAULTS["batch_size"],
                        help="training batch (default: %(default)s; the paper: 64)")
    parser.add_argument("--val-split", type=float, default=DEMO_DEFAULTS["val_split"],
                        help="validation fraction, last rows (default: %(default)s; the paper: "
                        "0.02 of 2 million exams)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                        help="passed to train.py (default: train.py's, mixed bfloat16 where "
                        "the device computes it natively)")
    return parser


def _out_folder(requested):
    folder = requested or os.path.join("demo_output", time.strftime("%Y%m%d-%H%M%S"))
    if os.path.isdir(folder) and os.listdir(folder):
        raise ECGInputError(f"{folder}: output folder exists and is not empty; choose another --out")
    os.makedirs(folder, exist_ok=True)
    return folder


def _step(title, function, argv):
    script = function.__module__.rsplit(".", 1)[-1]  # ecgcode.cli.train: train.py
    print(f"\n=== {title}\n$ python {script}.py {' '.join(argv)}", flush=True)
    status = function(argv)
    if status:
        raise SystemExit(status)


def precision_flag(mixed_precision):
    """train.py's argument for --[no-]mixed-precision (none: train.py's default)."""
    if mixed_precision is None:
        return []
    return ["--mixed-precision" if mixed_precision else "--no-mixed-precision"]


def write_gold_csv(tracings, path):
    """Write the held-out labels as a gold-standard CSV (exam_id + one 0/1 column per class)."""
    table = load_labels(tracings)
    frame = pd.DataFrame(table.labels.astype(int), columns=list(CLASSES))
    frame.insert(0, "exam_id", table.exam_ids)
    frame.to_csv(path, index=False)
    return path


def read_table2(report):
    """Table 2 as ``generate_figures.py`` wrote it in the folder ``report`` (a DataFrame)."""
    return pd.read_csv(os.path.join(report, "tables", "scores.csv"), header=[0, 1], index_col=0)


def paper_f1_line(report):
    """One line: the DNN's F1 per class on CODE-test as reproduced in ``report``, and as published."""
    reproduced = read_table2(report)[("F1 score", "DNN")]
    published = em.published_table2()[("F1 score", "DNN")]
    pairs = ", ".join(f"{c} {reproduced[c]:.3f} ({published[c]:.3f})" for c in CLASSES)
    differ = [c for c in CLASSES if abs(reproduced[c] - published[c]) > 5e-4]
    verdict = (f"differs from the published value for {', '.join(differ)}" if differ
               else "all six as published")
    return f"The paper's DNN on CODE-test, F1 reproduced (published): {pairs}: {verdict}."


def decision_thresholds(run_folder, path):
    """Copy the run's validation thresholds to ``path``, 0.5 for a class that has none.

    A class without positive validation exams gets no threshold from train.py; the demo's
    small validation set makes that possible, so it falls back to 0.5 and says so.
    """
    thresholds, _ = fill_missing(read_thresholds(run_file(run_folder, RUN_THRESHOLDS_NAME)),
                                 CLASSES)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(thresholds, handle, indent=1)
    return path


def main(argv=None):
    """Run the five steps and print where everything went."""
    args = build_parser().parse_args(argv)
    out = _out_folder(args.out)
    paths = {name: os.path.join(out, name) for name in
             ("paper", "train.hdf5", "test.hdf5", "run", "test_predictions.csv",
              "test_gold.csv", "thresholds.json", "report", "validation")}
    start = time.perf_counter()
    _step("1/6 the paper's Table 2 from the CODE-test files shipped with the project",
          generate_figures.main, ["--out", paths["paper"], "--format", "png"])
    print(paper_f1_line(paths["paper"]), flush=True)
    _step("2/6 synthetic ECGs", datasets.main,
          ["synthetic", paths["train.hdf5"], "--n", str(args.n_train), "--seed", str(args.seed)])
    _step("2/6 synthetic ECGs (held out)", datasets.main,
          ["synthetic", paths["test.hdf5"], "--n", str(args.n_test), "--seed",
           str(args.seed + 1), "--first-exam-id", str(args.n_train + 1)])
    _step("3/6 training", train.main,
          [paths["train.hdf5"], "--out", paths["run"], "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--val-split", str(args.val_split),
           "--seed", str(args.seed), *precision_flag(args.mixed_precision)])
    _step("4/6 prediction on the held-out set", predict.main,
          [paths["test.hdf5"], paths["run"], "--output-file", paths["test_predictions.csv"]])
    write_gold_csv(paths["test.hdf5"], paths["test_gold.csv"])
    decision_thresholds(paths["run"], paths["thresholds.json"])
    _step("5/6 evaluation", generate_figures.main,
          ["--gold", paths["test_gold.csv"], "--predictions", paths["test_predictions.csv"],
           "--thresholds", paths["thresholds.json"],
           "--name", "DNN", "--out", paths["report"], "--format", "png"])
    _step("6/6 validation: calibration, thresholds by rule", validate.main,
          [paths["test.hdf5"], paths["run"], "--out", paths["validation"], "--quiet"])
    _print_summary(out, paths, time.perf_counter() - start)
    return 0


def _print_summary(out, paths, seconds):
    f1 = read_table2(paths["report"]).xs("F1 score", axis=1, level=0).iloc[:, 0]
    print(f"\nDone in {seconds / 60:.1f} min. Held-out F1 per class: "
          + ", ".join(f"{name} {value:.3f}" for name, value in f1.items()))
    print(f"  paper:       {paths['paper']}/report.md, tables/, figures/ (CODE-test)")
    print(f"  data:        {paths['train.hdf5']}, {paths['test.hdf5']}")
    print(f"  model:       {paths['run']}/ ({BEST_MODEL}.keras/.h5, {HISTORY_NAME}, "
          f"{RUN_THRESHOLDS_NAME})")
    print(f"  predictions: {paths['test_predictions.csv']}")
    print(f"  evaluation:  {paths['report']}/report.md, tables/, figures/")
    print(f"  validation:  {paths['validation']}/report.md (AUROC, calibration, thresholds "
          "by rule)")
    sys.stdout.flush()


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
