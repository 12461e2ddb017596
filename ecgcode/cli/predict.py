"""Run a trained or published model on ECG tracings and write its class probabilities.

    python predict.py TRACINGS.hdf5 [MORE.hdf5 ...] MODEL [--output-file OUT.npy|OUT.csv]

MODEL (always the last positional argument) is a ``.keras`` or ``.h5``/``.hdf5`` model
file (Keras 3, tf.keras 2.x or the original study's Keras 2.2.4 weights), a run folder
written by train.py, whose best model and thresholds are then used, or an ``.onnx`` export
(``model.py export``), run by onnxruntime without importing TensorFlow
(``ecgcode.inference.predictor``). The original study's form ``python predict.py tracings.hdf5
model.hdf5 --output_file out.npy`` still works. ``predict.py --serve MODEL`` instead keeps
MODEL loaded behind a local HTTP service (``ecgcode.inference.service``).

Outputs: ``.npy`` holds float32 (N, n_classes) probabilities in file order (the original
study's format); ``.csv`` holds one row per exam: ``exam_id`` (or ``row`` when the files
have no ids), one probability column per class, named from the classes stored in the model,
and, when thresholds are known, one 0/1 ``<class>_pred`` column per class. ``--plot N`` also
draws exam N as a 12-lead ECG sheet; ``--explain N`` adds integrated-gradients attributions
of exam N (``ecgcode/inference/explain.py``). Inputs other than HDF5 (clinical XML/DICOM/SCP-ECG
exports, WFDB records, ...) are converted into the data contract on the fly
(``ecgcode.data.formats.inputs``); the ``.csv`` then names each row's file in a first ``record``
column. ``--windows`` scores every 4096-sample window of a long recording instead of its
centre: one ``.csv`` row per window and a per-record summary (``ecgcode/inference/windows.py``).
"""

import argparse
import sys

import numpy as np

from ecgcode.cli.options import (
    add_conversion_options,
    add_units_option,
    add_window_options,
    window_stride_option,
)
from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    PAPER_THRESHOLDS,
    UNITS_PER_MV,
    ECGInputError,
    run_cli,
)
from ecgcode.data import open_collection
from ecgcode.data.formats.inputs import contract_inputs, row_names
from ecgcode.inference import service
from ecgcode.inference.explain import explain_and_save
from ecgcode.inference.outputs import (
    exams_to_explain,
    input_warnings,
    locate_row,
    nonfinite_warning,
    output_format,
    plot_exams,
    write_predictions,
)
from ecgcode.inference.predictor import (
    DEFAULT_BATCH_SIZE,
    at_model_scale,
    load_predictor,
    original_scale_model,
    predict_collection,
    print_warning,
    refuse_keras_options,
    resolve_predictor,
)
from ecgcode.inference.windows import SUMMARY_SUFFIX, window_rows, write_window_outputs
from ecgcode.model.calibration import calibrate_outputs, describe_calibration
from ecgcode.model.metadata import parse_classes
from ecgcode.model.provenance import synthetic_model_warning, synthetic_only_warning
from ecgcode.model.runfolder import RUN_EXPORT_NAME, RUN_MODEL_NAMES, RUN_THRESHOLDS_NAME
from ecgcode.model.thresholds import choose_calibration, choose_thresholds, read_thresholds

DEFAULT_OUTPUT = "./dnn_output.npy"
"""Default output file, as in the original study's predict.py."""



