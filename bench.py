"""Benchmarks.  ``python bench.py pipeline FILE`` measures the input pipeline.

pipeline
    ECGs per second of ``datasets.make_dataset`` over a (page-cached) HDF5 file, shuffled
    and in file order, next to the raw sequential read speed of the same file (a
    ``dd``-like loop of large reads).  ``--make N`` first writes a synthetic N-tracing file
    at FILE (N = 8000 is about 1.6 GB).

Each section is a function returning a dict of numbers, so that further sections can be
added next to ``pipeline`` (see ``SECTIONS``).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from ecg_common import INPUT_SHAPE, run_cli


def write_bench_file(path, n, rows_per_write=256, seed=0):
    """Write an n-tracing CODE-style HDF5 file (random ~1 mV signals) at ``path``."""
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        tracings = handle.create_dataset("tracings", shape=(n,) + INPUT_SHAPE, dtype="<f4")
        for begin in range(0, n, rows_per_write):
            count = min(rows_per_write, n - begin)
            block = rng.standard_normal((count,) + INPUT_SHAPE, dtype=np.float32)
            tracings[begin : begin + count] = block * 10  # (count, 4096, 12), ~1 mV
        handle.create_dataset("exam_id", data=np.arange(n, dtype=np.int64))
    return path


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


SECTIONS = {"pipeline": _pipeline_main}


def main(argv=None):
    """Run one benchmark section: ``python bench.py SECTION ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SECTIONS:
        print(
            f"usage: bench.py {{{','.join(SECTIONS)}}} ...  (SECTION --help for options)",
            file=sys.stderr,
        )
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return SECTIONS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
