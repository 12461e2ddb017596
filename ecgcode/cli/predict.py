"""Run a trained or published model on ECG tracings and write its class probabilities.

    python predict.py TRACINGS.hdf5 [MORE.hdf5 ...] MODEL [--output-file OUT.npy|OUT.csv]

MODEL (always the last positional argument) is a ``.keras`` or ``.h5``/``.hdf5`` model
file (Keras 3, tf.keras 2.x or the original study's Keras 2.2.4 weights) or a run folder
written by train.py, whose best model and thresholds are then used. The original study's
form ``python predict.py tracings.hdf5 model.hdf5 --output_file out.npy`` still works.

Outputs: ``.npy`` holds float32 (N, n_classes) probabilities in file order (the original
study's format); ``.csv`` holds one row per exam: ``exam_id`` (or ``row`` when the files
have no ids), one probability column per class, named from the classes stored in the model,
and, when thresholds are known, one 0/1 ``<class>_pred`` column per class. ``--plot N`` also
draws exam N as a 12-lead ECG sheet; ``--explain N`` adds integrated-gradients attributions
of exam N (``ecgcode/explain.py``). Inputs other than HDF5 (clinical XML/DICOM/SCP-ECG
exports, WFDB records, ...) are converted into the data contract on the fly
(``ecgcode.formats.inputs``); the ``.csv`` then names each row's file in a first ``record``
column. ``--windows`` scores every 4096-sample window of a long recording instead of its
centre: one ``.csv`` row per window and a per-record summary (``ecgcode/windows.py``).
"""

import argparse
import sys

import numpy as np

from ecgcode.classnames import parse_classes
from ecgcode.common import CLASSES, DEFAULT_DATASET_NAME, PAPER_THRESHOLDS, ECGInputError, run_cli
from ecgcode.data import open_collection
from ecgcode.explain import explain_and_save
from ecgcode.formats.convert import add_window_options, window_stride_option
from ecgcode.formats.inputs import add_conversion_options, contract_inputs, row_names
from ecgcode.inference import DEFAULT_BATCH_SIZE, predict_collection
from ecgcode.outputs import (
    exams_to_explain,
    input_warnings,
    locate_row,
    nonfinite_warning,
    output_format,
    plot_exams,
    write_predictions,
)
from ecgcode.precision import bfloat16_model, with_policy
from ecgcode.provenance import synthetic_model_warning
from ecgcode.quiet import import_tensorflow
from ecgcode.runfolder import RUN_MODEL_NAMES, RUN_THRESHOLDS_NAME, resolve_model
from ecgcode.thresholds import choose_thresholds, read_thresholds
from ecgcode.windows import SUMMARY_SUFFIX, window_rows, write_window_outputs

DEFAULT_OUTPUT = "./dnn_output.npy"
"""Default output file, as in the original study's predict.py."""



