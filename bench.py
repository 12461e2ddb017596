"""Benchmarks of the input pipeline, training, prediction and memory, against a baseline.

``python bench.py all --out bench_results.md`` runs every section on the same generated
HDF5 file and prints (and writes) one markdown table; ``python bench.py SECTION --help``
runs one section:

pipeline
    ECGs/s of ``datasets.make_dataset`` (shuffled and in file order) next to the raw
    sequential read speed of the same, page-cached file.
peak
    The machine's measured float32 peak (a large matrix product, numpy and TensorFlow).
flops
    The model's FLOPs per ECG, counted from its Conv1D/Dense shapes (training ~ 3 x forward).
speed
    Steady-state training ECGs/s at batch 64 through ``train.main`` (the project's default
    path: make_dataset, Adam, binary cross-entropy) and inference ECGs/s through
    predict.py's path (make_dataset + model.predict at ``predict.DEFAULT_BATCH_SIZE``),
    next to the BASELINE of the original study: a ``keras.utils.PyDataset`` reading h5py
    slices batch by batch, ``model.fit``/``model.predict`` with default settings.
memory
    Peak resident memory (VmHWM, i.e. ru_maxrss of the process alone) of training and prediction on two file sizes.

Every timed run is a separate process (``bench.py measure``), so thread settings,
environment variables and peak memory are isolated.  Timings exclude compilation and
the first ``--warmup`` batches: batch end times are recorded by a callback, and the rate
of each of ``--windows`` later windows of ``--window`` batches is kept; tables show
medians.  On a GPU the speed section adds mixed-precision and XLA variants.
"""

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from ecg_common import CLASSES, DEFAULT_DATASET_NAME, INPUT_SHAPE, atomic_output, run_cli

PAPER_BATCH = 64
"""The paper's training batch size."""
BASELINE_PREDICT_BATCH = 32
"""Keras' default ``model.predict`` batch size (the original study's predict.py default)."""
RESULT_PREFIX = "BENCH_RESULT "
BYTES_PER_ECG = int(np.prod(INPUT_SHAPE)) * 4


# --- Data ------------------------------------------------------------------------------
def write_bench_file(path, n, rows_per_write=256, seed=0):
    """Write an n-tracing CODE-style HDF5 file at ``path``: random ~1 mV signals, labels.

    One random block of ``rows_per_write`` tracings is drawn and written repeatedly, each
    copy shifted by a different offset, so that multi-GB files are written at disk speed.
    The file has ``tracings`` (n, 4096, 12) float32, ``labels`` (n, 6) with attribute
    ``classes``, and ``exam_id`` (n,).
    """
    import h5py

    rng = np.random.default_rng(seed)
    block = rng.standard_normal((rows_per_write,) + INPUT_SHAPE, dtype=np.float32) * 10
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        tracings = handle.create_dataset("tracings", shape=(n,) + INPUT_SHAPE, dtype="<f4")
        for begin in range(0, n, rows_per_write):
            count = min(rows_per_write, n - begin)
            tracings[begin : begin + count] = block[:count] + np.float32(begin % 97) / 97
        labels = (rng.random((n, len(CLASSES))) < 0.05).astype(np.float32)  # (n, 6)
        handle.create_dataset("labels", data=labels).attrs["classes"] = list(CLASSES)
        handle.create_dataset("exam_id", data=np.arange(n, dtype=np.int64))
    return path


def rows_for_gigabytes(gigabytes):
    """Number of tracings in a file of about ``gigabytes`` GB (1 GB = 1e9 bytes)."""
    return max(1, round(gigabytes * 1e9 / BYTES_PER_ECG))


def sequential_read_speed(path, chunk_bytes=1 << 20):
    """Raw sequential read speed of ``path`` in bytes/s: ``dd bs=1M`` when available."""
    dd = shutil.which("dd")
    if dd:
        start = time.perf_counter()
        subprocess.run(
            [dd, f"if={path}", "of=/dev/null", f"bs={chunk_bytes}"],
            check=True,
            capture_output=True,
        )
        return os.path.getsize(path) / (time.perf_counter() - start)
    buffer = memoryview(bytearray(chunk_bytes))
    total = 0
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while got := handle.readinto(buffer):
            total += got
    return total / (time.perf_counter() - start)


