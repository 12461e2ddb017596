"""Synthetic, labelled 12-lead ECGs in the CODE format, from a moving cardiac dipole.

Each exam is built the way a vectorcardiogram (VCG) is: every beat is a sum of Gaussian
waves in time (P, Q, R, S, T, in the spirit of McSharry et al. 2003, "A dynamical model
for generating synthetic electrocardiogram signals", doi:10.1109/TBME.2003.808805), each
wave with its own 3-D direction and amplitude.  The dipole (Frank X left, Y down, Z back)
is projected onto leads I, II and V1-V6 with Dower's transform (Dower et al. 1980), noise
is added at the electrodes, and III, aVR, aVL, aVF are derived from I and II, so that
Einthoven's and Goldberger's relations hold exactly.

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
SB, ST and 1dAVb; SB excludes ST; RBBB excludes LBBB.  Tracings are float32 in 1e-4 V at
400 Hz, 4096 samples; 10 s recordings (4000 samples) and 7 s ones (2800 samples) are
zero-padded on both sides like CODE.

Command line (also ``python datasets.py synthetic ...``)::

    python ecg_synthetic.py OUT.hdf5 --n 2000 --seed 1 [--prevalence code]
"""

import argparse
import json
import os
import sys

import numpy as np

from ecg_common import (
    CLASSES,
    LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    UNITS_PER_MV,
    ECGInputError,
    atomic_output,
    run_cli,
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

# Dower et al. 1980: lead voltage = Frank VCG (X left, Y down, Z back) @ DOWER.
DOWER = np.array(
    [  # I      II     V1     V2     V3     V4     V5     V6
        [0.632, 0.235, -0.515, 0.044, 0.882, 1.213, 1.125, 0.831],  # X
        [-0.235, 1.066, 0.157, 0.164, 0.098, 0.127, 0.127, 0.076],  # Y
        [0.059, -0.132, -0.917, -1.387, -1.277, -0.601, -0.086, 0.230],  # Z
    ],
    dtype=np.float32,
)  # (3, 8)

TO_EIGHT_LEADS = np.ascontiguousarray(DOWER.T * np.float32(UNITS_PER_MV))
"""(8, 3): dipole in mV -> leads I, II, V1..V6 in tracing units (1e-4 V)."""

# Electrode potentials (RA, LA, LL, V1..V6) -> leads I, II, V1..V6 (Wilson central terminal).
ELECTRODES_TO_LEADS = np.zeros((9, 8), dtype=np.float32)
ELECTRODES_TO_LEADS[[1, 0], [0, 0]] = [1.0, -1.0]  # I = LA - RA
ELECTRODES_TO_LEADS[[2, 0], [1, 1]] = [1.0, -1.0]  # II = LL - RA
ELECTRODES_TO_LEADS[3:, 2:] = np.eye(6)
ELECTRODES_TO_LEADS[:3, 2:] = -1.0 / 3.0  # Vi = Ei - (RA + LA + LL) / 3

# Waves of one beat: columns of the per-exam wave tables.
WAVES = ("P1", "P2", "Q", "R", "S", "R2", "T1", "T2")
PARTS = {"p": slice(0, 2), "qrs": slice(2, 6), "t": slice(6, 8)}
"""P1/P2: right/left atrium; Q: septum; R: main ventricular wave (first half of a notched R
in LBBB); S: terminal forces; R2: R' (RBBB) or second hump of the notched R (LBBB);
T1/T2: slow and fast half of the asymmetric T wave."""

TEMPLATE_BEFORE_S = 0.45  # template window before QRS onset (covers PR <= 320 ms)
TEMPLATE_AFTER_S = 0.75  # after QRS onset (covers the T wave at 35 bpm)
MIN_RR_S = 0.3
BEATS_PER_EXAM = int(np.ceil((N_SAMPLES / SAMPLING_RATE + TEMPLATE_BEFORE_S + TEMPLATE_AFTER_S
                              + 3.0) / MIN_RR_S))


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


# --- Beat model --------------------------------------------------------------------
def _unit(vectors):
    """Normalise the last axis to unit length."""
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _directions(rng, n, means, spreads):
    """(n, 3) unit vectors around per-exam mean directions (n, 3) with uniform spread."""
    return _unit(means + rng.uniform(-1.0, 1.0, (n, 3)) * spreads)


def _rotation(rng, n):
    """(n, 3, 3) random heart orientations: frontal, horizontal and sagittal rotations."""
    frontal = np.clip(rng.normal(0.0, 15.0, n), -35, 35)
    horizontal = np.clip(rng.normal(0.0, 12.0, n), -25, 25)
    sagittal = np.clip(rng.normal(0.0, 8.0, n), -15, 15)
    rotations = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    for degrees, (a, b) in ((frontal, (0, 1)), (horizontal, (0, 2)), (sagittal, (1, 2))):
        angle = np.deg2rad(degrees)
        step = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        step[:, a, a], step[:, a, b] = np.cos(angle), -np.sin(angle)
        step[:, b, a], step[:, b, b] = np.sin(angle), np.cos(angle)
        rotations = step @ rotations
    return rotations, frontal


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


def wave_table(rng, labels, rhythm):
    """Gaussian waves of each exam's beat: centres, widths and 3-D amplitudes.

    Times are seconds from QRS onset; amplitudes are millivolts of the dipole (Frank X
    left, Y down, Z back), with the QRS scaled so that its largest R wave over the 12
    leads is 0.7-1.8 mV.  The whole heart is then rotated by a random orientation.

    Returns
    -------
    centres, widths : (n, 8) arrays (waves in WAVES order)
    vectors : (n, 8, 3) array
    qt : (n,) QT interval in seconds
    frontal_rotation : (n,) degrees
    """
    n = len(labels)
    lab = {name: labels[:, i] for i, name in enumerate(CLASSES)}
    waves = _Waves(rng, n)
    _atrial_waves(waves, rhythm["pr_interval"])
    _ventricular_waves(waves, lab["RBBB"], lab["LBBB"])
    qt = _repolarisation(waves, rhythm["heart_rate"], lab["RBBB"], lab["LBBB"])
    rotations, frontal = _rotation(rng, n)
    vectors = np.einsum("nij,nwj->nwi", rotations, waves.vectors)
    target_mv = waves.uniform(0.7, 1.8)
    scale = _qrs_scale(waves.centres, waves.widths, vectors, target_mv)  # (n,)
    vectors[:, PARTS["qrs"]] *= scale[:, None, None]
    return waves.centres, waves.widths, vectors, qt, frontal


class _Waves:
    """Per-exam wave tables being filled in, with the random draws they need."""

    def __init__(self, rng, n):
        self.rng, self.n = rng, n
        self.centres, self.widths = np.zeros((n, 8)), np.ones((n, 8))
        self.vectors = np.zeros((n, 8, 3))

    def uniform(self, low, high):
        """(n,) uniform draws."""
        return self.rng.uniform(low, high, self.n)

    def direction(self, x, y, z, spread=0.15):
        """(n, 3) unit vectors scattered around the direction (x, y, z)."""
        mean = np.broadcast_to(np.array([x, y, z], dtype=float), (self.n, 3))
        return _directions(self.rng, self.n, mean, spread)


def _atrial_waves(waves, pr_interval):
    """P wave: right atrium (down, forward) then left atrium (left, back); none in AF."""
    present = ~np.isnan(pr_interval)[:, None]
    pr = np.nan_to_num(pr_interval, nan=0.16)
    waves.widths[:, 0] = waves.uniform(0.012, 0.016)
    waves.widths[:, 1] = waves.uniform(0.013, 0.017)
    waves.centres[:, 0] = -pr + 2.5 * waves.widths[:, 0]  # P onset at -PR
    waves.centres[:, 1] = waves.centres[:, 0] + waves.uniform(0.020, 0.030)
    for wave, direction in ((0, (0.0, 0.85, -0.5)), (1, (0.7, 0.6, 0.4))):
        waves.vectors[:, wave] = present * waves.direction(*direction) \
            * waves.uniform(0.08, 0.14)[:, None]


def _ventricular_waves(waves, rbbb, lbbb):
    """QRS: septal q, main R, terminal S; R' in RBBB; notched slow R without q in LBBB."""
    centres, widths, vectors, uniform = waves.centres, waves.widths, waves.vectors, waves.uniform
    # Normal conduction: septal q (right, forward), main R (left, down, back), terminal S.
    widths[:, 2], widths[:, 3], widths[:, 4] = (uniform(0.004, 0.006), uniform(0.009, 0.012),
                                                uniform(0.008, 0.011))
    centres[:, 2] = 2.5 * widths[:, 2]  # QRS onset at 0
    centres[:, 3] = centres[:, 2] + uniform(0.020, 0.027)
    centres[:, 4] = centres[:, 3] + uniform(0.020, 0.026)
    axis = np.deg2rad(uniform(10.0, 55.0))
    vectors[:, 2] = waves.direction(-0.55, 0.35, -0.75) * uniform(0.12, 0.22)[:, None]
    vectors[:, 3] = _unit(np.stack([np.cos(axis), np.sin(axis), uniform(0.15, 0.45)], axis=1))
    vectors[:, 4] = waves.direction(-0.4, -0.5, 0.75, 0.2) * uniform(0.2, 0.4)[:, None]

    # RBBB: late, slow right-ventricular activation to the right and forward (R' in V1).
    # In between, the loop swings backwards (S in V1), out of the plane of R and R', so
    # the dipole does not pass through zero between them.
    r_prime = waves.direction(-0.8, 0.0, -0.6)
    widths[:, 5] = np.where(rbbb, uniform(0.016, 0.020), 0.01)
    centres[:, 5] = np.where(rbbb, centres[:, 3] + uniform(0.055, 0.070), 0.1)
    vectors[:, 5] = (rbbb * uniform(0.6, 1.0))[:, None] * r_prime
    swing = _unit(np.cross(vectors[:, 3], r_prime))  # (n, 3) normal to R and R'
    swing *= np.where(swing[:, 2:] < 0, -1.0, 1.0) * uniform(0.3, 0.45)[:, None]  # backwards
    rb = rbbb[:, None]
    vectors[:, 4] = np.where(rb, swing, vectors[:, 4])
    centres[:, 4] = np.where(rbbb, (centres[:, 3] + centres[:, 5]) / 2, centres[:, 4])
    widths[:, 4] = np.where(rbbb, uniform(0.012, 0.015), widths[:, 4])

    # LBBB: no septal q, no S; two slow leftward humps (notched R), the second backwards.
    lb = lbbb[:, None]
    first_width, second_width = uniform(0.016, 0.020), uniform(0.017, 0.022)
    widths[:, 3] = np.where(lbbb, first_width, widths[:, 3])
    centres[:, 3] = np.where(lbbb, 2.5 * first_width, centres[:, 3])
    vectors[:, 2] *= ~lb
    vectors[:, 4] *= ~lb
    first = _unit(np.stack([np.full(waves.n, 0.85), uniform(-0.1, 0.25), uniform(0.35, 0.6)], 1))
    second = _unit(np.stack([np.full(waves.n, 0.55), uniform(-0.35, 0.0), uniform(0.7, 0.9)], 1))
    vectors[:, 3] = np.where(lb, first, vectors[:, 3])
    widths[:, 5] = np.where(lbbb, second_width, widths[:, 5])
    centres[:, 5] = np.where(lbbb, centres[:, 3] + uniform(0.045, 0.058), centres[:, 5])
    vectors[:, 5] = np.where(lb, second * uniform(0.9, 1.3)[:, None], vectors[:, 5])


def _repolarisation(waves, heart_rate, rbbb, lbbb):
    """Asymmetric T wave (slow T1 + fast T2) ending at the QT interval, which is returned.

    QT follows Fridericia's correction and is lengthened by a wide QRS; the T is inverted
    in V1 in RBBB and discordant to the QRS in LBBB.
    """
    centres, widths, uniform = waves.centres, waves.widths, waves.uniform
    qrs_end = _qrs_bounds(centres, widths, waves.vectors)[1]
    qt = uniform(0.38, 0.43) * np.cbrt(60.0 / heart_rate) + np.maximum(qrs_end - 0.095, 0.0)
    widths[:, 7] = (qt - qrs_end) * uniform(0.10, 0.13)
    widths[:, 6] = widths[:, 7] * uniform(1.4, 1.7)
    centres[:, 7] = qt - 2.5 * widths[:, 7]
    centres[:, 6] = centres[:, 7] - (qt - qrs_end) * uniform(0.10, 0.14)
    direction = np.where(rbbb[:, None], waves.direction(0.6, 0.45, 0.45),
                         waves.direction(0.65, 0.5, -0.15))
    direction = np.where(lbbb[:, None], waves.direction(-0.6, 0.1, -0.6), direction)
    t_vector = direction * uniform(0.2, 0.45)[:, None]
    waves.vectors[:, 7] = t_vector
    waves.vectors[:, 6] = t_vector * uniform(0.4, 0.6)[:, None]
    return qt


def _qrs_bounds(centres, widths, vectors):
    """(onset, offset) in seconds of the QRS waves that are present (centre -/+ 2.5 sd)."""
    part = PARTS["qrs"]
    present = np.linalg.norm(vectors[:, part], axis=-1) > 0
    start = np.where(present, centres[:, part] - 2.5 * widths[:, part], np.inf).min(axis=1)
    end = np.where(present, centres[:, part] + 2.5 * widths[:, part], -np.inf).max(axis=1)
    return start, end


def _qrs_scale(centres, widths, vectors, target_mv):
    """Factor making the largest positive QRS deflection over the 12 leads target_mv."""
    lags = np.arange(-0.05, 0.25, 1.0 / SAMPLING_RATE)  # (L,)
    part = PARTS["qrs"]
    template = _template(lags, centres[:, part], widths[:, part], vectors[:, part])  # (n, L, 3)
    leads = derive_leads(template.astype(np.float32) @ DOWER)  # (n, L, 12)
    return target_mv / leads.max(axis=(1, 2))


def _template(lags, centres, widths, vectors):
    """Sum of Gaussian waves: (n, L, 3) dipole over lags (L,) seconds."""
    shape = np.exp(-0.5 * ((lags[None, :, None] - centres[:, None, :]) / widths[:, None, :]) ** 2)
    return shape @ vectors  # (n, L, W) @ (n, W, 3)


# --- Beat placement, atrial fibrillation, noise ------------------------------------
def beat_onsets(rng, rhythm):
    """QRS onset times (n, K) in seconds from the start of the 4096-sample window.

    Sinus rhythm: respiratory sinus arrhythmia (<= 4 %) plus 1 % jitter.  AF: random RR
    intervals with no pattern (irregularly irregular), at least MIN_RR_S apart.
    """
    n, k = len(rhythm["heart_rate"]), BEATS_PER_EXAM
    mean_rr = 60.0 / rhythm["heart_rate"][:, None]  # (n, 1)
    spread = rhythm["rr_spread"][:, None]
    af = np.isnan(rhythm["pr_interval"])[:, None]
    breathing = 2 * np.pi * rng.uniform(0.15, 0.35, (n, 1)) * mean_rr * np.arange(k) \
        + rng.uniform(0, 2 * np.pi, (n, 1))
    sinus = mean_rr * (1 + spread * np.sin(breathing) + rng.normal(0, 0.01, (n, k)))
    # AF: log RR uniform (sd = spread), stratified in blocks of 4 beats in random order so
    # that even a short 7 s strip is irregular (no pattern, no run of similar intervals).
    blocks = -(-k // 4)
    strata = np.argsort(rng.random((n, blocks, 4)), axis=2)  # random order of the 4 quarters
    quantile = ((strata + rng.random((n, blocks, 4))) / 4).reshape(n, -1)[:, :k]  # (n, K)
    half_width = np.sqrt(3.0) * spread
    fibrillation = mean_rr * np.exp(half_width * (2 * quantile - 1)) * half_width \
        / np.sinh(half_width)  # mean RR preserved
    rr = np.clip(np.where(af, fibrillation, sinus), MIN_RR_S, 2.5)  # (n, K)
    first = -TEMPLATE_AFTER_S - rng.uniform(0, 1, (n, 1)) * mean_rr
    return first + np.cumsum(rr, axis=1) - rr


def place_beats(template, onsets, weights):
    """Add one template per beat at its QRS onset: (n, 3, N_SAMPLES) via FFT convolution.

    Parameters
    ----------
    template : (n, L, 3) array, QRS onset at index round(TEMPLATE_BEFORE_S * fs)
    onsets : (n, K) QRS onset times in seconds (any range; out-of-window beats dropped)
    weights : (n, K) beat amplitude factors
    """
    n, length = template.shape[:2]
    before = round(TEMPLATE_BEFORE_S * SAMPLING_RATE)
    size = _fast_length(N_SAMPLES + length)  # FFT length; no circular wrap into the kept window
    position = np.rint(onsets * SAMPLING_RATE).astype(np.int64) - before + length  # (n, K)
    keep = (position >= 0) & (position < N_SAMPLES + length)
    impulses = np.zeros((n, size), dtype=np.float32)
    rows = np.broadcast_to(np.arange(n)[:, None], position.shape)
    impulses[rows[keep], position[keep]] = weights[keep]
    kernel = np.ascontiguousarray(template.transpose(0, 2, 1), dtype=np.float32)  # (n, 3, L)
    spectrum = np.fft.rfft(impulses)[:, None, :] * np.fft.rfft(kernel, n=size)  # (n, 3, F)
    return np.fft.irfft(spectrum, n=size)[:, :, length:length + N_SAMPLES]  # (n, 3, T)


def _fast_length(minimum):
    """Smallest 2^a * 3^b * 5^c >= minimum (a fast FFT length)."""
    candidates = [2 ** a * 3 ** b * 5 ** c for a in range(16) for b in range(4) for c in range(3)]
    return min(c for c in candidates if c >= minimum)


def fibrillatory_waves(rng, n):
    """(n, 3, N_SAMPLES) atrial dipole of AF: two 4-9 Hz wandering oscillations (mV)."""
    t = np.arange(N_SAMPLES) / SAMPLING_RATE  # (T,)
    total = np.zeros((n, 3, N_SAMPLES), dtype=np.float32)
    base = rng.uniform(5.0, 8.0, (n, 1))
    for mean_direction in ((-0.1, 0.5, -0.85), (0.3, 0.9, 0.1)):  # V1-facing, II-facing
        frequency = base * rng.uniform(0.95, 1.05, (n, 1))
        wobble = rng.uniform(0.05, 0.25, (n, 1))
        phase = 2 * np.pi * frequency * t + rng.uniform(0.2, 0.5, (n, 1)) / wobble * np.sin(
            2 * np.pi * wobble * t + rng.uniform(0, 2 * np.pi, (n, 1)))
        phase += rng.uniform(0, 2 * np.pi, (n, 1))
        envelope = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4, (n, 1)) * t
                                    + rng.uniform(0, 2 * np.pi, (n, 1)))
        wave = envelope * (np.sin(phase) + 0.25 * np.sin(2 * phase))  # (n, T) sawtooth-like
        size = rng.uniform(0.025, 0.07, (n, 1))
        direction = _directions(rng, n, np.broadcast_to(mean_direction, (n, 3)), 0.15)
        total += ((size * wave)[:, None, :] * direction[:, :, None]).astype(np.float32)
    return total


