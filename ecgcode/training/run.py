"""One training run of the paper's recipe: its model, data, callbacks, epoch loop and run folder.

``ecgcode.cli.train`` (train.py) resolves the options and the devices, then builds a
:class:`Run` and calls :func:`train_epochs`. Every file the run writes is named in
``ecgcode.runfolder``. This module imports Keras: train.py imports it once the inputs are
validated.
"""

import importlib.util
import inspect
import math
import os
import shutil
import time

import keras
import numpy as np

from ecgcode import backend as kb
from ecgcode import data as ecg_data
from ecgcode.common import ECGInputError, atomic_output
from ecgcode.data.screening import input_error_in_pipeline
from ecgcode.modelfiles import save_model
from ecgcode.network import get_model
from ecgcode.precision import with_policy
from ecgcode.runfolder import (
    BEST_MODEL,
    FINAL_MODEL_NAME,
    HISTORY_NAME,
    LAST_MODEL,
    RUN_THRESHOLDS_NAME,
    TENSORBOARD_DIR,
    run_file,
)
from ecgcode.thresholds import f1_max_thresholds, write_thresholds
from ecgcode.training import state as ts
from ecgcode.training.report import print_summary, report_interrupt, report_nan
from ecgcode.training.run_setup import write_history
from ecgcode.training.transfer import freeze_backbone, transfer_weights


# --- Data ---------------------------------------------------------------------------
def worker_dataset(collection, labels, rows, global_batch, seed, input_context):
    """The training batches of one worker under MultiWorkerMirroredStrategy.

    Worker ``input_context.input_pipeline_id`` of ``num_input_pipelines`` reads only its
    own share of ``rows``: ``datasets.make_dataset`` deals the blocks of consecutive rows
    out to the workers, so the shares are disjoint and together cover ``rows``. The share
    is shuffled from ``seed`` and repeated forever, because shares may differ by a block:
    the caller gives every worker the same ``steps_per_epoch`` and none runs out of data.
    Within a pass no row comes twice.

    Parameters
    ----------
    collection : datasets.Collection
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


# --- Model ----------------------------------------------------------------------------
def build_model(model_factory, options, state, out, device, data):
    """A compiled model, built for ``device`` (call within its strategy's scope): new from
    ``model_factory`` (weights from ``--init`` if given), or the checkpoint of a resumed run."""
    model = compiled_model(model_factory, options, state, out, device.jit, data)
    kb.build_before_fit(model, device.backend)
    if device.kind == "multi-worker":
        ts.patch_multi_worker_build(model, device.strategy)
    return model


def compiled_model(model_factory, options, state, out, jit, data):
    """A new compiled model from ``model_factory``, or the checkpoint of a resumed run."""
    if state is None:
        model = new_model(model_factory, len(data.classes))
        if options["init"]:
            prevalence = np.nanmean(data.labels[data.train_rows], axis=0)  # (n_classes,)
            transfer_weights(model, options["init"], data.classes, prevalence)
        if options["freeze_backbone"]:
            freeze_backbone(model)
        model.compile(optimizer=keras.optimizers.Adam(options["lr"]),
                      loss="binary_crossentropy", jit_compile=jit)
        return model
    checkpoint = ts.checkpoint_path(out, state)
    model = keras.models.load_model(checkpoint, compile=True)
    if int(model.optimizer.iterations.numpy()) == 0:
        raise ECGInputError(f"{checkpoint}: checkpoint without optimizer state; it cannot "
                            "be resumed exactly: start a new run")
    model.jit_compile = jit
    model.optimizer.learning_rate.assign(state["lr"])
    ts.restore_seed_states(model, state["seed_states"])
    return model


def new_model(model_factory, n_classes):
    """``model_factory(n_classes)`` (or ``model_factory()``), checked for its output count."""
    takes_classes = bool(inspect.signature(model_factory).parameters)
    model = model_factory(n_classes) if takes_classes else model_factory()
    outputs = int(model.outputs[0].shape[-1])
    if outputs != n_classes:
        raise ECGInputError(f"the model has {outputs} outputs but {n_classes} classes are "
                            "learned; give a model_factory that takes n_classes")
    return model


def paper_callbacks(lr):
    """The paper's ReduceLROnPlateau and EarlyStopping, both on val_loss."""
    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.1, patience=7, min_lr=lr / 100, verbose=1)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=9, min_delta=1e-5, verbose=1)
    return reduce_lr, early_stopping


def tensorboard_callbacks(out):
    """[TensorBoard callback writing to OUT/tensorboard], or [] when TensorBoard is absent."""
    if importlib.util.find_spec("tensorboard") is None:
        print("note: TensorBoard is not installed, so no TensorBoard logs are written "
              f"(pip install tensorboard); {HISTORY_NAME} has the same numbers")
        return []
    return [keras.callbacks.TensorBoard(run_file(out, TENSORBOARD_DIR), write_graph=False)]


