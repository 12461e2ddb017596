"""``bench.py scale``: what a wrong amplitude scale costs a model, measured.

The labelled tracings are brought to the model's scale (``ecgcode.data.scale``), then
multiplied by each factor k (0.1 to 10 by default) and scored by
``ecgcode.evaluation.sweep.scale_sweep``: the F1 at the model's own thresholds and the AUROC
of every class. k = 1 is the right scale; k = 5 is what an input at this project's earlier
1e-4 V (10 units per mV) does to a model that expects the original study's 2 units per mV,
and k = 0.2 the other way round. docs/data-formats.md shows the table for the demo's model.
"""

import argparse

from ecgcode.bench.model_speed import write_table
from ecgcode.common import plain
from ecgcode.data import load_labels, open_collection
from ecgcode.data.rows import RowReader
from ecgcode.evaluation.sweep import parse_factors, scale_sweep, sweep_markdown
from ecgcode.inference.predictor import at_model_scale, load_predictor, resolve_predictor
from ecgcode.model.thresholds import choose_thresholds

FACTORS = (0.1, 0.2, 0.5, 1, 2, 5, 10)
"""The factors of the table in docs/data-formats.md."""


def build_parser():
    """The argument parser of ``bench.py scale``."""
    parser = argparse.ArgumentParser(
        prog="bench.py scale",
        description="F1 at the model's thresholds and AUROC of every class with the inputs "
        "multiplied by each factor (after bringing them to the model's amplitude scale).")
    parser.add_argument("model", help="a train.py run folder (its best model and thresholds), "
                        "a .keras/.h5 model or an .onnx export")
    parser.add_argument("tracings", help="labelled HDF5 tracings (a `labels` dataset whose "
                        "classes are the model's), e.g. the demo's test.hdf5")
    parser.add_argument("--factors", default=",".join(plain(k) for k in FACTORS),
                        help="comma-separated multipliers (default: %(default)s)")
    parser.add_argument("--out", help="also write the Markdown tables to this file")
    return parser


def scale_tables(model, tracings, factors=FACTORS):
    """(F1 table, AUROC table) in Markdown, rows the factors, columns the classes."""
    model_path, thresholds_path = resolve_predictor(model)
    predictor = load_predictor(model_path)
    thresholds = choose_thresholds(False, None, thresholds_path, predictor.classes,
                                   stored=predictor.thresholds)
    collection, _ = at_model_scale(predictor, open_collection(tracings))
    table = load_labels(collection, classes=list(predictor.classes))
    x = RowReader(collection).read(range(collection.n))  # (n, 4096, 12) at the model's scale
    frame = scale_sweep(predictor.predict, x, table.labels, predictor.classes, thresholds,
                        factors)
    return sweep_markdown(frame, "f1"), sweep_markdown(frame, "auroc")


def main(argv=None):
    """``bench.py scale MODEL TRACINGS``: print (and write) the two tables."""
    args = build_parser().parse_args(argv)
    f1, auroc = scale_tables(args.model, args.tracings, parse_factors(args.factors, "--factors"))
    text = (f"F1 at the model's thresholds, inputs x k ({args.model} on {args.tracings}):\n\n"
            f"{f1}\n\nAUROC:\n\n{auroc}\n")
    print(text)
    write_table(text, args.out)
    return 0
