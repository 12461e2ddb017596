"""Benchmarks of the input pipeline, training, prediction and memory, against a baseline.

``python bench.py all --out bench_results.md`` runs every section on the same generated
HDF5 file and prints (and writes) one markdown table; ``python bench.py SECTION --help``
runs one section:

pipeline
    ECGs/s of ``ecgcode.data.make_dataset`` (shuffled and in file order) next to the raw
    sequential read speed of the same, page-cached file.
peak
    The machine's measured float32 peak (a large matrix product, numpy and TensorFlow).
flops
    The model's FLOPs per ECG, counted from its Conv1D/Dense shapes (training ~ 3 x forward).
speed
    Steady-state training ECGs/s at batch 64 through ``train.main`` (the project's default
    path: make_dataset, Adam, binary cross-entropy) and inference ECGs/s through
    predict.py's path (``predict_collection``: RowReader batches + predict_on_batch at
    predict.py's batch size),
    next to the BASELINE of the original study: a ``keras.utils.PyDataset`` reading h5py
    slices batch by batch, ``model.fit``/``model.predict`` with default settings.
precision
    Issue 15 in one run: a whole predict.py pass (``predict_collection``) against the bare
    compiled forward pass at its batch size, float32 and ``--precision bfloat16`` with
    their agreement (on ``--trained RUN`` if given), and training ECGs/s of train.py's
    default precision against ``--no-mixed-precision``.
memory
    Peak resident memory (VmHWM, i.e. ru_maxrss of the process alone) of training and
    prediction on two file sizes.
model
    Training and inference ECGs/s of the model alone on in-memory random ECGs, for given
    batch sizes, dtype policies and XLA settings, under any Keras 3 backend (no tf.data, no
    TensorFlow): ``KERAS_BACKEND=jax python bench.py model ...`` runs where TensorFlow is
    unavailable (importing bench.py imports none; ``ecgcode.bench.model_speed``).  Not
    part of ``all``.
one_exam
    Wall time and peak RSS of a fresh ``predict.py EXAM MODEL`` process (median of a few),
    for a ``.keras`` model and its ONNX export (onnxruntime, no TensorFlow), and the
    largest difference of their probabilities (``ecgcode.bench.fastpath``).
service
    Per-request latency (median, p95) and requests/s of one exam POSTed again and again to
    a running ``predict.py --serve MODEL``, for the ONNX export and the Keras model.
scale
    What a wrong amplitude scale costs: F1 at the model's thresholds and AUROC of every
    class with labelled inputs multiplied by 0.1 to 10 (``ecgcode.bench.scale``); the
    table in docs/data-formats.md.  Not part of ``all``.

Timed runs exclude compilation and warm-up batches and, in ``speed`` and ``memory``, are
separate processes; tables show medians of window rates (the method is in
``ecgcode.bench.measure``; the measured paths of the scripts are below).  On a GPU the speed
section adds mixed-precision and XLA variants.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from ecgcode.bench import fastpath as bench_fastpath
from ecgcode.bench import measure as bench_measure
from ecgcode.bench import model_speed as bench_model
from ecgcode.bench import scale as bench_scale
from ecgcode.bench.measure import (
    BASELINE_PREDICT_BATCH,
    RESULT_PREFIX,
    apply_threads,
    batch_timer,
    ensure_bench_file,
    flops_rows,
    machine_description,
    max_rss_mb,
    measure_script_in_subprocess,
    peak_rows,
    pipeline_rows,
    predict_baseline,
    timed_batches,
    train_baseline,
    window_rates,
)
from ecgcode.bench.model_speed import (
    MODELS,
    PAPER_BATCH,
    format_table,
    row,
    write_table,
)
from ecgcode.bench.paths import (
    predict_path_rows,
    trained_model,
    training_precision_rows,
)
from ecgcode.cli import train
from ecgcode.common import ECGInputError, plain, run_cli
from ecgcode.data import open_collection
from ecgcode.evaluation.sweep import parse_factors
from ecgcode.inference.predictor import DEFAULT_BATCH_SIZE, keras_predictor, predict_collection
from ecgcode.model.backend import has_gpu
from ecgcode.model.metadata import default_classes
from ecgcode.model.modelfiles import resolve_model
from ecgcode.model.quiet import import_tensorflow
from ecgcode.training.run_setup import device_defaults


# --- The measured paths: the scripts' own code, one path per process ----------------------
def train_default(path, factory, warmup, window, windows, batch_size=PAPER_BATCH, jit=None,
                  mixed_precision=None):
    """Steady-state training ECGs/s through ``train.main`` (a throw-away run folder).

    Only the batch end times of the first epoch matter; the validation set is made tiny
    (a few rows) so that the end of the epoch is quick.
    """
    steps = timed_batches(warmup, window, windows)
    n = open_collection(path).n
    if steps * batch_size > n * 0.99:
        raise ValueError(f"{path}: {n} rows are too few for {steps} batches of {batch_size}")
    timer = batch_timer()
    argv = [path, "--epochs", "1", "--steps-per-epoch", str(steps), "--batch-size",
            str(batch_size), "--val-split", str(min(0.5, 4 / n))]
    if jit is not None:
        argv.append("--jit" if jit else "--no-jit")
    if mixed_precision is not None:  # None: train.py's default for this device
        argv.append("--mixed-precision" if mixed_precision else "--no-mixed-precision")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as out, _quiet_stdout():
        status = train.main(argv + ["--out", os.path.join(out, "run")], model_factory=factory,
                            extra_callbacks=[timer])
    if status != 0:
        raise RuntimeError(f"train.main returned {status}")
    return window_rates(timer.times, batch_size, warmup, window)


@contextlib.contextmanager
def _quiet_stdout():
    """Send train.main's progress bars to /dev/null (results are reported separately)."""
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield

