"""The benchmark's measurements: each function runs one thing and returns numbers.

``bench.py`` turns these numbers into table rows; this module holds the measurements that
need none of the root scripts: the benchmark file, the pipeline, the machine's peak, the
model's FLOPs, the original study's baseline and the timing method.  The paths that run
the scripts' own code (``train.main``, predict.py's path) live in ``bench.py``, each run
in a separate process (``python bench.py measure KIND FILE``) so that thread settings,
environment variables and peak memory are isolated.  Timings exclude compilation and the
first ``warmup`` batches: batch end times are recorded by a callback, and the rate of each
of ``windows`` later windows of ``window`` batches is kept.

The model factories (``MODELS``) and the ``model`` section, which needs neither tf.data
nor TensorFlow, live in ``model_speed``.  Importing this module imports neither Keras
nor TensorFlow; each function imports what it needs.
"""

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
import time

import h5py
import numpy as np

from ecgcode import data as ecg_data
from ecgcode.bench.model_speed import MODELS, PAPER_BATCH, row
from ecgcode.common import (
    CLASSES,
    DEFAULT_DATASET_NAME,
    INPUT_SHAPE,
    UNITS_PER_MV,
    atomic_output,
)
from ecgcode.data.hdf5 import create_tracings

BASELINE_PREDICT_BATCH = 32
"""Keras' default ``model.predict`` batch size (the original study's predict.py default)."""
BYTES_PER_ECG = int(np.prod(INPUT_SHAPE)) * 4


# --- Data ------------------------------------------------------------------------------
def write_bench_file(path, n, rows_per_write=256, seed=0):
    """Write an n-tracing CODE-style HDF5 file at ``path``: random ~1 mV signals, labels.

    One random block of ``rows_per_write`` tracings is drawn and written repeatedly, each
    copy shifted by a different offset, so that multi-GB files are written at disk speed.
    The file has ``tracings`` (n, 4096, 12) float32 at ``UNITS_PER_MV``, ``labels`` (n, 6)
    with attribute ``classes``, and ``exam_id`` (n,).
    """
    rng = np.random.default_rng(seed)
    block = rng.standard_normal((rows_per_write,) + INPUT_SHAPE,
                               dtype=np.float32) * np.float32(UNITS_PER_MV)  # ~1 mV
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        tracings = create_tracings(handle, n)  # contiguous float32, its scale recorded
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
    dataset = ecg_data.make_dataset(path, batch_size=batch_size, shuffle=shuffle, **options)
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


# --- Machine, peak and FLOPs -------------------------------------------------------------
def machine_description():
    """Dict: CPU model, cores, GPUs, Python/TensorFlow/Keras versions, load average."""
    import keras  # deferred: imports TensorFlow
    import tensorflow as tf  # deferred: imports TensorFlow

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
    import tensorflow as tf  # deferred: imports TensorFlow

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
    import keras  # deferred: imports TensorFlow

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv1D):
            out_samples, out_channels = layer.output.shape[1:]
            in_channels = layer.input.shape[-1]
            total += 2 * out_samples * layer.kernel_size[0] * in_channels * out_channels
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


# --- Timing ------------------------------------------------------------------------------
def batch_timer():
    import keras  # deferred: imports TensorFlow

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
def make_h5_sequence(path, batch_size, with_labels, dataset_name=DEFAULT_DATASET_NAME):
    """The original study's ``ECGSequence``: h5py slices, batch by batch, in file order."""
    import keras  # deferred: imports TensorFlow

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
    import keras  # deferred: imports TensorFlow

    model = factory()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    timer = batch_timer()
    sequence = make_h5_sequence(path, batch_size, with_labels=True)
    model.fit(sequence, epochs=1, steps_per_epoch=timed_batches(warmup, window, windows),
              callbacks=[timer], verbose=0)
    return window_rates(timer.times, batch_size, warmup, window)


def predict_baseline(path, factory, warmup, window, windows, batch_size=BASELINE_PREDICT_BATCH):
    """Steady-state inference ECGs/s of the baseline: PyDataset + default ``model.predict``."""
    model = factory()
    sequence = make_h5_sequence(path, batch_size, with_labels=False)
    steps = min(len(sequence), timed_batches(warmup, window, windows))
    timer = batch_timer()
    model.predict(sequence, steps=steps, verbose=0, callbacks=[timer])
    return window_rates(timer.times, batch_size, warmup, window)


def max_rss_mb():
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

# --- One measured path in its own process ---------------------------------------------------
RESULT_PREFIX = "BENCH_RESULT "
"""Start of the line on which a measuring process prints its JSON result."""

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The folder holding the ``ecgcode`` package: a measuring process starts there, so that
``python -m ecgcode.cli.bench`` runs from a checkout that is not installed."""


def apply_threads(intra=None, inter=None):
    """Set TensorFlow's intra-/inter-op thread pools (before any TensorFlow op runs)."""
    if intra is None and inter is None:
        return
    import tensorflow as tf  # deferred: imports TensorFlow

    if intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def measure_script_in_subprocess(module, kind, path, model_name="paper", warmup=2, window=2,
                                 windows=3, env=None, timeout=None, **options):
    """Run ``python -m MODULE measure KIND PATH ...`` and return the dict it prints.

    ``module`` is the benchmark program (``ecgcode.cli.bench``), whose ``measure`` command
    runs one measured path and prints a ``RESULT_PREFIX`` JSON line.
    """
    command = [sys.executable, "-m", module, "measure", kind, path,
               "--model", model_name, "--warmup", str(warmup), "--window", str(window),
               "--windows", str(windows), "--options", json.dumps(options)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    done = subprocess.run(command, capture_output=True, text=True, env=environment,
                          timeout=timeout, check=False, cwd=PROJECT_ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{module} measure {kind} failed "
                           f"({done.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1][len(RESULT_PREFIX):])


# --- Table rows of the sections that need no script -------------------------------------
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


def ensure_bench_file(path, gigabytes, rows=None):
    """Write a benchmark file of ``rows`` tracings (or about ``gigabytes`` GB) unless present."""
    if not os.path.isfile(path):
        n = rows or rows_for_gigabytes(gigabytes)
        print(f"writing {path}: {n} tracings ({n * BYTES_PER_ECG / 1e9:.2f} GB)",
              file=sys.stderr)
        write_bench_file(path, n)
    return path


# --- The memory section's rows; command-line pieces of the sections ----------------------
def memory_rows(files, run, model_name="paper"):
    """Rows of the ``memory`` section: peak RSS of separate processes on each file.

    ``files`` maps a label (e.g. "1.0 GB") to a path.  Training and prediction run a few
    batches of ``model_name``; a full predict.py pass over every file runs the tiny model,
    so that the whole collection streams through the pipeline in reasonable time.
    ``run(kind, path, model_name, warmup, window, windows)`` measures one path (bench.py's
    ``measure`` or ``measure_in_subprocess``) and returns its dict.
    """
    runs = (("train_default", model_name, f"training ({model_name} model, 2 steps)"),
            ("predict_default", model_name, f"prediction ({model_name} model, 2 batches)"),
            ("predict_full_pass", "tiny", "prediction, full pass over the file (tiny model)"))
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
