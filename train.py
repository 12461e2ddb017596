"""Train the paper's ResNet on CODE-style HDF5 tracings; resumable, on one CPU or many GPUs.

The recipe of Ribeiro et al., Nat Commun 11:1760 (2020): Adam (lr 1e-3), binary
cross-entropy, batch 64, ReduceLROnPlateau on val_loss (factor 0.1, patience 7, min_lr
lr/100), EarlyStopping (patience 9, min_delta 1e-5), at most 70 epochs, the last 2 % of
the rows as validation set, and the weights of the epoch with the best val_loss kept.

Examples::

    python train.py data.hdf5 annotations.csv             # the original two-argument form
    python train.py exams_part*.hdf5 exams.csv --val-split-by patient_id --out runs/a
    python train.py --resume --out runs/a                  # continue a killed run

Exit status: 0 done, 2 bad input / NaN loss / non-empty output folder, 130 Ctrl-C.
"""

import argparse
import datetime
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import train_state as ts
from ecg_common import CLASSES, DEFAULT_DATASET_NAME, ECGInputError, atomic_output, run_cli

DEFAULTS = {
    "epochs": 70,
    "batch_size": 64,
    "lr": 1e-3,
    "val_split": 0.02,
    "val_split_by": None,
    "dataset_name": DEFAULT_DATASET_NAME,
    "seed": 0,
    "steps_per_epoch": None,
    "mixed_precision": None,  # None: the device's default (see device_defaults)
    "jit": None,
    "distribute": "auto",
    "deterministic": False,
}
"""Options of a new run; on --resume the saved options replace them."""

DATA_EXTENSIONS = (".hdf5", ".h5", ".hdf")
INTERRUPTED = 130


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
                        help="bfloat16 (CPU, GPUs >= Ampere) or float16 compute with a float32 "
                        "output layer (default off)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction,
                        help="XLA compilation (default: on with a GPU, off on the CPU)")
    parser.add_argument("--distribute", choices=("auto", "none", "mirrored", "multi-worker"),
                        help="auto (default): multi-worker when TF_CONFIG is set, mirrored "
                        "with several GPUs, else none")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                        help="deterministic ops (slower): a killed and resumed run ends with "
                        "the same weights as an uninterrupted one")
    return parser


def split_inputs(inputs):
    """Split positional files into (tracing files, label CSV or None) by extension."""
    data, csvs = [], []
    for path in inputs:
        ext = os.path.splitext(path)[1].lower()
        if ext == ".csv":
            csvs.append(path)
        elif ext in DATA_EXTENSIONS:
            data.append(path)
        else:
            raise ECGInputError(f"{path}: unknown file type; give .hdf5/.h5 tracing files "
                                "and at most one .csv of labels")
    if len(csvs) > 1:
        raise ECGInputError(f"{', '.join(csvs)}: several label CSVs; give at most one")
    if not data:
        raise ECGInputError("no .hdf5/.h5 tracing file given: pass e.g. data.hdf5 labels.csv")
    return [os.path.abspath(p) for p in data], (os.path.abspath(csvs[0]) if csvs else None)