# --- Arguments ---------------------------------------------------------------------
def build_parser():
    """Return the argument parser of ``predict.py`` / ``ecg-predict``."""
    parser = argparse.ArgumentParser(
        prog="predict.py",
        usage="%(prog)s [options] TRACINGS.hdf5 [MORE.hdf5 ...] MODEL\n"
        "       %(prog)s --serve MODEL [--host 127.0.0.1] [--port 8000]",
        description="Run a model on 12-lead ECG tracings (CODE-style HDF5 files: a "
        f"(N, 4096, 12) dataset, 1 mV = {UNITS_PER_MV:g} units unless the file records "
        "another scale) and write its class probabilities (the paper's "
        f"six: {', '.join(CLASSES)}; or the classes stored in the model). Every input is "
        "brought to the amplitude scale the model expects, with one line per rescaled file.",
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
        "record column), then the MODEL: a .keras/.h5/.hdf5 model file, a train.py run folder "
        f"(uses its {RUN_MODEL_NAMES[0]} and {RUN_THRESHOLDS_NAME}, or its {RUN_EXPORT_NAME} "
        "while that is an export of its best model) or an .onnx export of "
        "`model.py export` (run by onnxruntime without TensorFlow: one exam in about a second; "
        "not with --explain or --precision bfloat16)",
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
        "bfloat16 (opt-in: faster on a GPU and where the CPU computes it natively with "
        "AVX512-BF16; on AMX, whose bfloat16 convolutions are wrong under TensorFlow, oneDNN "
        "is kept to AVX512-BF16; probabilities differ slightly, see docs/predict.md)",
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
    add_units_option(parser, model=True)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up logging")
    add_service_options(parser)
    return parser


def add_service_options(parser):
    """Add ``--serve`` and the service's ``--host``, ``--port`` and limits."""
    group = parser.add_argument_group(
        "serving (predict.py --serve MODEL: a local HTTP service that keeps MODEL loaded; "
        "see docs/predict.md)")
    group.add_argument(
        "--serve", action="store_true",
        help="instead of predicting files, serve MODEL (the only positional argument): POST "
        "files to /predict (one body named by ?name=FILE or X-Filename, or multipart/form-"
        "data), JSON probabilities and, with thresholds, 0/1 predictions per exam; GET "
        "/health. A bad file gives a per-file error line, status 200. Ctrl-C stops")
    group.add_argument("--host", default=service.DEFAULT_HOST,
                       help=f"address to listen on (default: {service.DEFAULT_HOST}, this "
                       "machine only; another address prints a warning: no authentication)")
    group.add_argument("--port", type=int, default=service.DEFAULT_PORT,
                       help=f"TCP port (default: {service.DEFAULT_PORT}; 0: any free port)")
    group.add_argument("--max-request-mb", type=float, default=service.DEFAULT_MAX_REQUEST_MB,
                       metavar="MB", help="largest request body, refused (413) before it is "
                       f"read (default: {service.DEFAULT_MAX_REQUEST_MB:g})")
    group.add_argument("--max-files", type=int, default=service.DEFAULT_MAX_FILES,
                       metavar="N", help="most files per request (default: "
                       f"{service.DEFAULT_MAX_FILES})")
    group.add_argument("--request-timeout", type=float, default=service.DEFAULT_TIMEOUT_S,
                       metavar="SECONDS", help="a client silent this long is disconnected "
                       f"(default: {service.DEFAULT_TIMEOUT_S:g})")


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
    if args.serve:
        return _serve(args)
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
    model_path, run_thresholds_path = resolve_predictor(
        model_argument, keras_needed=bool(args.explain) or args.precision != "float32")
    refuse_keras_options(model_path, args.explain, args.precision)
    given_classes = parse_classes(args.classes) if args.classes else None
    if args.thresholds:
        read_thresholds(args.thresholds, ())  # the file is readable; its classes are checked below


    with contract_inputs(tracing_paths, args.fs, args.units, args.leads, args.stride) as (
            tracing_paths, converted):  # XML, DICOM, WFDB, CSV...
        return _predict_and_write(args, tracing_paths, converted, model_path,
                                  run_thresholds_path, given_classes, extension)


def _serve(args):
    """``--serve MODEL``: load MODEL once and answer HTTP requests until Ctrl-C."""
    if len(args.paths) != 1:
        raise ECGInputError(f"--serve takes one positional argument, the MODEL (got "
                            f"{' '.join(args.paths)}); the files come in the requests")
    for option, given in (("--explain", args.explain), ("--plot", args.plot)):
        if given:
            raise ECGInputError(f"{option}: not available with --serve; run predict.py on "
                                "the file instead")
    limits = service.Limits(args.max_request_mb, args.max_files, args.request_timeout)
    if limits.max_bytes < 1 or limits.max_files < 1 or limits.timeout_s <= 0:
        raise ECGInputError("--max-request-mb, --max-files and --request-timeout must be "
                            "positive")
    if not 0 <= args.port <= 65535:
        raise ECGInputError(f"--port {args.port}: must be 0 to 65535")
    model_path, run_thresholds_path = resolve_predictor(
        args.paths[0], keras_needed=args.precision != "float32")
    refuse_keras_options(model_path, (), args.precision)
    if args.thresholds:
        read_thresholds(args.thresholds, ())  # readable before the model loads
    predictor = load_predictor(model_path, parse_classes(args.classes) if args.classes else
                               None, args.precision, args.batch_size, args.verbose,
                               args.model_units_per_mv)
    print_warning(predictor)
    thresholds = choose_thresholds(args.paper_thresholds, args.thresholds, run_thresholds_path,
                                   predictor.classes, stored=predictor.thresholds)
    calibration = choose_calibration(args.paper_thresholds, args.thresholds, run_thresholds_path,
                                     predictor.metadata)
    synthetic = synthetic_only_warning(predictor.provenance, model_path)
    if synthetic:  # each result for ECGs that are not synthetic repeats it
        print(f"warning: {synthetic}", file=sys.stderr)
    return service.serve(service.Service(predictor, thresholds, limits, calibration,
                                         args.units_per_mv), args.host, args.port)


def _predict_and_write(args, tracing_paths, converted, model_path, run_thresholds_path,
                       given_classes, extension):
    """Predict the (converted) tracings and write the outputs; returns the exit status."""
    collection = open_collection(tracing_paths, args.dataset_name, args.units_per_mv)
    names = row_names(collection.paths, collection.sizes, converted)
    windows = None if args.stride is None else window_rows(collection.paths, collection.sizes)
    if windows is not None:
        names = windows.names
    for option, rows in (("--plot", args.plot), ("--explain", args.explain)):
        for row in rows:
            locate_row(collection, row, option)
    predictor = load_predictor(model_path, given_classes, args.precision, args.batch_size,
                               args.verbose, args.model_units_per_mv)  # Keras or onnxruntime
    classes = predictor.classes
    print_warning(predictor)
    thresholds = choose_thresholds(args.paper_thresholds, args.thresholds, run_thresholds_path,
                                   classes, stored=predictor.thresholds)
    unknown = [name for name, value in (thresholds or {}).items() if value is None]
    if unknown and extension == ".csv":
        print(
            f"warning: no threshold for {', '.join(unknown)} (no positive validation exams when "
            "it was chosen); their _pred columns are left empty",
            file=sys.stderr,
        )
    synthetic = synthetic_model_warning(predictor.provenance, model_path,
                                        collection.paths)  # once per run
    if synthetic:
        print(f"warning: {synthetic}", file=sys.stderr)
    for message in input_warnings(collection):  # after every fatal check
        print(f"warning: {message}", file=sys.stderr)
    at_scale, notes = at_model_scale(predictor, collection)
    for note in notes:  # one line per rescaled file
        print(f"note: {note}", file=sys.stderr)
    probabilities = predict_collection(predictor, at_scale, args.batch_size,
                                       progress=not args.quiet)
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
    calibration = choose_calibration(args.paper_thresholds, args.thresholds, run_thresholds_path,
                                     predictor.metadata)  # validate.py --calibrate
    probabilities, thresholds = calibrate_outputs(probabilities, thresholds, calibration, classes)
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
            original_scale_model(predictor), exams_to_explain(collection, args.explain),
            probabilities, args.output_file,
            args.explain_class, thresholds, args.plot_format, args.explain_steps, classes)
        written += explained
    if not args.quiet:
        rows = "exams" if windows is None else "windows"
        print(f"wrote {args.output_file}: {collection.n} {rows} x {len(classes)} classes "
              f"({','.join(classes)})")
        for path in written:
            print(f"wrote {path}")
        if calibration:
            print(f"probabilities recalibrated ({describe_calibration(calibration)})")
        for line in summaries:
            print(line)
    return 0


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
