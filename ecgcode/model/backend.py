"""What train.py needs from the Keras backend: devices, distribution, determinism, versions.

``train.py`` runs under the ``tensorflow`` and the ``jax`` backends of Keras 3 (chosen, as
always with Keras, by ``KERAS_BACKEND`` before the process imports Keras; TensorFlow stays
installed because the input pipeline is tf.data, which Keras feeds to JAX as numpy).

========================  =============================  ==================================
                          tensorflow                     jax
========================  =============================  ==================================
devices                   ``tf.config``                  ``jax.devices()``
several local devices     ``--distribute mirrored``      ``--distribute data-parallel``
                          (``tf.distribute``)            (``keras.distribution.DataParallel``)
several machines          ``--distribute multi-worker``  not supported (refused)
XLA default               on with a GPU, off on the CPU  on (JAX compiles every step)
``--deterministic``       ``enable_op_determinism``      deterministic XLA GPU ops; the CPU
                                                         is deterministic already
========================  =============================  ==================================

What a backend cannot do is refused with a one-line :class:`ECGInputError` that names the
alternative.
"""

import contextlib
import os

from ecgcode.common import ECGInputError

TRAINING_BACKENDS = ("tensorflow", "jax")
TF_STRATEGIES = ("mirrored", "multi-worker")
JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def name():
    """The name of the Keras backend of this process ("tensorflow", "jax", ...)."""
    import keras  # deferred: imports TensorFlow (or JAX)

    return keras.backend.backend()


def has_gpu(backend=None):
    """True when the Keras backend (default: this process's) computes on a GPU."""
    if (backend or name()) == "jax":
        import jax  # deferred: imports JAX

        return jax.default_backend() == "gpu"
    import tensorflow as tf  # deferred: imports TensorFlow

    return bool(tf.config.list_physical_devices("GPU"))


def check_training_backend(backend):
    """Refuse a Keras backend that train.py does not support."""
    if backend not in TRAINING_BACKENDS:
        raise ECGInputError(f"KERAS_BACKEND={backend}: train.py runs under the tensorflow and "
                            "jax backends; set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")


# --- JAX devices and distribution ------------------------------------------------------
class LocalDevices:
    """Stands in for a ``tf.distribute`` strategy under JAX: ``scope()`` and the replicas.

    With several replicas a ``keras.distribution.DataParallel`` is set for the process
    (:func:`jax_strategy`), which places the variables and splits each batch.
    """

    cluster_resolver = None  # one process: always the chief (see run_setup.is_chief)

    def __init__(self, replicas=1):
        self.num_replicas_in_sync = replicas

    def scope(self):
        """A context manager that does nothing (the distribution is process-wide)."""
        return contextlib.nullcontext()


def jax_strategy(distribute, devices=None):
    """Return (strategy, kind) for ``--distribute`` under the JAX backend.

    Parameters
    ----------
    distribute : str
        auto, none, data-parallel, mirrored or multi-worker (the last two are refused).
    devices : list, optional
        The local devices (``jax.devices()`` when None).

    Returns
    -------
    (LocalDevices, str)
        kind "none" or "data-parallel".
    """
    if distribute in TF_STRATEGIES:
        raise ECGInputError(f"--distribute {distribute}: tf.distribute strategies need "
                            "KERAS_BACKEND=tensorflow; under jax use --distribute "
                            "data-parallel (keras.distribution.DataParallel across the local "
                            "devices), or run this with KERAS_BACKEND=tensorflow")
    if distribute == "auto" and os.environ.get("TF_CONFIG"):
        raise ECGInputError("TF_CONFIG is set, but training on several machines "
                            "(tf.distribute multi-worker) needs KERAS_BACKEND=tensorflow; "
                            "unset TF_CONFIG to train on this machine under jax")
    if devices is None:
        import jax  # deferred: imports JAX

        devices = jax.devices()
    import keras  # deferred: imports Keras and its backend

    if distribute == "none" or (distribute == "auto" and len(devices) == 1):
        keras.distribution.set_distribution(None)  # none left by an earlier run in-process
        return LocalDevices(1), "none"
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return LocalDevices(len(devices)), "data-parallel"


def keep_tensorflow_off_gpus():
    """Under JAX, hide the GPUs from TensorFlow, which then only runs the tf.data pipeline.

    Otherwise TensorFlow would open every GPU too (Keras already limits it to memory growth),
    beside JAX's own preallocation. Does nothing once TensorFlow has started its devices.
    """
    import tensorflow as tf  # deferred: imports TensorFlow

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow's devices are already initialised
        pass


def refuse_data_parallel_under_tensorflow(distribute):
    """``--distribute data-parallel`` is the JAX form; TensorFlow has ``mirrored``."""
    if distribute == "data-parallel":
        raise ECGInputError("--distribute data-parallel (keras.distribution.DataParallel) "
                            "needs KERAS_BACKEND=jax; under tensorflow use --distribute "
                            "mirrored for the local GPUs")


def jax_device_defaults(devices=None):
    """(description, jit default, mixed-precision policy) for JAX's devices."""
    if devices is None:
        import jax  # deferred: imports JAX

        devices = jax.devices()
    gpus = [d for d in devices if d.platform == "gpu"]
    if not gpus:
        return "CPU", True, "mixed_bfloat16"
    capability = str(getattr(gpus[0], "compute_capability", "0.0") or "0.0")
    major = int(capability.split(".")[0] or 0)
    policy = "mixed_bfloat16" if major >= 8 else "mixed_float16"
    return f"{len(gpus)} x {gpus[0].device_kind}", True, policy


# --- Determinism and versions ----------------------------------------------------------
def set_deterministic(backend):
    """Make the backend's ops deterministic (before JAX starts, i.e. before its devices).

    TensorFlow: ``tf.config.experimental.enable_op_determinism()``. JAX: XLA's CPU ops
    are deterministic already; on GPUs the flag ``--xla_gpu_deterministic_ops`` is added
    to ``XLA_FLAGS`` (read when JAX first touches its devices).
    """
    if backend == "tensorflow":
        import tensorflow as tf  # deferred: imports TensorFlow

        tf.config.experimental.enable_op_determinism()
    elif backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {JAX_DETERMINISM_FLAG}".strip()


def versions(backend):
    """Versions of the backend's own packages, for config.json."""
    if backend != "jax":
        return {}
    import jax  # deferred: imports JAX
    import jaxlib  # deferred: part of JAX

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
