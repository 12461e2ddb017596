"""Compute precision: which devices compute bfloat16 natively, and a model in another policy.

A CPU computes bfloat16 natively when it has AMX (``amx_bf16``) or AVX512-BF16
(``avx512_bf16``); elsewhere bfloat16 is emulated and slower than float32. Keras dtype
policies are set per layer: :func:`with_policy` copies a model into another policy, the
weights unchanged, with its output layer kept in float32 (probabilities stay float32).
No TensorFlow is imported here.
"""

import contextlib
import os
import sys

from ecgcode.model.backend import has_gpu

NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""Linux /proc/cpuinfo flags of CPUs that compute bfloat16 in hardware."""


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (Linux), or an empty set where they cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


AMX_FLAG = "amx_bf16"
ONEDNN_ISA_WITHOUT_AMX = "AVX512_CORE_BF16"
"""The ``ONEDNN_MAX_CPU_ISA`` that keeps TensorFlow's oneDNN off AMX (see keep_onednn_off_amx)."""


def keep_onednn_off_amx(flags=None, environ=None):
    """On a CPU with AMX, cap TensorFlow's oneDNN at AVX512-BF16, unless the user chose a cap.

    Measured with TensorFlow 2.21 on an Intel Xeon with AMX: a bfloat16 ``Conv1D`` with
    kernel size 16 (every convolution of the paper's model) comes out wrong on AMX, with
    an error as large as the outputs themselves; the paper's model in mixed bfloat16 then
    differs from float32 by up to 0.98 in probability. Every AMX cap of
    ``ONEDNN_MAX_CPU_ISA`` gave the same; at ``AVX512_CORE_BF16`` the difference is 0.06
    at most and a kernel-16 convolution is within 0.4 % of float32. float32 never uses
    AMX, so only bfloat16 changes. oneDNN reads the variable at its first operation, so
    this must run before TensorFlow computes anything; ``import ecgcode`` runs it.

    Parameters
    ----------
    flags : set of str, optional
        The CPU's flags (:func:`cpu_flags` when None).
    environ : mapping, optional
        The environment to set (``os.environ`` when None).

    Returns
    -------
    bool
        True when the cap was set here.
    """
    environ = os.environ if environ is None else environ
    flags = cpu_flags() if flags is None else set(flags)
    if AMX_FLAG not in flags or "ONEDNN_MAX_CPU_ISA" in environ:
        return False
    environ["ONEDNN_MAX_CPU_ISA"] = ONEDNN_ISA_WITHOUT_AMX
    return True


def default_cpu_precision(flags=None):
    """(policy, reason): TensorFlow's default dtype policy on this CPU, for train.py.

    Mixed bfloat16 where the CPU computes it natively without AMX (AVX512-BF16: 2.1x the
    float32 speed, PERFORMANCE.md); float32 elsewhere, and on AMX CPUs, where oneDNN is
    kept off AMX (:func:`keep_onednn_off_amx`) and AVX512-BF16 measured no faster than
    float32 (45 against 44 ECG/s for the paper's model).
    """
    flags = cpu_flags() if flags is None else set(flags)
    if AMX_FLAG in flags:
        return "float32", ("TensorFlow's bfloat16 convolutions are wrong on this CPU's AMX "
                           "(amx_bf16), and no faster than float32 without it")
    native = native_bfloat16_cpu(flags) is not None
    return ("mixed_bfloat16" if native else "float32"), describe_bfloat16_support(flags)


def native_bfloat16_cpu(flags=None):
    """The flag that makes bfloat16 native on this CPU (``amx_bf16``, ``avx512_bf16``), or None."""
    flags = cpu_flags() if flags is None else set(flags)
    return next((flag for flag in NATIVE_BF16_CPU_FLAGS if flag in flags), None)


def with_policy(model, policy):
    """``model`` itself when it already computes in ``policy``, else a copy in ``policy``.

    Every layer but the last one takes ``policy`` (e.g. ``"mixed_bfloat16"``: bfloat16
    compute, float32 weights); the last layer computes in float32, as the project's models
    always do, so the outputs stay float32 probabilities.

    Parameters
    ----------
    model : keras.Model
        A functional model.
    policy : str
        A Keras dtype policy name.

    Returns
    -------
    keras.Model
    """
    import keras  # deferred: imports TensorFlow (or JAX)

    last = model.layers[-1].name
    wanted = {layer.name: ("float32" if layer.name == last else policy) for layer in model.layers}
    if all(layer.dtype_policy.name == wanted[layer.name] for layer in model.layers):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if "dtype" in layer.get("config", {}) and layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = wanted.get(layer["config"].get("name"), policy)
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def describe_bfloat16_support(flags=None):
    """One phrase on whether this CPU computes bfloat16 natively (for warnings and banners)."""
    flag = native_bfloat16_cpu(flags)
    if flag:
        return f"this CPU computes bfloat16 natively ({flag})"
    machine = os.uname().machine if hasattr(os, "uname") else "this machine"
    return f"this CPU ({machine}) has no native bfloat16 (no amx_bf16 nor avx512_bf16)"


def bfloat16_model(model):
    """``model`` computing in mixed bfloat16 (float32 output), with a note on the hardware."""
    import keras  # deferred: imports TensorFlow (the caller has, quietly)

    if not has_gpu(keras.backend.backend()) and native_bfloat16_cpu() is None:
        print(f"warning: --precision bfloat16: {describe_bfloat16_support()}, so bfloat16 is "
              "emulated and slower than float32; drop --precision", file=sys.stderr)
    return with_policy(model, "mixed_bfloat16")


@contextlib.contextmanager
def global_policy(policy):
    """Set Keras' global dtype policy (e.g. ``mixed_bfloat16``) for the block; restore it after."""
    import keras  # deferred: imports TensorFlow (or JAX) only when a policy is set

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