def pipeline_speed(path, shuffle, batch_size=64, passes=2, **options):
    """ECGs per second of ``make_dataset(path)`` over its last of ``passes`` full passes.

    Earlier passes warm up the pipeline (thread pools, the reader's recycled buffers),
    as in any training run longer than one epoch.

    Returns
    -------
    (float, float)
        Tracings per second of wall time, and per second of this process's CPU time
        (less sensitive to other processes on a shared machine).
    """
    import datasets

    dataset = datasets.make_dataset(path, batch_size=batch_size, shuffle=shuffle, **options)
    for _ in range(passes - 1):
        for _x in dataset:
            pass
    count = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for x in dataset:
        count += x.shape[0]  # x: (batch, 4096, 12)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count / wall, count / cpu


def bench_pipeline(path, repeats=2, batch_size=64, **options):
    """The ``pipeline`` section: dd-like speed and ECGs/s shuffled and in order.

    The file is read once first so that it is page-cached; each measurement is repeated
    ``repeats`` times (the machine may be shared).
    """
    sequential_read_speed(path)  # warm the page cache
    results = {"file": path, "size_GB": os.path.getsize(path) / 1e9, "ecg_MB": 4096 * 12 * 4 / 1e6}
    for repeat in range(repeats):
        results[f"dd_GB_per_s_{repeat}"] = sequential_read_speed(path) / 1e9
        for shuffle in (True, False):
            name = "shuffled" if shuffle else "in_order"
            speed, per_cpu_second = pipeline_speed(path, shuffle, batch_size, **options)
            results[f"{name}_ecg_per_s_{repeat}"] = speed
            results[f"{name}_ecg_per_cpu_s_{repeat}"] = per_cpu_second  # all threads
    return results


def _pipeline_main(argv):
    parser = argparse.ArgumentParser(
        prog="bench.py pipeline",
        description="ECGs/s of datasets.make_dataset (shuffled and in order) on a "
        "page-cached HDF5 file, and the file's raw sequential read speed.",
    )
    parser.add_argument("file", help="CODE-style HDF5 file (delete it yourself afterwards)")
    parser.add_argument(
        "--make", type=int, metavar="N", help="first write a synthetic file of N tracings at FILE"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--block-size", type=int, help="make_dataset block_size")
    parser.add_argument("--shuffle-buffer", type=int, default=512)
    parser.add_argument("--num-parallel-reads", type=int, default=3)
    args = parser.parse_args(argv)
    if args.make:
        write_bench_file(args.file, args.make)
    results = bench_pipeline(
        args.file,
        args.repeats,
        args.batch_size,
        block_size=args.block_size,
        shuffle_buffer=args.shuffle_buffer,
        num_parallel_reads=args.num_parallel_reads,
    )
    for key, value in results.items():
        print(f"{key:24s} {value:.4g}" if isinstance(value, float) else f"{key:24s} {value}")
    return 0


# --- Machine, peak and FLOPs -------------------------------------------------------------
def machine_description():
    """Dict: CPU model, cores, GPUs, Python/TensorFlow/Keras versions, load average."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    flags = _cpu_flags()
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": cpu + (f" ({', '.join(flags)})" if flags else ""),
        "cores": os.cpu_count(),
        "gpus": ", ".join(gpus) or "none",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def _cpu_flags():
    wanted = ("avx2", "fma", "avx512f", "amx_tile")
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in present]
    return []


def measure_peak(size=4096, repeats=5):
    """Measured float32 matrix-product speed in GFLOP/s (numpy and TensorFlow).

    Returns
    -------
    dict
        ``numpy_gflops``, ``tf_gflops`` (medians of ``repeats`` products of two
        size x size matrices, after one warm-up product), ``peak_gflops`` (the larger).
    """
    import tensorflow as tf

    flops = 2.0 * size**3
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    results = {}
    for name, product in (("numpy", lambda: a @ a), ("tf", _tf_product(tf, a))):
        product()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            seconds.append(time.perf_counter() - start)
        results[f"{name}_gflops"] = flops / statistics.median(seconds) / 1e9
    results["peak_gflops"] = max(results["numpy_gflops"], results["tf_gflops"])
    return results


def _tf_product(tf, a):
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        tensor = tf.constant(a)

    def product():
        with tf.device(device):
            return tf.linalg.matmul(tensor, tensor).numpy()[0, 0]  # .numpy() waits for it

    return product


def model_flops(model):
    """Forward FLOPs per example of ``model``'s Conv1D and Dense layers (2 per multiply-add).

    Batch normalisation, activations, pooling and additions (under 1 % of the paper's
    model) are not counted.
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv1D):
            out_samples, out_channels = layer.output.shape[1:]
            in_channels = layer.input.shape[-1]
            total += 2 * out_samples * layer.kernel_size[0] * in_channels * out_channels
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


