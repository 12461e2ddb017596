"""``datasets.py synthetic`` (``ecg-synthetic``): a labelled synthetic CODE-style HDF5 file.

    python datasets.py synthetic OUT.hdf5 --n 2000 --seed 1 [--prevalence code]

The ECGs themselves are ``ecgcode.data.synthetic.generate``; this module is its argument
parser and ``main``.
"""

import argparse

from ecgcode.common import UNITS_PER_MV, run_cli
from ecgcode.data.synthetic.generate import (
    DEFAULT_SHORT_FRACTION,
    parse_prevalence,
    write_synthetic,
)


def build_parser(prog=None):
    """The argparse parser of the command line."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write synthetic labelled 12-lead ECGs (CODE format: tracings (N, 4096, 12) "
        f"float32 at {UNITS_PER_MV:g} units per mV, the original study's scale, 400 Hz, labels "
        "(N, 6), exam_id) to an HDF5 file. Each beat is a "
        "sum of Gaussian P/Q/R/S/T waves of a 3-D cardiac dipole projected on the 12 leads; "
        "the classes 1dAVb, RBBB, LBBB, SB, AF and ST follow their clinical definitions.",
    )
    parser.add_argument("output", help="HDF5 file to write (replaced atomically if it exists)")
    parser.add_argument("--n", type=int, required=True, help="number of exams")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--prevalence", default="balanced",
        help="class prevalences: 'balanced' (18%% each, the default), 'code' (CODE-like "
        "rarity: 1.6-2.7%%) or CLASS=P pairs, optionally after a preset, e.g. "
        "'code,AF=0.05' or 'AF=0.3,ST=0.1'",
    )
    parser.add_argument("--short-fraction", type=float, default=DEFAULT_SHORT_FRACTION,
                        help="fraction of 7 s recordings (others 10 s; default: %(default)s)")
    parser.add_argument("--no-noise", action="store_true",
                        help="no baseline wander, muscle noise or powerline interference")
    parser.add_argument("--first-exam-id", type=int, default=1,
                        help="exam_id of the first exam (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None, prog=None):
    """Command line: ``python datasets.py synthetic OUT.hdf5 --n N --seed S [options]``.

    ``prog`` names the command in its usage line (``datasets.py synthetic``).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prevalence = parse_prevalence(args.prevalence)
    path = write_synthetic(args.output, args.n, args.seed, prevalence, not args.no_noise,
                           args.short_fraction, args.first_exam_id, progress=not args.quiet)
    counts = ", ".join(f"{name} {p:.1%}" for name, p in prevalence.items())
    print(f"wrote {args.n} synthetic exams to {path} (seed {args.seed}; prevalence {counts})")
    return 0


def cli():
    """Console entry point: ``main`` with ECGInputError reported as a one-line error."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