def predict_default(path, factory, warmup, window, windows, batch_size=None, jit=False):
    """Steady-state inference ECGs/s of predict.py's path (``predict_collection``'s batches).

    ``ecgcode.inference.predictor.predict_collection`` (rows read by ``RowReader``,
    ``predict_on_batch``) at ``ecgcode.inference.predictor.DEFAULT_BATCH_SIZE``, over just
    enough rows for the timed batches.
    """
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    model = factory()
    if jit:
        model.jit_compile = True
    batches = timed_batches(warmup, window, windows)
    collection = open_collection(path)
    rows = np.arange(min(collection.n, batches * batch_size))
    predictor = keras_predictor(model, default_classes(int(model.outputs[0].shape[-1])),
                                "(bench model)", batch_size)
    times = []

    def timed(x):  # the end time of every batch, as a Keras callback would record it
        probabilities = predictor.predict(x)
        times.append(time.perf_counter())
        return probabilities

    predict_collection(dataclasses.replace(predictor, predict=timed), collection, batch_size,
                       rows=rows)
    return window_rates(times, batch_size, warmup, window)

def predict_full_pass(path, factory, batch_size=None):
    """Run predict.py's ``predict_collection`` over the whole file (for peak memory)."""
    collection = open_collection(path)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    model = factory()
    predictor = keras_predictor(model, default_classes(int(model.outputs[0].shape[-1])),
                                "(bench model)", batch_size)
    start = time.perf_counter()
    predict_collection(predictor, collection, batch_size)
    return [collection.n / (time.perf_counter() - start)]


KINDS = {
    "train_default": train_default,
    "train_baseline": train_baseline,
    "predict_default": predict_default,
    "predict_baseline": predict_baseline,
    "predict_full_pass": predict_full_pass,
}

def measure(kind, path, model_name="paper", warmup=2, window=2, windows=3, **options):
    """Run one measured path in this process.

    Parameters
    ----------
    kind : str
        One of ``KINDS``.
    path : str
        CODE-style HDF5 file with a ``labels`` dataset.
    model_name : str
        ``paper`` or ``tiny`` (see ``MODELS``).
    warmup, window, windows : int
        Batches excluded, batches per timed window, number of windows.
    **options
        ``batch_size``, ``jit``, ``mixed_precision`` (where the path has them).

    Returns
    -------
    dict
        ``rates`` (ECGs/s of each window), ``ecg_per_s`` (their median),
        ``max_rss_MB`` (this process's peak resident memory so far).
    """
    factory = MODELS[model_name]
    # train_default passes mixed_precision on to train.py (None: train.py's default).
    if kind != "train_default" and options.pop("mixed_precision", None):
        _use_mixed_precision(kind)
    function = KINDS[kind]
    if kind == "predict_full_pass":
        rates = function(path, factory, **options)
    else:
        rates = function(path, factory, warmup, window, windows, **options)
    return {"rates": rates, "ecg_per_s": statistics.median(rates) if rates else float("nan"),
            "max_rss_MB": max_rss_mb()}


