"""Train the paper's ResNet on CODE-style HDF5 tracings; resumable, on one CPU or many GPUs.

The recipe of Ribeiro et al., Nat Commun 11:1760 (2020): Adam (lr 1e-3), binary
cross-entropy, batch 64, ReduceLROnPlateau on val_loss (factor 0.1, patience 7, min_lr
lr/100), EarlyStopping (patience 9, min_delta 1e-5), at most 70 epochs, the last 2 % of
the rows as validation set, and the weights of the epoch with the best val_loss kept.

Examples::

    python train.py data.hdf5 annotations.csv             # the original two-argument form
    python train.py exams_part*.hdf5 exams.csv --val-split-by patient_id --out runs/a
    python train.py --resume --out runs/a                  # continue a killed run
    python train.py ptbxl.hdf5 --classes NORM,MI,STTC,CD,HYP --val-where strat_fold=9 \
        --test-where strat_fold=10 --init model.hdf5           # fine-tune on other classes

Exit status: 0 done, 2 bad input / NaN loss / non-empty output folder, 130 Ctrl-C.
"""

import argparse
import inspect
import math
import os
import shutil
import tempfile
import time

import numpy as np

from ecgcode import backend as kb
from ecgcode.classnames import parse_classes
from ecgcode.common import CLASSES, RUN_THRESHOLDS_NAME, ECGInputError, atomic_output, run_cli
from ecgcode.data.screening import input_error_in_pipeline, screen_rows
from ecgcode.quiet import import_tensorflow, lazy_module
from ecgcode.training.report import (  # INTERRUPTED: re-exported as train.*
    INTERRUPTED,  # noqa: F401
    print_summary,
    report_interrupt,
    report_nan,
)
from ecgcode.training.run_setup import (  # DEFAULTS and split_inputs: re-exported as train.*
    DEFAULTS,  # noqa: F401
    check_options,
    choose_precision,
    device_defaults,
    is_chief,
    load_data,
    make_strategy,
    print_setup,
    resolve_run,
    run_config,
    split_inputs,  # noqa: F401
    write_history,
)
from ecgcode.training.transfer import freeze_backbone, transfer_weights

ts = lazy_module("ecgcode.training.state")  # imports Keras: after the inputs are validated


