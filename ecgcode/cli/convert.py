"""``datasets.py convert`` (``ecg-convert``): recordings into a CODE-style HDF5 file.

The conversion itself is ``ecgcode.data.formats.convert``; this module is its argument
parser and ``main``.
"""

import argparse

from ecgcode.cli.options import add_window_options, window_stride_option
from ecgcode.common import LEADS, N_SAMPLES, SAMPLING_RATE, UNITS_PER_MV, run_cli
from ecgcode.data.formats.convert import UNIT_CHOICES, convert
from ecgcode.data.formats.ptbxl_labels import LABEL_SETS


def build_parser(prog=None):
    """Return the argparse parser of the ``convert`` command (``prog``: its name in usage)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert ECG recordings (WFDB and CinC 2020/2021 records, CSV, .npy, PTB-XL, "
        "CPSC 2018 .mat, GE MUSE XML, HL7 aECG, DICOM waveform, SCP-ECG, Philips XML, EDF/EDF+, "
        "ISHNE Holter, MFER) into a CODE-style HDF5 "
        f"file: tracings (N, {N_SAMPLES}, {len(LEADS)}) float32 at the original study's scale "
        f"(1 mV = {UNITS_PER_MV:g} units, recorded in the file) at {SAMPLING_RATE} Hz, "
        f"leads {', '.join(LEADS)}. Leads are matched by name, missing limb leads derived, "
        "signals resampled (polyphase) and zero-padded or centre-cropped.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="WFDB records (.hea/.dat/.mat or bare name; CinC #Dx codes become "
                        "labels), folders of WFDB or CPSC 2018 records, CPSC 2018 .mat files "
                        "(labels from the REFERENCE.csv beside them), clinical exports (GE MUSE "
                        "XML, HL7 aECG, DICOM, SCP-ECG, Philips XML, EDF, ISHNE Holter, MFER; "
                        "recognised by content), "
                        ".csv files (header row naming the leads), .npy files ((n_samples, "
                        "n_leads) or (n_records, n_samples, n_leads)), or a PTB-XL folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.hdf5",
                        help="HDF5 file to write (replaced only on success)")
    parser.add_argument("--fs", type=float, help="sampling rate in Hz (required for CSV and "
                        ".npy; overrides WFDB headers)")
    parser.add_argument("--units", help=f"signal units: {UNIT_CHOICES} (required for CSV and "
                        ".npy; overrides WFDB headers)")
    parser.add_argument("--leads", type=lambda text: text.split(","), metavar="I,II,...",
                        help="comma-separated channel names (required for .npy; overrides WFDB "
                        "headers)")
    parser.add_argument("--ptbxl-100hz", action="store_true",
                        help="PTB-XL: convert the 100 Hz records instead of the 500 Hz ones")
    parser.add_argument("--ptbxl-labels", choices=LABEL_SETS, default="paper",
                        help="PTB-XL: the labels written: the paper's six classes (default) or "
                        "PTB-XL's statements aggregated as in its benchmark (needs "
                        "scp_statements.csv); strat_fold and patient_id are always kept")
    add_window_options(parser, "every window one output row (records/ names its record, "
                       "window number, start_s and end_s; exam_id numbers the rows)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None, prog=None):
    """Run the ``convert`` command; returns 0, raises ECGInputError on bad input."""
    args = build_parser(prog).parse_args(argv)
    stride = window_stride_option(args)
    summary = convert(args.inputs, args.output, fs=args.fs, units=args.units, leads=args.leads,
                      low_rate=args.ptbxl_100hz, ptbxl_labels=args.ptbxl_labels,
                      progress=not args.quiet, window_stride=stride)
    windows = f" as {summary['n_rows']} windows" if stride is not None else ""
    print(f"wrote {summary['n_records']} records{windows} to {summary['output']}")
    for name, fraction in summary.get("prevalence", {}).items():
        print(f"  {name:6s} {fraction:7.2%}")
    return 0


def cli():
    """Console-script entry point: run :func:`main` on ``sys.argv``, exit with its status."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