def _noise_basis():
    """(14, N_SAMPLES) float32: sin/cos of 5 wander harmonics (0.1-0.5 Hz), 60 Hz and 50 Hz."""
    t = np.arange(N_SAMPLES) / SAMPLING_RATE
    frequencies = np.concatenate([np.arange(1, 6) / (N_SAMPLES / SAMPLING_RATE), [60.0, 50.0]])
    angles = 2 * np.pi * frequencies[:, None] * t  # (7, T)
    return np.concatenate([np.sin(angles), np.cos(angles)]).astype(np.float32)


NOISE_BASIS = _noise_basis()


def electrode_noise(rng, n):
    """(n, 9, N_SAMPLES) noise in tracing units at electrodes RA, LA, LL, V1..V6.

    Baseline wander (0.1-0.5 Hz, 1/f amplitudes), muscle noise (white, uniformly
    distributed per electrode, near-Gaussian once combined into leads) and, in half of
    the exams, 60 Hz (or 50 Hz) powerline interference, each with a per-exam level.
    """
    wander_level = np.exp(rng.uniform(np.log(0.2), np.log(1.2), (n, 1, 1)))
    falloff = np.array([1, 2, 3, 4, 5, 1, 1] * 2, dtype=float)  # (14,) 1/f amplitudes
    coefficients = rng.standard_normal((n, 9, 14)) * wander_level / falloff
    mains_level = (rng.random((n, 1)) < 0.5) * rng.uniform(0.05, 0.4, (n, 1))
    sixty = rng.random((n, 1)) < 0.7
    for column, selected in ((5, sixty), (6, ~sixty)):  # sin and cos rows of the mains
        for row in (column, column + 7):
            coefficients[:, :, row] = rng.uniform(-0.7, 0.7, (n, 9)) * mains_level * selected
    noise = coefficients.astype(np.float32) @ NOISE_BASIS  # (n, 9, T)
    muscle_level = np.exp(rng.uniform(np.log(0.03), np.log(0.25), (n, 1, 1))) * np.sqrt(12.0)
    muscle = rng.random((n, 9, N_SAMPLES), dtype=np.float32) - np.float32(0.5)
    muscle *= muscle_level.astype(np.float32)  # standard deviation muscle_level / sqrt(12)
    noise += muscle
    return noise


