"""Summarise an ECG collection and warn when its scale or lead order looks wrong.

No TensorFlow: used by ``python datasets.py inspect`` and by ``predict.py``'s input checks.

Public API
----------
lead_statistics(x)                 -> per-lead amplitudes in mV of tracings in mV
lead_order_warnings(x)             -> warnings when leads are flat, normalised or swapped
signal_warnings(x, scale, name)    -> all of them: the amplitude scale's check
                                      (``ecgcode.data.scale.scale_warning``, unless the leads
                                      are normalised) and the leads'
collection_warnings(collection, rows) -> signal_warnings of a few records, each file's scale
                                      checked against its own declared scale
inspect_collection(paths, ...)     -> prints a summary, returns the warnings

The ``inspect`` command line is ``ecgcode.cli.inspect``.
"""

import dataclasses
import sys

import numpy as np

from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    LEADS,
    N_LEADS,
    N_SAMPLES,
    UNITS_PER_MV,
)
from ecgcode.data.hdf5 import open_collection
from ecgcode.data.labels import LabelError, load_labels
from ecgcode.data.leadchecks import (
    MAJORITY,
    explain_limb_failure,
    lead_problem_warnings,
    normalised_fraction,
)
from ecgcode.data.rows import RowReader, check_finite
from ecgcode.data.scale import Scale, scale_warning

EINTHOVEN_TOLERANCE = 0.2
"""Largest |II - I - III| / |II| of a record that obeys Einthoven's law (it is exact)."""

AVR_MIN_RECORDS = 10
"""Fewest non-empty sampled records for the aVR-polarity check.

A positive aVR is rare but real in single patients (e.g. infero-lateral infarction, as in
the PTB record s0010_re), so only a collection-wide pattern suggests reversed electrodes.
"""

AVR_MIN_FRACTION = 0.8
"""Fraction of sampled records with a positive aVR peak that triggers the warning."""


# --- Statistics and warnings --------------------------------------------------------
def _sample_rows(n, max_records, seed=0):
    if n <= max_records:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_records, replace=False))


def lead_statistics(x):
    """Per-lead amplitude statistics of tracings ``x`` (k, 4096, 12) in mV.

    All-zero records (padding) are ignored.

    Returns
    -------
    dict
        ``ptp``: (12,) median over records of the peak-to-peak amplitude;
        ``abs_max``: (12,) 99th percentile over records of the largest |value|;
        ``std``: (12,) median over records of the standard deviation; all in mV;
        ``records``: records used.
    """
    x = x[np.any(x != 0, axis=(1, 2))]  # (k', 4096, 12) in mV
    if len(x) == 0:
        nan = np.full(N_LEADS, np.nan)
        return {"ptp": nan, "abs_max": nan, "std": nan, "records": 0}
    return {
        "ptp": np.median(x.max(axis=1) - x.min(axis=1), axis=0),
        "abs_max": np.percentile(np.abs(x).max(axis=1), 99, axis=0),
        "std": np.median(x.std(axis=1), axis=0),
        "records": len(x),
    }


def lead_order_warnings(x):
    """Warnings when limb-lead relations fail, suggesting swapped or misordered leads.

    Checks, on tracings ``x`` (k, 4096, 12), Einthoven's law II = I + III (exact, so
    checked on any number of records) and that aVR's largest deflection is mostly negative
    (checked only on at least ``AVR_MIN_RECORDS`` non-empty records, warning when at least
    ``AVR_MIN_FRACTION`` of them are positive: single abnormal patients have positive aVR).
    All-zero records (padding) are ignored.

    Returns
    -------
    list of str
    """
    x = x[np.any(x != 0, axis=(1, 2))]
    if len(x) == 0:
        return []
    warnings, skip_order_checks = lead_problem_warnings(x)  # flat or normalised leads
    if skip_order_checks:
        return warnings
    lead = {name: x[:, :, i].astype(np.float64) for i, name in enumerate(LEADS)}
    residual = np.linalg.norm(lead["DII"] - lead["DI"] - lead["DIII"], axis=1)
    scale = np.linalg.norm(lead["DII"], axis=1) + 1e-9
    violated = float(np.mean(residual / scale > EINTHOVEN_TOLERANCE))
    if violated > 0.5:
        cause = explain_limb_failure(x) or "the limb leads look swapped or misordered"
        warnings.append(
            f"Einthoven's law II = I + III fails in {violated:.0%} of sampled records: "
            f"{cause}; fix: reorder the leads to {', '.join(LEADS)}"
        )
    if len(x) < AVR_MIN_RECORDS:
        return warnings
    avr = lead["aVR"] - np.median(lead["aVR"], axis=1, keepdims=True)
    peak_sign = np.sign(avr[np.arange(len(avr)), np.abs(avr).argmax(axis=1)])
    positive = float(np.mean(peak_sign > 0))
    if positive >= AVR_MIN_FRACTION:
        warnings.append(
            f"aVR's largest deflection is positive in {positive:.0%} of {len(x)} sampled "
            "records (normally negative): arm electrodes reversed or leads misordered"
        )
    return warnings


