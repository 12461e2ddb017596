"""Stream CODE-style HDF5 ECG collections of any size into tf.data; the data tools' CLI.

This script is the public face of the data code in ``ecgcode/data``: it re-exports its
API, so ``import datasets; datasets.make_dataset(...)`` works from the root, and it runs
the data tools.  TensorFlow is imported only when ``make_dataset`` is called.

Public API
----------
open_collection(paths, dataset_name)      -> Collection  (validates every file up front)
load_labels(paths_or_collection, csv)     -> LabelTable  (labels aligned to the rows)
split_indices(n, val_split, groups, seed) -> (train_idx, val_idx)
make_dataset(paths_or_collection, labels, batch_size=..., shuffle=..., ...) -> tf.data.Dataset
find_nonfinite(collection)                -> (row indices, count) of NaN/inf values

How the pipeline reads: ``ecgcode/data/pipeline.py``.

Command line: ``python datasets.py {inspect,convert,synthetic} ...``.
"""

import argparse
import sys

from ecgcode.common import run_cli
from ecgcode.data import *

# --- Command line --------------------------------------------------------------------
COMMANDS = {
    "inspect": "summarise HDF5 file(s) and warn about wrong scale or lead order",
    "convert": "convert WFDB / CinC / CPSC / CSV / .npy / PTB-XL records and clinical exports "
               "(MUSE, HL7 aECG, DICOM, SCP-ECG, Philips) into a CODE-style HDF5 file",
    "synthetic": "write a synthetic CODE-style HDF5 file (for tests and demos)",
}


def main(argv=None):
    """Dispatch ``inspect``, ``convert`` or ``synthetic`` (see ``--help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="datasets.py",
        description="ECG data tools for CODE-style HDF5 files (tracings (N, 4096, 12), "
        "float32, 1e-4 V, 400 Hz).",
        epilog="commands:\n"
        + "\n".join(f"  {k:10s} {v}" for k, v in COMMANDS.items())
        + "\nRun `python datasets.py COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments")
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the error
        return 2
    command, rest = argv[0], argv[1:]
    if command == "inspect":
        from ecgcode.data import inspection

        return inspection.main(rest)
    if command == "convert":
        from ecgcode.formats import convert

        return convert.main(rest)
    from ecgcode.synthetic import generate

    return generate.main(rest)


def cli():
    """Console-script entry point: ``main`` with one-line errors and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
