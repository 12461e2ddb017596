"""Screening training rows for NaN/inf tracings before any training starts.

One up-front pass over the rows a run will use (``find_nonfinite``: ``preadv`` reads and
a BLAS dot product per 3 MB piece, bounded memory, no TensorFlow) costs about as much as
reading the data once, i.e. far less than one training epoch, which reads every row and
also runs the network on it (README: "Bad values"). A bad row then stops the run with a
one-line error naming the files and rows, or is dropped with ``--skip-nonfinite``.
"""

import sys
import time

import numpy as np

from ecgcode.common import ECGInputError
from ecgcode.data.hdf5 import NonFiniteError, describe_rows
from ecgcode.data.rows import find_nonfinite


def screen_rows(collection, train_rows, val_rows, skip=False, file=None):
    """Check the rows of a run for NaN/inf values; refuse them or drop them.

    Parameters
    ----------
    collection : Collection
    train_rows, val_rows : numpy.ndarray
        Global row numbers of the training and validation sets.
    skip : bool
        Drop the bad rows (and say how many) instead of raising.
    file : file-like, optional
        Where the note on dropped rows goes (stdout).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The training and validation rows without the bad ones.

    Raises
    ------
    NonFiniteError
        Bad rows and ``skip`` False, or no row left on one side after dropping them.
    """
    started = time.perf_counter()
    used = np.union1d(train_rows, val_rows)
    bad, count = find_nonfinite(collection, used, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - started
    if len(bad) == 0:
        return train_rows, val_rows
    where = describe_rows(collection, bad)
    if not skip:
        raise NonFiniteError(
            f"{count} NaN/inf values in {len(bad)} tracings (first: {where}); repair or drop "
            "those records, or add --skip-nonfinite to train without them"
        )
    kept_train = np.setdiff1d(train_rows, bad, assume_unique=True)
    kept_val = np.setdiff1d(val_rows, bad, assume_unique=True)
    if len(kept_train) == 0 or len(kept_val) == 0:
        raise NonFiniteError(
            f"all {'training' if len(kept_train) == 0 else 'validation'} tracings hold NaN/inf "
            f"values (first: {where}); nothing is left to train on: repair the data"
        )
    print(
        f"note: --skip-nonfinite dropped {len(bad)} tracings with NaN/inf values "
        f"({len(train_rows) - len(kept_train)} training, {len(val_rows) - len(kept_val)} "
        f"validation; first: {where}); scanned {len(used)} tracings in {seconds:.1f} s",
        file=file or sys.stdout,
    )
    return kept_train, kept_val


def _error_names(kind=ECGInputError):
    yield kind.__name__
    for subclass in kind.__subclasses__():
        yield from _error_names(subclass)


def input_error_in_pipeline(error):
    """The one-line message of a project error raised inside a tf.data pipeline, or None.

    A reader error in ``make_dataset`` (a tracing that turned NaN/inf after the up-front
    scan, a file truncated or damaged during the run) reaches the caller wrapped in a
    TensorFlow OpError whose text holds ``NonFiniteError: message``; this finds it.
    """
    text = str(error)
    for name in sorted(set(_error_names()), key=len, reverse=True):
        marker = f"{name}: "
        if marker in text:
            return text.split(marker, 1)[1].splitlines()[0].strip()
    return None