# --- Arguments ---------------------------------------------------------------------
def build_parser():
    """Return the argument parser of ``predict.py`` / ``ecg-predict``."""
    parser = argparse.ArgumentParser(
        prog="predict.py",
        usage="%(prog)s [options] TRACINGS.hdf5 [MORE.hdf5 ...] MODEL",
        description="Run a model on 12-lead ECG tracings (CODE-style HDF5 files: a "
        "(N, 4096, 12) dataset in 1e-4 V) and write its class probabilities (the paper's "
        f"six: {', '.join(CLASSES)}; or the classes stored in the model).",
        epilog="example: python predict.py exams_part0.hdf5 exams_part1.hdf5 runs/run1 "
        "--output-file scores.csv --paper-thresholds --plot 0",
        allow_abbrev=False,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="TRACINGS... MODEL",
        help="one or more HDF5 tracing files (read in the given order, e.g. CODE-15%% shards) "
        "or recordings that `datasets.py convert` reads (GE MUSE/HL7 aECG/Philips XML, DICOM, "
        "SCP-ECG, EDF, ISHNE, MFER, WFDB/CinC records, CPSC .mat, folders of records: converted "
        "on the fly, one output row each (each window with --windows), named in a .csv's "
        "record column), then the MODEL: a .keras/.h5/.hdf5 model file or a train.py run folder "
        f"(uses its {RUN_MODEL_NAMES[0]} and {RUN_THRESHOLDS_NAME})",
    )
    parser.add_argument(
        "--output-file", "--output_file", default=DEFAULT_OUTPUT, metavar="OUT",
        help=".npy: float32 (N, n_classes) probabilities in file order; .csv: exam_id (or "
        "row), one probability column per class and, with thresholds, 0/1 <class>_pred columns "
        f"(default: {DEFAULT_OUTPUT}, as in the original study). Written atomically.",
    )
    thresholds = parser.add_mutually_exclusive_group()
    thresholds.add_argument(
        "--thresholds", metavar="FILE.json",
        help="per-class decision thresholds for the .csv 0/1 columns: JSON mapping class "
        'name to a number or to {"threshold": number} (default: the run folder\'s '
        f"{RUN_THRESHOLDS_NAME} when MODEL is a run folder)",
    )
    thresholds.add_argument(
        "--paper-thresholds", action="store_true",
        help="use the original study's thresholds ("
        + ", ".join(f"{name} {value}" for name, value in PAPER_THRESHOLDS.items())
        + "); only for a model of the paper's six classes",
    )
    parser.add_argument(
        "--precision", choices=("float32", "bfloat16"), default="float32",
        help="compute precision: float32 (default; the results of model.predict) or "
        "bfloat16 (opt-in: faster where the CPU computes it natively, AMX or AVX512-BF16, "
        "or on a GPU; probabilities differ slightly, see README)",
    )
    parser.add_argument(
        "--classes", metavar="A,B,...",
        help="names of the model's outputs, for a model that stores none (models written by "
        "this project store theirs; without names a 6-output model is taken as the paper's)",
    )
    parser.add_argument(
        "--batch-size", "--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
        help=f"exams per inference batch (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--dataset-name", "--dataset_name", default=DEFAULT_DATASET_NAME,
        help=f"name of the signal dataset in the HDF5 files (default: {DEFAULT_DATASET_NAME})",
    )
    parser.add_argument(
        "--plot", type=int, action="append", default=[], metavar="N",
        help="also draw exam N (0-based row over all files) as a 12-lead ECG sheet with its "
        "probabilities; repeatable. Written next to the output as <OUT stem>_row<N>.png",
    )
    parser.add_argument(
        "--plot-format", choices=("png", "pdf"), default="png",
        help="file format of the --plot sheets (default: png)",
    )
    parser.add_argument(
        "--explain", type=int, action="append", default=[], metavar="N",
        help="explain exam N (0-based row, repeatable) with integrated gradients (zero "
        "baseline): writes <OUT stem>_saliency.npy (explained exams x 4096 x 12, for each "
        "exam's top class or --explain-class), its index <OUT stem>_saliency.json and the "
        "sheet <OUT stem>_row<N>_saliency.png with the attribution as a colour band",
    )
    parser.add_argument(
        "--explain-class", metavar="CLASS", default=None,
        help="class explained by --explain, one of the model's classes (default: each exam's "
        "most probable class)",
    )
    parser.add_argument(
        "--explain-steps", type=int, default=64, metavar="STEPS",
        help="integration steps of --explain (default: 64; cost grows with it)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar or summary on the console"
    )

    add_window_options(parser, "each window one row of the .csv (record, window, start_s, "
                       f"end_s, ...), plus a per-record summary <OUT stem>{SUMMARY_SUFFIX} "
                       "(windows, duration, per class the maximum probability and the share "
                       "of windows positive); an HDF5 input row counts as one 10.24 s window, "
                       "unless the file was written by `datasets.py convert --windows`")
    add_conversion_options(parser)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up logging")
    return parser


def split_positionals(paths):
    """Split the positional arguments into (tracing files, MODEL); MODEL is the last one."""
    if len(paths) < 2:
        raise ECGInputError(
            f"got {len(paths)} path ({' '.join(paths)}); give one or more tracing files and "
            "then the MODEL: predict.py TRACINGS.hdf5 [MORE.hdf5 ...] MODEL"
        )
    return list(paths[:-1]), paths[-1]


