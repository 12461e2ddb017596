"""Validate a model on your own labelled ECGs and write a one-page report.

    python validate.py ECGS... MODEL --out validation [--labels GOLD.csv]

ECGS are HDF5 files with their ``labels`` (or a gold ``--labels`` CSV) or recordings the
converter reads, whose labels it extracts (CinC ``#Dx``, CPSC, PTB-XL); MODEL, the last
positional argument as for predict.py, is a model file, a train.py run folder or an ONNX
export. The report gives per class, with bootstrap 95 % intervals: AUROC, AUPRC, the
expected calibration error and the Brier score; the paper's Table-2 metrics at the
model's thresholds; the thresholds chosen by named rules on one split of the exams and
measured on another; subgroups the data state; optionally a recalibration and the scale
sweep. ``--write-thresholds`` writes one rule's thresholds (and the calibration) back where
predict.py and ``predict.py --serve`` read them. The library is ``ecgcode.evaluation``.
"""

import argparse
import os
import sys
import time

from ecgcode.cli.options import add_conversion_options, add_units_option
from ecgcode.common import DEFAULT_DATASET_NAME, ECGInputError, run_cli
from ecgcode.data import open_collection
from ecgcode.data.formats.inputs import contract_inputs
from ecgcode.evaluation import validation as ev
from ecgcode.evaluation.output import markdown_table
from ecgcode.evaluation.report import interval_frame, write_report
from ecgcode.evaluation.subgroups import DEFAULT_AGE_EDGES, MIN_SUBGROUP_EXAMS, parse_age_edges
from ecgcode.evaluation.sweep import DEFAULT_FACTORS, parse_factors, sweep_markdown
from ecgcode.inference.outputs import input_warnings
from ecgcode.inference.predictor import (
    DEFAULT_BATCH_SIZE,
    at_model_scale,
    is_onnx,
    load_predictor,
    print_warning,
    resolve_predictor,
)
from ecgcode.model.calibration import METHODS
from ecgcode.model.metadata import parse_classes, read_model_classes
from ecgcode.model.provenance import synthetic_model_warning
from ecgcode.model.thresholds import (
    DEFAULT_RULES,
    choose_thresholds,
    fill_missing,
    parse_rule,
    read_thresholds,
    rule_text,
)

DEFAULT_OUT = "validation"