# --- Models ------------------------------------------------------------------------------
def paper_model():
    """The paper's ResNet (``model.get_model``)."""
    import model as ecg_model

    return ecg_model.get_model()


def tiny_model():
    """A few-thousand-parameter stand-in with the same input and output (for tests)."""
    import keras

    signal = keras.Input(shape=INPUT_SHAPE, name="signal")  # (batch, 4096, 12)
    x = keras.layers.Conv1D(8, 16, strides=16, use_bias=False)(signal)  # (batch, 256, 8)
    x = keras.layers.GlobalAveragePooling1D()(x)  # (batch, 8)
    outputs = keras.layers.Dense(len(CLASSES), activation="sigmoid")(x)  # (batch, 6)
    return keras.Model(signal, outputs, name="tiny")


MODELS = {"paper": paper_model, "tiny": tiny_model}


# --- Timing ------------------------------------------------------------------------------
def _batch_timer():
    import keras

    class BatchTimer(keras.callbacks.Callback):
        """Records the wall time at the end of every training or prediction batch."""

        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

        def on_predict_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    return BatchTimer()


def window_rates(times, batch_size, warmup, window):
    """ECGs/s of each complete window of ``window`` batches after ``warmup`` batches.

    ``times[i]`` is the end of batch i; window k spans the ends of batches
    ``warmup - 1 + k * window`` to ``warmup - 1 + (k + 1) * window`` (all full batches).
    """
    rates = []
    first = warmup - 1
    while first + window < len(times):
        if first < 0:
            raise ValueError("warmup must be at least 1 batch (the first one compiles)")
        rates.append(window * batch_size / (times[first + window] - times[first]))
        first += window
    return rates


def timed_batches(warmup, window, windows):
    """Total batches of a measurement: warm-up plus the timed windows."""
    return warmup + window * windows


# --- The measured paths --------------------------------------------------------------------
def train_default(path, factory, warmup, window, windows, batch_size=PAPER_BATCH, jit=None,
                  mixed_precision=False):
    """Steady-state training ECGs/s through ``train.main`` (a throw-away run folder).

    Only the batch end times of the first epoch matter; the validation set is made tiny
    (a few rows) so that the end of the epoch is quick.
    """
    import datasets
    import train

    steps = timed_batches(warmup, window, windows)
    n = datasets.open_collection(path).n
    if steps * batch_size > n * 0.99:
        raise ValueError(f"{path}: {n} rows are too few for {steps} batches of {batch_size}")
    timer = _batch_timer()
    argv = [path, "--epochs", "1", "--steps-per-epoch", str(steps), "--batch-size",
            str(batch_size), "--val-split", str(min(0.5, 4 / n))]
    if jit is not None:
        argv.append("--jit" if jit else "--no-jit")
    if mixed_precision:
        argv.append("--mixed-precision")
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


def make_h5_sequence(path, batch_size, with_labels, dataset_name=DEFAULT_DATASET_NAME):
    """The original study's ``ECGSequence``: h5py slices, batch by batch, in file order."""
    import h5py
    import keras

    class H5Sequence(keras.utils.PyDataset):
        """Batches ``x[start:end]`` (and labels) read with h5py."""

        def __init__(self):
            super().__init__()
            self.file = h5py.File(path, "r")
            self.x = self.file[dataset_name]
            self.y = self.file["labels"][()] if with_labels else None  # (n, 6), in memory

        def __len__(self):
            return math.ceil(self.x.shape[0] / batch_size)

        def __getitem__(self, index):
            start, end = index * batch_size, (index + 1) * batch_size
            x = np.array(self.x[start:end])  # (batch, 4096, 12)
            return (x, self.y[start:end]) if with_labels else (x,)

    return H5Sequence()