def _use_mixed_precision(kind):
    if kind.startswith("predict"):
        import keras  # deferred: imports TensorFlow, in the measuring process only

        keras.mixed_precision.set_global_policy(device_defaults()[2])
    else:
        raise ValueError(f"{kind}: the baseline has no mixed-precision variant")

def measure_in_subprocess(kind, path, model_name="paper", warmup=2, window=2, windows=3,
                          env=None, timeout=None, **options):
    """``measure`` in a fresh ``python bench.py measure`` process; returns its dict.

    ``env`` adds environment variables (e.g. ``TF_ENABLE_ONEDNN_OPTS``); ``options`` may
    also hold ``intra``/``inter`` thread counts.
    """
    return measure_script_in_subprocess(__name__, kind, path, model_name, warmup, window,
                                        windows, env, timeout, **options)


def measure_main(argv=None):
    """Measure one path in this process and print its ``BENCH_RESULT`` JSON line."""
    parser = argparse.ArgumentParser(
        prog="bench.py measure",
        description="Measure one path in this process and print a BENCH_RESULT JSON line "
        "(used by the other sections; handy for trying settings).")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("file", help="CODE-style HDF5 file with labels (bench.py make)")
    parser.add_argument("--model", choices=sorted(MODELS), default="paper")
    parser.add_argument("--warmup", type=int, default=2, help="batches not timed (>= 1)")
    parser.add_argument("--window", type=int, default=2, help="batches per timed window")
    parser.add_argument("--windows", type=int, default=3, help="number of timed windows")
    parser.add_argument("--options", default="{}",
                        help='JSON: {"batch_size": N, "jit": bool, "mixed_precision": bool, '
                        '"intra": N, "inter": N}')
    args = parser.parse_args(argv)
    options = json.loads(args.options)
    apply_threads(options.pop("intra", None), options.pop("inter", None))
    result = measure(args.kind, args.file, args.model, args.warmup, args.window, args.windows,
                     **options)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --- Sections: each returns a list of table rows (``row``, from model_speed) ---------------
SPEED_RUNS = (
    ("train_default", "training, train.py default path (batch 64)", {}),
    ("train_baseline", "training, BASELINE PyDataset + model.fit (batch 64)", {}),
    ("predict_default", "inference, predict.py default path", {}),
    ("predict_baseline", "inference, BASELINE PyDataset + model.predict (batch 32)", {}),
)
GPU_SPEED_RUNS = (
    ("train_default", "training, default path, XLA on", {"jit": True}),
    ("train_default", "training, default path, XLA off", {"jit": False}),
    ("train_default", "training, default path, mixed precision", {"mixed_precision": True}),
    ("predict_default", "inference, default path, XLA on", {"jit": True}),
    ("predict_default", "inference, default path, mixed precision",
     {"mixed_precision": True}),
)