def derive_leads(eight, axis=-1):
    """Leads I, II, V1..V6 (8 along ``axis``) -> 12 leads in LEADS order along ``axis``.

    III, aVR, aVL and aVF follow from Einthoven's and Goldberger's relations.
    """
    eight = np.moveaxis(eight, axis, 0)  # (8, ...)
    lead_1, lead_2 = eight[0], eight[1]
    leads = np.empty((12,) + lead_1.shape, dtype=eight.dtype)
    leads[0], leads[1] = lead_1, lead_2
    np.subtract(lead_2, lead_1, out=leads[2])  # III = II - I
    leads[3] = -(lead_1 + lead_2) / 2  # aVR
    leads[4] = lead_1 - lead_2 / 2  # aVL
    leads[5] = lead_2 - lead_1 / 2  # aVF
    leads[6:] = eight[2:]
    return np.moveaxis(leads, 0, axis)


def recording_mask(short):
    """(n, N_SAMPLES) float32: 1 inside the 10 s (or 7 s where ``short``) centred recording."""
    length = np.where(short, 7 * SAMPLING_RATE, 10 * SAMPLING_RATE)[:, None]
    start = (N_SAMPLES - length) // 2
    index = np.arange(N_SAMPLES)[None, :]
    return ((index >= start) & (index < start + length)).astype(np.float32)


