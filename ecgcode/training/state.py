"""Training bookkeeping for ``train.py``: callbacks, validation metrics and resumable state.

A run folder holds ``resume/state.json`` (the commit point) and the checkpoint it names,
``resume/epoch_NNNN.keras`` (weights *and* optimizer state). The state file is replaced
atomically after the checkpoint is complete, so a run killed at any moment (even with
``kill -9``) resumes from the last completed epoch with the same optimizer state, learning
rate, ReduceLROnPlateau/EarlyStopping counters, dropout random-number state and data order.
"""

import json
import math
import os
import shutil
import time

import keras
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ecgcode.classnames import output_names, write_model_info
from ecgcode.common import INPUT_SHAPE, atomic_output
from ecgcode.runfolder import (
    CHECKPOINT_PREFIX,
    LAST_MODEL,
    RESUME_DIR,
    checkpoint_name,
    json_safe,
    run_file,
    state_path,
    write_json,
)

STATE_FORMAT = 1


def epoch_seed(seed, epoch):
    """Data-order seed of one epoch: depends only on (seed, epoch), so resumes repeat it."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


# --- Validation metrics ---------------------------------------------------------------
def binary_cross_entropy(y_true, y_score):
    """Mean binary cross-entropy, as Keras computes it (probabilities clipped at 1e-7)."""
    p = np.clip(np.asarray(y_score, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y_true, dtype=np.float64)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def per_class_scores(y_true, y_score, classes):
    """Per-class AUROC and average precision; NaN for a class without both outcomes.

    Parameters
    ----------
    y_true, y_score : numpy.ndarray
        (n, n_classes) labels and scores.
    classes : sequence of str
        The names of the columns.

    Returns
    -------
    dict
        ``{"auroc_<class>": float, "ap_<class>": float}`` for every class.
    """
    scores = {}
    for k, name in enumerate(classes):
        y, s = y_true[:, k], y_score[:, k]
        both = 0 < y.sum() < len(y)
        scores[f"auroc_{name}"] = float(roc_auc_score(y, s)) if both else math.nan
        scores[f"ap_{name}"] = float(average_precision_score(y, s)) if both else math.nan
    return scores


class ValidationMetrics(keras.callbacks.Callback):
    """Predicts the validation set at each epoch end and adds val_loss and val AUROC.

    Predictions run outside any distribution strategy (one device, file order), so they are
    the same on every worker. Must come before the callbacks that monitor ``val_loss``.

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

    def on_epoch_end(self, epoch, logs=None):
        self.y_true, self.y_score = self.predict()
        if not np.isfinite(self.y_score).all():
            logs["val_loss"], self.scores = math.nan, {}
            return
        self.scores = per_class_scores(self.y_true, self.y_score, self.classes)
        aurocs = [v for k, v in self.scores.items() if k.startswith("auroc_")]
        logs["val_loss"] = binary_cross_entropy(self.y_true, self.y_score)
        logs["val_auroc"] = float(np.nanmean(aurocs)) if not np.isnan(aurocs).all() else math.nan


class PerClassLogs(keras.callbacks.Callback):
    """Adds the per-class validation scores of a ValidationMetrics callback to the logs.

    Placed after the progress bar, so that the bar's line stays short while TensorBoard and
    the history still receive every class.
    """

    def __init__(self, validation):
        super().__init__()
        self.validation = validation

    def on_epoch_end(self, epoch, logs=None):
        logs.update({f"val_{k}": v for k, v in self.validation.scores.items()})


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose running loss is not finite."""

    def __init__(self):
        super().__init__()
        self.bad_batch = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_batch = batch
            self.model.stop_training = True


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, saying "Epoch 3/70" although ``fit`` runs one epoch at a time."""

    def __init__(self, total_epochs):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


class EpochTimer(keras.callbacks.Callback):
    """Records the learning rate used in an epoch and the epoch's wall time."""

    def __init__(self):
        super().__init__()
        self.lr = None
        self.started = None
        self.seconds = None

    def on_epoch_begin(self, epoch, logs=None):
        self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.started


# --- Callback counters ------------------------------------------------------------------
_COUNTERS = {
    "reduce_lr": ("wait", "best", "cooldown_counter"),
    "early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
}


