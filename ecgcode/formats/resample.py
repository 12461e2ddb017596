"""Polyphase resampling in numpy: the filter and result of ``scipy.signal.resample_poly``.

``import scipy.signal`` costs about 0.55 s (it loads scipy.stats, scipy.interpolate, ...),
a third of the time budget of predicting one exam, for the one function the converter
needs. :func:`resample_poly` computes what ``scipy.signal.resample_poly(x, up, down,
axis=0)`` computes with its defaults (a Kaiser-windowed FIR low-pass of 20 * max(up, down)
+ 1 taps, beta 5, zero padding at both ends), to float64 rounding; tests/test_fastpath.py
compares the two.
"""

import math

import numpy as np

KAISER_BETA = 5.0
"""scipy.signal.resample_poly's default window, ``("kaiser", 5.0)``."""


def lowpass_filter(up, down):
    """The anti-aliasing FIR filter of resample_poly for ``up``/``down`` (gain ``up``).

    Returns
    -------
    numpy.ndarray, shape (20 * max(up, down) + 1,), float64
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    n_taps = 2 * half_len + 1
    cutoff = 1.0 / max_rate  # of the Nyquist rate
    m = np.arange(n_taps) - half_len  # (n_taps,)
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(n_taps, KAISER_BETA)
    return h / h.sum() * up  # unit gain at DC, times up for the inserted zeros


def resample_poly(x, up, down):
    """Resample ``x`` along axis 0 by ``up / down`` (as scipy.signal.resample_poly, axis=0).

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples, ...)
    up, down : int
        Positive integers.

    Returns
    -------
    numpy.ndarray, shape (ceil(n_samples * up / down), ...), float64
    """
    divisor = math.gcd(up, down)
    up, down = up // divisor, down // divisor
    x = np.asarray(x, dtype=np.float64)
    if up == down == 1:
        return x.copy()
    n_in = x.shape[0]
    n_out = -(-n_in * up // down)
    h = lowpass_filter(up, down)
    half_len = (len(h) - 1) // 2
    n_pre_pad = down - half_len % down  # centres the filter on whole output samples
    h = np.concatenate([np.zeros(n_pre_pad), h])
    first = (half_len + n_pre_pad) // down  # the output samples of the filter's delay
    upsampled = _upfirdn(h, x.reshape(n_in, -1), up, down, first + n_out)
    return upsampled[first:first + n_out].reshape((n_out, *x.shape[1:]))


def _upfirdn(h, x, up, down, n_keep):
    """The first ``n_keep`` samples of: upsample x (n, k) by up, filter by h, keep every down-th.

    Polyphase: the upsampled signal's sample ``j * up + p`` is x filtered by ``h[p::up]``.
    Samples past the filtered signal's end are zeros (scipy pads the filter likewise).
    """
    n_in, n_channels = x.shape
    n_full = max((n_in - 1) * up + len(h), n_keep * down)
    full = np.zeros((n_full, n_channels))  # (upsampled + filter length, k)
    for phase in range(min(up, len(h))):
        taps = h[phase::up]
        for channel in range(n_channels):
            filtered = np.convolve(x[:, channel], taps)  # (n_in + len(taps) - 1,)
            full[phase:phase + len(filtered) * up:up, channel] = filtered
    return full[::down][:n_keep]
