"""The callbacks Keras lacks for the paper's recipe (``ecgcode/training/recipe.py``).

Each class says first what Keras lacks. The recipe's other callbacks are Keras' own:
``ReduceLROnPlateau``, ``EarlyStopping``, ``TerminateOnNaN``, ``TensorBoard``.
"""

import math
import time

import keras
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ecgcode.common import INPUT_SHAPE
from ecgcode.model.runfolder import json_safe


class ValidationMetrics(keras.callbacks.Callback):
    """Keras lacks the validation predictions: ``fit``'s validation gives the mean loss and
    metrics, while each epoch's F1-maximising thresholds (``thresholds.json``) and the exact
    per-class AUROC and average precision need the scores themselves.

    So this callback predicts the validation rows once per epoch and derives ``val_loss``
    (Keras' own ``binary_crossentropy``) and the scores from them. It predicts outside any
    distribution strategy (one device, file order), so every worker gets the same numbers.
    Must come before the callbacks that monitor ``val_loss``. It also records how long the
    epoch trained before its validation (``train_seconds``, for the history).

    Parameters
    ----------
    val_dataset : tf.data.Dataset
        (x, y) batches of the validation rows, not shuffled.
    classes : sequence of str
        Names of the label columns (per-class scores are logged under them).
    jit_compile : bool
        Compile the prediction function with XLA (TensorFlow; under JAX the model's own
        ``jit_compile`` applies).
    """

    def __init__(self, val_dataset, classes, jit_compile=False):
        super().__init__()
        self.val_dataset = val_dataset
        self.classes = tuple(classes)
        self.jit_compile = jit_compile
        self.y_true = None
        self.y_score = None
        self.scores = {}
        self.train_seconds = None
        self._epoch_started = None
        self._predict = None

    def predict(self):
        """Return (y_true, y_score) arrays (n_val, n_classes) for the current weights."""
        if self._predict is None:
            self._predict = self._predict_function()
        labels, scores = [], []
        for x, y in self.val_dataset:  # x: (batch, 4096, 12)
            scores.append(np.asarray(self._predict(x), dtype=np.float32))  # (batch, n_classes)
            labels.append(y.numpy())
        return np.concatenate(labels), np.concatenate(scores)

    def _predict_function(self):
        """x (batch, 4096, 12) -> scores: a tf.function, or under JAX the model's own
        (jitted when the model was compiled with jit_compile) ``predict_on_batch``."""
        model = self.model
        if keras.backend.backend() != "tensorflow":
            return lambda x: model.predict_on_batch(x.numpy())
        import tensorflow as tf  # deferred: imports TensorFlow

        return tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32)],
            jit_compile=self.jit_compile,
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds = time.perf_counter() - self._epoch_started
        self.y_true, self.y_score = self.predict()
        if not np.isfinite(self.y_score).all():
            logs["val_loss"], self.scores = math.nan, {}
            return
        self.scores = per_class_scores(self.y_true, self.y_score, self.classes)
        aurocs = [v for k, v in self.scores.items() if k.startswith("auroc_")]
        losses = keras.losses.binary_crossentropy(self.y_true, self.y_score)  # (n_val,)
        logs["val_loss"] = float(keras.ops.convert_to_numpy(keras.ops.mean(losses)))
        logs["val_auroc"] = float(np.nanmean(aurocs)) if not np.isnan(aurocs).all() else math.nan


def per_class_scores(y_true, y_score, classes):
    """``{"auroc_<class>": float, "ap_<class>": float}``: per-class AUROC and average
    precision of (n, n_classes) labels ``y_true`` and scores ``y_score`` whose columns are
    ``classes``; NaN for a class without both outcomes."""
    scores = {}
    for k, name in enumerate(classes):
        y, s = y_true[:, k], y_score[:, k]
        both = 0 < y.sum() < len(y)
        scores[f"auroc_{name}"] = float(roc_auc_score(y, s)) if both else math.nan
        scores[f"ap_{name}"] = float(average_precision_score(y, s)) if both else math.nan
    return scores


class PerClassLogs(keras.callbacks.Callback):
    """Keras lacks logs that its progress bar leaves out: ``ProgbarLogger`` prints every key,
    so twelve per-class scores would stretch each epoch's line.

    Placed after the progress bar, this callback adds the per-class validation scores of a
    :class:`ValidationMetrics` to the logs, for TensorBoard and the history.
    """

    def __init__(self, validation):
        super().__init__()
        self.validation = validation

    def on_epoch_end(self, epoch, logs=None):
        logs.update({f"val_{k}": v for k, v in self.validation.scores.items()})


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras lacks a progress bar that counts past one ``fit``: with one ``fit`` per epoch
    (``ecgcode.training.recipe.fit_epochs`` says why) its bar would say "Epoch 3/3"; this one
    says "Epoch 3/70"."""

    def __init__(self, total_epochs):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


COUNTERS = {
    "reduce_lr": ("wait", "best", "cooldown_counter"),
    "early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
}
"""The attributes of ReduceLROnPlateau and EarlyStopping that a resumed run needs back."""


class KeepCounters(keras.callbacks.Callback):
    """Keras lacks callback state in its checkpoints (keras-team/keras#14862): a saved model
    keeps the weights and the optimizer, but ReduceLROnPlateau and EarlyStopping reset
    their patience counters and best value at the start of every ``fit``.

    Placed after those two, this callback puts back the counters of the previous epoch (or
    of the resumed run) at the start of each ``fit``, and records them at each epoch's end
    (``saved``, JSON-safe, for the run's resume state).

    Parameters
    ----------
    named_callbacks : dict
        ``{"reduce_lr": ReduceLROnPlateau, "early_stopping": EarlyStopping}``.
    saved : dict, optional
        Counters recorded by an earlier run (its resume state's ``counters``).
    """

    def __init__(self, named_callbacks, saved=None):
        super().__init__()
        self.named_callbacks = named_callbacks
        self.saved = dict(saved or {})

    def capture(self):
        """Return the counters of the callbacks as a JSON-safe dict."""
        return {
            name: {attr: json_safe(getattr(callback, attr, None)) for attr in COUNTERS[name]}
            for name, callback in self.named_callbacks.items()
        }

    def on_train_begin(self, logs=None):
        for name, values in self.saved.items():
            callback = self.named_callbacks[name]
            for attr, value in values.items():
                if attr == "best" and value is None:
                    continue  # Keras' own "nothing seen yet"
                setattr(callback, attr, value)

    def on_epoch_end(self, epoch, logs=None):
        self.saved = self.capture()
