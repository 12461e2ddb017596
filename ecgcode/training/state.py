"""The resumable state of a ``train.py`` run: its checkpoint, ``state.json`` and data order.

A run folder holds ``resume/state.json`` (the commit point) and the checkpoint it names,
``resume/epoch_NNNN.keras`` (weights *and* optimizer state). The state file is replaced
atomically after the checkpoint is complete, so a run killed at any moment (even with
``kill -9``) resumes from the last completed epoch with the same optimizer state, learning
rate, ReduceLROnPlateau/EarlyStopping counters, dropout random-number state and data order.
"""

import json
import os
import shutil

import numpy as np

from ecgcode.common import ECGInputError, atomic_output
from ecgcode.model.metadata import output_names, write_model_info
from ecgcode.model.runfolder import (
    CHECKPOINT_PREFIX,
    LAST_MODEL,
    RESUME_DIR,
    checkpoint_name,
    run_file,
    state_path,
    write_json,
)
from ecgcode.training.workarounds import restore_seed_states

STATE_FORMAT = 1


def epoch_seed(seed, epoch):
    """Data-order seed of one epoch: depends only on (seed, epoch), so resumes repeat it."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


# --- The resumable state -------------------------------------------------------------
def new_state():
    """The resume state of a run before its first completed epoch."""
    return {"completed_epochs": 0, "history": [], "best_val_loss": None, "best_epoch": None,
            "stopped_early": False}


def read_state(out_dir):
    """The resume state of a run folder, or None when it has none."""
    path = state_path(out_dir)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def checkpoint_path(out_dir, state):
    """Path of the checkpoint named by a resume state."""
    return run_file(out_dir, RESUME_DIR, state["checkpoint"])


def commit_epoch(out_dir, model, state, classes=None, provenance=None):
    """Save the checkpoint of a completed epoch, then commit ``state`` pointing to it.

    Parameters
    ----------
    out_dir : str
        Run folder.
    model : keras.Model
        Compiled model; saved with its optimizer state.
    state : dict
        Must hold ``completed_epochs``; ``checkpoint`` is set here.
    classes : sequence of str, optional
        Class names stored inside the checkpoint (``ecgcode.model.metadata``).
    provenance : dict, optional
        What the model was trained on, stored inside the checkpoint too.

    Returns
    -------
    str
        Path of the checkpoint, also linked (or copied) to ``model_last.keras``.
    """
    resume_dir = run_file(out_dir, RESUME_DIR)
    name = checkpoint_name(state["completed_epochs"])
    checkpoint = os.path.join(resume_dir, name)
    with atomic_output(checkpoint) as tmp:
        model.save(tmp)
        write_model_info(tmp, output_names(int(model.outputs[0].shape[-1]), classes),
                         provenance)
    write_json(state_path(out_dir), dict(state, checkpoint=name, format=STATE_FORMAT))
    for old in os.listdir(resume_dir):
        if old.startswith(CHECKPOINT_PREFIX) and old != name:
            os.remove(os.path.join(resume_dir, old))
    _link_or_copy(checkpoint, run_file(out_dir, f"{LAST_MODEL}.keras"))
    return checkpoint


def _link_or_copy(source, destination):
    """Make ``destination`` a hard link to (or, failing that, a copy of) ``source``, atomically."""
    with atomic_output(destination) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def resumed_model(out_dir, state, jit_compile):
    """The compiled model of a resumed run: its checkpoint, with the optimizer state, the
    learning rate and the dropout generators' states of its last completed epoch."""
    import keras  # deferred: imports TensorFlow (train.py checks its inputs first)

    checkpoint = checkpoint_path(out_dir, state)
    model = keras.models.load_model(checkpoint, compile=True)
    if int(model.optimizer.iterations.numpy()) == 0:
        raise ECGInputError(f"{checkpoint}: checkpoint without optimizer state; it cannot "
                            "be resumed exactly: start a new run")
    model.jit_compile = jit_compile
    model.optimizer.learning_rate.assign(state["lr"])
    restore_seed_states(model, state["seed_states"])
    return model
