"""Setting up a training run of ``train.py``: options, run folder, devices, config.json.

Everything ``train.main`` resolves before it builds the model: the options of a new or
resumed run (:data:`DEFAULTS`, :func:`resolve_run`, :func:`check_options`), the inputs
and their train/validation split (:func:`split_inputs`, :func:`load_data`), the
distribution strategy and the device defaults (:func:`make_strategy`, :func:`is_chief`,
:func:`device_defaults`), the line printed at start (:func:`print_setup`), and the run
folder's ``config.json`` and ``history.csv`` (:func:`run_config`, :func:`git_commit`,
:func:`write_history`).
"""

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from ecgcode import data
from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    UNITS_PER_MV,
    ECGInputError,
    atomic_output,
)
from ecgcode.data.labels import parse_where, row_values, rows_where
from ecgcode.data.scale import Scale, bring_to_scale, read_units_per_mv
from ecgcode.model import backend as kb
from ecgcode.model.metadata import read_model_scale
from ecgcode.model.modelfiles import model_file
from ecgcode.model.precision import default_cpu_precision
from ecgcode.model.runfolder import CONFIG_NAME, HISTORY_NAME, run_file, write_json
from ecgcode.training import recipe
from ecgcode.training import state as ts

DEFAULTS = {
    "epochs": recipe.EPOCHS,
    "batch_size": recipe.BATCH_SIZE,
    "lr": recipe.LEARNING_RATE,
    "val_split": recipe.VALIDATION_SPLIT,
    "val_split_by": None,
    "dataset_name": DEFAULT_DATASET_NAME,
    "seed": 0,
    "steps_per_epoch": None,
    "mixed_precision": None,  # None: on where the device computes bfloat16 natively
    "jit": None,
    "distribute": "auto",
    "deterministic": False,
    "classes": None,  # None: the paper's six (see ecgcode.data.labels.choose_classes)
    "val_where": None,
    "test_where": None,
    "init": None,
    "freeze_backbone": False,
    "skip_nonfinite": False,
    "units_per_mv": None,  # the scale of input files that record none (ecgcode.data.scale)
}
"""Options of a new run (the paper's numbers: ``ecgcode.training.recipe``); on --resume the
saved options replace them."""

DATA_EXTENSIONS = (".hdf5", ".h5", ".hdf")


# --- Options, inputs and run folder -----------------------------------------------------
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
        if args.init:
            raise ECGInputError("--init starts a new run from a model's weights and --resume "
                                "continues a run from its own checkpoint: give one of them")
        state = ts.read_state(args.out)  # None: killed before its first epoch ended
        saved = _read_config(args.out)
        if saved is None:
            raise ECGInputError(f"{args.out}: no run to resume here (no {CONFIG_NAME}); start "
                                "a new run without --resume")
        options = dict(DEFAULTS, **saved["options"])
        if options["mixed_precision"] is None:  # saved before the default was resolved
            options["mixed_precision"] = False  # then the default: float32
        if given.get("mixed_precision", options["mixed_precision"]) != options["mixed_precision"]:
            raise ECGInputError(
                f"{args.out}: the run computes in "
                f"{'mixed precision' if options['mixed_precision'] else 'float32'}; "
                "--mixed-precision cannot change on --resume (its checkpoint keeps its "
                "policy): drop the option, or start a new run with --init")
        learnt = options["classes"] or list(CLASSES)  # None: the paper's six, by default
        if "classes" in given and given["classes"] != learnt:
            raise ECGInputError(f"{args.out}: the run learns {','.join(learnt)}; --classes "
                                "cannot change on --resume (start a new run with --init)")
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
    path = run_file(out, CONFIG_NAME)
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
    if options["val_where"] and options["val_split_by"]:
        raise ECGInputError("--val-where and --val-split-by both choose the validation rows; "
                            "give one of them")
    if options["freeze_backbone"] and not options["init"]:
        raise ECGInputError("--freeze-backbone trains only the output layer of a pretrained "
                            "model; give the model with --init MODEL")
    if options["init"] and not os.path.exists(options["init"]):
        raise ECGInputError(f"{options['init']}: --init model not found; give a model file "
                            "(.keras/.h5/.hdf5) or a train.py run folder")


@dataclasses.dataclass
class TrainingData:
    """The inputs of a run: tracings, labels, their class names and the row split."""

    collection: object
    labels: np.ndarray  # (n, n_classes)
    classes: tuple
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray  # held out (--test-where): in neither training nor validation
    provenance: dict = None  # ecgcode.model.provenance.training_provenance, set by train.py


