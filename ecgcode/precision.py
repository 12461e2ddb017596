"""Compute precision: which devices compute bfloat16 natively, and a model in another policy.

A CPU computes bfloat16 natively when it has AMX (``amx_bf16``) or AVX512-BF16
(``avx512_bf16``); elsewhere bfloat16 is emulated and slower than float32. Keras dtype
policies are set per layer: :func:`with_policy` copies a model into another policy, the
weights unchanged, with its output layer kept in float32 (probabilities stay float32).
No TensorFlow is imported here.
"""

import os
import sys

from ecgcode.backend import has_gpu

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
    import keras

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


def describe_bfloat16_support():
    """One phrase on whether this CPU computes bfloat16 natively (for warnings and banners)."""
    flag = native_bfloat16_cpu()
    if flag:
        return f"this CPU computes bfloat16 natively ({flag})"
    machine = os.uname().machine if hasattr(os, "uname") else "this machine"
    return f"this CPU ({machine}) has no native bfloat16 (no amx_bf16 nor avx512_bf16)"


def bfloat16_model(model):
    """``model`` computing in mixed bfloat16 (float32 output), with a note on the hardware."""
    import keras  # the caller has imported TensorFlow quietly

    if not has_gpu(keras.backend.backend()) and native_bfloat16_cpu() is None:
        print(f"warning: --precision bfloat16: {describe_bfloat16_support()}, so bfloat16 is "
              "emulated and slower than float32; drop --precision", file=sys.stderr)
    return with_policy(model, "mixed_bfloat16")