def speed_rows(path, model_name="paper", repeats=1, warmup=2, window=2, windows=3,
               predict_window_ecgs=256, peak_gflops=None, forward_flops=None, gpu=None,
               isolate=True):
    """Rows of the ``speed`` section: default paths and baseline, runs interleaved.

    Each run is a separate process (``isolate``); the value is the median of the window
    rates of its ``repeats`` runs.  Prediction windows hold about ``predict_window_ecgs``
    ECGs whatever the batch size.
    """
    if gpu is None:
        gpu = has_gpu("tensorflow")  # the speed section's paths run on TensorFlow
    runs = SPEED_RUNS + (GPU_SPEED_RUNS if gpu else ())
    rates = {index: [] for index in range(len(runs))}
    for _ in range(repeats):
        for index, (kind, _label, options) in enumerate(runs):
            batch = _batch_of(kind, options)
            kind_window = window if kind.startswith("train") else max(
                1, predict_window_ecgs // batch)
            kind_warmup = warmup if kind.startswith("train") else 1
            run = measure_in_subprocess if isolate else measure
            result = run(kind, path, model_name, kind_warmup, kind_window, windows, **options)
            rates[index].extend(result["rates"])
    medians = {i: statistics.median(r) for i, r in rates.items()}
    baseline = {"train": medians[1], "predict": medians[3]}
    rows = []
    for index, (kind, label, options) in enumerate(runs):
        task = "train" if kind.startswith("train") else "predict"
        note = f"{len(rates[index])} windows"
        if index not in (1, 3):
            note += f"; {medians[index] / baseline[task]:.2f} x baseline"
        if peak_gflops and forward_flops:
            flops = forward_flops * (3 if task == "train" else 1)
            note += f"; {medians[index] * flops / 1e9 / peak_gflops:.0%} of peak"
        if task == "predict":
            note += f"; batch {_batch_of(kind, options)}"
        rows.append(row("speed", label, medians[index], "ECGs/s", note))
    return rows


def precision_rows(path, trained=None, rounds=3, model_name="paper", warmup=2, window=2,
                   windows=3):
    """Rows of the ``precision`` section (issue 15, items 1-3) on the whole file ``path``.

    ``trained`` (a run folder or model file) is the model predicted; default the paper's
    model with random weights (then the agreement says little).  Training runs in separate
    processes, default precision and ``--no-mixed-precision`` interleaved over ``rounds``.
    """
    if trained:
        model, thresholds, label = trained_model(*resolve_model(trained))
    else:
        model, label = MODELS[model_name](), f"{model_name} model, random weights"
        thresholds = [0.5] * int(model.outputs[0].shape[-1])
    rows = predict_path_rows(model, open_collection(path), DEFAULT_BATCH_SIZE, thresholds,
                             label, rounds)
    return rows + training_precision_rows(measure_in_subprocess, path, model_name, rounds,
                                          warmup, window, windows)


def _batch_of(kind, options):
    if "batch_size" in options:
        return options["batch_size"]
    if kind == "predict_default":
        return DEFAULT_BATCH_SIZE
    return BASELINE_PREDICT_BATCH if kind == "predict_baseline" else PAPER_BATCH


def memory_rows(files, model_name="paper", isolate=True):
    """Rows of the ``memory`` section (``ecgcode.bench.measure.memory_rows``), measured in
    separate processes unless ``isolate`` is False."""
    return bench_measure.memory_rows(files, measure_in_subprocess if isolate else measure,
                                     model_name)


# --- Command line ---------------------------------------------------------------------------
def _all_main(argv):
    parser = argparse.ArgumentParser(
        prog="bench.py all",
        description="Every section on the same generated file; prints the markdown table "
        "and writes it to --out.  Takes ~25-30 min on a 2-core CPU with the defaults.")
    add_timing_arguments(parser)
    parser.add_argument("--data-dir", help="where the benchmark files are written (or reused "
                        "if present); default a temporary folder, deleted afterwards")
    parser.add_argument("--small-gb", type=float, default=1.0,
                        help="size of the main file, GB (default 1)")
    parser.add_argument("--large-gb", type=float, default=4.0,
                        help="size of the second file for the memory section (default 4)")
    parser.add_argument("--rows", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="exact row counts of the two files instead of --small/large-gb")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("pipeline", "peak", "speed", "precision", "memory",
                                 "one_exam", "service"),
                        help="sections to leave out")
    parser.add_argument("--exam", help="the exam of one_exam and service (a clinical file "
                        "such as a GE MUSE XML; default: a one-exam benchmark HDF5 file)")
    add_precision_arguments(parser)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="ecg-bench-")
    os.makedirs(data_dir, exist_ok=True)
    try:
        return _run_all(args, data_dir)
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def _run_all(args, data_dir):
    rows_small, rows_large = args.rows or (None, None)
    small = ensure_bench_file(os.path.join(data_dir, "bench_small.hdf5"), args.small_gb, rows_small)
    machine = machine_description()
    rows, peak, forward = [], None, None
    if "pipeline" not in args.skip:
        rows += pipeline_rows(small)
    if "peak" not in args.skip:
        peak_table, peak = peak_rows()
        rows += peak_table
    flops_table, forward = flops_rows(args.model)
    rows += flops_table
    if "speed" not in args.skip:
        rows += speed_rows(small, args.model, args.repeats, args.warmup, args.window,
                           args.windows, args.predict_window_ecgs, peak, forward)
    if "precision" not in args.skip:
        whole = ensure_bench_file(os.path.join(data_dir, "bench_precision.hdf5"), None,
                                  args.precision_rows)
        rows += precision_rows(whole, args.trained, args.rounds, args.model, args.warmup,
                               args.window, args.windows)
    if "memory" not in args.skip:
        large = ensure_bench_file(os.path.join(data_dir, "bench_large.hdf5"), args.large_gb,
                             rows_large)
        files = {f"{os.path.getsize(p) / 1e9:.2f} GB": p for p in (small, large)}
        rows += memory_rows(files, args.model)
    if "one_exam" not in args.skip or "service" not in args.skip:
        exam = args.exam or ensure_bench_file(os.path.join(data_dir, "bench_one.hdf5"), None, 1)
        keras_path, onnx_path = bench_fastpath.saved_models(data_dir, args.model)
        if "one_exam" not in args.skip:
            rows += bench_fastpath.one_exam_rows(
                exam, {"Keras .keras": keras_path, "ONNX export": onnx_path})
        if "service" not in args.skip:
            rows += bench_fastpath.service_rows(
                exam, {"ONNX export": onnx_path, "Keras .keras": keras_path})
    machine["load_average"] += f" (start) / {' '.join(f'{v:.2f}' for v in os.getloadavg())} (end)"
    text = format_table(rows, machine)
    print(text)
    write_table(text, args.out)
    return 0