def load_data(options):
    """Open the tracings and labels, choose the classes and split the rows.

    Validation rows: the last ``val_split`` of the rows, whole groups of ``val_split_by``,
    or the rows whose ``val_where`` column has the given values; ``test_where`` rows are
    held out of both training and validation.

    Returns
    -------
    TrainingData
    """
    collection = data.open_collection(options["data"], options["dataset_name"],
                                      options["units_per_mv"])
    collection, notes = bring_to_scale(collection, run_scale(options), "the run")
    for note in [*collection.notes, *notes]:  # one line per rescaled file
        print(f"note: {note}", file=sys.stderr)
    table = data.load_labels(collection, options["labels"], options["dataset_name"],
                             classes=options["classes"])
    held_out = np.zeros(collection.n, dtype=bool)
    if options["test_where"]:
        column, values = parse_where(options["test_where"], "--test-where")
        held_out = rows_where(row_values(collection, table, column), values)
    if options["val_where"]:
        column, values = parse_where(options["val_where"], "--val-where")
        is_val = rows_where(row_values(collection, table, column), values) & ~held_out
        train_rows, val_rows = np.flatnonzero(~is_val & ~held_out), np.flatnonzero(is_val)
    else:
        groups = None
        if options["val_split_by"]:
            groups = row_values(collection, table, options["val_split_by"])[~held_out]
        kept = np.flatnonzero(~held_out)
        train_at, val_at = data.split_indices(len(kept), options["val_split"], groups,
                                              options["seed"])
        train_rows, val_rows = kept[train_at], kept[val_at]
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise ECGInputError(f"{', '.join(collection.paths)}: {collection.n} rows give "
                            f"{len(train_rows)} training and {len(val_rows)} validation rows; "
                            "adjust --val-split/--val-where/--test-where or add data")
    return TrainingData(collection, table.labels, tuple(table.classes), train_rows.astype(np.int64),
                        val_rows.astype(np.int64), np.flatnonzero(held_out).astype(np.int64))


def run_scale(options):
    """The amplitude scale a run learns at: its ``--init`` model's, else the original study's.

    Every input file is brought to it, and every model the run writes records it.
    """
    if options["init"]:
        return read_model_scale(model_file(options["init"]))[0]
    return Scale(UNITS_PER_MV, "original")


# --- Devices and distribution ------------------------------------------------------------
def make_strategy(name, backend=None):
    """Return (strategy, kind) for --distribute ``name`` under the Keras ``backend``.

    Under JAX the strategy is an ``ecgcode.model.backend.LocalDevices`` (kind "none" or
    "data-parallel"); the tf.distribute strategies are refused there (see
    ``ecgcode.model.backend.jax_strategy``).
    """
    backend = backend or kb.name()
    kb.check_training_backend(backend)
    if backend == "jax":
        kb.keep_tensorflow_off_gpus()
        return kb.jax_strategy(name)
    kb.refuse_data_parallel_under_tensorflow(name)
    import tensorflow as tf  # deferred: imports TensorFlow

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


def device_defaults(backend=None):
    """(description, jit default, mixed-precision policy) for the visible devices."""
    if (backend or kb.name()) == "jax":
        return kb.jax_device_defaults()
    import tensorflow as tf  # deferred: imports TensorFlow

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU", False, "mixed_bfloat16"
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability") or (0, 0)
    policy = "mixed_bfloat16" if tuple(capability) >= (8, 0) else "mixed_float16"
    return f"{len(gpus)} x {details.get('device_name', 'GPU')}", True, policy


def choose_precision(requested, device, mixed_policy, backend="tensorflow"):
    """The dtype policy of a run, and why it was chosen (for the start-up banner).

    Parameters
    ----------
    requested : bool or None
        ``--mixed-precision`` (True), ``--no-mixed-precision`` (False), or None: mixed
        bfloat16 where the device computes bfloat16 natively (CPUs with AVX512-BF16 and
        no AMX, GPUs from Ampere on), float32 elsewhere (see
        ``ecgcode.model.precision.default_cpu_precision``).
    device : str
        ``"CPU"`` or a GPU description, from ``device_defaults``.
    mixed_policy : str
        The device's mixed policy, from ``device_defaults`` (``mixed_float16`` on GPUs
        before Ampere, which only ``--mixed-precision`` turns on).
    backend : str
        Keras backend. JAX's CPU build (XLA) computes bfloat16 slower than float32 even
        where the CPU has it natively (measured, PERFORMANCE.md), so it defaults to float32.

    Returns
    -------
    (str, str)
        Keras dtype policy name and the reason.
    """
    if requested is not None:
        flag = "--mixed-precision" if requested else "--no-mixed-precision"
        return (mixed_policy if requested else "float32"), flag
    if device == "CPU" and backend == "jax":
        return "float32", "default: JAX's CPU build computes bfloat16 slower than float32"
    if device == "CPU":
        policy, reason = default_cpu_precision()
        return policy, f"default: {reason}"
    if mixed_policy == "mixed_bfloat16":
        return mixed_policy, "default: the GPU computes bfloat16 natively (Ampere or later)"
    return "float32", ("default: the GPU has no native bfloat16 (before Ampere); "
                       "--mixed-precision gives mixed_float16")