def train_baseline(path, factory, warmup, window, windows, batch_size=PAPER_BATCH):
    """Steady-state training ECGs/s of the baseline: PyDataset + default ``model.fit``."""
    import keras

    model = factory()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    timer = _batch_timer()
    sequence = make_h5_sequence(path, batch_size, with_labels=True)
    model.fit(sequence, epochs=1, steps_per_epoch=timed_batches(warmup, window, windows),
              callbacks=[timer], verbose=0)
    return window_rates(timer.times, batch_size, warmup, window)


def predict_default(path, factory, warmup, window, windows, batch_size=None, jit=False):
    """Steady-state inference ECGs/s of predict.py's path (``predict_collection``'s calls).

    ``make_dataset(shuffle=False, check_values=False)`` + ``model.predict`` at
    ``predict.DEFAULT_BATCH_SIZE``, over just enough rows for the timed batches.
    """
    import tensorflow as tf

    import datasets
    import predict

    batch_size = batch_size or predict.DEFAULT_BATCH_SIZE
    model = factory()
    if jit:
        model.jit_compile = True
    batches = timed_batches(warmup, window, windows)
    collection = datasets.open_collection(path)
    rows = np.arange(min(collection.n, batches * batch_size))
    dataset = datasets.make_dataset(
        collection, None, batch_size=batch_size, shuffle=False, indices=rows,
        dataset_name=collection.dataset_name, check_values=False)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-len(rows) // batch_size)))
    timer = _batch_timer()
    model.predict(dataset, verbose=0, callbacks=[timer])
    return window_rates(timer.times, batch_size, warmup, window)


def predict_baseline(path, factory, warmup, window, windows, batch_size=BASELINE_PREDICT_BATCH):
    """Steady-state inference ECGs/s of the baseline: PyDataset + default ``model.predict``."""
    model = factory()
    sequence = make_h5_sequence(path, batch_size, with_labels=False)
    steps = min(len(sequence), timed_batches(warmup, window, windows))
    timer = _batch_timer()
    model.predict(sequence, steps=steps, verbose=0, callbacks=[timer])
    return window_rates(timer.times, batch_size, warmup, window)


def predict_full_pass(path, factory, batch_size=None):
    """Run predict.py's ``predict_collection`` over the whole file (for peak memory)."""
    import datasets
    import predict

    collection = datasets.open_collection(path)
    start = time.perf_counter()
    predict.predict_collection(factory(), collection, batch_size or predict.DEFAULT_BATCH_SIZE,
                               verbose=0)
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
    if options.pop("mixed_precision", False):
        _use_mixed_precision(kind, options)
    function = KINDS[kind]
    if kind == "predict_full_pass":
        rates = function(path, factory, **options)
    else:
        rates = function(path, factory, warmup, window, windows, **options)
    return {"rates": rates, "ecg_per_s": statistics.median(rates) if rates else float("nan"),
            "max_rss_MB": _max_rss_mb()}


def _use_mixed_precision(kind, options):
    if kind == "train_default":
        options["mixed_precision"] = True  # train.py's --mixed-precision
    elif kind.startswith("predict"):
        import keras

        import train

        keras.mixed_precision.set_global_policy(train.device_defaults()[2])
    else:
        raise ValueError(f"{kind}: the baseline has no mixed-precision variant")


def _max_rss_mb():
    """Peak resident memory of this process in MB (2**20 bytes).

    Linux: ``VmHWM`` of /proc/self/status, since ``ru_maxrss`` keeps the parent's peak
    across fork + exec (a child of a big process would report the parent's size).
    """
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def apply_threads(intra=None, inter=None):
    """Set TensorFlow's intra-/inter-op thread pools (before any TensorFlow op runs)."""
    if intra is None and inter is None:
        return
    import tensorflow as tf

    if intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def measure_in_subprocess(kind, path, model_name="paper", warmup=2, window=2, windows=3,
                          env=None, timeout=None, **options):
    """``measure`` in a fresh ``python bench.py measure`` process; returns its dict.

    ``env`` adds environment variables (e.g. ``TF_ENABLE_ONEDNN_OPTS``); ``options`` may
    also hold ``intra``/``inter`` thread counts.
    """
    command = [sys.executable, os.path.abspath(__file__), "measure", kind, path,
               "--model", model_name, "--warmup", str(warmup), "--window", str(window),
               "--windows", str(windows), "--options", json.dumps(options)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    done = subprocess.run(command, capture_output=True, text=True, env=environment,
                          timeout=timeout, check=False, cwd=os.path.dirname(command[1]))
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"bench.py measure {kind} failed ({done.returncode}): "
                           + " | ".join(tail))
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _measure_main(argv):
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