def build_parser():
    """The argument parser of ``validate.py`` / ``ecg-validate``."""
    parser = argparse.ArgumentParser(
        prog="validate.py",
        usage="%(prog)s [options] ECGS... MODEL",
        description="Validate a model on labelled ECGs: discrimination (AUROC, AUPRC), "
        "calibration (reliability diagram, ECE, Brier), the paper's Table-2 metrics, "
        "thresholds by named rules (chosen on one split, measured on another), subgroups "
        "and the amplitude-scale sweep, with bootstrap 95% intervals, in a one-page "
        "report.md with figures.",
        epilog="example: python validate.py cinc2021/* runs/run1 --out validation "
        "--scale-sweep --write-thresholds --write-rule youden",
        allow_abbrev=False,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="ECGS... MODEL",
        help="HDF5 files (labels from their 'labels' dataset, or --labels) or recordings "
        "the converter reads (WFDB/CinC records and folders, CPSC .mat, PTB-XL, clinical "
        "exports: converted on the fly; CinC #Dx, CPSC and PTB-XL labels are extracted), "
        "then the MODEL: a .keras/.h5 file, a train.py run folder or an .onnx export")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder: report.md, tables/, figures/ (default: "
                        "%(default)s)")
    parser.add_argument(
        "--labels", metavar="GOLD.csv",
        help="gold labels: one 0/1 column per class, named as the model's classes; rows "
        "joined on exam_id (HDF5 inputs), on a 'record' column naming the recordings "
        "(converted inputs), else in input order. Columns age, sex or is_male, site may "
        "give subgroups (default: the files' own labels)")
    parser.add_argument("--classes", metavar="A,B,...",
                        help="evaluate only these of the model's classes (default: every "
                        "class the labels have)")
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--thresholds", metavar="FILE.json",
                       help="the model's thresholds for Table 2 and the sweep (default: "
                       "the run folder's or the export's, else 0.5)")
    given.add_argument("--paper-thresholds", action="store_true",
                       help="the original study's thresholds for Table 2 (paper's six only)")
    parser.add_argument(
        "--rules", default=",".join(DEFAULT_RULES), metavar="RULE,...",
        help="threshold rules, each chosen on the tuning split and measured on the other: "
        "f1, youden, sensitivity=X, specificity=X (default: %(default)s)")
    parser.add_argument(
        "--tune-split", default=ev.DEFAULT_TUNE_SPLIT, metavar="SPLIT",
        help="the exams that choose thresholds (and fit --calibrate); the others measure "
        "them: a fraction drawn at random (whole patients when the data have patient_id), "
        "COLUMN=V1,V2 (e.g. strat_fold=9) or 'none' (the same exams choose and measure: "
        "optimistic, and the report says so) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random --tune-split (default: %(default)s)")
    parser.add_argument("--calibrate", choices=METHODS,
                        help="fit a per-class recalibration on the tuning split and measure "
                        "it on the other: platt (slope and intercept on the logit) or "
                        "temperature")
    parser.add_argument(
        "--write-thresholds", nargs="?", const="", default=None, metavar="FILE.json",
        help="write the thresholds of --write-rule (and the --calibrate fit) with their "
        "provenance: into the run folder's thresholds.json or the ONNX export's metadata "
        "(no value), or into FILE.json (for predict.py --thresholds FILE.json)")
    parser.add_argument("--write-rule", metavar="RULE",
                        help="the rule whose thresholds --write-thresholds writes (default: "
                        "the first of --rules)")
    parser.add_argument("--subgroup", action="append", default=[], metavar="COLUMN",
                        help="also form subgroups by this column of --labels or 1-D dataset "
                        "of the files (repeatable); age, sex and site are found by themselves")
    parser.add_argument("--age-bands", default=",".join(f"{a:g}" for a in DEFAULT_AGE_EDGES),
                        metavar="A,B,...", help="age-band boundaries in years (default: "
                        "%(default)s)")
    parser.add_argument("--min-subgroup", type=int, default=MIN_SUBGROUP_EXAMS, metavar="N",
                        help="smallest subgroup given intervals (default: %(default)s)")
    parser.add_argument(
        "--scale-sweep", nargs="?", const=",".join(f"{f:g}" for f in DEFAULT_FACTORS),
        default=None, metavar="F,F,...",
        help="repeat the discrimination with the inputs multiplied by each factor, to check "
        "the amplitude scale the model expects (no value: %(const)s)")
    parser.add_argument("--n-bootstrap", type=int, default=1000,
                        help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--bootstrap-seed", type=int, default=123,
                        help="seed of the bootstrap's RandomState draw (default: %(default)s)")
    parser.add_argument("--format", default="png",
                        help="figure formats, comma-separated (PNG is always written; "
                        "default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"exams per forward pass (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--dataset-name", default=DEFAULT_DATASET_NAME,
                        help="signal dataset in the HDF5 files (default: %(default)s)")
    add_conversion_options(parser)
    add_units_option(parser, model=True)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up logging")
    return parser


def check_options(args):
    """Every option checked before any file is converted or any model loaded.

    Returns
    -------
    dict
        The parsed rules, write rule, factors, age edges, classes and formats.
    """
    if len(args.paths) < 2:
        raise ECGInputError(f"got {len(args.paths)} path; give the labelled ECGs and then the "
                            "MODEL: validate.py ECGS... MODEL")
    rules = [rule_text(parse_rule(text)) for text in args.rules.split(",") if text.strip()]
    if not rules:
        raise ECGInputError("--rules: give at least one rule, e.g. --rules f1,youden")
    write_rule = rule_text(parse_rule(args.write_rule, "--write-rule")) if args.write_rule \
        else rules[0]
    if args.write_thresholds is not None and write_rule not in rules:
        raise ECGInputError(f"--write-rule {write_rule}: not among --rules {','.join(rules)}")
    for option, value in (("--n-bootstrap", args.n_bootstrap),
                          ("--batch-size", args.batch_size),
                          ("--min-subgroup", args.min_subgroup)):
        if value < 1:
            raise ECGInputError(f"{option} {value}: must be at least 1")
    if args.thresholds:
        read_thresholds(args.thresholds, ())  # readable; its classes are checked later
    if args.labels and not os.path.isfile(args.labels):
        raise ECGInputError(f"{args.labels}: label CSV not found; check the path")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ECGInputError(f"--out {args.out}: exists and is not a folder; choose another "
                            "--out for the report")
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in ("png", "pdf", "svg")]
    if unknown:
        raise ECGInputError(f"--format {args.format!r}: choose among png, pdf, svg")
    return {"rules": rules, "write_rule": write_rule, "formats": formats,
            "factors": parse_factors(args.scale_sweep) if args.scale_sweep else None,
            "age_edges": parse_age_edges(args.age_bands),
            "classes": parse_classes(args.classes) if args.classes else None}


