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

    Only the output samples are computed (a polyphase sum, no upsampled copy of the
    signal), so memory stays proportional to the input and output: a 30-minute record at
    257 Hz (up 400, down 257) needs no more than its 400 Hz copy.

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
    y = _polyphase(h, x.reshape(n_in, -1), up, down, first, n_out)  # (n_out, k)
    return y.reshape((n_out, *x.shape[1:]))


def _polyphase(h, x, up, down, first, n_out):
    """Samples ``first .. first + n_out - 1`` of scipy's ``upfirdn(h, x, up, down)``.

    Output sample k is ``sum_i h[p + i * up] * x[k * down // up - i]`` with
    ``p = k * down % up`` (x is zero outside its samples). Outputs ``k = first + r + m * up``
    share the phase p, and their input index steps by ``down``: each (residue r, tap i)
    pair is one strided slice of the zero-padded input.
    """
    n_in, n_channels = x.shape
    n_taps = -(-len(h) // up)  # taps per phase
    phases = np.zeros(n_taps * up)
    phases[:len(h)] = h
    phases = phases.reshape(n_taps, up).T  # (up, n_taps): phases[p, i] = h[p + i * up]
    last_base = (first + n_out - 1) * down // up
    padded = np.zeros((n_taps - 1 + max(n_in, last_base + 1), n_channels))
    padded[n_taps - 1:n_taps - 1 + n_in] = x  # padded[j + n_taps - 1] = x[j]
    y = np.empty((n_out, n_channels))
    for r in range(min(up, n_out)):
        count = len(range(r, n_out, up))
        phase, base = divmod((first + r) * down, up)[::-1]
        out = np.zeros((count, n_channels))  # (count, k)
        for i in range(n_taps):
            start = base + n_taps - 1 - i
            out += phases[phase, i] * padded[start:start + (count - 1) * down + 1:down]
        y[r::up] = out
    return y
