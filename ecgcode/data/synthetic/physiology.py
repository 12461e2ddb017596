"""Signal model of the synthetic ECGs: a moving cardiac dipole projected on the 12 leads.

Each beat is a sum of Gaussian waves in time (P, Q, R, S, T, in the spirit of McSharry et
al. 2003, "A dynamical model for generating synthetic electrocardiogram signals",
doi:10.1109/TBME.2003.808805), each wave with its own 3-D direction and amplitude.  The
dipole (Frank X left, Y down, Z back) is projected onto leads I, II and V1-V6 with Dower's
transform (Dower et al. 1980), noise is added at the electrodes, and III, aVR, aVL, aVF are
derived from I and II, so that Einthoven's and Goldberger's relations hold exactly.

This module turns per-exam parameters (labels, heart rate, PR interval, RR irregularity,
beat weights, recording length) into tracings: per-class wave morphology (``wave_table``),
beat timing and AF (``beat_onsets``, ``fibrillatory_waves``), beat placement
(``beat_dipole``), noise (``electrode_noise``) and lead derivation (``to_tracings``).
Label sampling, parameter drawing and file writing live in ``ecgcode.data.synthetic.generate``.
"""

import numpy as np

from ecgcode.common import CLASSES, LEADS, N_SAMPLES, SAMPLING_RATE, UNITS_PER_MV

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
"""(8, 3): dipole in mV -> leads I, II, V1..V6 in tracing units (``UNITS_PER_MV``)."""

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
TEMPLATE_LAGS = np.arange(-TEMPLATE_BEFORE_S, TEMPLATE_AFTER_S, 1.0 / SAMPLING_RATE)  # (L,)
"""Seconds from QRS onset sampled by one beat's template."""


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
    qrs_end = qrs_bounds(centres, widths, waves.vectors)[1]
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


def qrs_bounds(centres, widths, vectors):
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


def beat_dipole(centres, widths, vectors, onsets, weights):
    """(n, 3, N_SAMPLES) dipole in mV: the beat of the given waves repeated at every onset.

    ``centres``, ``widths`` (n, W) and ``vectors`` (n, W, 3) describe the waves (all of
    them, or a part such as ``PARTS["qrs"]``, see ``wave_table``); ``onsets`` and
    ``weights`` (n, K) are as in ``place_beats``.
    """
    template = _template(TEMPLATE_LAGS, centres, widths, vectors)  # (n, L, 3)
    return place_beats(template, onsets, weights)


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
    """(n, 9, N_SAMPLES) noise in tracing units (``UNITS_PER_MV``) at electrodes RA, LA, LL,
    V1..V6.

    Baseline wander (0.1-0.5 Hz, 1/f amplitudes, 0.02-0.12 mV), muscle noise (white,
    uniformly distributed per electrode, near-Gaussian once combined into leads; 3-25 uV)
    and, in half of the exams, 60 Hz (or 50 Hz) powerline interference (5-40 uV), each with
    a per-exam level.
    """
    wander_level = np.exp(rng.uniform(np.log(0.02), np.log(0.12), (n, 1, 1))) * UNITS_PER_MV
    falloff = np.array([1, 2, 3, 4, 5, 1, 1] * 2, dtype=float)  # (14,) 1/f amplitudes
    coefficients = rng.standard_normal((n, 9, 14)) * wander_level / falloff
    mains_level = (rng.random((n, 1)) < 0.5) * rng.uniform(0.005, 0.04, (n, 1)) * UNITS_PER_MV
    sixty = rng.random((n, 1)) < 0.7
    for column, selected in ((5, sixty), (6, ~sixty)):  # sin and cos rows of the mains
        for row in (column, column + 7):
            coefficients[:, :, row] = rng.uniform(-0.7, 0.7, (n, 9)) * mains_level * selected
    noise = coefficients.astype(np.float32) @ NOISE_BASIS  # (n, 9, T)
    muscle_level = (np.exp(rng.uniform(np.log(0.003), np.log(0.025), (n, 1, 1)))
                    * UNITS_PER_MV * np.sqrt(12.0))
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


def to_tracings(dipole, mask, noise=None):
    """Project a dipole on the 12 leads: (n, 3, T) mV -> (n, T, 12) float32 tracings.

    Parameters
    ----------
    dipole : (n, 3, N_SAMPLES) array
        Cardiac dipole in mV (Frank X, Y, Z).
    mask : (n, N_SAMPLES) float32
        Recording window (see ``recording_mask``); tracings are zero outside it.
    noise : (n, 9, N_SAMPLES) array or None
        Electrode noise in tracing units (see ``electrode_noise``), added before the
        limb leads are derived.
    """
    eight = TO_EIGHT_LEADS @ dipole  # (n, 8, T) leads I, II, V1..V6 in tracing units
    if noise is not None:
        eight += ELECTRODES_TO_LEADS.T @ noise
    leads = derive_leads(eight, axis=1)  # (n, 12, T)
    tracings = np.empty((len(eight), N_SAMPLES, len(LEADS)), dtype=np.float32)
    np.multiply(leads.transpose(0, 2, 1), mask[:, :, None], out=tracings)
    return tracings
