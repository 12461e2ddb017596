"""Telling apart the ways a collection's leads can be wrong, each with its fix.

A failed Einthoven check (II = I + III) alone does not say what went wrong. Before
blaming the lead order, these checks look for the other causes, on tracings ``x``
(k, 4096, 12), at any amplitude scale, with all-zero (padding) records removed:

* **a lead missing or flat**: a lead whose peak-to-peak amplitude is below
  ``FLAT_FRACTION`` of the record's median lead in most records (zero-filled or
  disconnected);
* **leads normalised independently**: all twelve leads of a record have the same
  peak-to-peak amplitude (or standard deviation) within ``EQUAL_TOLERANCE``, which no
  real ECG does (Einthoven's law then cannot hold and the amplitudes are not physical;
  seen in LUDB as distributed);
* **leads swapped**: a swap of two leads that makes the limb-lead relations hold again
  names the leads.

Units that are off for the whole collection are ``scale_warnings``' job
(``ecgcode.data.inspection``).
"""

import itertools

import numpy as np

from ecgcode.common import LEADS

FLAT_FRACTION = 0.02
"""A lead below this fraction of the record's median peak-to-peak amplitude is flat."""

EQUAL_TOLERANCE = 0.02
"""Largest relative spread (max/min - 1) of the leads' amplitudes of a normalised record."""

MAJORITY = 0.5
"""Fraction of sampled records a pattern must reach to be reported."""

RELATION_TOLERANCE = 0.2
"""Largest relative residual of a limb-lead relation that holds (they are exact)."""

SEARCH_RECORDS = 100
"""Records used to search for the swap that explains a failed Einthoven check."""

_INDEX = {name: i for i, name in enumerate(LEADS)}
LIMB = LEADS[:6]


def _nonempty(x):
    return x[np.any(x != 0, axis=(1, 2))]


def flat_leads(x):
    """Leads flat (zero or constant) in most records of ``x`` (k, 4096, 12); a list of names."""
    x = _nonempty(x)
    if len(x) == 0:
        return []
    ptp = np.ptp(x, axis=1).astype(np.float64)  # (k, 12)
    reference = np.median(ptp, axis=1, keepdims=True) + 1e-12  # (k, 1)
    flat = np.mean(ptp < FLAT_FRACTION * reference, axis=0) > MAJORITY  # (12,)
    return [LEADS[i] for i in np.flatnonzero(flat)]


def normalised_fraction(x):
    """Fraction of records of ``x`` whose twelve leads have equal amplitude (ptp or std)."""
    x = _nonempty(x).astype(np.float64)
    if len(x) == 0:
        return 0.0
    equal = np.zeros(len(x), dtype=bool)
    for spread in (np.ptp(x, axis=1), x.std(axis=1)):  # (k, 12) each
        ratio = spread.max(axis=1) / (spread.min(axis=1) + 1e-12)
        equal |= ratio - 1 <= EQUAL_TOLERANCE
    return float(np.mean(equal))


def limb_relations_hold(x):
    """(k,) bool: records whose limb leads obey Einthoven's and Goldberger's relations."""
    lead = {name: x[:, :, _INDEX[name]].astype(np.float64) for name in LIMB}
    residuals = (
        lead["DII"] - lead["DI"] - lead["DIII"],
        lead["aVR"] + (lead["DI"] + lead["DII"]) / 2,
        lead["aVL"] - (lead["DI"] - lead["DII"] / 2),
        lead["aVF"] - (lead["DII"] - lead["DI"] / 2),
    )
    scale = np.linalg.norm(lead["DII"], axis=1) + np.linalg.norm(lead["DI"], axis=1) + 1e-9
    return np.all([np.linalg.norm(r, axis=1) / scale <= RELATION_TOLERANCE / 2
                   for r in residuals], axis=0)


def explain_limb_failure(x):
    """What undoes a failed limb-lead check in most records of ``x``; a phrase, or None.

    Tries every swap of two leads that involves a limb lead, on up to ``SEARCH_RECORDS``
    records, and returns the first that makes the relations hold. (A left/right arm
    electrode reversal keeps Einthoven's law; the aVR check finds it.)
    """
    x = _nonempty(x)[:SEARCH_RECORDS]
    if len(x) == 0:
        return None
    for a, b in itertools.combinations(range(len(LEADS)), 2):
        if LEADS[a] not in LIMB and LEADS[b] not in LIMB:
            continue  # swapping two precordial leads cannot break a limb relation
        order = list(range(len(LEADS)))
        order[a], order[b] = b, a
        if np.mean(limb_relations_hold(x[:, :, order])) > MAJORITY:
            return f"leads {LEADS[a]} and {LEADS[b]} look swapped"
    return None


def lead_problem_warnings(x):
    """Warnings for flat leads and independently normalised leads of ``x`` (k, 4096, 12).

    Returns
    -------
    (list of str, bool)
        The warnings, and whether they make the lead-order checks meaningless (then the
        caller skips them, and the amplitude-scale check too for normalised leads).
    """
    warnings = []
    flat = flat_leads(x)
    if flat:
        warnings.append(
            f"lead(s) {', '.join(flat)} are flat (zero or constant) in most sampled records: "
            "missing or disconnected; fix: convert from a source that has them (datasets.py "
            "convert derives missing limb leads from two others) or drop those records"
        )
    fraction = normalised_fraction(x)
    if fraction > MAJORITY:
        warnings.append(
            f"all 12 leads have the same amplitude in {fraction:.0%} of sampled records: the "
            "leads were normalised independently, so the amplitudes are not physical (not "
            "mV times a scale) and Einthoven's law cannot hold; fix: use the unnormalised signals of "
            "the source, converted with `python datasets.py convert`"
        )
    return warnings, fraction > MAJORITY or any(name in LIMB for name in flat)
