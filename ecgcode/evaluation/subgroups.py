"""Subgroups of the exams (age bands, sex, source database or site) and their measures.

An *attribute* is one text value per exam (``""`` where unknown): :func:`age_bands` and
:func:`sex_values` make them from ages and sex columns. :func:`subgroup_table` measures
every class in every subgroup (``ecgcode.evaluation.measures.score_table``), with
bootstrap intervals only where the subgroup has at least ``min_exams`` exams.
"""

import itertools

import numpy as np
import pandas as pd

from ecgcode.common import ECGInputError
from ecgcode.evaluation import metrics as em
from ecgcode.evaluation.measures import score_table

DEFAULT_AGE_EDGES = (40, 60, 80)
"""Age-band boundaries in years: <40, 40-59, 60-79, >=80."""

MIN_SUBGROUP_EXAMS = 30
"""Fewest exams of a subgroup for bootstrap intervals (fewer: point estimates only)."""


def parse_age_edges(text, option="--age-bands"):
    """Age-band boundaries from ``"40,60,80"``: increasing positive numbers."""
    try:
        edges = tuple(float(value) for value in str(text).split(","))
    except ValueError:
        edges = ()
    if not edges or any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
        raise ECGInputError(f"{option} {text!r}: give increasing ages in years, "
                            f"comma-separated, e.g. {option} 40,60,80")
    return edges


def age_bands(ages, edges=DEFAULT_AGE_EDGES):
    """The age band of each exam: ``"<40"``, ``"40-59"``, ..., ``">=80"``; ``""`` where unknown.

    Parameters
    ----------
    ages : array_like
        (n,) ages in years; NaN, negative or non-numeric values are unknown.
    edges : sequence of float
        Increasing boundaries; a band holds ages from its lower boundary up to, not
        including, the next.
    """
    values = pd.to_numeric(pd.Series(np.asarray(ages, dtype=object)), errors="coerce")
    values = values.to_numpy(dtype=np.float64)
    labels = ([f"<{edges[0]:g}"]
              + [f"{low:g}-{high - 1:g}" if float(high).is_integer() and float(low).is_integer()
                 else f"{low:g}-{high:g}" for low, high in itertools.pairwise(edges)]
              + [f">={edges[-1]:g}"])
    band = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    known = np.isfinite(values) & (values >= 0)
    return np.array([labels[b] if ok else "" for b, ok in zip(band, known)], dtype=object)


def sex_values(values, is_male=False):
    """``"female"``, ``"male"`` or ``""`` per exam, from text (F/M, female/male) or, with
    ``is_male``, from 0/1 (CODE-15%'s ``is_male`` column). Other numbers stay as text."""
    words = {"f": "female", "female": "female", "w": "female", "woman": "female",
             "m": "male", "male": "male", "man": "male"}
    out = []
    for value in np.asarray(values, dtype=object):
        if isinstance(value, bytes):
            value = value.decode()
        text = str(value).strip().lower()
        if is_male and text in ("0", "1", "0.0", "1.0", "true", "false"):
            out.append("male" if text in ("1", "1.0", "true") else "female")
        elif text in ("", "nan", "none", "unknown"):
            out.append("")
        else:
            out.append(words.get(text, str(value).strip()))
    return np.array(out, dtype=object)


def category_values(values):
    """Text values of a categorical column (numbers without a trailing ``.0``; NaN unknown)."""
    out = []
    for value in np.asarray(values, dtype=object):
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        out.append(text.strip())
    return np.array(out, dtype=object)


def subgroup_table(y_true, scores, attributes, classes, n_bootstrap=1000, seed=123,
                   min_exams=MIN_SUBGROUP_EXAMS):
    """Every measure of every class in every subgroup.

    Parameters
    ----------
    y_true, scores : numpy.ndarray
        (n_exams, n_classes).
    attributes : dict
        Attribute name -> (n_exams,) text values (``""``: unknown, left out).
    classes : sequence of str
    n_bootstrap, seed : int
        The bootstrap of each subgroup (``ecgcode.evaluation.metrics.bootstrap_indices``).
    min_exams : int
        Smaller subgroups get no intervals.

    Returns
    -------
    frame : pandas.DataFrame
        Columns attribute, group, then those of ``score_table``; rows in attribute order,
        groups sorted.
    notes : list of str
        One line per subgroup too small for an interval.
    """
    parts, notes = [], []
    for attribute, values in attributes.items():
        values = np.asarray(values, dtype=object)
        for group in sorted(set(values) - {""}, key=_group_order):
            rows = np.flatnonzero(values == group)
            indices = None
            if len(rows) >= min_exams:
                indices = em.bootstrap_indices(len(rows), n_bootstrap, seed)
            else:
                notes.append(f"subgroup {attribute}={group}: {len(rows)} exams, fewer than "
                             f"{min_exams}: no interval, point estimates only")
            table = score_table(y_true[rows], scores[rows], classes, indices)
            table.insert(0, "group", group)
            table.insert(0, "attribute", attribute)
            parts.append(table)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return frame, notes


def _group_order(group):
    """Age bands by their lower age ("<40" first), other groups by name."""
    text = group.lstrip("<>=")
    head = text.split("-")[0]
    try:
        return (0, float(head) - (0.5 if group.startswith("<") else 0), group)
    except ValueError:
        return (1, 0.0, group)