# --- Sections: each returns a list of table rows ---------------------------------------------
def row(section, measurement, value, unit, note=""):
    """One table row (a dict)."""
    return {"section": section, "measurement": measurement, "value": value, "unit": unit,
            "note": note}


def pipeline_rows(path, repeats=2, batch_size=PAPER_BATCH):
    """Rows of the ``pipeline`` section (medians over ``repeats``)."""
    results = bench_pipeline(path, repeats, batch_size)
    medians = {name: statistics.median(results[f"{name}_{r}"] for r in range(repeats))
               for name in ("dd_GB_per_s", "shuffled_ecg_per_s", "in_order_ecg_per_s")}
    dd_ecgs = medians["dd_GB_per_s"] * 1e9 / BYTES_PER_ECG
    note = f"{results['size_GB']:.2f} GB file, page-cached, batch {batch_size}"
    return [
        row("pipeline", "raw sequential read (dd bs=1M)", dd_ecgs, "ECGs/s",
            f"{medians['dd_GB_per_s']:.2f} GB/s; {note}"),
        row("pipeline", "make_dataset, shuffled (training order)",
            medians["shuffled_ecg_per_s"], "ECGs/s",
            f"{medians['shuffled_ecg_per_s'] / dd_ecgs:.0%} of raw read"),
        row("pipeline", "make_dataset, in order (inference)", medians["in_order_ecg_per_s"],
            "ECGs/s", f"{medians['in_order_ecg_per_s'] / dd_ecgs:.0%} of raw read"),
    ]


def peak_rows(size=4096, repeats=5):
    """Rows of the ``peak`` section; the peak is also returned for fractions of it."""
    peak = measure_peak(size, repeats)
    rows = [row("peak", f"float32 matmul {size}x{size}, numpy", peak["numpy_gflops"],
                "GFLOP/s"),
            row("peak", f"float32 matmul {size}x{size}, TensorFlow", peak["tf_gflops"],
                "GFLOP/s", "the larger of the two is the peak below")]
    return rows, peak["peak_gflops"]


def flops_rows(model_name="paper"):
    """Rows of the ``flops`` section; the forward FLOPs per ECG are also returned."""
    forward = model_flops(MODELS[model_name]())
    return [row("flops", f"{model_name} model, forward", forward / 1e9, "GFLOP/ECG",
                "Conv1D + Dense multiply-adds x 2"),
            row("flops", f"{model_name} model, training step", 3 * forward / 1e9, "GFLOP/ECG",
                "~3 x forward (forward + two backward products)")], forward


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
        gpu = _has_gpu()
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


def _batch_of(kind, options):
    if "batch_size" in options:
        return options["batch_size"]
    if kind == "predict_default":
        import predict

        return predict.DEFAULT_BATCH_SIZE
    return BASELINE_PREDICT_BATCH if kind == "predict_baseline" else PAPER_BATCH


def _has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def memory_rows(files, model_name="paper", isolate=True):
    """Rows of the ``memory`` section: peak RSS of separate processes on each file.

    ``files`` maps a label (e.g. "1.0 GB") to a path.  Training and prediction run a few
    batches of ``model_name``; a full predict.py pass over every file runs the tiny model,
    so that the whole collection streams through the pipeline in reasonable time.
    """
    runs = (("train_default", model_name, f"training ({model_name} model, 2 steps)"),
            ("predict_default", model_name, f"prediction ({model_name} model, 2 batches)"),
            ("predict_full_pass", "tiny", "prediction, full pass over the file (tiny model)"))
    run = measure_in_subprocess if isolate else measure
    rows = []
    for kind, kind_model, label in runs:
        peaks = {}
        for size_label, path in files.items():
            result = run(kind, path, kind_model, 1, 1, 1)
            peaks[size_label] = result["max_rss_MB"]
        values = list(peaks.values())
        for position, (size_label, value) in enumerate(peaks.items()):
            note = ""
            if position == len(values) - 1 and position > 0:
                note = f"{(value - values[0]) / values[0]:+.1%} from smallest to largest file"
            rows.append(row("memory", f"peak RSS, {label}, {size_label} file", value, "MB",
                            note))
    return rows