def main(argv=None):
    """Command line of validate.py; returns the exit status."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    options = check_options(args)
    inputs, model_argument = args.paths[:-1], args.paths[-1]
    model_path, run_thresholds_path = resolve_predictor(model_argument)
    where = None
    if args.write_thresholds is not None:
        where = ev.destination(model_argument, args.write_thresholds or None)
    with contract_inputs(inputs, args.fs, args.units, args.leads) as (paths, converted):
        return _validate(args, options, inputs, paths, converted, model_path,
                         run_thresholds_path, where, start)


def _validate(args, options, inputs, paths, converted, model_path, run_thresholds_path,
              where, start):
    """Load, predict, measure, report and write back; returns the exit status."""
    def labelled(classes):
        collection = open_collection(paths, args.dataset_name, args.units_per_mv)
        return ev.load_labelled(collection, converted, classes, args.labels, options["classes"],
                                args.dataset_name, args.subgroup, options["age_edges"])

    def load():
        return load_predictor(model_path, batch_size=args.batch_size, verbose=args.verbose,
                              units_per_mv=args.model_units_per_mv)  # Keras or onnxruntime

    # The labels' errors come before TensorFlow: a Keras model file names its classes, read
    # without loading it; an export loads in a second; a model storing none is loaded first.
    classes = None if is_onnx(model_path) else read_model_classes(model_path)
    predictor = load() if classes is None else None
    data = labelled(classes or predictor.classes)
    split = ev.make_split(args.tune_split, data, args.seed)
    predictor = predictor or load()
    print_warning(predictor)
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    for name in data.missing:
        say(f"note: the labels have no column for {name}: not evaluated")
    thresholds, source = model_thresholds(args, predictor, run_thresholds_path, data.classes,
                                          say)
    synthetic = synthetic_model_warning(predictor.provenance, os.path.basename(model_path),
                                        data.collection.paths)
    if synthetic:
        print(f"warning: {synthetic}", file=sys.stderr)
    for message in input_warnings(data.collection):  # the amplitude scale, the leads
        print(f"warning: {message}", file=sys.stderr)
    data.collection, notes = at_model_scale(predictor, data.collection)
    for note in notes:  # one line per file brought to the model's amplitude scale
        print(f"note: {note}", file=sys.stderr)
    header = report_header(predictor, model_path, inputs, data, synthetic)
    say(f"predicting {data.collection.n} exams with {model_path}...")
    probabilities = ev.predict_labelled(predictor, data, args.batch_size,
                                        progress=not args.quiet)
    sweep = None
    if options["factors"]:
        say(f"scale sweep: x{', x'.join(f'{f:g}' for f in options['factors'])}...")
        sweep = ev.sweep_labelled(predictor, data, thresholds, options["factors"])
    result = ev.validate(data, probabilities, thresholds, source, split, options["rules"],
                         calibrate=args.calibrate, n_bootstrap=args.n_bootstrap,
                         seed=args.bootstrap_seed, min_subgroup=args.min_subgroup,
                         sweep=sweep)
    written = write_report(result, args.out, header, args.n_bootstrap, options["formats"])
    if where is not None:
        record = ev.threshold_record(result, options["write_rule"], data, inputs, model_path)
        written.append(ev.write_back(where, record))
        say(f"wrote the {options['write_rule']} thresholds (chosen on {split.tune_text}) "
            f"into {written[-1]}")
        if split.same:
            print("warning: --tune-split none: the thresholds written were measured on the "
                  "exams that chose them (optimistic); the file records it", file=sys.stderr)
    if not args.quiet:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(summary_table(result))
        if sweep is not None:
            print(sweep_markdown(sweep, "auroc"))
        print(f"wrote {written[0]} and {len(written) - 1} more files in {args.out} in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def model_thresholds(args, predictor, run_thresholds_path, classes, say):
    """The model's own thresholds for Table 2 and the sweep, and where they come from."""
    chosen = choose_thresholds(args.paper_thresholds, args.thresholds, run_thresholds_path,
                               predictor.classes, stored=predictor.thresholds)
    if args.paper_thresholds:
        source = "the original study's (--paper-thresholds)"
    elif args.thresholds:
        source = args.thresholds
    elif run_thresholds_path:
        source = run_thresholds_path
    elif chosen is not None:
        source = f"stored in {predictor.path}"
    else:
        source = "none known: 0.5 for every class"
    values, filled = fill_missing(chosen or {}, classes, say=say if chosen else lambda _: None)
    if filled and chosen:
        source += f" (0.5 for {', '.join(filled)}, which it leaves undecided)"
    return values, source


def report_header(predictor, model_path, inputs, data, synthetic=None):
    """The report's opening lines: model, ECGs, labels, the synthetic-only warning."""
    shown = ", ".join(f"`{path}`" for path in inputs)
    lines = [f"Model: `{model_path}` ({predictor.kind}; classes {', '.join(predictor.classes)}).",
             "", f"ECGs: {data.collection.n} exams from {shown}; labels: {data.source}.", ""]
    if synthetic:
        lines += [f"**Warning:** {synthetic}.", ""]
    if data.missing:
        lines += [f"Not evaluated (no labels): {', '.join(data.missing)}.", ""]
    return lines


def summary_table(result):
    """The console's summary: AUROC, AUPRC, ECE with intervals and each rule's F1."""
    frame = interval_frame(result.scores, ("auroc", "auprc", "ece"))
    for rule, table in result.rules.items():
        frame[f"F1 {rule}"] = [f"{v:.3f}" for v in table["f1"]]
    return markdown_table(frame, corner="class")


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
