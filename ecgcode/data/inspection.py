"""Summarise an ECG collection and warn when its scale or lead order looks wrong.

No TensorFlow: used by ``python datasets.py inspect`` and by ``predict.py``'s input checks.

Public API
----------
lead_statistics(x)                 -> per-lead amplitudes in mV
scale_warnings(stats)              -> warnings when values do not look like 1e-4 V
lead_order_warnings(x)             -> warnings when leads are flat, normalised or swapped
signal_warnings(x)                 -> all of them (the scale check unless leads are normalised)
inspect_collection(paths, ...)     -> prints a summary, returns the warnings
main(argv)                         -> the ``inspect`` command line
"""

import argparse
import sys

import numpy as np

from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    LEADS,
    N_LEADS,
    N_SAMPLES,
    UNITS_PER_MV,
    run_cli,
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
    """Per-lead amplitude statistics, in mV, of tracings ``x`` (k, 4096, 12) in 1e-4 V.

    All-zero records (padding) are ignored.

    Returns
    -------
    dict
        ``ptp``: (12,) median over records of the peak-to-peak amplitude;
        ``abs_max``: (12,) 99th percentile over records of the largest |value|;
        ``std``: (12,) median over records of the standard deviation; all in mV;
        ``records``: records used.
    """
    x = x[np.any(x != 0, axis=(1, 2))] / UNITS_PER_MV  # (k', 4096, 12) in mV
    if len(x) == 0:
        nan = np.full(N_LEADS, np.nan)
        return {"ptp": nan, "abs_max": nan, "std": nan, "records": 0}
    return {
        "ptp": np.median(x.max(axis=1) - x.min(axis=1), axis=0),
        "abs_max": np.percentile(np.abs(x).max(axis=1), 99, axis=0),
        "std": np.median(x.std(axis=1), axis=0),
        "records": len(x),
    }


def scale_warnings(stats):
    """Warnings when the typical amplitude does not look like 1e-4 V (1 mV = 10 units)."""
    if stats["records"] == 0:
        return ["all sampled tracings are zero"]
    typical = float(np.median(stats["ptp"]))  # mV; about 1-3 mV for a real ECG
    if typical < 0.3:
        return [
            (
                f"typical peak-to-peak amplitude is {typical:.3g} mV, about 10x too small: "
                "the values look like mV; fix: multiply by 10 (tracings are in 1e-4 V, 1 mV = 10 "
                "units)"
            )
        ]
    if typical > 30:
        return [
            (
                f"typical peak-to-peak amplitude is {typical:.3g} mV, far too large: the "
                "values look like raw ADC counts or uV; fix: divide by the gain (convert with "
                "`python datasets.py convert`) so that 1 mV = 10 units"
            )
        ]
    return []


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


def signal_warnings(x):
    """Every warning about tracings ``x`` (k, 4096, 12): scale, flat, normalised, lead order.

    The amplitude-scale check is skipped when the leads were normalised independently
    (their amplitudes then say nothing about the units).
    """
    finite = x[np.isfinite(x).all(axis=(1, 2))]
    with np.errstate(over="ignore", invalid="ignore"):  # damaged files: huge finite values
        normalised = normalised_fraction(finite) > MAJORITY
        scale = [] if normalised else scale_warnings(lead_statistics(finite))
        return scale + lead_order_warnings(finite)


def inspect_collection(
    paths,
    labels_csv=None,
    dataset_name=DEFAULT_DATASET_NAME,
    max_records=1000,
    scan=True,
    file=None,
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
    """
    out = file or sys.stdout
    collection = open_collection(paths, dataset_name)
    for path, size, dtype in zip(collection.paths, collection.sizes, collection.dtypes):
        shape = f"({size}, {N_SAMPLES}, {N_LEADS})"
        print(f"{path}: {size} tracings, shape {shape}, {dtype}", file=out)
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
    x = RowReader(collection).read(sample)  # (k, 4096, 12)
    finite = np.isfinite(x).all(axis=(1, 2))
    with np.errstate(over="ignore", invalid="ignore"):
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
    warnings = signal_warnings(x[finite])
    for warning in warnings:
        print(f"WARNING: {warning}", file=out)
    if scan:
        check_finite(collection)
        print("no NaN/inf values", file=out)
    return warnings


def main(argv=None, prog=None):
    """The ``inspect`` command line (``python datasets.py inspect FILE... [options]``).

    ``prog`` names the command in its usage line (``datasets.py inspect``).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Summarise CODE-style HDF5 file(s): size, labels, amplitudes in mV; warn "
        "when the scale (1e-4 V expected) or the lead order looks wrong.",
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
    args = parser.parse_args(argv)
    inspect_collection(
        args.files, args.labels, args.dataset_name, args.max_records, scan=not args.no_scan
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
