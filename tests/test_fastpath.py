"""predict.py's fast path: an ONNX export run by onnxruntime, without TensorFlow or Keras.

The equality tests compare the ONNX path's output table with the Keras path's on the same
inputs; the import test runs predict.py in a fresh process and lists what it imported.
"""

import numpy as np
import pytest
from scipy.signal import resample_poly as scipy_resample_poly

from ecgcode.formats.resample import resample_poly


@pytest.mark.parametrize("n, up, down", [(5000, 4, 5), (2500, 8, 5), (10000, 2, 5),
                                         (3600, 10, 9), (7, 4, 5), (1, 4, 5), (4000, 2, 5)])
def test_resample_poly_is_scipys(n, up, down):
    x = np.random.default_rng(n).normal(0, 100, (n, 12))  # (n, 12) float64
    expected = scipy_resample_poly(x, up, down, axis=0)
    got = resample_poly(x, up, down)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_resample_poly_other_shapes():
    x = np.arange(50.0)  # (50,)
    np.testing.assert_allclose(resample_poly(x, 4, 5), scipy_resample_poly(x, 4, 5), atol=1e-9)
    np.testing.assert_array_equal(resample_poly(x, 3, 3), x)
