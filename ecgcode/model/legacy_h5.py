"""Make the ``.h5`` files Keras 3 writes loadable by tf.keras 2.x (``tf_keras``) too.

Keras 3 writes the legacy HDF5 layout, but its ``model_config`` uses Keras 3 spellings
that tf.keras 2.x rejects (``batch_shape``, dtype-policy objects, ``{"args": ...}``
nodes, new constructor arguments). :func:`rewrite_for_tf_keras2` rewrites those
attributes in place into the tf.keras 2.x spellings, which Keras 3 also reads: the
file then loads in Keras 3 (any backend) and in tf.keras 2.x with the same weights.

Only the layers, initializers and optimizers the project writes are covered; the
rewrite is checked by a test that loads the file with ``tf_keras``.
"""

import json
import warnings

import h5py

KERAS3_ONLY_ARGUMENTS = {
    "InputLayer": ("optional",),
    "Dense": ("quantization_config", "lora_rank", "lora_alpha"),
    "Conv1D": ("lora_rank", "lora_alpha"),
    "HeNormal": ("input_axes", "output_axes"),
    "HeUniform": ("input_axes", "output_axes"),
    "GlorotUniform": ("input_axes", "output_axes"),
    "GlorotNormal": ("input_axes", "output_axes"),
    "VarianceScaling": ("input_axes", "output_axes"),
}
"""Constructor arguments, per class, that Keras 3 saves and tf.keras 2.x does not know."""

OPTIMIZER_FEATURES_OFF = {
    "weight_decay": None,
    "use_ema": False,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}
"""Keras 3 optimizer arguments that tf.keras 2.x's (legacy) optimizers refuse, at the value
where the feature is off, so that leaving them out changes nothing."""

KERAS3_ONLY_OPTIMIZER_ARGUMENTS = (*OPTIMIZER_FEATURES_OFF, "ema_momentum")

DTYPE_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy", "Policy")


# --- The file ----------------------------------------------------------------------
def rewrite_for_tf_keras2(path):
    """Rewrite, in place, the model and training configuration of a Keras 3 ``.h5`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A full-model ``.h5`` file written by Keras 3's ``model.save``.

    Returns
    -------
    bool
        False, with a warning and the file untouched (it then loads in Keras 3 only), for a
        model the rewrite does not cover: not functional, or a layer called on something
        other than tensors.
    """
    with h5py.File(path, "r+") as f:
        config = json.loads(_as_str(f.attrs["model_config"]))
        try:
            model_config = tf_keras2_model_config(config)
        except ValueError as error:
            warnings.warn(f"{path}: left in the Keras 3 spelling, tf.keras 2.x cannot load it "
                          f"({error})", stacklevel=2)
            return False
        f.attrs["model_config"] = json.dumps(model_config).encode("utf8")
        if "training_config" in f.attrs:
            training = json.loads(_as_str(f.attrs["training_config"]))
            f.attrs["training_config"] = json.dumps(tf_keras2_training_config(training)).encode(
                "utf8"
            )
    return True


# --- Model configuration -----------------------------------------------------------
def tf_keras2_model_config(config):
    """Return a functional-model configuration in the tf.keras 2.x spelling.

    Parameters
    ----------
    config : dict
        ``{"class_name": "Functional", "config": {"layers": [...], ...}}`` as Keras 3
        writes it into an ``.h5`` file's ``model_config``.

    Returns
    -------
    dict
        The same model, readable by tf.keras 2.x and by Keras 3.

    Raises
    ------
    ValueError
        Not a functional model, or a node input that is not a tensor.
    """
    if config.get("class_name") != "Functional":
        raise ValueError(f"a {config.get('class_name')} model, not a functional one")
    model = dict(config["config"])
    model["layers"] = [_layer(layer) for layer in model["layers"]]
    # input_layers/output_layers stay as they are: tf.keras 2.x reads the single-tensor
    # ``["signal", 0, 0]`` too, and a ``[[...]]`` list would make Keras 3 expect a list.
    return {"class_name": config["class_name"], "config": model}


def _layer(layer):
    """One layer entry: plain constructor arguments and list-style inbound nodes."""
    class_name = layer["class_name"]
    arguments = _plain_arguments(class_name, layer["config"])
    if class_name == "InputLayer" and "batch_shape" in arguments:
        arguments["batch_input_shape"] = arguments.pop("batch_shape")
    return {
        "class_name": class_name,
        "config": arguments,
        "name": layer["name"],
        "inbound_nodes": [_node(node) for node in layer.get("inbound_nodes", [])],
    }


def _plain_arguments(class_name, arguments):
    """Constructor arguments without Keras 3-only keys, with plain nested objects."""
    dropped = KERAS3_ONLY_ARGUMENTS.get(class_name, ())
    return {
        key: _plain_value(value) for key, value in arguments.items() if key not in dropped
    }


def _plain_value(value):
    """A serialized object the tf.keras 2.x way: dtype policies as names, no ``module``."""
    if not isinstance(value, dict) or "class_name" not in value:
        return value
    if value["class_name"] in DTYPE_POLICY_CLASSES:
        return value.get("config", {}).get("name", "float32")
    return {
        "class_name": value["class_name"],
        "config": _plain_arguments(value["class_name"], value.get("config") or {}),
    }


def _node(node):
    """A Keras 3 node ``{"args": [...], "kwargs": {...}}`` as ``[[layer, node, tensor, kwargs]]``."""
    if isinstance(node, list):
        return node  # already the tf.keras 2.x spelling
    args = node.get("args", [])
    tensors = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    kwargs = {  # a recorded training=False would switch Dropout off for good in tf.keras 2.x
        key: value for key, value in node.get("kwargs", {}).items()
        if value is not None and key != "training"
    }
    return [[*_tensor_reference(tensor), kwargs] for tensor in tensors]


def _tensor_reference(tensor):
    """``[layer name, node index, tensor index]`` of a serialized ``__keras_tensor__``."""
    if not (isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__"):
        raise ValueError(f"cannot write this node input in the tf.keras 2.x format: {tensor!r}")
    return list(tensor["config"]["keras_history"])


# --- Training configuration --------------------------------------------------------
def tf_keras2_training_config(training):
    """Return a training configuration whose optimizer tf.keras 2.x can rebuild.

    Parameters
    ----------
    training : dict
        The ``training_config`` attribute Keras 3 writes (loss, metrics, optimizer).
    """
    training = dict(training)
    optimizer = training.get("optimizer_config")
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("config"), dict)):
        return training
    arguments = optimizer["config"]
    if any(arguments.get(key, off) != off for key, off in OPTIMIZER_FEATURES_OFF.items()):
        return training  # a Keras 3 optimizer feature is in use: keep it for Keras 3
    arguments = {
        key: value for key, value in arguments.items()
        if key not in KERAS3_ONLY_OPTIMIZER_ARGUMENTS
    }
    training["optimizer_config"] = {"class_name": optimizer["class_name"], "config": arguments}
    return training


def _as_str(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