def _to_tracings(eight, mask):
    """(n, 8, T) leads I, II, V1..V6 -> (n, T, 12) float32 tracings, zero outside ``mask``."""
    leads = derive_leads(eight, axis=1)  # (n, 12, T)
    tracings = np.empty((len(eight), N_SAMPLES, len(LEADS)), dtype=np.float32)
    np.multiply(leads.transpose(0, 2, 1), mask[:, :, None], out=tracings)
    return tracings


# --- Exams -------------------------------------------------------------------------
def _generate_chunk(rng, n, prevalence, noise, short_fraction, return_components):
    """Synthesise n exams; see ``generate``."""
    labels = sample_labels(rng, n, prevalence)  # (n, 6) bool
    rhythm = sample_rhythm(rng, labels)
    centres, widths, vectors, qt, frontal = wave_table(rng, labels, rhythm)
    onsets = beat_onsets(rng, rhythm)  # (n, K)
    weights = 1 + rng.uniform(0, 0.08, (n, 1)) * np.sin(
        2 * np.pi * rng.uniform(0.15, 0.35, (n, 1)) * onsets + rng.uniform(0, 6.3, (n, 1)))
    lags = np.arange(-TEMPLATE_BEFORE_S, TEMPLATE_AFTER_S, 1.0 / SAMPLING_RATE)  # (L,)
    afib = labels[:, CLASSES.index("AF")]
    atrial = np.zeros((n, 3, N_SAMPLES), dtype=np.float32)
    if afib.any():
        atrial[afib] = fibrillatory_waves(rng, int(afib.sum()))
    short = rng.random(n) < short_fraction
    mask = recording_mask(short)  # (n, T) float32
    template = _template(lags, centres, widths, vectors)  # (n, L, 3)
    vcg = place_beats(template, onsets, weights) + atrial  # (n, 3, T) mV
    eight = TO_EIGHT_LEADS @ vcg  # (n, 8, T) units
    if noise:
        eight += ELECTRODES_TO_LEADS.T @ electrode_noise(rng, n)
    tracings = _to_tracings(eight, mask)  # (n, T, 12)

    qrs_on, qrs_off = _qrs_bounds(centres, widths, vectors)
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
        parts = {name: _template(lags, centres[:, cols], widths[:, cols], vectors[:, cols])
                 for name, cols in PARTS.items()}
        parts = {name: place_beats(part, onsets, weights) for name, part in parts.items()}
        parts["atrial"] = atrial
        info["components"] = {name: _to_tracings(TO_EIGHT_LEADS @ part, mask)
                              for name, part in parts.items()}
    return tracings, labels.astype(np.float32), info


