"""``datasets.py inspect``: summarise HDF5 file(s) and warn about a wrong scale or lead order.

The statistics and warnings themselves are ``ecgcode.data.inspection``; this module is the
command's argument parser and ``main``.
"""

import argparse

from ecgcode.cli.options import add_units_option
from ecgcode.common import DEFAULT_DATASET_NAME, UNITS_PER_MV, run_cli
from ecgcode.data.inspection import inspect_collection


def main(argv=None, prog=None):
    """The ``inspect`` command line (``python datasets.py inspect FILE... [options]``).

    ``prog`` names the command in its usage line (``datasets.py inspect``).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Summarise CODE-style HDF5 file(s): size, labels, amplitude scale, "
        "amplitudes in mV; warn when the QRS amplitudes do not fit the declared scale (the "
        f"original study's: 1 mV = {UNITS_PER_MV:g} units) or the lead order looks wrong.",
    )
    parser.add_argument("files", nargs="+", help="HDF5 file(s), read as one collection")
    parser.add_argument("--labels", help="label CSV (else a 'labels' dataset in the HDF5)")
    parser.add_argument(
        "--dataset-name",
        default=DEFAULT_DATASET_NAME,
        help="signal dataset name (default: %(default)s)",
    )
    parser.add_argument(
        "--max-records",
        type=int,
        default=1000,
        help="records sampled for amplitude statistics (default: %(default)s)",
    )
    parser.add_argument(
        "--no-scan", action="store_true", help="skip scanning every record for NaN/inf"
    )
    add_units_option(parser)
    args = parser.parse_args(argv)
    inspect_collection(
        args.files, args.labels, args.dataset_name, args.max_records, scan=not args.no_scan,
        units_per_mv=args.units_per_mv,
    )
    return 0


def cli():
    """Console-free entry point of ``python -m ecgcode.cli.inspect``: one-line errors."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