# --- The table -----------------------------------------------------------------------------
def format_table(rows, machine=None):
    """Markdown: a machine line, then | section | measurement | value | unit | note |."""
    lines = []
    if machine:
        lines.append("Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()))
        lines.append("")
    lines.append("| section | measurement | value | unit | note |")
    lines.append("|---|---|---:|---|---|")
    for item in rows:
        value = item["value"]
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"| {item['section']} | {item['measurement']} | {text} | {item['unit']} | "
                     f"{item['note']} |")
    return "\n".join(lines) + "\n"


def write_table(text, path):
    """Write the table atomically (when ``path`` is given)."""
    if path:
        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)


# --- Command line ---------------------------------------------------------------------------
def _add_timing_arguments(parser):
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


def _ensure_file(path, gigabytes, rows=None):
    if not os.path.isfile(path):
        n = rows or rows_for_gigabytes(gigabytes)
        print(f"writing {path}: {n} tracings ({n * BYTES_PER_ECG / 1e9:.2f} GB)",
              file=sys.stderr)
        write_bench_file(path, n)
    return path


def _all_main(argv):
    parser = argparse.ArgumentParser(
        prog="bench.py all",
        description="Every section on the same generated file; prints the markdown table "
        "and writes it to --out.  Takes ~15 min on a 2-core CPU with the defaults.")
    _add_timing_arguments(parser)
    parser.add_argument("--data-dir", help="where the benchmark files are written (or reused "
                        "if present); default a temporary folder, deleted afterwards")
    parser.add_argument("--small-gb", type=float, default=1.0,
                        help="size of the main file, GB (default 1)")
    parser.add_argument("--large-gb", type=float, default=4.0,
                        help="size of the second file for the memory section (default 4)")
    parser.add_argument("--rows", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="exact row counts of the two files instead of --small/large-gb")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("pipeline", "peak", "speed", "memory"),
                        help="sections to leave out")
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
    small = _ensure_file(os.path.join(data_dir, "bench_small.hdf5"), args.small_gb, rows_small)
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
    if "memory" not in args.skip:
        large = _ensure_file(os.path.join(data_dir, "bench_large.hdf5"), args.large_gb,
                             rows_large)
        files = {f"{os.path.getsize(p) / 1e9:.2f} GB": p for p in (small, large)}
        rows += memory_rows(files, args.model)
    machine["load_average"] += f" (start) / {' '.join(f'{v:.2f}' for v in os.getloadavg())} (end)"
    text = format_table(rows, machine)
    print(text)
    write_table(text, args.out)
    return 0


def _section_main(name):
    def section_main(argv):
        parser = argparse.ArgumentParser(prog=f"bench.py {name}",
                                         description=f"The {name} section alone.")
        if name in ("speed", "memory"):
            parser.add_argument("file", help="CODE-style HDF5 file with labels (bench.py make)")
            _add_timing_arguments(parser)
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
        else:
            files = {f"{os.path.getsize(p) / 1e9:.2f} GB": p for p in (args.file,
                                                                         args.large_file)}
            rows = memory_rows(files, args.model)
        text = format_table(rows, machine_description())
        print(text)
        write_table(text, args.out)
        return 0

    return section_main


def _make_main(argv):
    parser = argparse.ArgumentParser(prog="bench.py make",
                                     description="Write a benchmark HDF5 file (with labels).")
    parser.add_argument("file")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--gb", type=float, help="about this many GB")
    size.add_argument("--rows", type=int, help="exactly this many tracings")
    args = parser.parse_args(argv)
    write_bench_file(args.file, args.rows or rows_for_gigabytes(args.gb))
    return 0


SECTIONS = {
    "all": _all_main,
    "pipeline": _pipeline_main,
    "peak": _section_main("peak"),
    "flops": _section_main("flops"),
    "speed": _section_main("speed"),
    "memory": _section_main("memory"),
    "make": _make_main,
    "measure": _measure_main,
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
    return SECTIONS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
