"""One training run's data and run folder: the batches of each epoch, the files of each epoch.

The recipe (``ecgcode/training/recipe.py``) fits the model epoch by epoch; a :class:`Run`
gives it each epoch's batches, in an order set by (seed, epoch) alone, and records each
completed epoch in the run folder (best model, thresholds, history, resume checkpoint).
Every file the run writes is named in ``ecgcode.model.runfolder``. This module imports Keras:
train.py imports it once the inputs are validated.
"""

import dataclasses
import inspect
import os
import shutil

import keras
import numpy as np

from ecgcode import data as ecg_data
from ecgcode.common import ECGInputError, atomic_output
from ecgcode.model.modelfiles import save_model
from ecgcode.model.precision import with_policy
from ecgcode.model.runfolder import (
    BEST_MODEL,
    FINAL_MODEL_NAME,
    LAST_MODEL,
    RUN_THRESHOLDS_NAME,
    run_file,
)
from ecgcode.model.thresholds import f1_max_thresholds, write_thresholds
from ecgcode.training import state as ts
from ecgcode.training.run_setup import Device, TrainingData, write_history
from ecgcode.training.transfer import freeze_backbone, transfer_weights
from ecgcode.training.workarounds import capture_seed_states


# --- Data ---------------------------------------------------------------------------
def worker_dataset(collection, labels, rows, global_batch, seed, input_context):
    """The training batches of one worker under MultiWorkerMirroredStrategy.

    Worker ``input_context.input_pipeline_id`` of ``num_input_pipelines`` reads only its
    own share of ``rows``: ``ecgcode.data.make_dataset`` deals the blocks of consecutive rows
    out to the workers, so the shares are disjoint and together cover ``rows``. The share
    is shuffled from ``seed`` and repeated forever, because shares may differ by a block:
    the caller gives every worker the same ``steps_per_epoch`` and none runs out of data.
    Within a pass no row comes twice.

    Parameters
    ----------
    collection : ecgcode.data.Collection
    labels : numpy.ndarray
        (n, n_classes) labels of all the collection's rows.
    rows : numpy.ndarray
        Training rows (of all workers).
    global_batch : int
        Batch size summed over all replicas of all workers.
    seed : int
        Data-order seed of the epoch (``ecgcode.training.state.epoch_seed``).
    input_context : tf.distribute.InputContext
        From ``strategy.distribute_datasets_from_function``.

    Returns
    -------
    tf.data.Dataset
        Endless (x, y) batches: x (per-replica batch, 4096, 12), y (per-replica batch, n_classes).
    """
    share = len(rows) // input_context.num_input_pipelines
    # Blocks of 32 rows (make_dataset's default), fewer for tiny data: >= 4 blocks a worker.
    block_size = max(1, min(32, share // 4))
    batch = input_context.get_per_replica_batch_size(global_batch)
    one_pass = ecg_data.make_dataset(
        collection, labels, batch_size=batch, shuffle=True, seed=seed, indices=rows,
        block_size=block_size, input_context=input_context)
    # Whole passes, each in a new order, batched across their ends; make_dataset's
    # repeat=True would let one shuffle window mix rows of two passes (duplicates).
    return one_pass.repeat().rebatch(batch, drop_remainder=True).prefetch(2)


# --- The run ----------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """One training run: its options, data, devices, run folder and resumable state.

    ``model`` is the compiled keras.Model, set by ``ecgcode.training.recipe.train``.
    """

    options: dict  # ecgcode.training.run_setup.DEFAULTS' keys, plus data and labels
    data: TrainingData
    device: Device
    run_folder: str  # as --out names it: for messages, and the checkpoint a resume loads
    out: str  # where this process writes: run_folder on the chief, a temporary folder elsewhere
    state: dict  # ecgcode.training.state: completed epochs, history, best epoch, counters
    model: object = dataclasses.field(default=None, init=False)

    @property
    def classes(self):
        return self.data.classes

    @property
    def provenance(self):
        """What the model is trained on, stored in every model file the run writes."""
        return self.data.provenance

    @property
    def writes(self):
        """True on the process that writes the run folder (the chief)."""
        return self.device.writes

    @property
    def global_batch(self):
        return self.options["batch_size"] * self.device.replicas

    @property
    def resumes(self):
        """True when the run continues from a checkpoint of its own."""
        return "checkpoint" in self.state

    # --- The model ------------------------------------------------------------------
    def new_model(self, model_factory):
        """A new, uncompiled model from ``model_factory``, with the weights of ``--init``
        (and ``--freeze-backbone``) when given.

        ``model_factory(n_classes)`` (or ``model_factory()``) must give a model with one
        output per class learned.
        """
        n_classes = len(self.classes)
        takes_classes = bool(inspect.signature(model_factory).parameters)
        model = model_factory(n_classes) if takes_classes else model_factory()
        outputs = int(model.outputs[0].shape[-1])
        if outputs != n_classes:
            raise ECGInputError(f"the model has {outputs} outputs but {n_classes} classes are "
                                "learned; give a model_factory that takes n_classes")
        if self.options["init"]:
            labels = self.data.labels[self.data.train_rows]  # (n_train, n_classes)
            transfer_weights(model, self.options["init"], self.classes,
                             np.nanmean(labels, axis=0))
        if self.options["freeze_backbone"]:
            freeze_backbone(model)
        return model

    def resumed_model(self):
        """The compiled model of the checkpoint this run continues from."""
        return ts.resumed_model(self.run_folder, self.state, self.device.jit)

    # --- The batches ------------------------------------------------------------------
    def steps_per_epoch(self):
        """Batches per epoch: all training rows, or fewer with --steps-per-epoch."""
        drop = self.device.replicas > 1
        n = len(self.data.train_rows)
        steps = n // self.global_batch if drop else -(-n // self.global_batch)
        if steps == 0:
            raise ECGInputError(f"{n} training rows are fewer than the global batch "
                                f"{self.global_batch}; lower --batch-size")
        return min(steps, self.options["steps_per_epoch"] or steps)

    def train_batches(self, epoch):
        """The training batches of ``epoch``, in an order set by (seed, epoch) alone.

        Several workers read disjoint shares of the rows (:func:`worker_dataset`); one
        machine reads them all in one pipeline and splits each batch among its replicas.
        """
        seed = ts.epoch_seed(self.options["seed"], epoch)
        data = self.data
        if self.device.kind == "multi-worker":
            return self.device.strategy.distribute_datasets_from_function(
                lambda context: worker_dataset(data.collection, data.labels, data.train_rows,
                                               self.global_batch, seed, context))
        return ecg_data.make_dataset(
            data.collection, data.labels, batch_size=self.global_batch, shuffle=True,
            seed=seed, indices=data.train_rows, drop_remainder=self.device.replicas > 1)

    def validation_batches(self):
        """The validation rows in file order, in global batches."""
        return ecg_data.make_dataset(self.data.collection, self.data.labels,
                                     batch_size=self.global_batch, indices=self.data.val_rows,
                                     shuffle=False)

    # --- The run folder ----------------------------------------------------------------
    def commit(self, row, validation, counters):
        """Record a completed epoch: best model, thresholds, history, checkpoint, state.

        Parameters
        ----------
        row : dict
            The epoch's history row (``epoch`` counts from 1).
        validation : ecgcode.training.callbacks.ValidationMetrics
            Its validation labels and scores give the best epoch's thresholds.
        counters : ecgcode.training.callbacks.KeepCounters
            The ReduceLROnPlateau/EarlyStopping counters at the epoch's end.
        """
        state, epoch = self.state, row["epoch"] - 1
        improved = state["best_val_loss"] is None or row["val_loss"] < state["best_val_loss"]
        if improved:
            state["best_val_loss"], state["best_epoch"] = row["val_loss"], epoch + 1
        state["history"].append(row)
        state["completed_epochs"] = epoch + 1
        state["counters"] = counters.saved
        state["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        state["seed_states"] = capture_seed_states(self.model)
        state["stopped_early"] = bool(self.model.stop_training)  # set by EarlyStopping
        portable = self.portable_model()
        if improved:
            save_model(portable, run_file(self.out, BEST_MODEL), classes=self.classes,
                       provenance=self.provenance)
            thresholds = f1_max_thresholds(validation.y_true, validation.y_score, self.classes)
            write_thresholds(run_file(self.out, RUN_THRESHOLDS_NAME), thresholds, epoch + 1,
                             row["val_loss"])
        write_history(self.out, state["history"])
        ts.commit_epoch(self.out, self.model, state, self.classes, self.provenance)
        # model_last.keras is a link to the resume checkpoint; add the legacy copy.
        save_model(portable, run_file(self.out, LAST_MODEL), formats=(".h5",),
                   classes=self.classes, provenance=self.provenance)

    def portable_model(self):
        """The model in the float32 policy (itself if it trains in float32), for the saved
        files other than the resume checkpoint: mixed precision keeps float32 weights, so
        nothing is lost, and every loader and predict.py's float32 path read it as is."""
        return with_policy(self.model, "float32")

    def finish(self):
        """Write final_model.h5: the weights of the best epoch, in the legacy HDF5 format."""
        best = run_file(self.out, f"{BEST_MODEL}.h5")
        if os.path.isfile(best):
            with atomic_output(run_file(self.out, FINAL_MODEL_NAME)) as tmp:
                shutil.copyfile(best, tmp)
