"""Synthetic, labelled 12-lead ECGs in the CODE format, from a moving cardiac dipole.

Each exam is built the way a vectorcardiogram (VCG) is: every beat is a sum of Gaussian
P, Q, R, S, T waves of a 3-D cardiac dipole, projected onto the 12 leads with Dower's
transform, with noise added at the electrodes (the signal model is in
``ecgcode.data.synthetic.physiology``). This module draws the labels and per-exam rhythm
parameters, assembles exams in reproducible chunks and writes them to HDF5.

The six CODE classes follow their clinical definitions, with margins away from the
thresholds so that the labels are unambiguous:

========  =====================================================================
1dAVb     PR 220-320 ms (normal PR 120-190 ms)
RBBB      QRS 130-165 ms; rsR' in V1, wide slurred S in I and V6, T inverted in V1
LBBB      QRS 130-165 ms; broad notched R in I/aVL/V5-V6, no septal q, deep S in V1,
          discordant T
SB        sinus rhythm at 35-48 bpm (normal sinus 60-95 bpm)
ST        sinus rhythm at 105-145 bpm
AF        irregularly irregular RR (sd of log RR 0.22-0.38, sinus <= 0.03), no P waves,
          fibrillatory f waves at 4-9 Hz, largest in V1 and II
========  =====================================================================

Classes co-occur (e.g. 1dAVb with RBBB) except where physiology excludes it: AF excludes
SB, ST and 1dAVb; SB excludes ST; RBBB excludes LBBB.  Tracings are float32 at the original study's scale (1 mV = 2 units) at
400 Hz, 4096 samples; 10 s recordings (4000 samples) and 7 s ones (2800 samples) are
zero-padded on both sides like CODE.

Command line: ``python datasets.py synthetic OUT.hdf5 --n 2000 --seed 1``
(``ecgcode.cli.synthetic``).
"""

import json
import os

import h5py
import numpy as np
from tqdm import tqdm

from ecgcode.common import (
    CLASSES,
    N_SAMPLES,
    SAMPLING_RATE,
    ECGInputError,
    atomic_output,
    plain,
)
from ecgcode.data.hdf5 import SYNTHETIC_GENERATOR, create_tracings
from ecgcode.data.synthetic.physiology import (
    PARTS,
    beat_dipole,
    beat_onsets,
    electrode_noise,
    fibrillatory_waves,
    qrs_bounds,
    recording_mask,
    to_tracings,
    wave_table,
)

GENERATOR_VERSION = "1.0"
CHUNK_SIZE = 128
"""Exams synthesised at once; fixed, so that the output depends only on (n, seed, options)."""

PREVALENCE_PRESETS = {
    "balanced": dict.fromkeys(CLASSES, 0.18),
    # Roughly the prevalence of the CODE study's exams.
    "code": {"1dAVb": 0.016, "RBBB": 0.027, "LBBB": 0.016, "SB": 0.019, "AF": 0.016, "ST": 0.025},
}
"""Named class prevalences (marginal probability of each label)."""

DEFAULT_SHORT_FRACTION = 0.25
"""Fraction of exams recorded for 7 s instead of 10 s."""


# --- Labels ------------------------------------------------------------------------
def resolve_prevalence(prevalence=None):
    """Return a validated {class: probability} dict.

    Parameters
    ----------
    prevalence : None, str or dict
        None or "balanced" (18 % each class), "code" (CODE-like rarity), a specification
        such as "code,AF=0.05" (see ``parse_prevalence``), or a dict {class name:
        probability}; classes missing from a dict keep the balanced value.

    Returns
    -------
    dict
        Marginal probability of each class in CLASSES order.
    """
    if prevalence is None:
        prevalence = "balanced"
    if isinstance(prevalence, str) and ("=" in prevalence or "," in prevalence):
        return parse_prevalence(prevalence)
    if isinstance(prevalence, str):
        if prevalence not in PREVALENCE_PRESETS:
            raise ECGInputError(
                f"unknown prevalence preset {prevalence!r}; use one of "
                f"{', '.join(PREVALENCE_PRESETS)} or CLASS=VALUE pairs"
            )
        prevalence = PREVALENCE_PRESETS[prevalence]
    unknown = sorted(set(prevalence) - set(CLASSES))
    if unknown:
        raise ECGInputError(f"unknown class(es) {unknown} in prevalence; classes are {CLASSES}")
    values = {**PREVALENCE_PRESETS["balanced"], **{k: float(v) for k, v in prevalence.items()}}
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ECGInputError(f"prevalence of {name} is {value}; give a value in [0, 1)")
    if values["AF"] + values["SB"] + values["ST"] > 1.0:
        raise ECGInputError("prevalences of AF + SB + ST exceed 1 (they exclude each other)")
    if values["AF"] + values["1dAVb"] > 1.0:
        raise ECGInputError("prevalences of AF + 1dAVb exceed 1 (they exclude each other)")
    if values["RBBB"] + values["LBBB"] > 1.0:
        raise ECGInputError("prevalences of RBBB + LBBB exceed 1 (they exclude each other)")
    return {name: values[name] for name in CLASSES}


