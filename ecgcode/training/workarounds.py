"""Work-arounds of Keras for train.py: each says what Keras lacks and names its upstream issue.

Each relies on Keras' private names or on behaviour upstream may change, so each has a test
that fails when it stops working (``tests/test_train.py``, ``tests/test_jax.py``):

=====================================  ======================================  ===============
work-around                            what Keras lacks                        upstream issue
=====================================  ======================================  ===============
:func:`capture_seed_states`,           ``.keras`` files leave out the state    keras-team/
:func:`restore_seed_states`            of dropout's random generators          keras#19796
:func:`build_before_fit` (JAX)         ``fit`` builds the model from the       keras-team/
                                       dataset's first batch, then restarts    keras#20394
                                       the dataset (a new, reshuffled pass)
:func:`patch_multi_worker`             ``fit`` under MultiWorkerMirrored-      keras-team/
                                       Strategy: the symbolic build and the    keras#20585,
                                       logs' reduction fail                    tensorflow/
                                                                               tensorflow#72388
=====================================  ======================================  ===============

Keras and TensorFlow are imported inside the functions (train.py calls them once the inputs
are checked).
"""

import numpy as np

SEED_STATE_NAME = "seed_generator_state"
"""The name Keras 3 gives the state variable of a ``keras.random.SeedGenerator``."""


# --- Dropout's random state, which .keras files leave out -------------------------------
def _seed_states(model):
    return [v for v in model.non_trainable_variables if v.name == SEED_STATE_NAME]


def capture_seed_states(model):
    """The states of the model's seed generators (dropout masks), for the resume state.

    Keras lacks them in its saved models: a ``.keras`` file reloads each ``Dropout`` with a
    fresh generator state (keras-team/keras#19796), so a resumed run would draw other
    dropout masks than the run it continues. Read by name from the model's non-trainable
    variables (``seed_generator_state``); ``tests/test_train.py`` checks that a reloaded
    model with the restored states draws the same masks.
    """
    import keras  # deferred: imports TensorFlow (train.py checks its inputs first)

    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in _seed_states(model)]


def restore_seed_states(model, states):
    """Assign states captured by :func:`capture_seed_states` (same architecture)."""
    variables = _seed_states(model)
    if len(variables) != len(states):
        raise ValueError(f"{len(states)} saved seed states for {len(variables)} generators")
    for variable, state in zip(variables, states):
        variable.assign(np.asarray(state, dtype=variable.dtype))


# --- Before the first fit ----------------------------------------------------------------
def prepare_fit(model, device):
    """Apply the work-arounds a compiled ``model`` needs on ``device`` before its first fit.

    ``device`` is train.py's ``ecgcode.training.run_setup.Device`` (backend, strategy kind).
    """
    build_before_fit(model, device.backend)
    if device.kind == "multi-worker":
        patch_multi_worker(model, device.strategy)


def build_before_fit(model, backend):
    """Build the loss, metrics and optimizer of a compiled model before its first ``fit``.

    Keras lacks a build that leaves the data alone under JAX: a ``fit`` whose model is not
    fully built takes the first batch of the dataset to build it symbolically, then starts
    the dataset again (keras-team/keras#20394 reported the batch this once swallowed). The
    new pass is shuffled anew, so the first epoch after a start or a resume would see
    another order than the same epoch of an uninterrupted run. Building from zeros with
    Keras' own ``Trainer._symbolic_build`` avoids the peek (the weights and random states do
    not change). Nothing to do under TensorFlow, whose ``fit`` builds from the pass it
    trains on.
    """
    if backend != "jax":
        return
    x = np.zeros((1, *model.inputs[0].shape[1:]), np.float32)  # (1, 4096, 12)
    y = np.zeros((1, model.outputs[0].shape[-1]), np.float32)  # (1, n_classes)
    model._symbolic_build(data_batch=(x, y))  # what fit itself calls (Keras 3 Trainer)


def patch_multi_worker(model, strategy):
    """Make ``fit`` work under MultiWorkerMirroredStrategy (Keras 3, TensorFlow backend).

    Keras lacks working multi-worker training (keras-team/keras#20585, open): before each
    ``fit`` it builds the model from the first batch, which it gets by ``strategy.reduce``-ing
    the (x, y) PerReplica batch, and the collective strategy cannot reduce it ("Attempt to
    convert a value (PerReplica...) to a Tensor"). Only the shapes matter, so this builds
    from the first local replica's batch instead (``model._maybe_symbolic_build``). The
    logs' reduction is patched too (:func:`_patch_multi_worker_reduce`).
    ``tests/test_train.py::test_two_local_workers_agree_on_the_weights`` fails without
    either.
    """
    import tensorflow as tf  # deferred: imports TensorFlow

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build
    _patch_multi_worker_reduce(strategy)


def _patch_multi_worker_reduce(strategy):
    """Keras 3 reduces the scalar logs across workers with ``axis=0`` under the collective
    strategy ("Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388): reduce them with ``axis=None`` instead."""
    import tensorflow as tf  # deferred: imports TensorFlow
    from keras.src.backend.tensorflow import trainer as tf_trainer  # deferred: imports TensorFlow

    original = getattr(tf_trainer.reduce_per_replica, "original", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy_, reduction):
        if strategy_ is strategy and reduction in ("auto", "mean"):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy_, reduction)

    reduce_per_replica.original = original
    tf_trainer.reduce_per_replica = reduce_per_replica
