"""The project's single source of truth: ECG data contract, class names, shared errors.

Every script imports its constants from here. This module is deliberately free of
TensorFlow/Keras so that light-weight tools (figures, conversion, synthetic data)
import it in milliseconds.
"""

import contextlib
import os
import sys
import tempfile

# --- The data contract -------------------------------------------------------------
CLASSES = ("1dAVb", "RBBB", "LBBB", "SB", "AF", "ST")
"""Diagnoses, in the order of the model's six outputs."""

LEADS = ("DI", "DII", "DIII", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""Lead names, in the order of the last axis of a tracing."""

SAMPLING_RATE = 400
"""Samples per second (Hz)."""

N_SAMPLES = 4096
"""Samples per tracing (10.24 s at 400 Hz); shorter recordings are zero-padded on both sides."""

N_LEADS = len(LEADS)
N_CLASSES = len(CLASSES)

UNITS_PER_MV = 2.0
"""Tracing units per millivolt: the original study's amplitude scale, 1 mV = 2 units.

Every file this project writes is at this scale and says so (``ecgcode.data.scale``), and
every model it trains records the scale of the data it learned from. The evidence, since
the original study's README says "scale 1e-4V" (10 units per mV) in its first clause:

* its second clause ("if the signal is in V it should be multiplied by 1000") gives mV,
  and the author answers in antonior92/automatic-ecg-diagnosis issue #3: "Just make sure
  your ECG is scaled as millivolts";
* the authors' preprocessing repository (antonior92/ecg-preprocessing, README, "Available
  datasets in HDF5") says CODE-15% and SaMi-Trop "were obtained by something equivalent
  to ``generate_h5.py --scale 2``", from WFDB signals in mV: stored value = 2 x mV;
* users who measured CODE-15% (antonior92/ecg-age-prediction issues #1 and #5) found
  amplitudes about twice those of other datasets in mV, and a public ECG foundation-model
  pipeline calibrated CODE-15% at 0.4694 mV per unit (2.1 units per mV);
* nothing supports 10 units per mV except the literal "1e-4V".

CODE-test (``ecg_tracings.hdf5``) came from the same pipeline and is believed to be at the
same scale; no source says so explicitly. Where a file or model records no scale, the
user states it with ``--units-per-mv`` (``docs/data-formats.md``, "Amplitude scale").
"""

LEGACY_UNITS_PER_MV = 10.0
"""The scale of files and models written by earlier versions of this project (1e-4 V:
1 mV = 10 units), recognised by their ``units``/``unit_volts`` attributes (files) or by
project metadata without a recorded scale (models)."""

INPUT_SHAPE = (N_SAMPLES, N_LEADS)

DEFAULT_DATASET_NAME = "tracings"
"""Name of the signal dataset inside a CODE-style HDF5 file."""

PAPER_THRESHOLDS = dict(zip(CLASSES, (0.124, 0.07, 0.05, 0.278, 0.390, 0.174)))
"""Per-class decision thresholds of the original study (chosen on its validation set);
a score strictly greater than the threshold is a positive."""

# --- Where the public data live ----------------------------------------------------
CODE_TEST_DOI = "10.5281/zenodo.3625006"
PUBLISHED_WEIGHTS_DOI = "10.5281/zenodo.3625017"
CODE15_DOI = "10.5281/zenodo.4916206"

CODE_TEST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evaluation", "code_test")
"""The CODE-test annotations and the original network's scores, shipped inside the package
(``annotations/*.csv``, ``attributes.csv``, ``dnn_predicts/``; CC BY 4.0, sources and
contents in its README.md): the one place every user of these files finds them."""


# --- Errors and safe output ---------------------------------------------------------
class ECGInputError(ValueError):
    """Bad input from the user.

    The message is a single line naming the file, the problem and the fix; the
    command-line tools print it and exit with status 2, without a traceback.
    """


def fail(message, status=2):
    """Print a one-line error to stderr and exit with ``status`` (2 by default)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def first_line(error, limit=None):
    """The first line of an exception's message (its type name when empty), for one-line errors.

    Parameters
    ----------
    error : BaseException
    limit : int, optional
        Cut the line to at most this many characters.
    """
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line[:limit] if limit else line


def plain(value):
    """A value as a user should read it in a message: ``np.float64(2.0)`` as ``2``.

    NumPy scalars become Python numbers, whole floats lose their ``.0``, other floats use
    the shortest ``g`` form, and everything else (text, None) its ``repr``.
    """
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return repr(value)


def run_cli(main_function, argv=None):
    """Run a command-line ``main_function(argv)``, turning ECGInputError into exit 2.

    Parameters
    ----------
    main_function : callable
        Takes ``argv`` (list of str or None) and returns an exit status or None.
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status.
    """
    try:
        status = main_function(argv)
    except ECGInputError as error:
        fail(first_line(error))
    return 0 if status is None else int(status)


@contextlib.contextmanager
def atomic_output(path, suffix=None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    A crash or exception inside the block removes the temporary file, so ``path``
    is never left partial and an earlier good file at ``path`` is never destroyed.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.
    suffix : str, optional
        Suffix of the temporary file (defaults to the destination's extension, which
        some writers, e.g. Keras, require).

    Yields
    ------
    str
        The temporary path to write to.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    handle, tmp_path = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}"
    )
    os.close(handle)
    os.remove(tmp_path)  # writers such as h5py and Keras create the file themselves
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