# --- Command line ------------------------------------------------------------------
def main(argv=None):
    """Command line of predict.py; returns the exit status."""
    args = build_parser().parse_args(argv)
    tracing_paths, model_argument = split_positionals(args.paths)
    extension = output_format(args.output_file)  # checked before any work
    args.stride = window_stride_option(args)  # samples between windows, None: no --windows
    if args.stride is not None and extension != ".csv":
        raise ECGInputError(f"--windows: {args.output_file}: the windows and their records are "
                            "tables; fix: name the output file .csv")
    if args.batch_size < 1:
        raise ECGInputError(f"--batch-size {args.batch_size}: must be a positive integer")
    if args.explain_steps < 1:
        raise ECGInputError(f"--explain-steps {args.explain_steps}: must be a positive integer")
    model_path, run_thresholds_path = resolve_model(model_argument)
    given_classes = parse_classes(args.classes) if args.classes else None
    if args.thresholds:
        read_thresholds(args.thresholds, ())  # the file is readable; its classes are checked below


    with contract_inputs(tracing_paths, args.fs, args.units, args.leads, args.stride) as (
            tracing_paths, converted):  # XML, DICOM, WFDB, CSV...
        return _predict_and_write(args, tracing_paths, converted, model_path,
                                  run_thresholds_path, given_classes, extension)


def _predict_and_write(args, tracing_paths, converted, model_path, run_thresholds_path,
                       given_classes, extension):
    """Predict the (converted) tracings and write the outputs; returns the exit status."""
    collection = open_collection(tracing_paths, dataset_name=args.dataset_name)
    names = row_names(collection.paths, collection.sizes, converted)
    windows = None if args.stride is None else window_rows(collection.paths, collection.sizes)
    if windows is not None:
        names = windows.names
    for option, rows in (("--plot", args.plot), ("--explain", args.explain)):
        for row in rows:
            locate_row(collection, row, option)
    import_tensorflow(verbose=args.verbose)
    from ecgcode.modelfiles import load_model_and_classes  # imports Keras: after the checks

    model, classes, guessed = load_model_and_classes(model_path, given_classes)
    if guessed:
        print(f"warning: {guessed}", file=sys.stderr)
    if args.precision == "bfloat16":
        model = bfloat16_model(model)
    else:  # a model saved in a mixed policy (e.g. a resume checkpoint) computes in float32
        model = with_policy(model, "float32")
    thresholds = choose_thresholds(args.paper_thresholds, args.thresholds, run_thresholds_path,
                                   classes)
    unknown = [name for name, value in (thresholds or {}).items() if value is None]
    if unknown and extension == ".csv":
        print(
            f"warning: no threshold for {', '.join(unknown)} (no positive validation exams when "
            "it was chosen); their _pred columns are left empty",
            file=sys.stderr,
        )
    synthetic = synthetic_model_warning(model_path, collection.paths)  # once per run
    if synthetic:
        print(f"warning: {synthetic}", file=sys.stderr)
    for message in input_warnings(collection):  # after every fatal check
        print(f"warning: {message}", file=sys.stderr)
    probabilities = predict_collection(
        model, collection, args.batch_size, verbose=0 if args.quiet else 1
    )
    nonfinite = nonfinite_warning(probabilities, collection)
    if nonfinite:
        print(f"warning: {nonfinite}", file=sys.stderr)
    finite = probabilities[np.isfinite(probabilities)]
    if not np.all((finite >= 0) & (finite <= 1)):
        print(
            f"warning: {model_path}: outputs outside [0, 1]; the model's last layer is probably "
            "not a sigmoid, so these are not probabilities",
            file=sys.stderr,
        )
    if windows is None:
        exam_ids = collection.exam_ids if names is None else None  # converted rows: no ids
        write_predictions(args.output_file, probabilities, exam_ids, thresholds, classes, names)
        written = []
    else:
        written = [write_window_outputs(args.output_file, windows, probabilities, thresholds,
                                        classes)]
    written += plot_exams(
        collection, args.plot, probabilities, thresholds, args.output_file, args.plot_format,
        model_path, classes, names,
    )
    summaries = []
    if args.explain:
        explained, summaries = explain_and_save(
            model, exams_to_explain(collection, args.explain), probabilities, args.output_file,
            args.explain_class, thresholds, args.plot_format, args.explain_steps, classes)
        written += explained
    if not args.quiet:
        rows = "exams" if windows is None else "windows"
        print(f"wrote {args.output_file}: {collection.n} {rows} x {len(classes)} classes "
              f"({','.join(classes)})")
        for path in written:
            print(f"wrote {path}")
        for line in summaries:
            print(line)
    return 0


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