def _check_arguments(n, seed, short_fraction):
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ECGInputError(f"number of exams n={n!r}; give a positive integer")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ECGInputError(f"seed={seed!r}; give a non-negative integer")
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
        In 1e-4 V, leads in LEADS order.
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

    The file holds ``tracings`` (n, 4096, 12) float32 in 1e-4 V, ``labels`` (n, 6)
    float32 with attribute ``classes``, ``exam_id`` (n,) int64 and file attributes
    describing the generator and its parameters.  Written atomically.

    Returns
    -------
    str
        ``path``.
    """
    import h5py
    from tqdm import tqdm

    _check_arguments(n, seed, short_fraction)
    prevalence = resolve_prevalence(prevalence)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ECGInputError(f"{path} is a directory; give an output file name such as out.hdf5")
    try:
        with atomic_output(path) as tmp_path, h5py.File(tmp_path, "w") as handle:
            tracings = handle.create_dataset("tracings", (n, N_SAMPLES, len(LEADS)), "float32")
            labels = handle.create_dataset("labels", (n, len(CLASSES)), "float32")
            handle.create_dataset("exam_id", data=np.arange(first_exam_id, first_exam_id + n,
                                                            dtype=np.int64))
            labels.attrs["classes"] = list(CLASSES)
            tracings.attrs.update(units="1e-4 V", sampling_rate=SAMPLING_RATE, leads=list(LEADS))
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
        "generator": "ecg_synthetic",
        "generator_version": GENERATOR_VERSION,
        "description": "synthetic 12-lead ECGs from a Gaussian-wave cardiac dipole "
                       "(McSharry et al. 2003) projected with Dower's transform",
        "n": n,
        "seed": seed,
        "prevalence": json.dumps(prevalence),
        "noise": bool(noise),
        "short_fraction": short_fraction,
        "sampling_rate": SAMPLING_RATE,
        "units": "1e-4 V",
        "class_definitions": json.dumps({
            "1dAVb": "PR 220-320 ms (normal 120-190 ms)",
            "RBBB": "QRS 130-165 ms, rsR' in V1, wide S in I/V6",
            "LBBB": "QRS 130-165 ms, notched R in I/aVL/V5-V6, no septal q, deep S in V1",
            "SB": "sinus 35-48 bpm (normal sinus 60-95 bpm)",
            "ST": "sinus 105-145 bpm",
            "AF": "irregular RR (sd of log RR 0.22-0.38), no P waves, 4-9 Hz f waves",
        }),
    }


# --- Command line ------------------------------------------------------------------
def build_parser(prog=None):
    """The argparse parser of the command line."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write synthetic labelled 12-lead ECGs (CODE format: tracings (N, 4096, 12) "
        "float32 in 1e-4 V at 400 Hz, labels (N, 6), exam_id) to an HDF5 file. Each beat is a "
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


def main(argv=None):
    """Command line: ``python ecg_synthetic.py OUT.hdf5 --n N --seed S [options]``."""
    called_by_datasets = os.path.basename(sys.argv[0]) == "datasets.py"
    parser = build_parser("datasets.py synthetic" if called_by_datasets else None)
    args = parser.parse_args(argv)
    prevalence = parse_prevalence(args.prevalence)
    path = write_synthetic(args.output, args.n, args.seed, prevalence, not args.no_noise,
                           args.short_fraction, args.first_exam_id, progress=not args.quiet)
    counts = ", ".join(f"{name} {p:.1%}" for name, p in prevalence.items())
    print(f"wrote {args.n} synthetic exams to {path} (seed {args.seed}; prevalence {counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
