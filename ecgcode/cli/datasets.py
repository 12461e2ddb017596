"""The data tools' command line: ``python datasets.py {inspect,convert,synthetic} ...``.

The data code itself is ``ecgcode.data`` (open_collection, load_labels, split_indices,
make_dataset, find_nonfinite; the tf.data pipeline in ``ecgcode/data/pipeline.py``);
conversion is ``ecgcode.data.formats.convert``, synthetic ECGs ``ecgcode.data.synthetic.generate``.
Each command's parser and ``main`` is a module beside this one (``ecgcode.cli.inspect``,
``ecgcode.cli.convert``, ``ecgcode.cli.synthetic``).
"""

import argparse
import importlib
import sys

from ecgcode.common import UNITS_PER_MV, run_cli

# --- Command line --------------------------------------------------------------------
COMMANDS = {
    "inspect": "summarise HDF5 file(s) and warn about wrong scale or lead order",
    "convert": "convert WFDB / CinC / CPSC / CSV / .npy / PTB-XL records, clinical exports "
               "(MUSE, HL7 aECG, DICOM, SCP-ECG, Philips) and long-term recordings (EDF, "
               "ISHNE, MFER) into a CODE-style HDF5 file (--windows: every 10.24 s window)",
    "synthetic": "write a synthetic CODE-style HDF5 file (for tests and demos)",
}

PROGRAMS = {"inspect": "ecgcode.cli.inspect", "convert": "ecgcode.cli.convert",
            "synthetic": "ecgcode.cli.synthetic"}
"""The module that runs each command."""


def main(argv=None):
    """Dispatch ``inspect``, ``convert`` or ``synthetic`` (see ``--help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="datasets.py",
        description="ECG data tools for CODE-style HDF5 files (tracings (N, 4096, 12), "
        f"float32, 1 mV = {UNITS_PER_MV:g} units, 400 Hz).",
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
    program = importlib.import_module(PROGRAMS[command])  # only the chosen one's libraries
    return program.main(rest, prog=f"datasets.py {command}")


def cli():
    """Console-script entry point: ``main`` with one-line errors and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