def _section_main(name):
    def section_main(argv):
        parser = argparse.ArgumentParser(prog=f"bench.py {name}",
                                         description=f"The {name} section alone.")
        if name in ("speed", "memory", "precision"):
            parser.add_argument("file", help="CODE-style HDF5 file with labels (bench.py make)")
            add_timing_arguments(parser)
        if name == "precision":
            add_precision_arguments(parser)
        if name == "memory":
            parser.add_argument("large_file", help="a larger file of the same kind")
        if name == "flops":
            parser.add_argument("--model", choices=sorted(MODELS), default="paper")
        if name in ("peak", "flops"):
            parser.add_argument("--out", help="also write the markdown table to this file")
        args = parser.parse_args(argv)
        if name == "peak":
            rows = peak_rows()[0]
        elif name == "flops":
            rows = flops_rows(args.model)[0]
        elif name == "speed":
            _, peak = peak_rows(repeats=3)
            rows = speed_rows(args.file, args.model, args.repeats, args.warmup, args.window,
                              args.windows, args.predict_window_ecgs, peak,
                              flops_rows(args.model)[1])
        elif name == "precision":
            rows = precision_rows(args.file, args.trained, args.rounds, args.model,
                                  args.warmup, args.window, args.windows)
        else:
            files = {f"{os.path.getsize(p) / 1e9:.2f} GB": p for p in (args.file,
                                                                         args.large_file)}
            rows = memory_rows(files, args.model)
        text = format_table(rows, machine_description())
        print(text)
        write_table(text, args.out)
        return 0

    return section_main


def _fastpath_main(name):
    def fastpath_main(argv):
        parser = argparse.ArgumentParser(
            prog=f"bench.py {name}",
            description="Wall time and peak RSS of one exam in a fresh predict.py process, "
            "Keras model vs ONNX export" if name == "one_exam" else
            "Latency and requests/s of one exam per request to predict.py --serve")
        parser.add_argument("exam", help="one exam: a clinical file (GE MUSE XML, HL7 aECG, "
                            "DICOM, SCP-ECG, ...) or an HDF5 file")
        parser.add_argument("--keras", metavar="MODEL.keras",
                            help="the Keras model (default: --model's, random weights)")
        parser.add_argument("--onnx", metavar="MODEL.onnx",
                            help="its ONNX export (default: exported from the Keras model "
                            "when that is generated; give both or neither)")
        if name == "one_exam":
            parser.add_argument("--runs", type=int, default=5,
                                help="processes per model after one warm-up (default 5)")
        else:
            parser.add_argument("--requests", type=int, default=50,
                                help="timed requests after 3 warm-up (default 50)")
        parser.add_argument("--model", choices=sorted(MODELS), default="paper",
                            help="the generated model without --keras/--onnx (default: paper)")
        parser.add_argument("--out", help="also write the markdown table to this file")
        args = parser.parse_args(argv)
        with tempfile.TemporaryDirectory(prefix="ecg-bench-models-") as folder:
            if bool(args.keras) != bool(args.onnx):
                raise ECGInputError("--keras and --onnx: give both (the same weights) or "
                                    "neither (the paper's model, random weights)")
            keras_path, onnx_path = ((args.keras, args.onnx) if args.keras
                                     else bench_fastpath.saved_models(folder, args.model))
            if name == "one_exam":
                rows = bench_fastpath.one_exam_rows(
                    args.exam, {"Keras .keras": keras_path, "ONNX export": onnx_path},
                    args.runs)
            else:
                rows = bench_fastpath.service_rows(
                    args.exam, {"ONNX export": onnx_path, "Keras .keras": keras_path},
                    args.requests)
        text = format_table(rows, machine_description())
        print(text)
        write_table(text, args.out)
        return 0

    return fastpath_main


