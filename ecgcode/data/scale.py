"""The amplitude scale: how many tracing units make one millivolt, for files and models.

The one home of the scale (the constant itself is ``ecgcode.common.UNITS_PER_MV``, the
original study's 1 mV = 2 units; its docstring gives the evidence). No TensorFlow.

What records a scale, and the rules for what records none:

* a tracings file this project writes: the attribute ``units_per_mv`` of its signal dataset
  (and of the file), with a readable ``units`` text (:func:`declare_scale`);
* a file of an earlier version of this project: ``units`` "1e-4 V" / ``unit_volts`` 1e-4,
  hence ``LEGACY_UNITS_PER_MV`` (10);
* a CODE-style file with no such attribute (CODE-15%, CODE-test, anyone's own file): the
  original scale, unless the user states another with ``--units-per-mv K``;
* a model this project writes: ``units_per_mv`` next to its class names
  (``ecgcode.model.metadata``), copied into every export's metadata;
* a model with class names but no scale (an earlier version of this project): 10;
* a model with no project metadata at all (the original study's published weights): the
  original scale, unless the user states another (``--model-units-per-mv K``).

:func:`bring_to_scale` makes a collection read at a model's scale (``RowReader`` multiplies
each file's rows by its gain) and says, one line per file, what was rescaled.
:func:`scale_warning` estimates a file's scale from its QRS amplitudes and warns when it
is 3x or more away from the declared one (about 2.2x for fewer than 10 records).
"""

import dataclasses
import math

import numpy as np

from ecgcode.common import LEGACY_UNITS_PER_MV, SAMPLING_RATE, UNITS_PER_MV, ECGInputError, plain

SCALE_ATTRIBUTE = "units_per_mv"
"""Attribute (HDF5) or key (model info, export metadata) holding the scale."""

LEGACY_UNIT_VOLTS = 1e-4
"""The ``unit_volts`` attribute of files written by earlier versions of this project."""

ORIGINAL = "the original study's scale"
"""How the original scale is named in messages."""


@dataclasses.dataclass(frozen=True)
class Scale:
    """An amplitude scale and where it comes from.

    Attributes
    ----------
    units_per_mv : float
        Tracing units per millivolt.
    source : str
        Why this value, for messages: ``"recorded"``, ``"--units-per-mv"``,
        ``"--model-units-per-mv"``, ``"assumed"`` (nothing recorded: the original scale),
        ``"legacy"`` (an earlier version of this project, 1e-4 V) or ``"original"`` (the
        project's own choice: a new training run).
    """

    units_per_mv: float
    source: str

    def describe(self):
        """``"2 units per mV (recorded)"`` and the like, for messages."""
        reason = {
            "recorded": "recorded",
            "--units-per-mv": "given by --units-per-mv",
            "--model-units-per-mv": "given by --model-units-per-mv",
            "assumed": f"none recorded: {ORIGINAL} assumed",
            "legacy": "an earlier version of this project's 1e-4 V",
            "original": ORIGINAL,
        }.get(self.source, self.source)
        return f"{plain(float(self.units_per_mv))} units per mV ({reason})"


def units_text(units_per_mv=UNITS_PER_MV):
    """The readable ``units`` attribute: ``"mV x 2 (1 mV = 2 units)"``."""
    value = plain(float(units_per_mv))
    return f"mV x {value} (1 mV = {value} units)"


def declare_scale(attrs, units_per_mv=UNITS_PER_MV):
    """Write the scale into HDF5 attributes ``attrs`` (a dataset's or a file's)."""
    attrs[SCALE_ATTRIBUTE] = float(units_per_mv)
    attrs["units"] = units_text(units_per_mv)