def signal_warnings(x, scale=None, name="the tracings"):
    """Every warning about tracings ``x`` (k, 4096, 12): scale, flat, normalised, lead order.

    Parameters
    ----------
    x : numpy.ndarray
        Tracings as stored, at scale ``scale``.
    scale : ecgcode.data.scale.Scale, optional
        Their declared (or assumed) amplitude scale; default the original study's.
    name : str
        The file(s), named in the scale warning.

    The amplitude-scale check is skipped when the leads were normalised independently
    (their amplitudes then say nothing about the units).
    """
    scale = scale or Scale(UNITS_PER_MV, "assumed")
    return _sample_warnings(x, [(np.ones(len(x), dtype=bool), scale, name)])


def collection_warnings(collection, rows, x=None):
    """:func:`signal_warnings` of ``rows`` of ``collection``, each file's scale checked alone.

    Each file's sampled rows are checked against that file's declared scale, and the lead
    checks run on all of them.

    Parameters
    ----------
    collection : Collection
    rows : array_like of int
    x : numpy.ndarray, optional
        Those rows as stored (:func:`read_as_stored`), when the caller has read them.

    Returns
    -------
    list of str
    """
    x = read_as_stored(collection, rows) if x is None else x
    files = collection.locate(rows)[0]
    groups = [(files == number, collection.scales[number], collection.paths[number])
              for number in np.unique(files)]
    return _sample_warnings(x, groups)


def read_as_stored(collection, rows):
    """(k, 4096, 12) float32: ``rows`` of ``collection`` as stored, whatever its gains."""
    reader = RowReader(dataclasses.replace(collection, gains=()))
    try:
        return reader.read(np.asarray(rows, dtype=np.int64))
    finally:
        reader.close()


def _sample_warnings(x, groups):
    """The warnings of tracings ``x``; ``groups``: (row mask, declared Scale, name) of each
    file, whose rows' amplitude scale is checked alone (unless the leads are normalised)."""
    finite = np.isfinite(x).all(axis=(1, 2))
    with np.errstate(over="ignore", invalid="ignore"):  # damaged files: huge finite values
        if not np.any(x[finite]):
            return ["all sampled tracings are zero"]
        warnings = []
        if normalised_fraction(x[finite]) <= MAJORITY:
            for picked, scale, name in groups:
                rows = x[picked & finite]
                warning = scale_warning(rows, scale, name) if len(rows) else None
                warnings += [warning] * bool(warning)
        return warnings + lead_order_warnings(x[finite])


def inspect_collection(
    paths,
    labels_csv=None,
    dataset_name=DEFAULT_DATASET_NAME,
    max_records=1000,
    scan=True,
    file=None,
    units_per_mv=None,
):
    """Print a summary of a collection; return the list of warnings.

    Parameters
    ----------
    paths : paths
    labels_csv : str, optional
    dataset_name : str
    max_records : int
        Records sampled for amplitude statistics and lead-order checks.
    scan : bool
        Scan every record for NaN/inf (raises NonFiniteError after printing).
    file : file-like, optional
        Where to print (stdout).
    units_per_mv : float, optional
        The amplitude scale of files that record none (``--units-per-mv``).
    """
    out = file or sys.stdout
    collection = open_collection(paths, dataset_name, units_per_mv)
    for path, size, dtype, scale in zip(collection.paths, collection.sizes, collection.dtypes,
                                        collection.scales):
        shape = f"({size}, {N_SAMPLES}, {N_LEADS})"
        print(f"{path}: {size} tracings, shape {shape}, {dtype}, {scale.describe()}", file=out)
    for note in collection.notes:
        print(f"note: {note}", file=out)
    print(
        f"total: N = {collection.n}, exam_id: {'yes' if collection.exam_ids is not None else 'no'}",
        file=out,
    )
    try:
        table = load_labels(collection, labels_csv, allow_missing=True)
    except LabelError as error:
        if labels_csv is not None:
            raise
        print(f"labels: none ({error})", file=out)
    else:
        labelled = table.labels[table.matched]
        print(f"labels from {table.source}: {len(labelled)} labelled tracings", file=out)
        for name, prevalence in zip(CLASSES, labelled.mean(axis=0)):
            print(f"  {name:6s} prevalence {prevalence:7.2%}", file=out)
    sample = _sample_rows(collection.n, max_records)
    stored = read_as_stored(collection, sample)  # (k, 4096, 12), read once
    scales = np.array([scale.units_per_mv for scale in collection.scales], dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # damaged files: huge finite values
        x = stored / scales[collection.locate(sample)[0]][:, None, None]  # mV, by each file
        finite = np.isfinite(x).all(axis=(1, 2))
        stats = lead_statistics(x[finite])
    print(
        f"amplitudes in mV over {stats['records']} sampled non-empty records "
        "(median peak-to-peak / 99th pct of max |x| / median std):",
        file=out,
    )
    for i, name in enumerate(LEADS):
        print(
            f"  {name:4s} {stats['ptp'][i]:8.3f} {stats['abs_max'][i]:8.3f} {stats['std'][i]:8.3f}",
            file=out,
        )
    warnings = collection_warnings(collection, sample, stored)
    for warning in warnings:
        print(f"WARNING: {warning}", file=out)
    if scan:
        check_finite(collection)
        print("no NaN/inf values", file=out)
    return warnings
