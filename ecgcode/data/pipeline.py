"""The tf.data pipeline: ECG batches streamed from CODE-style HDF5 collections.

Rows are grouped into *blocks* of consecutive rows; a *window* of several blocks is read
per tf.data element by a parallel ``map`` (``tf.numpy_function`` around
:class:`ecgcode.data.rows.RowReader`, which reads contiguous float32 datasets with
``os.preadv``).  Shuffling draws the block order from ``seed`` (reshuffled every pass over
the data) and permutes the rows inside each window; ``shuffle=False`` keeps the exact file
(or ``indices``) order.  TensorFlow is imported only when :func:`make_dataset` is called.
"""

import os

import numpy as np

from ecgcode.common import DEFAULT_DATASET_NAME, INPUT_SHAPE, ECGInputError
from ecgcode.data.hdf5 import EmptyCollectionError, open_collection
from ecgcode.data.labels import LabelError, LabelRowCountError, LabelTable, load_labels
from ecgcode.data.rows import RowReader


# --- The tf.data pipeline --------------------------------------------------------------
def _rows_to_read(collection, indices, shuffle):
    if indices is None:
        return np.arange(collection.n, dtype=np.int64)
    rows = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= collection.n):
        raise ECGInputError(
            f"indices must lie in [0, {collection.n}) for {', '.join(collection.paths)}"
        )
    return np.sort(rows) if shuffle else rows


def _check_labels_array(labels, collection):
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):  # a label CSV, as load_labels reads it
        labels = load_labels(collection, labels, collection.dataset_name)
    if isinstance(labels, LabelTable):
        labels = labels.labels
    try:
        labels = np.asarray(labels, dtype=np.float32)
    except (TypeError, ValueError):
        raise LabelError(
            f"labels of type {type(labels).__name__} cannot be used; pass a label CSV path, "
            "a LabelTable (load_labels) or an (n, n_classes) array of 0/1, or None"
        ) from None
    if labels.ndim != 2 or labels.shape[0] != collection.n:
        raise LabelRowCountError(
            f"labels have shape {labels.shape} but {', '.join(collection.paths)} hold "
            f"{collection.n} tracings; pass one row per tracing (load_labels)"
        )
    return labels


