"""Running a model over a collection of exams, as predict.py does."""

import numpy as np

from ecgcode.common import ECGInputError
from ecgcode.data import make_dataset
from ecgcode.data.screening import input_error_in_pipeline

DEFAULT_BATCH_SIZE = 128
"""predict.py's batch size."""


def predict_collection(model, collection, batch_size=DEFAULT_BATCH_SIZE, verbose=1):
    """Run ``model`` over every exam of ``collection``, in file order.

    Parameters
    ----------
    model : keras.Model
        Maps (batch, 4096, 12) to (batch, n_classes).
    collection : ecgcode.data.Collection
    batch_size : int
    verbose : int
        Keras progress bar (1) or silence (0).

    Returns
    -------
    numpy.ndarray, shape (collection.n, n_classes), float32
    """
    import tensorflow as tf  # deferred: imports TensorFlow (the caller has; not on --help)

    dataset = make_dataset(
        collection, None, batch_size=batch_size, shuffle=False,
        dataset_name=collection.dataset_name, check_values=False,
    )  # NaN/inf tracings give NaN rows, reported after the run instead of aborting it
    n_batches = -(-collection.n // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))  # progress bar
    try:
        probabilities = model.predict(dataset, verbose=verbose)  # (n, n_classes)
    except Exception as error:  # a file damaged or changed under the pipeline
        message = input_error_in_pipeline(error)
        if message is None:
            raise
        raise ECGInputError(message) from None
    probabilities = np.asarray(probabilities, dtype=np.float32)
    n_classes = int(model.outputs[0].shape[-1])
    if probabilities.shape != (collection.n, n_classes):
        raise RuntimeError(
            f"predicted {probabilities.shape}, expected ({collection.n}, {n_classes})"
        )
    return probabilities