# --- Command line ---------------------------------------------------------------------
def build_parser():
    """The argparse parser of ``train.py`` (options default to None: see DEFAULTS)."""
    parser = argparse.ArgumentParser(
        description="Train the paper's ResNet (Ribeiro et al. 2020) on CODE-style HDF5 "
        "tracings with the paper's recipe; writes a run folder (models, history.csv, "
        "thresholds.json, config.json, TensorBoard logs) that --resume can continue.",
        epilog="Exit status: 0 done, 2 bad input / NaN loss / non-empty --out, 130 Ctrl-C "
        "(model_last saved; continue with --resume --out DIR).",
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="FILE",
        help="one or more .hdf5/.h5 tracing files (rows numbered in the order given) and "
        "optionally one .csv of labels (one 0/1 column per class, matched by name; joined "
        "on exam_id when present). Without a CSV the files' `labels` dataset is used. "
        "May be omitted with --resume.",
    )
    parser.add_argument("--out", help="run folder (default: runs/train-DATE-TIME); must be "
                        "new or empty unless --resume")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last completed epoch")
    parser.add_argument("--epochs", type=int, help="maximum number of epochs (70)")
    parser.add_argument("--batch-size", type=int,
                        help="batch size per replica (64); global batch = this x replicas")
    parser.add_argument("--lr", type=float, help="initial learning rate of Adam (1e-3); not "
                        "scaled automatically with the number of replicas")
    parser.add_argument("--val-split", type=float,
                        help="fraction of rows for validation (0.02: the last 2%%)")
    parser.add_argument("--val-split-by", metavar="COLUMN",
                        help="label-CSV column (e.g. patient_id) whose groups go whole to "
                        "validation or training, drawn at random from --seed")
    parser.add_argument("--dataset-name", help="signal dataset in the HDF5 files (tracings)")
    parser.add_argument("--seed", type=int, help="seed of weights, dropout and data order (0)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="at most this many batches per epoch (for quick runs)")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                        help="mixed bfloat16 (CPUs, GPUs >= Ampere) or float16 (older GPUs) "
                        "compute with float32 weights and output layer; default on where the "
                        "device computes bfloat16 natively (AMX or AVX512-BF16 CPUs under "
                        "TensorFlow, GPUs >= Ampere), off elsewhere; the saved models are "
                        "float32 either way")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction,
                        help="XLA compilation (default: on with a GPU or under jax, off on "
                        "TensorFlow's CPU)")
    parser.add_argument("--distribute",
                        choices=("auto", "none", "mirrored", "multi-worker", "data-parallel"),
                        help="auto (default): multi-worker when TF_CONFIG is set, mirrored "
                        "with several GPUs, else none; under KERAS_BACKEND=jax: data-parallel "
                        "(keras.distribution.DataParallel) with several devices, else none")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                        help="deterministic ops (slower): a killed and resumed run ends with "
                        "the same weights as an uninterrupted one (under jax: deterministic "
                        "GPU ops; JAX on the CPU is deterministic anyway)")
    labels = parser.add_argument_group("classes, rows and fine-tuning")
    labels.add_argument("--classes", metavar="A,B,...",
                        help="label columns to learn, in this order (CSV columns or names in "
                        "the HDF5 labels' `classes`); default the paper's six "
                        f"({','.join(CLASSES)})")
    labels.add_argument("--val-where", metavar="COLUMN=V[,V]",
                        help="validation rows: those whose COLUMN (label CSV, or a 1-D HDF5 "
                        "dataset such as PTB-XL's strat_fold) has one of the values")
    labels.add_argument("--test-where", metavar="COLUMN=V[,V]",
                        help="held-out test rows, in neither training nor validation "
                        "(e.g. strat_fold=10)")
    labels.add_argument("--init", metavar="MODEL",
                        help="start from the weights of a model file or run folder (e.g. the "
                        "original study's model.hdf5); with other classes the output layer "
                        "is new. Not with --resume")
    labels.add_argument("--freeze-backbone", action=argparse.BooleanOptionalAction,
                        help="with --init: train only the output layer")
    parser.add_argument("--skip-nonfinite", action=argparse.BooleanOptionalAction,
                        help="train without the tracings that hold NaN/inf values (default: "
                        "such tracings stop the run with an error naming them)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up logging")
    return parser


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
    import datasets

    share = len(rows) // input_context.num_input_pipelines
    # Blocks of 32 rows (make_dataset's default), fewer for tiny data: >= 4 blocks a worker.
    block_size = max(1, min(32, share // 4))
    batch = input_context.get_per_replica_batch_size(global_batch)
    one_pass = datasets.make_dataset(
        collection, labels, batch_size=batch, shuffle=True, seed=seed, indices=rows,
        block_size=block_size, input_context=input_context)
    # Whole passes, each in a new order, batched across their ends; make_dataset's
    # repeat=True would let one shuffle window mix rows of two passes (duplicates).
    return one_pass.repeat().rebatch(batch, drop_remainder=True).prefetch(2)


# --- Model ----------------------------------------------------------------------------
def build_model(model_factory, options, state, out, jit, data):
    """A compiled model: new from ``model_factory`` (weights from ``--init`` if given), or
    the checkpoint of a resumed run."""
    import keras

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


def init_description(options):
    """What the start-up line says about the initial weights."""
    if not options["init"]:
        return "weights: new"
    frozen = ", backbone frozen" if options["freeze_backbone"] else ""
    return f"weights: from {options['init']}{frozen}"


def paper_callbacks(lr):
    """The paper's ReduceLROnPlateau and EarlyStopping, both on val_loss."""
    import keras

    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.1, patience=7, min_lr=lr / 100, verbose=1)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=9, min_delta=1e-5, verbose=1)
    return reduce_lr, early_stopping