def parse_prevalence(text):
    """Parse the --prevalence option: "balanced", "code" or "[PRESET,]CLASS=P,...".

    Examples: ``code``, ``AF=0.3,ST=0.1`` (others balanced), ``code,AF=0.05``.
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    base, overrides = "balanced", {}
    for position, item in enumerate(items):
        if "=" not in item:
            if position != 0:
                raise ECGInputError(f"--prevalence {text!r}: a preset name may only come first")
            base = item
            continue
        name, _, value = item.partition("=")
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            raise ECGInputError(
                f"--prevalence {text!r}: {value!r} is not a number; write e.g. AF=0.05"
            ) from None
    resolved = resolve_prevalence(base)
    return resolve_prevalence({**resolved, **overrides})


def sample_labels(rng, n, prevalence):
    """Draw (n, 6) boolean labels with the given marginal prevalences and exclusions.

    AF is drawn first; SB, ST (mutually exclusive) and 1dAVb only among non-AF exams;
    LBBB only among exams without RBBB.  Conditional probabilities are chosen so that
    the marginal prevalences equal ``prevalence``.
    """
    p = resolve_prevalence(prevalence)
    u = rng.random((n, 4))
    af = u[:, 0] < p["AF"]
    rhythm_scale = 1.0 - p["AF"]
    p_sb, p_st = p["SB"] / rhythm_scale, p["ST"] / rhythm_scale
    sb = ~af & (u[:, 1] < p_sb)
    st = ~af & (u[:, 1] >= p_sb) & (u[:, 1] < p_sb + p_st)
    avb = ~af & (u[:, 2] < p["1dAVb"] / rhythm_scale)
    rbbb = u[:, 3] < p["RBBB"]
    lbbb = ~rbbb & (u[:, 3] >= 1.0 - p["LBBB"])  # P(LBBB) = p_LBBB, disjoint from RBBB
    columns = {"1dAVb": avb, "RBBB": rbbb, "LBBB": lbbb, "SB": sb, "AF": af, "ST": st}
    return np.stack([columns[name] for name in CLASSES], axis=1)  # (n, 6)


# --- Per-exam parameters ----------------------------------------------------------
def sample_rhythm(rng, labels):
    """Per-exam mean heart rate (bpm), PR interval (s) and RR irregularity.

    Returns
    -------
    dict of (n,) arrays: heart_rate, pr_interval (NaN in AF), rr_spread
    """
    n = len(labels)
    lab = {name: labels[:, i] for i, name in enumerate(CLASSES)}
    rate = rng.uniform(60.0, 95.0, n)
    rate = np.where(lab["SB"], rng.uniform(35.0, 48.0, n), rate)
    fast_block = lab["ST"] & lab["1dAVb"]  # keep the long PR visible before the next beat
    rate = np.where(lab["ST"], np.where(fast_block, rng.uniform(105.0, 120.0, n),
                                        rng.uniform(105.0, 145.0, n)), rate)
    rate = np.where(lab["AF"], rng.uniform(60.0, 140.0, n), rate)
    pr = np.where(lab["ST"], rng.uniform(0.12, 0.16, n), rng.uniform(0.12, 0.19, n))
    pr = np.where(lab["1dAVb"], np.where(fast_block, rng.uniform(0.22, 0.26, n),
                                         rng.uniform(0.22, 0.32, n)), pr)
    pr = np.where(lab["AF"], np.nan, pr)
    rr_spread = np.where(lab["AF"], rng.uniform(0.22, 0.38, n), rng.uniform(0.0, 0.04, n))
    return {"heart_rate": rate, "pr_interval": pr, "rr_spread": rr_spread}


# --- Exams -------------------------------------------------------------------------
def _generate_chunk(rng, n, prevalence, noise, short_fraction, return_components):
    """Synthesise n exams; see ``generate``."""
    labels = sample_labels(rng, n, prevalence)  # (n, 6) bool
    rhythm = sample_rhythm(rng, labels)
    centres, widths, vectors, qt, frontal = wave_table(rng, labels, rhythm)
    onsets = beat_onsets(rng, rhythm)  # (n, K)
    weights = 1 + rng.uniform(0, 0.08, (n, 1)) * np.sin(
        2 * np.pi * rng.uniform(0.15, 0.35, (n, 1)) * onsets + rng.uniform(0, 6.3, (n, 1)))
    afib = labels[:, CLASSES.index("AF")]
    atrial = np.zeros((n, 3, N_SAMPLES), dtype=np.float32)
    if afib.any():
        atrial[afib] = fibrillatory_waves(rng, int(afib.sum()))
    short = rng.random(n) < short_fraction
    mask = recording_mask(short)  # (n, T) float32
    vcg = beat_dipole(centres, widths, vectors, onsets, weights) + atrial  # (n, 3, T) mV
    tracings = to_tracings(vcg, mask, electrode_noise(rng, n) if noise else None)  # (n, T, 12)

    qrs_on, qrs_off = qrs_bounds(centres, widths, vectors)
    info = {
        "heart_rate": rhythm["heart_rate"],
        "pr_interval": rhythm["pr_interval"],
        "qrs_duration": qrs_off - qrs_on,
        "qt_interval": qt,
        "frontal_rotation": frontal,
        "recording_seconds": np.where(short, 7, 10),
        "qrs_onsets": [row[(row >= 0) & (row < N_SAMPLES / SAMPLING_RATE)] for row in onsets],
    }
    if return_components:
        parts = {name: beat_dipole(centres[:, cols], widths[:, cols], vectors[:, cols], onsets,
                                   weights)
                 for name, cols in PARTS.items()}
        parts["atrial"] = atrial
        info["components"] = {name: to_tracings(part, mask) for name, part in parts.items()}
    return tracings, labels.astype(np.float32), info


def _check_arguments(n, seed, short_fraction):
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ECGInputError(f"number of exams n={plain(n)}; give a positive integer")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ECGInputError(f"seed={plain(seed)}; give a non-negative integer")
    if not 0.0 <= short_fraction <= 1.0:
        raise ECGInputError(f"short fraction {short_fraction}; give a value in [0, 1]")


def _chunks(n, seed, prevalence, noise, short_fraction, return_components=False):
    """Yield (start, tracings, labels, info) chunk by chunk, each chunk seeded by its index."""
    for index, start in enumerate(range(0, n, CHUNK_SIZE)):
        rng = np.random.default_rng([seed, index])
        size = min(CHUNK_SIZE, n - start)
        yield (start, *_generate_chunk(rng, size, prevalence, noise, short_fraction,
                                       return_components))


def generate(n, seed=0, prevalence=None, noise=True, short_fraction=DEFAULT_SHORT_FRACTION,
             return_components=False):
    """Synthesise n labelled 12-lead ECGs.

    Parameters
    ----------
    n : int
        Number of exams.
    seed : int
        Non-negative seed; the same (n, seed, options) always give the same exams.
    prevalence : None, str or dict
        Class prevalences, see ``resolve_prevalence`` (default: 18 % each).
    noise : bool
        Add baseline wander, muscle noise and powerline interference.
    short_fraction : float
        Fraction of 7 s recordings (the rest are 10 s), zero-padded to 4096 samples.
    return_components : bool
        Also return the noise-free P, QRS, T and atrial (AF) parts of every tracing
        (``info["components"]``, each (n, 4096, 12)); they sum to the noise-free tracing.

    Returns
    -------
    tracings : (n, 4096, 12) float32
        At ``UNITS_PER_MV`` (1 mV = 2 units), leads in LEADS order.
    labels : (n, 6) float32
        0/1 in CLASSES order.
    info : dict
        Per-exam ground truth: heart_rate (bpm), pr_interval (s, NaN in AF),
        qrs_duration (s), qt_interval (s), frontal_rotation (degrees), recording_seconds,
        qrs_onsets (list of arrays, s), and "components" when requested.
    """
    _check_arguments(n, seed, short_fraction)
    prevalence = resolve_prevalence(prevalence)
    pieces = list(_chunks(n, seed, prevalence, noise, short_fraction, return_components))
    tracings = np.concatenate([piece[1] for piece in pieces])
    labels = np.concatenate([piece[2] for piece in pieces])
    info = {}
    for key in pieces[0][3]:
        values = [piece[3][key] for piece in pieces]
        if key == "components":
            info[key] = {name: np.concatenate([v[name] for v in values]) for name in values[0]}
        elif key == "qrs_onsets":
            info[key] = [row for value in values for row in value]
        else:
            info[key] = np.concatenate(values)
    return tracings, labels, info


def write_synthetic(path, n, seed=0, prevalence=None, noise=True,
                    short_fraction=DEFAULT_SHORT_FRACTION, first_exam_id=1, progress=True):
    """Write n synthetic exams to a CODE-style HDF5 file, chunk by chunk (bounded memory).

    The file holds ``tracings`` (n, 4096, 12) float32 at ``UNITS_PER_MV``, ``labels`` (n, 6)
    float32 with attribute ``classes``, ``exam_id`` (n,) int64 and file attributes
    describing the generator and its parameters.  Written atomically.

    Returns
    -------
    str
        ``path``.
    """
    _check_arguments(n, seed, short_fraction)
    prevalence = resolve_prevalence(prevalence)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ECGInputError(f"{path} is a directory; give an output file name such as out.hdf5")
    try:
        with atomic_output(path) as tmp_path, h5py.File(tmp_path, "w") as handle:
            tracings = create_tracings(handle, n)
            labels = handle.create_dataset("labels", (n, len(CLASSES)), "float32")
            handle.create_dataset("exam_id", data=np.arange(first_exam_id, first_exam_id + n,
                                                            dtype=np.int64))
            labels.attrs["classes"] = list(CLASSES)
            handle.attrs.update(_file_attributes(n, seed, prevalence, noise, short_fraction))
            with tqdm(total=n, unit="ECG", desc="synthetic", disable=not progress) as bar:
                for start, x, y, _ in _chunks(n, seed, prevalence, noise, short_fraction):
                    tracings[start:start + len(x)] = x
                    labels[start:start + len(y)] = y
                    bar.update(len(x))
    except OSError as error:
        raise ECGInputError(f"cannot write {path}: {error.strerror or error}; "
                            "choose a writable output path") from None
    return path


def _file_attributes(n, seed, prevalence, noise, short_fraction):
    return {
        "generator": SYNTHETIC_GENERATOR,  # tested by ecgcode.data.hdf5.is_synthetic_file
        "generator_version": GENERATOR_VERSION,
        "description": "synthetic 12-lead ECGs from a Gaussian-wave cardiac dipole "
                       "(McSharry et al. 2003) projected with Dower's transform",
        "n": n,
        "seed": seed,
        "prevalence": json.dumps(prevalence),
        "noise": bool(noise),
        "short_fraction": short_fraction,
        "sampling_rate": SAMPLING_RATE,
        "class_definitions": json.dumps({
            "1dAVb": "PR 220-320 ms (normal 120-190 ms)",
            "RBBB": "QRS 130-165 ms, rsR' in V1, wide S in I/V6",
            "LBBB": "QRS 130-165 ms, notched R in I/aVL/V5-V6, no septal q, deep S in V1",
            "SB": "sinus 35-48 bpm (normal sinus 60-95 bpm)",
            "ST": "sinus 105-145 bpm",
            "AF": "irregular RR (sd of log RR 0.22-0.38), no P waves, 4-9 Hz f waves",
        }),
    }

