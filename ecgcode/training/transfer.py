"""Fine-tuning: start a run from the weights of another model (``train.py --init``).

Every layer with weights transfers in order, shape for shape, except the output layer
when the class sets differ: the head is then new, with a zero kernel and each bias at the
logit of its class's prevalence in the training rows, so every output starts at the class
prior and the first updates follow the pretrained features' correlation with the new
labels (a random head adds noise of the size of the signal, and a 0.5 start spends the
first Adam steps on the prior); the backbone keeps the source's weights. With the same
class set (in any order) the head transfers too, its columns permuted to the new order.
``freeze_backbone`` makes every layer but the head untrainable (batch normalisation then
runs in inference mode, with the source's statistics).
"""


import numpy as np

from ecgcode.common import ECGInputError
from ecgcode.model.modelfiles import load_model_and_classes, model_file


def weighted_layers(model):
    """The layers of ``model`` that hold weights, in order (the last one is the head)."""
    return [layer for layer in model.layers if layer.weights]


def transfer_weights(model, source_path, classes, prevalence=None):
    """Copy the weights of the model at ``source_path`` into ``model``.

    Parameters
    ----------
    model : keras.Model
        The new model, with one output per class of ``classes``.
    source_path : str
        A model file or run folder that ``ecgcode.model.modelfiles.load_model`` reads.
    classes : sequence of str
        The class names of ``model``'s outputs.
    prevalence : array_like, optional
        (n_classes,) fraction of positive training rows per class, for a new head's bias
        (0.5 when not given).

    Returns
    -------
    dict
        ``source``, ``source_classes``, ``layers`` (transferred layers) and ``head``
        ("transferred", "transferred, columns reordered" or "new").
    """
    path = model_file(source_path)
    source, source_classes, _ = load_model_and_classes(path)
    targets, sources = weighted_layers(model), weighted_layers(source)
    if len(targets) != len(sources):
        raise ECGInputError(f"{path}: {len(sources)} layers with weights, the model being "
                            f"trained has {len(targets)}; --init needs the same architecture")
    for target, origin in zip(targets[:-1], sources[:-1]):
        _copy_layer(target, origin, path)
    head = _transfer_head(targets[-1], sources[-1], tuple(source_classes), tuple(classes))
    if head == "new":
        _prior_head(targets[-1], len(classes) if prevalence is None else prevalence)
    return {"source": path, "source_classes": list(source_classes),
            "layers": len(targets) - (head == "new"), "head": head}


def _copy_layer(target, origin, path):
    values = origin.get_weights()
    expected = [tuple(w.shape) for w in target.weights]
    if [v.shape for v in values] != expected:
        raise ECGInputError(f"{path}: layer {origin.name} has weights of shapes "
                            f"{[v.shape for v in values]}, expected {expected} (layer "
                            f"{target.name}); --init needs the same architecture")
    target.set_weights(values)


def _transfer_head(target, origin, source_classes, classes):
    if set(source_classes) != set(classes) or len(source_classes) != len(classes):
        return "new"
    order = [source_classes.index(name) for name in classes]
    kernel, *rest = origin.get_weights()  # kernel (features, classes), bias (classes,)
    if kernel.shape[:-1] != tuple(target.weights[0].shape[:-1]):
        return "new"
    target.set_weights([kernel[..., order], *(np.asarray(b)[order] for b in rest)])
    return "transferred" if order == sorted(order) else "transferred, columns reordered"


def _prior_head(layer, prevalence):
    """Zero kernel; bias at the logit of each class's prevalence (clipped to [1e-3, 1-1e-3])."""
    kernel, *bias = layer.weights
    values = [np.zeros(kernel.shape, dtype="float32")]
    if bias:
        p = np.full(bias[0].shape, 0.5) if np.isscalar(prevalence) else np.asarray(prevalence)
        p = np.clip(p.astype("float64"), 1e-3, 1 - 1e-3)
        values.append(np.log(p / (1 - p)).astype("float32"))
    layer.set_weights(values)


def freeze_backbone(model):
    """Make every layer but the output layer untrainable; return the trainable count."""
    head = weighted_layers(model)[-1]
    for layer in model.layers:
        layer.trainable = layer is head
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)