def resolve_run(args):
    """Resolve the run folder, the options and the inputs from args (and a resumed run).

    Returns
    -------
    (str, dict, dict or None)
        Output folder, options (DEFAULTS keys plus ``data``, ``labels``), resume state.
    """
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    if args.resume:
        if not args.out:
            raise ECGInputError("--resume needs --out DIR: the folder of the run to continue")
        state = ts.read_state(args.out)  # None: killed before its first epoch ended
        saved = _read_config(args.out)
        if saved is None:
            raise ECGInputError(f"{args.out}: no run to resume here (no config.json); start "
                                "a new run without --resume")
        options = dict(DEFAULTS, **saved["options"])
        for key, value in given.items():
            if options.get(key) != value:
                print(f"note: option {key} changed on resume: {options.get(key)} -> {value}")
        options.update(given)
        if args.inputs:
            options["data"], options["labels"] = split_inputs(args.inputs)
        return args.out, options, state
    out = args.out or _new_run_folder()
    if os.path.isdir(out) and os.listdir(out):
        raise ECGInputError(f"{out}: output folder exists and is not empty; choose another "
                            "--out, or add --resume to continue the run in it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ECGInputError(f"{out}: exists and is not a folder; choose another --out")
    options = dict(DEFAULTS, **given)
    options["data"], options["labels"] = split_inputs(args.inputs)
    return out, options, None


def _new_run_folder():
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = os.path.join("runs", f"train-{stamp}"), 1
    while os.path.exists(out):
        n += 1
        out = os.path.join("runs", f"train-{stamp}-{n}")
    return out


def _read_config(out):
    import json

    path = os.path.join(out, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def check_options(options):
    """Refuse impossible option values with a one-line ECGInputError."""
    for key in ("epochs", "batch_size"):
        if options[key] < 1:
            raise ECGInputError(f"--{key.replace('_', '-')} {options[key]}: must be >= 1")
    if options["steps_per_epoch"] is not None and options["steps_per_epoch"] < 1:
        raise ECGInputError(f"--steps-per-epoch {options['steps_per_epoch']}: must be >= 1")
    if not options["lr"] > 0:
        raise ECGInputError(f"--lr {options['lr']}: must be > 0")
    if not 0 < options["val_split"] < 1:
        raise ECGInputError(f"--val-split {options['val_split']}: must be in (0, 1)")


# --- Devices and distribution ------------------------------------------------------------
def make_strategy(name):
    """Return (strategy, kind) for --distribute ``name``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "multi-worker" if os.environ.get("TF_CONFIG") else (
            "mirrored" if len(gpus) > 1 else "none")
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise ECGInputError("--distribute multi-worker needs the TF_CONFIG environment "
                                "variable (cluster and task); see the README")
        return tf.distribute.MultiWorkerMirroredStrategy(), name
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), name
    return tf.distribute.get_strategy(), "none"


def is_chief(strategy):
    """True on the worker that writes the run folder (worker 0, or the task "chief")."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def device_defaults():
    """(description, jit default, mixed-precision policy) for the visible devices."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU", False, "mixed_bfloat16"
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability") or (0, 0)
    policy = "mixed_bfloat16" if tuple(capability) >= (8, 0) else "mixed_float16"
    return f"{len(gpus)} x {details.get('device_name', 'GPU')}", True, policy


# --- Data ---------------------------------------------------------------------------
def load_data(options):
    """Open the tracings and labels and split the rows.

    Returns
    -------
    (Collection, numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Collection, labels (n, 6), train rows, validation rows.
    """
    import datasets

    collection = datasets.open_collection(options["data"], options["dataset_name"])
    table = datasets.load_labels(collection, options["labels"], options["dataset_name"])
    groups = None
    if options["val_split_by"]:
        column = options["val_split_by"]
        if table.frame is None or column not in table.frame.columns:
            where = options["labels"] or "the HDF5 labels (no CSV given)"
            raise ECGInputError(f"{where}: no column {column!r} for --val-split-by; give a "
                                "label CSV that has it, or drop --val-split-by")
        groups = table.frame[column].to_numpy()
    train_rows, val_rows = datasets.split_indices(
        collection.n, options["val_split"], groups, options["seed"])
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise ECGInputError(f"{', '.join(collection.paths)}: {collection.n} rows give "
                            f"{len(train_rows)} training and {len(val_rows)} validation rows; "
                            "adjust --val-split or add data")
    return collection, table.labels, train_rows, val_rows


# --- Model ----------------------------------------------------------------------------
def build_model(model_factory, options, state, out, jit):
    """A compiled model: new from ``model_factory``, or the checkpoint of a resumed run."""
    import keras

    if state is None:
        model = model_factory()
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


# --- Run-folder files --------------------------------------------------------------------
def write_history(out, rows):
    """Write history.csv (one row per completed epoch) atomically."""
    import pandas as pd

    with atomic_output(os.path.join(out, "history.csv")) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def run_config(options, collection, n_train, n_val, setup):
    """The content of config.json: options, inputs, setup, versions and git commit."""
    import h5py
    import keras
    import sklearn
    import tensorflow as tf

    return {
        "options": options,
        "inputs": {"paths": collection.paths, "sizes": collection.sizes, "rows": collection.n,
                   "labels": options["labels"] or "labels dataset in the HDF5 files",
                   "train_rows": int(n_train), "validation_rows": int(n_val)},
        "setup": setup,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__,
                     "h5py": h5py.__version__, "scikit-learn": sklearn.__version__},
        "git_commit": git_commit(),
        "command": sys.argv,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def git_commit():
    """The commit of the code's repository (with "+dirty" if modified), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10,
                               check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


# --- Training -------------------------------------------------------------------------
class Run:
    """One training run: the model, its data, its callbacks and its run folder."""

    def __init__(self, model, options, collection, labels, train_rows, val_rows, out,
                 writes, state, global_batch, replicas, jit, extra_callbacks=()):

        import datasets

        self.model, self.options, self.out, self.writes = model, options, out, writes
        self.collection, self.labels, self.train_rows = collection, labels, train_rows
        self.global_batch, self.replicas = global_batch, replicas
        val_dataset = datasets.make_dataset(collection, labels, batch_size=global_batch,
                                            indices=val_rows, shuffle=False)
        self.validation = ts.ValidationMetrics(val_dataset, jit_compile=jit)
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
        """The training batches of ``epoch``, in an order set by (seed, epoch) alone."""
        import datasets

        return datasets.make_dataset(
            self.collection, self.labels, batch_size=self.global_batch, shuffle=True,
            seed=ts.epoch_seed(self.options["seed"], epoch), indices=self.train_rows,
            drop_remainder=self.replicas > 1)

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
        if improved:
            ecg_model.save_model(self.model, os.path.join(self.out, "model_best"))
            thresholds = ts.f1_max_thresholds(self.validation.y_true, self.validation.y_score)
            ts.write_json(os.path.join(self.out, "thresholds.json"),
                          {"epoch": epoch + 1, "val_loss": row["val_loss"],
                           "rule": "positive when score > threshold", "classes": thresholds})
        write_history(self.out, state["history"])
        ts.commit_epoch(self.out, self.model, state)
        # model_last.keras is a link to the resume checkpoint; add the legacy copy.
        ecg_model.save_model(self.model, os.path.join(self.out, "model_last"), formats=(".h5",))

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
        Returns a new, uncompiled keras.Model with input (4096, 12) and 6 sigmoid outputs;
        ``model.get_model`` (the paper's ResNet) when None. Tests pass tiny models here.
    extra_callbacks : sequence of keras.callbacks.Callback
        Appended to the training callbacks (tests use this to kill a run mid-epoch).

    Returns
    -------
    int
        0 done, 2 NaN loss, 130 interrupted (bad input raises ECGInputError: exit 2).
    """
    args = build_parser().parse_args(argv)
    out, options, state = resolve_run(args)
    check_options(options)
    strategy, kind = make_strategy(options["distribute"])
    import keras
    import tensorflow as tf

    writes = is_chief(strategy)
    collection, labels, train_rows, val_rows = load_data(options)
    device, jit_default, policy = device_defaults()
    jit = jit_default if options["jit"] is None else options["jit"]
    mixed = bool(options["mixed_precision"])
    keras.mixed_precision.set_global_policy(policy if mixed else "float32")
    keras.utils.set_random_seed(options["seed"])
    if options["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    replicas = strategy.num_replicas_in_sync
    global_batch = options["batch_size"] * replicas
    setup = {"device": device, "strategy": kind, "replicas": replicas,
             "global_batch": global_batch, "precision": policy if mixed else "float32",
             "jit": jit, "model": getattr(model_factory, "__name__", "model.get_model")}
    print_setup(setup, options, collection, len(train_rows), len(val_rows))
    run_dir = out if writes else tempfile.mkdtemp(prefix="ecg-train-worker-")
    try:
        if writes:
            os.makedirs(out, exist_ok=True)
            config = run_config(options, collection, len(train_rows), len(val_rows), setup)
            if state is not None:
                config["resumed_at_epoch"] = state["completed_epochs"]
            ts.write_json(os.path.join(out, "config.json"), config)
        with strategy.scope():
            model = build_model(model_factory or _paper_model, options, state, out, jit)
            if kind == "multi-worker":
                ts.patch_multi_worker_build(model, strategy)
            run = Run(model, options, collection, labels, train_rows, val_rows, run_dir,
                      writes, state, global_batch, replicas, jit, extra_callbacks)
        return train(run, out, verbose=1 if writes else 0)
    finally:
        if not writes:
            shutil.rmtree(run_dir, ignore_errors=True)


def _paper_model():
    import model as ecg_model

    return ecg_model.get_model()


def print_setup(setup, options, collection, n_train, n_val):
    """Print the resolved devices, precision, XLA and data sizes before training starts."""
    print(f"train.py: {collection.n} ECGs in {len(collection.paths)} file(s): {n_train} "
          f"training, {n_val} validation; device {setup['device']}; strategy "
          f"{setup['strategy']} ({setup['replicas']} replica(s)), global batch "
          f"{setup['global_batch']}; precision {setup['precision']}; XLA "
          f"{'on' if setup['jit'] else 'off'}; seed {options['seed']}"
          f"{'; deterministic ops' if options['deterministic'] else ''}")
    if setup["replicas"] > 1:
        print(f"note: lr {options['lr']} is not scaled with the {setup['replicas']} replicas; "
              "for a larger global batch consider scaling it linearly (see README)")


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
    if run.writes:
        run.finish()
        print_summary(run, out, time.perf_counter() - started)
    return 0


def report_nan(run, epoch, out):
    """Say where the loss became NaN and which good model is kept; return status 2."""
    done = run.state["completed_epochs"]
    kept = (f"the last good model (epoch {done}) is kept in {out}/model_last.keras"
            if done else "no epoch completed, so no model was saved")
    print(f"error: the loss became NaN in epoch {epoch + 1}; training stopped and {kept}; "
          "lower --lr or check the data", file=sys.stderr)
    return 2


def report_interrupt(run, epoch, out):
    """Save model_last at the interruption, say how to resume; return status 130."""
    import model as ecg_model

    if run.writes:
        ecg_model.save_model(run.model, os.path.join(out, "model_last"))
    done = run.state["completed_epochs"]
    print(f"\nInterrupted in epoch {epoch + 1}: {out}/model_last.keras/.h5 hold the weights "
          f"at the interruption. Continue from the end of epoch {done} with:\n"
          f"  python train.py --resume --out {out}", file=sys.stderr)
    return INTERRUPTED


def print_summary(run, out, seconds):
    """One paragraph: epochs, best epoch, val_loss, per-class F1, speed, files."""
    import json

    state, history = run.state, run.state["history"]
    samples = sum(r["samples"] for r in history)
    train_seconds = sum(r["epoch_seconds"] for r in history)
    f1 = ""
    path = os.path.join(out, "thresholds.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            classes = json.load(handle)["classes"]
        f1 = ", ".join(f"{c} {_fmt(classes[c]['f1'])}" for c in CLASSES)
    stop = "stopped early" if state["stopped_early"] else "reached --epochs"
    print(f"\nSummary: {len(history)} epoch(s) in total ({stop}); this session took "
          f"{seconds:.0f} s, training at {samples / max(train_seconds, 1e-9):.1f} ECGs/s. "
          f"Best epoch {state['best_epoch']} with val_loss {_fmt(state['best_val_loss'])}; "
          f"validation F1 at the F1-maximising thresholds: {f1}. Files in {out}: "
          "model_best.keras/.h5 and final_model.h5 (best epoch), model_last.keras/.h5, "
          "history.csv, thresholds.json, config.json, "
          f"{'tensorboard/, ' if os.path.isdir(os.path.join(out, 'tensorboard')) else ''}"
          "resume/.")


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