# --- Training -------------------------------------------------------------------------
class Run:
    """One training run: the model, its data, its callbacks and its run folder."""

    def __init__(self, model, options, data, out, state, device, extra_callbacks=()):
        self.model, self.options, self.out, self.writes = model, options, out, device.writes
        # multi-worker: each worker reads its own rows
        self.worker_strategy = device.strategy if device.kind == "multi-worker" else None
        global_batch, replicas = options["batch_size"] * device.replicas, device.replicas
        self.collection, self.labels = data.collection, data.labels
        self.train_rows, self.classes = data.train_rows, data.classes
        self.provenance = data.provenance  # stored in every model file the run writes
        self.global_batch, self.replicas = global_batch, replicas
        val_dataset = ecg_data.make_dataset(data.collection, data.labels,
                                            batch_size=global_batch, indices=data.val_rows,
                                            shuffle=False)
        self.validation = ts.ValidationMetrics(val_dataset, data.classes,
                                               jit_compile=device.jit)
        self.nan_guard, self.timer = ts.NanGuard(), ts.EpochTimer()
        self.reduce_lr, self.early_stopping = paper_callbacks(options["lr"])
        self.counters = ts.RestoreCounters(
            {"reduce_lr": self.reduce_lr, "early_stopping": self.early_stopping})
        self.state = state or {"completed_epochs": 0, "history": [], "best_val_loss": None,
                               "best_epoch": None, "stopped_early": False}
        self.counters.saved = self.state.get("counters", {})
        self.callbacks = [
            self.nan_guard, self.timer, self.validation, ts.EpochProgbar(options["epochs"]),
            ts.PerClassLogs(self.validation), self.reduce_lr, self.early_stopping,
            self.counters, *tensorboard_callbacks(out), *extra_callbacks,
        ]

    def steps_per_epoch(self):
        """Batches per epoch: all training rows, or fewer with --steps-per-epoch."""
        drop = self.replicas > 1
        n = len(self.train_rows)
        steps = n // self.global_batch if drop else -(-n // self.global_batch)
        if steps == 0:
            raise ECGInputError(f"{len(self.train_rows)} training rows are fewer than the "
                                f"global batch {self.global_batch}; lower --batch-size")
        return min(steps, self.options["steps_per_epoch"] or steps)

    def train_dataset(self, epoch):
        """The training batches of ``epoch``, in an order set by (seed, epoch) alone.

        Several workers read disjoint shares of the rows (:func:`worker_dataset`); one
        machine reads them all in one pipeline and splits each batch among its replicas.
        """
        seed = ts.epoch_seed(self.options["seed"], epoch)
        if self.worker_strategy is not None:
            return self.worker_strategy.distribute_datasets_from_function(
                lambda context: worker_dataset(self.collection, self.labels, self.train_rows,
                                               self.global_batch, seed, context))
        return ecg_data.make_dataset(
            self.collection, self.labels, batch_size=self.global_batch, shuffle=True,
            seed=seed, indices=self.train_rows, drop_remainder=self.replicas > 1)

    def run_epoch(self, epoch, verbose):
        """Train one epoch; return its history row, or None when the loss became NaN."""
        history = self.model.fit(
            self.train_dataset(epoch), initial_epoch=epoch, epochs=epoch + 1,
            steps_per_epoch=self.steps_per_epoch(), callbacks=self.callbacks, verbose=verbose,
            shuffle=False)
        logs = {key: values[-1] for key, values in history.history.items()}
        if self.nan_guard.bad_batch is not None or not math.isfinite(logs["val_loss"]):
            return None
        row = {"epoch": epoch + 1, "loss": logs["loss"], "val_loss": logs["val_loss"],
               "lr": self.timer.lr, "epoch_seconds": self.timer.seconds,
               "samples": min(self.steps_per_epoch() * self.global_batch,
                              len(self.train_rows))}
        row.update({f"val_{k}": v for k, v in self.validation.scores.items()})
        return row

    def commit(self, epoch, row):
        """Record a completed epoch: best model, thresholds, history, checkpoint, state."""
        state = self.state
        improved = state["best_val_loss"] is None or row["val_loss"] < state["best_val_loss"]
        if improved:
            state["best_val_loss"], state["best_epoch"] = row["val_loss"], epoch + 1
        state["history"].append(row)
        state["completed_epochs"] = epoch + 1
        state["counters"] = self.counters.capture()
        self.counters.saved = state["counters"]
        state["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        state["seed_states"] = ts.capture_seed_states(self.model)
        state["stopped_early"] = bool(self.early_stopping.stopped_epoch > 0)
        portable = self.portable_model()
        if improved:
            save_model(portable, run_file(self.out, BEST_MODEL), classes=self.classes,
                       provenance=self.provenance)
            thresholds = f1_max_thresholds(self.validation.y_true, self.validation.y_score,
                                           self.classes)
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


def paper_model(n_classes):
    """The paper's ResNet with ``n_classes`` outputs (the default model factory)."""
    return get_model(n_classes)


def train_epochs(run, out, verbose):
    """The epoch loop of a Run, with NaN, Ctrl-C and early-stopping handling."""
    state, options = run.state, run.options
    started, start_epoch = time.perf_counter(), state["completed_epochs"]
    if state["stopped_early"] or start_epoch >= options["epochs"]:
        print(f"{out}: the run already finished after {start_epoch} epochs; nothing to do")
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, options["epochs"]):
            if state["stopped_early"]:
                break
            row = run.run_epoch(epoch, verbose)
            if row is None:
                return report_nan(run, epoch, out)
            run.commit(epoch, row)  # non-chief workers write to a temporary folder
    except KeyboardInterrupt:
        return report_interrupt(run, epoch, out)
    except Exception as error:  # a tracing that turned NaN/inf after the up-front scan
        message = input_error_in_pipeline(error)
        if message is None:
            raise
        return report_nan(run, epoch, out, cause=message)
    if run.writes:
        run.finish()
        print_summary(run, out, time.perf_counter() - started)
    return 0