class RestoreCounters(keras.callbacks.Callback):
    """Puts saved counters back into ReduceLROnPlateau/EarlyStopping after they reset.

    ``fit`` resets both callbacks in ``on_train_begin``; this callback, placed after them,
    restores the values of the previous epoch (or of the resumed run).
    """

    def __init__(self, named_callbacks):
        super().__init__()
        self.named_callbacks = named_callbacks
        self.saved = {}

    def capture(self):
        """Return the counters of the callbacks as a JSON-safe dict."""
        return {
            name: {attr: json_safe(getattr(callback, attr, None)) for attr in _COUNTERS[name]}
            for name, callback in self.named_callbacks.items()
        }

    def on_train_begin(self, logs=None):
        for name, values in self.saved.items():
            callback = self.named_callbacks[name]
            for attr, value in values.items():
                if attr == "best" and value is None:
                    continue  # Keras' own "nothing seen yet"
                setattr(callback, attr, value)


# --- Random-number state of dropout layers -----------------------------------------------
def _seed_states(model):
    return [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]


def capture_seed_states(model):
    """The states of the model's seed generators (dropout masks), which .keras files omit."""
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in _seed_states(model)]


def restore_seed_states(model, states):
    """Assign states captured by :func:`capture_seed_states` (same architecture)."""
    variables = _seed_states(model)
    if len(variables) != len(states):
        raise ValueError(f"{len(states)} saved seed states for {len(variables)} generators")
    for variable, state in zip(variables, states):
        variable.assign(np.asarray(state, dtype=variable.dtype))


# --- The resumable state -------------------------------------------------------------
def read_state(out_dir):
    """The resume state of a run folder, or None when it has none."""
    path = state_path(out_dir)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def checkpoint_path(out_dir, state):
    """Path of the checkpoint named by a resume state."""
    return run_file(out_dir, RESUME_DIR, state["checkpoint"])


def commit_epoch(out_dir, model, state, classes=None, provenance=None):
    """Save the checkpoint of a completed epoch, then commit ``state`` pointing to it.

    Parameters
    ----------
    out_dir : str
        Run folder.
    model : keras.Model
        Compiled model; saved with its optimizer state.
    state : dict
        Must hold ``completed_epochs``; ``checkpoint`` is set here.
    classes : sequence of str, optional
        Class names stored inside the checkpoint (``ecgcode.classnames``).
    provenance : dict, optional
        What the model was trained on, stored inside the checkpoint too.

    Returns
    -------
    str
        Path of the checkpoint, also linked (or copied) to ``model_last.keras``.
    """
    resume_dir = run_file(out_dir, RESUME_DIR)
    name = checkpoint_name(state["completed_epochs"])
    checkpoint = os.path.join(resume_dir, name)
    with atomic_output(checkpoint) as tmp:
        model.save(tmp)
        write_model_info(tmp, output_names(int(model.outputs[0].shape[-1]), classes),
                         provenance)
    write_json(state_path(out_dir), dict(state, checkpoint=name, format=STATE_FORMAT))
    for old in os.listdir(resume_dir):
        if old.startswith(CHECKPOINT_PREFIX) and old != name:
            os.remove(os.path.join(resume_dir, old))
    _link_or_copy(checkpoint, run_file(out_dir, f"{LAST_MODEL}.keras"))
    return checkpoint


def _link_or_copy(source, destination):
    """Make ``destination`` a hard link to (or, failing that, a copy of) ``source``, atomically."""
    with atomic_output(destination) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


# --- Keras work-arounds ------------------------------------------------------------------
def patch_multi_worker_build(model, strategy):
    """Work around Keras 3.x failing in ``fit`` under MultiWorkerMirroredStrategy.

    Before each ``fit`` Keras builds the model symbolically from the first batch, which
    it gets by ``strategy.reduce``-ing the (x, y) PerReplica batch; the collective strategy
    cannot reduce a tuple ("Attempt to convert a value (PerReplica...) to a Tensor"). Only
    the shapes matter, so this builds from the first local replica's batch instead.
    """
    import tensorflow as tf  # deferred: imports TensorFlow

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build
    _patch_multi_worker_reduce(strategy)


def _patch_multi_worker_reduce(strategy):
    """Work around Keras 3.x reducing scalar logs with ``axis=0`` under the collective
    strategy ("Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388): reduce them across workers with ``axis=None``."""
    import tensorflow as tf  # deferred: imports TensorFlow
    from keras.src.backend.tensorflow import trainer as tf_trainer  # deferred: imports TensorFlow

    original = getattr(tf_trainer.reduce_per_replica, "original", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy_, reduction):
        if strategy_ is strategy and reduction in ("auto", "mean"):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy_, reduction)

    reduce_per_replica.original = original
    tf_trainer.reduce_per_replica = reduce_per_replica
