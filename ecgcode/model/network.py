"""The paper's 1-D ResNet for 12-lead ECG classification, in plain Keras layers.

Ribeiro et al., "Automatic diagnosis of the 12-lead ECG using a deep neural network",
Nature Communications 11:1760 (2020). The network maps a (4096, 12) tracing to
independent sigmoid probabilities (see ``ecgcode.common.CLASSES``).

Layers are named exactly as Keras 2.2.4 named them in the original study
(``conv1d_1``, ``batch_normalization_1``, ...), so the published weights match by name.
No custom layers or objects: a saved model loads with plain Keras.
"""

import keras

from ecgcode.common import INPUT_SHAPE, N_CLASSES

KERNEL_SIZE = 16
KERNEL_INITIALIZER = "he_normal"
DROPOUT_RATE = 0.2
FIRST_FILTERS = 64
RESIDUAL_UNITS = ((1024, 128), (256, 196), (64, 256), (16, 320))
"""(output samples, filters) of the four residual units."""


class _LegacyNames:
    """Hands out Keras-2.2.4-style layer names (``conv1d_1``, ``conv1d_2``, ...)."""

    def __init__(self):
        self.counts = {}

    def __call__(self, prefix):
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}_{self.counts[prefix]}"


def _conv(filters, kernel_size, name, strides=1):
    return keras.layers.Conv1D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=KERNEL_INITIALIZER,
        name=name,
    )


def _bn_relu_dropout(x, names, dropout=True):
    x = keras.layers.BatchNormalization(name=names("batch_normalization"))(x)
    x = keras.layers.Activation("relu", name=names("activation"))(x)
    if dropout:
        x = keras.layers.Dropout(DROPOUT_RATE, name=names("dropout"))(x)
    return x


def _residual_unit(x, skip, samples_out, filters_out, names):
    """One pre-activation residual unit; returns the new (x, skip).

    ``x`` is the activated main input, ``skip`` the un-activated sum of the previous unit.
    """
    downsample = skip.shape[1] // samples_out
    # Skip path: pool to the new length, then a 1x1 projection when the width changes.
    if downsample > 1:
        skip = keras.layers.MaxPooling1D(
            downsample, strides=downsample, padding="same", name=names("max_pooling1d")
        )(skip)
    if skip.shape[-1] != filters_out:
        skip = _conv(filters_out, 1, names("conv1d"))(skip)  # (batch, samples_out, filters_out)
    # Main path.
    x = _conv(filters_out, KERNEL_SIZE, names("conv1d"))(x)  # (batch, samples_in, filters_out)
    x = _bn_relu_dropout(x, names)
    x = _conv(filters_out, KERNEL_SIZE, names("conv1d"), strides=downsample)(x)
    skip = keras.layers.Add(name=names("add"))([x, skip])  # (batch, samples_out, filters_out)
    x = _bn_relu_dropout(skip, names)
    return x, skip


def get_model(n_classes=N_CLASSES, last_layer="sigmoid"):
    """Build the paper's ResNet (6,425,638 parameters with six classes).

    Parameters
    ----------
    n_classes : int
        Number of outputs.
    last_layer : str
        Activation of the output layer ("sigmoid" in the paper; "linear" gives logits).

    Returns
    -------
    keras.Model
        Functional model: input ``signal`` (batch, 4096, 12) float32, output
        (batch, n_classes). The output layer always computes in float32, so the model
        also works under a mixed-precision policy.
    """
    names = _LegacyNames()
    signal = keras.Input(shape=INPUT_SHAPE, dtype="float32", name="signal")  # (batch, 4096, 12)
    x = _conv(FIRST_FILTERS, KERNEL_SIZE, names("conv1d"))(signal)  # (batch, 4096, 64)
    x = _bn_relu_dropout(x, names, dropout=False)
    skip = x
    for samples_out, filters_out in RESIDUAL_UNITS:
        x, skip = _residual_unit(x, skip, samples_out, filters_out, names)
    x = keras.layers.Flatten(name=names("flatten"))(x)  # (batch, 16 * 320)
    outputs = keras.layers.Dense(
        n_classes,
        activation=last_layer,
        kernel_initializer=KERNEL_INITIALIZER,
        dtype="float32",
        name=names("dense"),
    )(x)  # (batch, n_classes)
    return keras.Model(signal, outputs, name="ecg_resnet")
