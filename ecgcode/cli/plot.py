"""``ecg-plot`` (``python -m ecgcode.cli.plot``): one exam drawn as a 12-lead ECG sheet.

    python -m ecgcode.cli.plot exams.hdf5 3 -o exam3.png [--predictions dnn_output.npy]

The sheet itself is ``ecgcode.inference.plotting``; only matplotlib, h5py and numpy are
needed (no TensorFlow), so this is quick to run.
"""

import argparse
import os

from ecgcode.cli.options import add_units_option
from ecgcode.common import DEFAULT_DATASET_NAME, run_cli
from ecgcode.inference.plotting import (
    plot_format,
    read_exam,
    read_prediction_row,
    save_ecg_sheet,
)


def build_parser():
    """Return the argument parser of ``python -m ecgcode.cli.plot`` (``ecg-plot``)."""
    parser = argparse.ArgumentParser(
        prog="python -m ecgcode.cli.plot",
        description="Draw one exam of a CODE-style HDF5 file as a standard 12-lead ECG sheet "
        "(25 mm/s, 10 mm/mV, 3x4 layout plus a lead II rhythm strip).",
        allow_abbrev=False,
    )
    parser.add_argument("tracings", help="HDF5 file with a (N, 4096, 12) dataset; its recorded "
                        "amplitude scale is drawn at 10 mm/mV")
    parser.add_argument("index", type=int, help="0-based row of the exam in the file")
    parser.add_argument(
        "-o", "--output", default=None,
        help="output .png or .pdf (default: exam<INDEX>.png in the current folder)",
    )
    parser.add_argument(
        "--predictions", default=None,
        help="predict.py output (.npy or .csv) for the same file; its row is shown in the title",
    )
    parser.add_argument(
        "--dataset-name", "--dataset_name", default=DEFAULT_DATASET_NAME,
        help=f"name of the signal dataset in the HDF5 file (default: {DEFAULT_DATASET_NAME})",
    )
    add_units_option(parser)
    return parser


def main(argv=None):
    """Command line: draw one exam to a PNG or PDF file."""
    args = build_parser().parse_args(argv)
    output = args.output or f"exam{args.index}.png"
    plot_format(output)
    tracing, exam_id = read_exam(args.tracings, args.index, args.dataset_name,
                                 args.units_per_mv)
    probabilities = None
    if args.predictions:
        probabilities = read_prediction_row(args.predictions, args.index)
    title = f"{os.path.basename(args.tracings)}   row {args.index}"
    if exam_id is not None:
        title += f"   exam_id {exam_id}"
    save_ecg_sheet(tracing, output, title=title, probabilities=probabilities)
    print(f"wrote {output}")
    return 0


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
