"""One exam, fast: a fresh predict.py process per exam, and the HTTP service (issue 23).

``one_exam``: wall time and peak resident memory of a fresh ``python predict.py EXAM MODEL
--output-file OUT.csv`` process, for a Keras ``.keras`` model and for its ONNX export
(onnxruntime, no TensorFlow), runs interleaved; the median of each, and the largest
difference between the two processes' probabilities.

``service``: a ``predict.py --serve MODEL --port 0`` process is started (for the ONNX
export, then for the Keras model), and the same exam is POSTed to it one request after
another; per-request latency (median, p95, after warm-up requests) and requests/s.

Both run the programs as a user does (``sys.executable predict.py`` from the checkout);
peak RSS comes from ``os.wait4`` (the child's own ``ru_maxrss``), measured by a small
interpreter between this process and predict.py.
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from ecgcode.bench.measure import PROJECT_ROOT
from ecgcode.bench.model_speed import MODELS, row
from ecgcode.model.export import export_model
from ecgcode.model.modelfiles import save_model

PREDICT_SCRIPT = os.path.join(PROJECT_ROOT, "predict.py")


MEASURE_CHILD = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
errors = child.stderr.read()
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall_s": time.perf_counter() - start, "max_rss_kib": usage.ru_maxrss,
                  "status": child.returncode, "stderr": errors.decode("utf-8", "replace")}))
"""
"""Runs a command and prints its wall time and peak RSS. It runs in a small interpreter of
its own: a child forked by this (TensorFlow-sized) process would start with this process's
resident size as its high-water mark."""


def run_predict(exam, model, out):
    """(wall seconds, peak RSS MB) of one fresh predict.py process writing ``out``."""
    command = [sys.executable, PREDICT_SCRIPT, os.fspath(exam), os.fspath(model),
               "--output-file", os.fspath(out), "--quiet"]
    done = subprocess.run([sys.executable, "-c", MEASURE_CHILD, *command], capture_output=True,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                          cwd=PROJECT_ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring predict.py failed: {done.stderr.strip()[-300:]}")
    result = json.loads(done.stdout)
    if result["status"] != 0:
        tail = result["stderr"].strip().splitlines()[-3:]
        raise RuntimeError(f"predict.py {exam} {model} failed ({result['status']}): "
                           + " | ".join(tail))
    return result["wall_s"], result["max_rss_kib"] / 1024  # Linux: ru_maxrss in KiB


def read_probabilities(csv_path):
    """The probability columns of a predict.py .csv, (n, n_classes) float64."""
    import pandas as pd  # deferred: pandas adds ~0.4 s to every start

    table = pd.read_csv(csv_path)
    columns = [name for name in table.columns
               if name not in ("record", "row", "exam_id") and not name.endswith("_pred")]
    return table[columns].to_numpy(dtype=np.float64)


def one_exam_rows(exam, models, runs=5):
    """Rows of ``one_exam``: median wall time and peak RSS of each model's fresh process.

    Parameters
    ----------
    exam : str
        One exam file (a clinical export, or an HDF5 file).
    models : dict
        Label (``"Keras .keras"``, ``"ONNX export"``) -> model path.
    runs : int
        Processes per model, interleaved; the first of each is a warm-up (page cache).
    """
    walls = {label: [] for label in models}
    peaks = {label: [] for label in models}
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="bench-one-exam-") as folder:
        for run in range(runs + 1):
            for number, (label, model) in enumerate(models.items()):
                out = os.path.join(folder, f"model{number}.csv")
                wall, peak = run_predict(exam, model, out)
                if run:  # run 0 warms the page cache
                    walls[label].append(wall)
                    peaks[label].append(peak)
                outputs[label] = read_probabilities(out)
    rows = []
    name = os.path.basename(os.fspath(exam))
    for label in models:
        note = f"median of {runs} fresh processes; {name}"
        rows.append(row("one_exam", f"predict.py one exam, {label}, wall",
                        statistics.median(walls[label]), "s", note))
        rows.append(row("one_exam", f"predict.py one exam, {label}, peak RSS",
                        statistics.median(peaks[label]), "MB", note))
    (reference, first), *others = outputs.items()
    for label, values in others:
        rows.append(row("one_exam", f"largest probability difference, {label} vs {reference}",
                        float(np.max(np.abs(values - first))), "", "same exam, same weights"))
    return rows


# --- The service ---------------------------------------------------------------------
def start_service(model, timeout=300):
    """Start ``predict.py --serve MODEL --port 0``; return (process, port)."""
    command = [sys.executable, PREDICT_SCRIPT, "--serve", os.fspath(model), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                               cwd=PROJECT_ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if " on http://" in line:
            port = int(line.split(" on http://", 1)[1].split()[0].rsplit(":", 1)[1])
            return process, port
    process.kill()
    raise RuntimeError(f"predict.py --serve {model} did not start: {line.strip()}")


def post_exam(port, name, data):
    """Seconds of one ``POST /predict?name=NAME`` request; RuntimeError unless it succeeded."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        start = time.perf_counter()
        connection.request("POST", f"/predict?name={name}", body=data)
        answer = connection.getresponse()
        body = answer.read()
        seconds = time.perf_counter() - start
    finally:
        connection.close()
    if answer.status != 200 or b'"error"' in body:
        raise RuntimeError(f"service answered {answer.status}: {body[:200]!r}")
    return seconds


def service_rows(exam, models, requests=50, warmup=3):
    """Rows of ``service``: latency (median, p95) and requests/s of one exam per request.

    ``models`` maps a label to a model path; each is served by its own process in turn.
    """
    with open(exam, "rb") as handle:
        data = handle.read()
    name = os.path.basename(os.fspath(exam))
    rows = []
    for label, model in models.items():
        process, port = start_service(model)
        try:
            for _ in range(warmup):
                post_exam(port, name, data)
            start = time.perf_counter()
            latencies_ms = np.array([post_exam(port, name, data) for _ in range(requests)]) * 1e3
            elapsed = time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(timeout=60)
        note = f"{requests} sequential requests after {warmup} warm-up; {name}"
        rows += [row("service", f"{label}, latency per request, median",
                     float(np.median(latencies_ms)), "ms", note),
                 row("service", f"{label}, latency per request, p95",
                     float(np.percentile(latencies_ms, 95)), "ms", note),
                 row("service", f"{label}, requests per second (one client)",
                     requests / elapsed, "req/s", note)]
    return rows


def saved_models(folder, model_name="paper", seed=0):
    """A bench model (``ecgcode.bench.model_speed.MODELS``: random weights, fixed seed)
    saved as ``NAME.keras`` and exported as ``NAME.onnx`` in ``folder``; the two paths."""
    import keras  # deferred: imports TensorFlow

    keras.utils.set_random_seed(seed)
    model = MODELS[model_name]()
    stem = os.path.join(os.fspath(folder), model_name)
    save_model(model, stem, formats=(".keras",))
    export_model(model, stem, formats=("onnx",))
    return stem + ".keras", stem + ".onnx"