def tensorboard_callbacks(out):
    """[TensorBoard callback writing to OUT/tensorboard], or [] when TensorBoard is absent."""
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        print("note: TensorBoard is not installed, so no TensorBoard logs are written "
              "(pip install tensorboard); history.csv has the same numbers")
        return []
    return [keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"), write_graph=False)]


# --- Training -------------------------------------------------------------------------
class Run:
    """One training run: the model, its data, its callbacks and its run folder."""

    def __init__(self, model, options, data, out, writes, state, global_batch, replicas, jit,
                 extra_callbacks=(), worker_strategy=None):
        import datasets

        self.model, self.options, self.out, self.writes = model, options, out, writes
        self.worker_strategy = worker_strategy  # multi-worker: each reads its own rows
        self.collection, self.labels = data.collection, data.labels
        self.train_rows, self.classes = data.train_rows, data.classes
        self.global_batch, self.replicas = global_batch, replicas
        val_dataset = datasets.make_dataset(data.collection, data.labels,
                                            batch_size=global_batch, indices=data.val_rows,
                                            shuffle=False)
        self.validation = ts.ValidationMetrics(val_dataset, data.classes, jit_compile=jit)
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
        import datasets

        seed = ts.epoch_seed(self.options["seed"], epoch)
        if self.worker_strategy is not None:
            return self.worker_strategy.distribute_datasets_from_function(
                lambda context: worker_dataset(self.collection, self.labels, self.train_rows,
                                               self.global_batch, seed, context))
        return datasets.make_dataset(
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
        import keras

        import model as ecg_model

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
            ecg_model.save_model(portable, os.path.join(self.out, "model_best"),
                                 classes=self.classes)
            thresholds = ts.f1_max_thresholds(self.validation.y_true, self.validation.y_score,
                                              self.classes)
            ts.write_json(os.path.join(self.out, RUN_THRESHOLDS_NAME),
                          {"epoch": epoch + 1, "val_loss": row["val_loss"],
                           "rule": "positive when score > threshold", "classes": thresholds})
        write_history(self.out, state["history"])
        ts.commit_epoch(self.out, self.model, state, self.classes)
        # model_last.keras is a link to the resume checkpoint; add the legacy copy.
        ecg_model.save_model(portable, os.path.join(self.out, "model_last"), formats=(".h5",),
                             classes=self.classes)

    def portable_model(self):
        """The model in the float32 policy (itself if it trains in float32), for the saved
        files other than the resume checkpoint: mixed precision keeps float32 weights, so
        nothing is lost, and every loader and predict.py's float32 path read it as is."""
        from ecgcode.precision import with_policy

        return with_policy(self.model, "float32")

    def finish(self):
        """Write final_model.h5: the weights of the best epoch, in the legacy HDF5 format."""
        best = os.path.join(self.out, "model_best.h5")
        if os.path.isfile(best):
            with atomic_output(os.path.join(self.out, "final_model.h5")) as tmp:
                shutil.copyfile(best, tmp)


def main(argv=None, *, model_factory=None, extra_callbacks=()):
    """Train; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (``sys.argv[1:]`` when None).
    model_factory : callable, optional
        ``model_factory(n_classes)`` returns a new, uncompiled keras.Model with input
        (4096, 12) and n_classes sigmoid outputs (a factory without parameters is called
        as ``model_factory()``); ``model.get_model`` (the paper's ResNet) when None. Tests
        pass tiny models here.
    extra_callbacks : sequence of keras.callbacks.Callback
        Appended to the training callbacks (tests use this to kill a run mid-epoch).

    Returns
    -------
    int
        0 done, 2 NaN loss, 130 interrupted (bad input raises ECGInputError: exit 2).
    """
    args = build_parser().parse_args(argv)
    if args.classes is not None:
        args.classes = list(parse_classes(args.classes))
    if args.resume:  # reading the saved state needs Keras
        import_tensorflow(verbose=args.verbose)
    out, options, state = resolve_run(args)
    check_options(options)
    data = load_data(options)  # no TensorFlow yet
    data.train_rows, data.val_rows = screen_rows(data.collection, data.train_rows,
                                                 data.val_rows, skip=options["skip_nonfinite"])
    collection, train_rows, val_rows = data.collection, data.train_rows, data.val_rows
    import_tensorflow(verbose=args.verbose)  # tf.data feeds every backend
    backend = kb.name()
    if options["deterministic"]:
        kb.set_deterministic(backend)  # before JAX starts its devices
    strategy, kind = make_strategy(options["distribute"], backend)
    import keras

    writes = is_chief(strategy)
    device, jit_default, mixed_policy = device_defaults(backend)
    jit = jit_default if options["jit"] is None else options["jit"]
    policy, policy_reason = choose_precision(options["mixed_precision"], device, mixed_policy,
                                             backend)
    options["mixed_precision"] = policy != "float32"  # config.json: what the run used
    if args.resume:
        policy_reason = "as the run being resumed"
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(policy)  # restored when main returns
    keras.utils.set_random_seed(options["seed"])
    replicas = strategy.num_replicas_in_sync
    global_batch = options["batch_size"] * replicas
    setup = {"backend": backend, "device": device, "strategy": kind, "replicas": replicas,
             "global_batch": global_batch, "precision": policy,
             "precision_reason": policy_reason,
             "jit": jit, "model": getattr(model_factory, "__name__", "model.get_model"),
             "classes": list(data.classes), "init": init_description(options)}
    print_setup(setup, options, collection, len(train_rows), len(val_rows), len(data.test_rows))
    run_dir = out if writes else tempfile.mkdtemp(prefix="ecg-train-worker-")
    try:
        if writes:
            os.makedirs(out, exist_ok=True)
            config = run_config(options, collection, len(train_rows), len(val_rows), setup,
                                len(data.test_rows))
            if state is not None:
                config["resumed_at_epoch"] = state["completed_epochs"]
            ts.write_json(os.path.join(out, "config.json"), config)
        with strategy.scope():
            model = build_model(model_factory or _paper_model, options, state, out, jit, data)
            kb.build_before_fit(model, backend)
            if kind == "multi-worker":
                ts.patch_multi_worker_build(model, strategy)
            run = Run(model, options, data, run_dir, writes, state, global_batch, replicas, jit,
                      extra_callbacks,
                      worker_strategy=strategy if kind == "multi-worker" else None)
        return train(run, out, verbose=1 if writes else 0)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if not writes:
            shutil.rmtree(run_dir, ignore_errors=True)


def _paper_model(n_classes):
    import model as ecg_model

    return ecg_model.get_model(n_classes)


def train(run, out, verbose):
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


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