@dataclasses.dataclass
class Device:
    """Where and how a run computes: backend, strategy, precision and XLA (see set_up_device)."""

    backend: str
    strategy: object
    kind: str  # the strategy's name: none, mirrored, multi-worker or data-parallel
    writes: bool  # this process writes the run folder (the chief)
    name: str  # "CPU" or a GPU description
    jit: bool
    policy: str  # Keras dtype policy
    policy_reason: str

    @property
    def replicas(self):
        return self.strategy.num_replicas_in_sync

    @property
    def mixed_precision(self):
        """Whether the run computes in mixed precision (config.json's option, for --resume)."""
        return self.policy != "float32"


def set_up_device(options, resumed):
    """Choose the backend's strategy, precision and XLA for ``options``; seed the run.

    Call after TensorFlow was imported (``ecgcode.model.quiet.import_tensorflow``); the precision
    chosen is the Device's ``mixed_precision``.
    """
    import keras  # TensorFlow is already imported quietly by the caller

    backend = kb.name()
    if options["deterministic"]:
        kb.set_deterministic(backend)  # before JAX starts its devices
    strategy, kind = make_strategy(options["distribute"], backend)
    name, jit_default, mixed_policy = device_defaults(backend)
    policy, reason = choose_precision(options["mixed_precision"], name, mixed_policy, backend)
    keras.utils.set_random_seed(options["seed"])
    return Device(backend, strategy, kind, is_chief(strategy), name,
                  jit_default if options["jit"] is None else options["jit"], policy,
                  "as the run being resumed" if resumed else reason)


@contextlib.contextmanager
def writable_folder(out, writes):
    """The folder this process writes to: ``out`` on the chief, else a temporary folder
    (other workers' copies of the files), removed afterwards."""
    if writes:
        os.makedirs(out, exist_ok=True)
        yield out
        return
    folder = tempfile.mkdtemp(prefix="ecg-train-worker-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- What a run prints and writes --------------------------------------------------------
def describe_setup(device, data, options, model_name):
    """The ``setup`` of config.json and of the start-up line: devices, precision, classes."""
    return {"backend": device.backend, "device": device.name, "strategy": device.kind,
            "replicas": device.replicas, "global_batch": options["batch_size"] * device.replicas,
            "precision": device.policy, "precision_reason": device.policy_reason,
            "jit": device.jit, "model": model_name, "classes": list(data.classes),
            "init": init_description(options)}


def init_description(options):
    """What the start-up line says about the initial weights."""
    if not options["init"]:
        return "weights: new"
    frozen = ", backbone frozen" if options["freeze_backbone"] else ""
    return f"weights: from {options['init']}{frozen}"


def print_setup(setup, options, collection, n_train, n_val, n_test=0):
    """Print the resolved devices, precision, XLA and data sizes before training starts."""
    held_out = f", {n_test} held out (--test-where)" if n_test else ""
    print(f"train.py: {collection.n} ECGs in {len(collection.paths)} file(s): {n_train} "
          f"training, {n_val} validation{held_out}; classes {','.join(setup['classes'])}; "
          f"{setup['init']}; backend {setup['backend']}; device {setup['device']}; strategy "
          f"{setup['strategy']} ({setup['replicas']} replica(s)), global batch "
          f"{setup['global_batch']}; precision {setup['precision']} ({setup['precision_reason']}); XLA "
          f"{'on' if setup['jit'] else 'off'}; seed {options['seed']}"
          f"{'; deterministic ops' if options['deterministic'] else ''}")
    if setup["replicas"] > 1:
        print(f"note: lr {options['lr']} is not scaled with the {setup['replicas']} replicas; "
              "for a larger global batch consider scaling it linearly (see README)")


def write_history(out, rows):
    """Write history.csv (one row per completed epoch) atomically."""
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    with atomic_output(run_file(out, HISTORY_NAME)) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def run_config(options, collection, n_train, n_val, setup, n_test=0):
    """The content of config.json: options, inputs, setup, versions and git commit."""
    import h5py  # deferred: with the others, for config.json's versions
    import keras  # deferred: imports TensorFlow
    import sklearn  # deferred: only config.json's versions need it (0.5 s)
    import tensorflow as tf  # deferred: imports TensorFlow

    return {
        "options": options,
        "inputs": {"paths": collection.paths, "sizes": collection.sizes, "rows": collection.n,
                   "units_per_mv": [scale.units_per_mv for scale in collection.scales],
                   "read_at_units_per_mv": read_units_per_mv(collection),
                   "labels": options["labels"] or "labels dataset in the HDF5 files",
                   "train_rows": int(n_train), "validation_rows": int(n_val),
                   "held_out_rows": int(n_test)},
        "classes": list(setup["classes"]),
        "setup": setup,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__,
                     "h5py": h5py.__version__, "scikit-learn": sklearn.__version__,
                     **kb.versions(setup["backend"])},
        "git_commit": git_commit(),
        "command": sys.argv,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def write_config(out, options, data, setup, state):
    """Write the run folder's config.json (with the epoch a resumed run restarts at)."""
    config = run_config(options, data.collection, len(data.train_rows), len(data.val_rows),
                        setup, len(data.test_rows))
    if state is not None:
        config["resumed_at_epoch"] = state["completed_epochs"]
    write_json(run_file(out, CONFIG_NAME), config)


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