def check_units_per_mv(value, option="--units-per-mv"):
    """A positive, finite scale as float, else a one-line ECGInputError naming ``option``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ECGInputError(f"{option} {value}: give the tracing units per millivolt, a "
                            f"positive number (the original study's scale is "
                            f"{plain(UNITS_PER_MV)}; this project's earlier 1e-4 V is "
                            f"{plain(LEGACY_UNITS_PER_MV)})")
    return number


def recorded_scale(*attribute_sets):
    """The scale recorded in HDF5 attributes, as a :class:`Scale`, or None.

    Each set (the signal dataset's attributes, then the file's) is looked at in turn:
    ``units_per_mv`` is the scale; ``unit_volts`` 1e-4 or ``units`` "1e-4 V" (earlier
    versions of this project) mean 10 units per mV.
    """
    for attrs in attribute_sets:
        if SCALE_ATTRIBUTE in attrs:
            return Scale(float(np.asarray(attrs[SCALE_ATTRIBUTE]).item()), "recorded")
    for attrs in attribute_sets:
        volts = attrs.get("unit_volts")
        units = attrs.get("units")
        units = units.decode() if isinstance(units, bytes) else units
        if (volts is not None and np.isclose(float(np.asarray(volts).item()),
                                             LEGACY_UNIT_VOLTS)) or units == "1e-4 V":
            return Scale(LEGACY_UNITS_PER_MV, "legacy")
    return None


def file_scale(path, recorded, given=None):
    """The scale of tracings file ``path``: recorded, else ``given``, else the original.

    Parameters
    ----------
    path : str
    recorded : Scale or None
        From :func:`recorded_scale`.
    given : float, optional
        ``--units-per-mv``: the scale of files that record none.

    Returns
    -------
    (Scale, str or None)
        The scale, and a note when ``given`` was ignored because the file records another.
    """
    scale, note = _recorded_or_given(path, recorded, given, "--units-per-mv", "files")
    return scale or Scale(UNITS_PER_MV, "assumed"), note


def _recorded_or_given(path, recorded, given, option, kind):
    """(the recorded scale, else ``given`` as a Scale, else None; a note when ``given`` is
    ignored because ``kind`` (files, models) that record a scale keep it)."""
    given = None if given is None else check_units_per_mv(given, option)
    if recorded is None:
        return (None if given is None else Scale(given, option)), None
    note = None
    if given is not None and not np.isclose(given, recorded.units_per_mv):
        note = (f"{path}: records {recorded.describe()}; {option} {plain(given)} applies only "
                f"to {kind} that record none")
    return recorded, note


def model_scale(path, stored, project_metadata, given=None):
    """The scale a model expects: recorded, else ``given``, else by who wrote it.

    Parameters
    ----------
    path : str
        The model (for the note).
    stored : float or None
        ``units_per_mv`` stored with the model or in its export's metadata.
    project_metadata : bool
        The model holds this project's metadata (class names): without a stored scale it
        was written by an earlier version, at 10 units per mV.
    given : float, optional
        ``--model-units-per-mv``: the scale of a model that records none.

    Returns
    -------
    (Scale, str or None)
        The scale, and a note when ``given`` was ignored.
    """
    recorded = None if stored is None else Scale(float(stored), "recorded")
    scale, note = _recorded_or_given(path, recorded, given, "--model-units-per-mv", "models")
    if scale is not None:
        return scale, note
    if project_metadata:
        return Scale(LEGACY_UNITS_PER_MV, "legacy"), None
    return Scale(UNITS_PER_MV, "assumed"), None


def bring_to_scale(collection, target, who="the model"):
    """``collection`` read at scale ``target``, and one note per rescaled file.

    Parameters
    ----------
    collection : ecgcode.data.hdf5.Collection
        With its files' scales (``collection.scales``).
    target : Scale
        The scale to read at (a model's, or the original for training from scratch).
    who : str
        What expects ``target``, for the notes (``"the model"``, ``"the training run"``).

    Returns
    -------
    (Collection, list of str)
        A copy whose ``gains`` multiply each file's rows; the notes name each rescaled
        file, its scale, the factor and ``target``.
    """
    gains, notes = [], []
    for path, scale in zip(collection.paths, collection.scales):
        gain = float(target.units_per_mv) / float(scale.units_per_mv)
        gain = 1.0 if np.isclose(gain, 1.0) else gain
        gains.append(gain)
        if gain != 1.0:
            notes.append(f"{path}: rescaled by x{gain:.4g}, from {scale.describe()} to "
                         f"{target.describe()}, which {who} expects")
    return dataclasses.replace(collection, gains=tuple(gains)), notes


def read_units_per_mv(collection):
    """The scale ``collection`` is read at (its files' scales times their gains)."""
    gains = collection.gains or [1.0] * len(collection.paths)
    read = {round(scale.units_per_mv * gain, 9) for scale, gain in zip(collection.scales, gains)}
    if len(read) != 1:
        raise ValueError(f"files read at several scales {sorted(read)}: bring_to_scale first")
    return float(read.pop())


# --- Telling a wrong scale from a right one -------------------------------------------
REFERENCE_QRS_MV = 2.8
"""Typical peak-to-peak amplitude of the largest QRS complex over the 12 leads of an adult
ECG, in mV (usually a precordial lead; about 1.3-6 mV). Measured on the 71 real records of
``../shared/ecg-samples`` (70 CinC 2021 records and the PTB record s0010_re, in mV): median
2.4 mV, range 1.3-6.0 mV, geometric middle of the range 2.8 mV."""

WARN_FACTOR = 3.0
"""A file's estimate this many times or more away from its declared scale warns.

Over many records the median amplitude is steady (the 70 shared CinC records: 0.84x of
the reference), so a file in mV (2x below the original scale) stays silent while x5, x10
and /5 are named. Scales 2x apart are not flagged: populations and devices differ that
much."""

WARN_FACTOR_FEW = 5 ** 0.5
"""The threshold for fewer than ``MANY_RECORDS`` records (one exam): about 2.2x.

Single adults' amplitudes span about 4.5x (the shared records: 0.47-2.1x of the
reference), so the threshold lies geometrically halfway between 1 and 5: every shared
record at the right scale stays silent and every one at x5, x10 or /5 warns; one at x2
or /2 may warn, and the factor it names is only good to about 2x."""

MANY_RECORDS = 10
"""Records from which a file's median amplitude is judged with ``WARN_FACTOR``."""

WINDOW_SECONDS = 1.0
"""The signal is cut into windows this long; each window's peak-to-peak amplitude holds
about one beat's QRS complex, and the median over windows ignores noise bursts."""


def qrs_amplitudes(x):
    """The largest-lead QRS amplitude of each record, in tracing units (NaN for empty ones).

    Parameters
    ----------
    x : numpy.ndarray
        (k, n_samples, 12) tracings at 400 Hz, zero-padded on both sides.

    Returns
    -------
    numpy.ndarray
        (k,) per record: the median over 1-s windows of the signal (padding excluded) of
        the largest peak-to-peak amplitude over the 12 leads.
    """
    window = int(WINDOW_SECONDS * SAMPLING_RATE)
    amplitudes = np.full(len(x), np.nan)
    for index, record in enumerate(x):
        active = np.flatnonzero(np.any(record != 0, axis=1))
        if len(active) < window:
            continue
        signal = record[active[0]:active[-1] + 1]
        n_windows = len(signal) // window
        pieces = signal[: n_windows * window].reshape(n_windows, window, -1)  # (w, 400, 12)
        ptp = pieces.max(axis=1) - pieces.min(axis=1)  # (w, 12)
        amplitudes[index] = float(np.median(ptp.max(axis=1)))
    return amplitudes


def estimate_units_per_mv(x):
    """Estimated tracing units per mV of tracings ``x`` (k, n, 12), or NaN if all are empty.

    The median over records of :func:`qrs_amplitudes`, divided by ``REFERENCE_QRS_MV``:
    robust for a file of many records; one record's estimate lies within about 2x of the
    truth (adults' amplitudes vary that much).
    """
    amplitudes = qrs_amplitudes(x)
    amplitudes = amplitudes[np.isfinite(amplitudes) & (amplitudes > 0)]
    if len(amplitudes) == 0:
        return math.nan
    return float(np.median(amplitudes)) / REFERENCE_QRS_MV


def likely_factor(ratio):
    """``ratio`` rounded to the nearest of 1, 2, 5 x a power of ten (in log scale)."""
    exponent = math.floor(math.log10(ratio))
    candidates = [m * 10.0**e for e in (exponent, exponent + 1) for m in (1, 2, 5)]
    return min(candidates, key=lambda c: abs(math.log(c / ratio)))


def scale_warning(x, declared, name):
    """A warning when the QRS amplitudes of ``x`` do not fit scale ``declared``, else None.

    Parameters
    ----------
    x : numpy.ndarray
        (k, n, 12) tracings as stored (not rescaled).
    declared : Scale
        The scale the file records, or is assumed or said to have.
    name : str
        The file, named in the warning.

    Returns
    -------
    str or None
        Names the likely factor, the likely scale and the fix.
    """
    estimate = estimate_units_per_mv(x)
    if not math.isfinite(estimate):
        return None
    ratio = estimate / declared.units_per_mv
    limit = WARN_FACTOR if len(x) >= MANY_RECORDS else WARN_FACTOR_FEW
    if 1 / limit < ratio < limit:
        return None
    factor = likely_factor(ratio)
    likely = declared.units_per_mv * factor
    size = f"{plain(factor)}x too large" if factor > 1 else f"{plain(1 / factor)}x too small"
    typical = REFERENCE_QRS_MV * declared.units_per_mv
    return (f"{name}: QRS amplitudes are about {size} for {declared.describe()} (largest-lead "
            f"QRS {estimate * REFERENCE_QRS_MV:.3g} units, typically {typical:.3g}); the values "
            f"look like {plain(likely)} units per mV; fix: state it with --units-per-mv "
            f"{plain(likely)}, or convert the source with `python datasets.py convert` "
            f"(which writes {plain(UNITS_PER_MV)} units per mV)")