def make_dataset(
    paths_or_collection,
    labels=None,
    *,
    batch_size=64,
    shuffle=False,
    seed=0,
    indices=None,
    dataset_name=DEFAULT_DATASET_NAME,
    repeat=False,
    drop_remainder=False,
    block_size=None,
    shuffle_buffer=512,
    num_parallel_reads=3,
    prefetch=2,
    input_context=None,
    check_values=True,
):
    """A tf.data pipeline of ECG batches streamed from HDF5.

    Parameters
    ----------
    paths_or_collection : paths or Collection
    labels : numpy.ndarray, LabelTable, str or os.PathLike, optional
        (n, n_classes) labels aligned with the collection's rows, or the path of a label
        CSV (read with ``load_labels``: class columns by name, joined on ``exam_id``);
        when None the dataset yields ``x`` alone.
    batch_size : int
        Batch size (per worker / per input pipeline; see ``input_context``).
    shuffle : bool
        Shuffle reproducibly from ``seed``: the block order is redrawn on every pass over
        the data and rows are permuted within each window of ``shuffle_buffer`` rows.
        When False the order is exactly the file order (or the order of ``indices``).
    seed : int
    indices : array_like of int, optional
        Rows to use (e.g. from ``split_indices``), kept in the given order when not shuffled.
    dataset_name : str
    repeat : bool
        Repeat forever (a new shuffle each pass); batches then run across pass boundaries.
    drop_remainder : bool
        Drop the last, smaller batch (of each pass when not repeating).
    block_size : int, optional
        Consecutive rows read as one contiguous slab: the unit of shuffling.  Defaults to
        32 when shuffling and 256 otherwise.
    shuffle_buffer : int
        Rows per window (read and permuted together).  Memory is about
        ``(num_parallel_reads + prefetch + 3) * max(shuffle_buffer, block_size)`` rows of
        196 KB each.
    num_parallel_reads : int
        Windows read concurrently.
    prefetch : int
        Batches prefetched at the end of the pipeline.
    input_context : tf.distribute.InputContext, optional
        Given by ``strategy.distribute_datasets_from_function``: each input pipeline then
        reads a disjoint share of the blocks (``input_pipeline_id`` of
        ``num_input_pipelines``).  Multi-worker use: prefer
        ``strategy.distribute_datasets_from_function(lambda ctx: make_dataset(...,
        batch_size=ctx.get_per_replica_batch_size(global_batch), input_context=ctx))``.
        With ``strategy.experimental_distribute_dataset(dataset)`` instead, the dataset's
        auto-shard policy is DATA: every worker gets disjoint batches but reads the whole
        collection (there are no files for FILE sharding to split).
    check_values : bool
        Fail (NonFiniteError inside the pipeline, surfacing as a tf.errors.OpError) on
        NaN/inf. Each row is checked the first time this dataset reads it (one extra pass
        over its memory); rows found finite are not checked again in later passes, so a
        file changed on disk during a run is not re-checked.

    Returns
    -------
    tf.data.Dataset
        Elements ``(x, y)``: x float32 (batch, 4096, 12), y float32 (batch, n_classes);
        or ``x`` alone when ``labels`` is None.
    """
    import tensorflow as tf  # deferred: imports TensorFlow

    collection = open_collection(paths_or_collection, dataset_name)
    labels = _check_labels_array(labels, collection)
    rows = _rows_to_read(collection, indices, shuffle)
    if len(rows) == 0:
        raise EmptyCollectionError(f"{', '.join(collection.paths)}: no rows selected (indices)")
    block_size = int(block_size or (32 if shuffle else 256))
    n_blocks = -(-len(rows) // block_size)
    window_blocks = max(1, int(shuffle_buffer) // block_size) if shuffle else 1
    # Buffers alive at once: batches being read, prefetched, and held by the consumer.
    reader = RowReader(collection, pool_size=num_parallel_reads + prefetch + 3)

    def window_rows(block_ids, permutation_seed):
        # block_ids: (window_blocks,) int64 -> (rows,) int64 row numbers, permuted if shuffling.
        chosen = np.concatenate([rows[b * block_size : (b + 1) * block_size] for b in block_ids])
        if shuffle:
            rng = np.random.default_rng(int(permutation_seed) % 2**63)
            chosen = chosen[rng.permutation(len(chosen))]
        return chosen

    def read_batch(batch_rows):
        # batch_rows: (batch,) int64 -> x (batch, 4096, 12) [, y (batch, n_classes)].
        x = reader.read(batch_rows, check_finite=check_values)  # (batch, 4096, 12)
        if labels is None:
            return (x,)
        return x, labels[batch_rows]

    block_ids = tf.data.Dataset.range(n_blocks)
    if input_context is not None and input_context.num_input_pipelines > 1:
        block_ids = block_ids.shard(
            input_context.num_input_pipelines, input_context.input_pipeline_id
        )
    if shuffle:
        block_ids = block_ids.shuffle(n_blocks, seed=seed, reshuffle_each_iteration=True)
    windows = block_ids.batch(window_blocks)
    if repeat:  # after windowing: a shuffle window never mixes rows of two passes
        windows = windows.repeat()
    permutation_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    windows = tf.data.Dataset.zip(windows, permutation_seeds)

    @tf.autograph.experimental.do_not_convert  # plain graph ops; silences AutoGraph
    def rows_op(ids, permutation_seed):
        chosen = tf.numpy_function(window_rows, [ids, permutation_seed], tf.int64)
        return tf.ensure_shape(chosen, (None,))  # (rows,)

    # Only row numbers flow through windowing and batching; each batch's signals are then
    # read straight into their own buffer (no copy of the signals to re-batch them).
    batch_rows = windows.map(rows_op).rebatch(batch_size, drop_remainder=drop_remainder)
    out_types = (tf.float32,) if labels is None else (tf.float32, tf.float32)

    @tf.autograph.experimental.do_not_convert
    def read_op(ids):
        tensors = tf.numpy_function(read_batch, [ids], out_types)
        x = tf.ensure_shape(tensors[0], ids.shape[:1] + INPUT_SHAPE)  # (batch, 4096, 12)
        if labels is None:
            return x
        y = tf.ensure_shape(tensors[1], ids.shape[:1] + (labels.shape[1],))  # (batch, classes)
        return x, y

    dataset = batch_rows.map(read_op, num_parallel_calls=num_parallel_reads, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # Every parallelism and buffer size above is fixed, so autotuning has nothing to tune;
    # its thread made deleting an iterator wait for the thread's next scheduled wake-up
    # (10.2 s, 20.5 s, ... after the iterator was made): predict.py lost ~9 s in some runs.
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    return dataset.prefetch(prefetch)
