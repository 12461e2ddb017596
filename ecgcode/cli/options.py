"""Options shared by several programs, each added to a program's parser by one function.

``--units-per-mv`` (train.py, predict.py, ``datasets.py inspect``, ``ecg-plot``), the
conversion options of non-HDF5 inputs (predict.py, validate.py) and ``--windows``
(predict.py, ``datasets.py convert``). Not a program itself.
"""

from ecgcode.common import LEGACY_UNITS_PER_MV, N_SAMPLES, UNITS_PER_MV, ECGInputError, plain


def add_units_option(parser, model=False):
    """Add ``--units-per-mv`` (and, with ``model``, ``--model-units-per-mv``) to ``parser``."""
    parser.add_argument(
        "--units-per-mv", type=float, metavar="K",
        help="amplitude scale of HDF5 inputs that record none: tracing units per mV "
        f"(default: the original study's, {plain(UNITS_PER_MV)}; this project's files record "
        "theirs, and earlier versions' 1e-4 V files are read as "
        f"{plain(LEGACY_UNITS_PER_MV)})")
    if model:
        parser.add_argument(
            "--model-units-per-mv", type=float, metavar="K",
            help="amplitude scale of a MODEL that records none (default: "
            f"{plain(UNITS_PER_MV)} for the original study's weights; models of earlier "
            f"versions of this project: {plain(LEGACY_UNITS_PER_MV)}); inputs are brought to "
            "the model's scale")


def add_conversion_options(parser):
    """Add ``--fs``, ``--units`` and ``--leads`` (for CSV/.npy inputs; override WFDB headers)."""
    # deferred: the converter imports scipy (0.55 s), which train.py's --help does not need
    from ecgcode.data.formats.convert import UNIT_CHOICES

    group = parser.add_argument_group(
        "converting non-HDF5 inputs (as `datasets.py convert`; needed for CSV and .npy only)")
    group.add_argument("--fs", type=float, help="sampling rate in Hz")
    group.add_argument("--units", help=f"signal units: {UNIT_CHOICES}")
    group.add_argument("--leads", type=lambda text: text.split(","), metavar="I,II,...",
                       help="comma-separated channel names")


def add_window_options(parser, what):
    """Add ``--windows`` and ``--window-stride SECONDS`` (``what``: where the windows go)."""
    # deferred: the converter imports scipy (0.55 s), which train.py's --help does not need
    from ecgcode.data.formats.convert import MAX_WINDOW_STRIDE_S

    parser.add_argument("--windows", action="store_true",
                        help=f"cut records longer than {MAX_WINDOW_STRIDE_S:g} s into "
                        f"{N_SAMPLES}-sample windows (one every stride, plus a final one ending "
                        "at the last sample; a shorter record: one padded window) instead of "
                        f"centre-cropping them: {what}")
    parser.add_argument("--window-stride", type=float, metavar="SECONDS",
                        help=f"seconds between window starts with --windows (default "
                        f"{MAX_WINDOW_STRIDE_S:g}: no overlap; at most {MAX_WINDOW_STRIDE_S:g})")


def window_stride_option(args):
    """The stride in samples of ``--windows``/``--window-stride``, or None without --windows.

    Raises
    ------
    ECGInputError
        A bad stride, or --window-stride without --windows.
    """
    # deferred: the converter imports scipy (0.55 s), which train.py's --help does not need
    from ecgcode.data.formats.convert import MAX_WINDOW_STRIDE_S, stride_samples

    if not args.windows:
        if args.window_stride is not None:
            raise ECGInputError("--window-stride: only used with --windows; fix: add --windows "
                                "or drop --window-stride")
        return None
    return stride_samples(MAX_WINDOW_STRIDE_S if args.window_stride is None
                          else args.window_stride)