# --- Options and mains of the sections whose code is in ecgcode.bench ---------------------
def pipeline_main(argv=None):
    """The ``pipeline`` section's raw numbers (``bench.py pipeline``), one per line."""
    parser = argparse.ArgumentParser(
        prog="bench.py pipeline",
        description="ECGs/s of ecgcode.data.make_dataset (shuffled and in order) on a "
        "page-cached HDF5 file, and the file's raw sequential read speed.")
    parser.add_argument("file", help="CODE-style HDF5 file (delete it yourself afterwards)")
    parser.add_argument("--make", type=int, metavar="N",
                        help="first write a synthetic file of N tracings at FILE")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--block-size", type=int, help="make_dataset block_size")
    parser.add_argument("--shuffle-buffer", type=int, default=512)
    parser.add_argument("--num-parallel-reads", type=int, default=3)
    args = parser.parse_args(argv)
    if args.make:
        bench_measure.write_bench_file(args.file, args.make)
    results = bench_measure.bench_pipeline(
        args.file, args.repeats, args.batch_size, block_size=args.block_size,
        shuffle_buffer=args.shuffle_buffer, num_parallel_reads=args.num_parallel_reads)
    for key, value in results.items():
        print(f"{key:24s} {value:.4g}" if isinstance(value, float) else f"{key:24s} {value}")
    return 0


def add_timing_arguments(parser):
    """The timing options of the bench.py sections that time scripts."""
    parser.add_argument("--model", choices=sorted(MODELS), default="paper",
                        help="paper (default) or tiny (a quick check of the script)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="processes per path, interleaved (default 1)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="training batches not timed (compilation, first steps; default 2)")
    parser.add_argument("--window", type=int, default=2,
                        help="training batches per timed window (default 2)")
    parser.add_argument("--windows", type=int, default=3,
                        help="timed windows per process (default 3)")
    parser.add_argument("--predict-window-ecgs", type=int, default=256,
                        help="ECGs per timed prediction window (default 256)")
    parser.add_argument("--out", help="also write the markdown table to this file")


def make_main(argv):
    """``bench.py make``: write a benchmark HDF5 file."""
    parser = argparse.ArgumentParser(prog="bench.py make",
                                     description="Write a benchmark HDF5 file (with labels).")
    parser.add_argument("file")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--gb", type=float, help="about this many GB")
    size.add_argument("--rows", type=int, help="exactly this many tracings")
    args = parser.parse_args(argv)
    bench_measure.write_bench_file(args.file,
                                   args.rows or bench_measure.rows_for_gigabytes(args.gb))
    return 0


def add_precision_arguments(parser):
    """The options of bench.py's ``precision`` section (also in ``all``)."""
    parser.add_argument("--trained", metavar="RUN",
                        help="precision: a train.py run folder or model file, predicted in "
                        "float32 and bfloat16 (default: the --model with random weights)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="precision: alternating rounds of each measurement (default 3)")
    parser.add_argument("--precision-rows", type=int, default=640,
                        help="all: exams of the precision section's file, predicted whole "
                        "each round (default 640)")


def _comma_list(convert, allowed=None):
    """An argparse type: "a,b" -> [convert(a), convert(b)], each in ``allowed`` if given."""
    def parse(text):
        values = [convert(item) for item in text.split(",") if item.strip()]
        if not values or (allowed and not set(values) <= set(allowed)):
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list"
                                             + (f" of {', '.join(allowed)}" if allowed else ""))
        return values

    return parse


def model_main(argv=None):
    """Print (and with ``--out`` write) the ``model`` section's markdown table."""
    prog = "bench.py model"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Training and inference ECGs/s of the model alone on in-memory random "
        "ECGs under any Keras 3 backend (no tf.data, no TensorFlow), e.g. KERAS_BACKEND=jax "
        f"python {prog} --batch-sizes 64,256 --policies float32,mixed_bfloat16")
    parser.add_argument("--batch-sizes", type=_comma_list(int), default=[PAPER_BATCH],
                        help=f"comma-separated batch sizes (default {PAPER_BATCH})")
    parser.add_argument("--policies", type=_comma_list(str, bench_model.DTYPE_POLICIES),
                        default=["float32"],
                        help="comma-separated Keras dtype policies (default float32)")
    parser.add_argument("--jit", type=_comma_list(str, ("on", "off")), default=["on"],
                        help="XLA compilation: on, off or on,off (default on)")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed batches per setting and task (default 20)")
    parser.add_argument("--model", choices=sorted(MODELS), default="paper",
                        help="paper (default) or tiny (a quick check of the script)")
    parser.add_argument("--data", metavar="FILE",
                        help="also feed each setting from make_dataset over this "
                        "HDF5 file with labels (bench.py make; needs TensorFlow for tf.data, "
                        "any Keras backend): does the input pipeline keep up?")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.data:
        bench_model.check_data_file(args.data)
    rows = bench_model.model_rows(args.batch_sizes, args.policies,
                                  [j == "on" for j in args.jit], args.steps, MODELS[args.model],
                                  args.data)
    text = format_table(rows, bench_model.backend_description())
    print(text)
    write_table(text, args.out)
    return 0


def scale_parser():
    """The argument parser of ``bench.py scale``."""
    parser = argparse.ArgumentParser(
        prog="bench.py scale",
        description="F1 at the model's thresholds and AUROC of every class with the inputs "
        "multiplied by each factor (after bringing them to the model's amplitude scale).")
    parser.add_argument("model", help="a train.py run folder (its best model and thresholds), "
                        "a .keras/.h5 model or an .onnx export")
    parser.add_argument("tracings", help="labelled HDF5 tracings (a `labels` dataset whose "
                        "classes are the model's), e.g. the demo's test.hdf5")
    parser.add_argument("--factors", default=",".join(plain(k) for k in bench_scale.FACTORS),
                        help="comma-separated multipliers (default: %(default)s)")
    parser.add_argument("--out", help="also write the Markdown tables to this file")
    return parser


def scale_main(argv=None):
    """``bench.py scale MODEL TRACINGS``: print (and write) the two tables."""
    args = scale_parser().parse_args(argv)
    f1, auroc = bench_scale.scale_tables(args.model, args.tracings,
                                         parse_factors(args.factors, "--factors"))
    text = (f"F1 at the model's thresholds, inputs x k ({args.model} on {args.tracings}):\n\n"
            f"{f1}\n\nAUROC:\n\n{auroc}\n")
    print(text)
    write_table(text, args.out)
    return 0


SECTIONS = {
    "all": _all_main,
    "pipeline": pipeline_main,
    "peak": _section_main("peak"),
    "flops": _section_main("flops"),
    "speed": _section_main("speed"),
    "precision": _section_main("precision"),
    "memory": _section_main("memory"),
    "one_exam": _fastpath_main("one_exam"),
    "scale": scale_main,
    "service": _fastpath_main("service"),
    "make": make_main,
    "measure": measure_main,
    "model": model_main,
}


def main(argv=None):
    """Run one benchmark section: ``python bench.py SECTION ...`` (``all`` for every one)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SECTIONS:
        print(
            f"usage: bench.py {{{','.join(SECTIONS)}}} ...  (SECTION --help for options)\n"
            + __doc__.split("\n\n")[1],
            file=sys.stderr,
        )
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import_tensorflow()  # without its start-up noise; other backends need no TensorFlow
    return SECTIONS[argv[0]](argv[1:])


def cli():
    """Entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
