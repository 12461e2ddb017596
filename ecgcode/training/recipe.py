"""The paper's training recipe in Keras' own words: its numbers, compile, the callbacks, fit.

Ribeiro et al., "Automatic diagnosis of the 12-lead ECG using a deep neural network",
Nature Communications 11:1760 (2020), Methods. Read top to bottom: the paper's numbers in
one block; the model compiled with them; the callbacks with the paper's parameters; ``fit``.

``train.py`` (``ecgcode/cli/train.py``) resolves the options, the data and the devices
before it comes here (``ecgcode/training/run_setup.py``); the batches of each epoch and the
files written after it are the run's (``ecgcode/training/run.py``). What Keras lacks for
the recipe is added beside it, each piece saying first what it adds:
``ecgcode/training/callbacks.py`` (the validation predictions behind ``val_loss`` and the
per-epoch thresholds; logs kept off the progress bar; the bar's epoch count; the callbacks'
counters across a resume) and ``ecgcode/training/workarounds.py`` (dropout's random state
across a resume; JAX's and multi-worker training's build; each names its upstream issue).

Keras is imported inside the functions: train.py reads the numbers (its defaults) and
checks every input before it pays for TensorFlow.
"""

import collections
import importlib.util
import math
import time

from ecgcode.data.screening import input_error_in_pipeline
from ecgcode.model.runfolder import HISTORY_NAME, TENSORBOARD_DIR, run_file
from ecgcode.training.report import print_summary, report_interrupt, report_nan
from ecgcode.training.workarounds import prepare_fit

# --- The paper's numbers ------------------------------------------------------------------
EPOCHS = 70  # at most
BATCH_SIZE = 64  # per replica
LEARNING_RATE = 1e-3  # Adam, with Keras' other defaults
LOSS = "binary_crossentropy"  # one independent sigmoid output per class
VALIDATION_SPLIT = 0.02  # the last 2 % of the rows
MONITOR = "val_loss"  # watched by both callbacks; the kept model has the lowest
REDUCE_LR_ON_PLATEAU = {"factor": 0.1, "patience": 7}
MIN_LR_FRACTION = 0.01  # ReduceLROnPlateau's min_lr: the initial learning rate / 100
EARLY_STOPPING = {"patience": 9, "min_delta": 1e-5}


# --- Compile ------------------------------------------------------------------------------
def paper_model(n_classes):
    """The paper's ResNet with ``n_classes`` outputs (train.py's default model factory)."""
    from ecgcode.model.network import get_model  # deferred: imports Keras

    return get_model(n_classes)


def compile_model(model, learning_rate=LEARNING_RATE, jit_compile=False):
    """``model`` compiled with the paper's optimizer and loss; returns it."""
    import keras  # deferred: imports TensorFlow

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=LOSS,
                  jit_compile=jit_compile)
    return model


# --- The callbacks ----------------------------------------------------------------------
def paper_callbacks(learning_rate=LEARNING_RATE):
    """The paper's ReduceLROnPlateau and EarlyStopping, both on ``val_loss``."""
    import keras  # deferred: imports TensorFlow

    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor=MONITOR, min_lr=learning_rate * MIN_LR_FRACTION, verbose=1,
        **REDUCE_LR_ON_PLATEAU)
    early_stopping = keras.callbacks.EarlyStopping(monitor=MONITOR, verbose=1, **EARLY_STOPPING)
    return reduce_lr, early_stopping


def tensorboard_callbacks(folder):
    """[Keras' TensorBoard writing to FOLDER/tensorboard], or [] when it is not installed."""
    import keras  # deferred: imports TensorFlow

    if importlib.util.find_spec("tensorboard") is None:
        print("note: TensorBoard is not installed, so no TensorBoard logs are written "
              f"(pip install tensorboard); {HISTORY_NAME} has the same numbers")
        return []
    return [keras.callbacks.TensorBoard(run_file(folder, TENSORBOARD_DIR), write_graph=False)]


RecipeCallbacks = collections.namedtuple("RecipeCallbacks", "all validation counters")
"""The callbacks for ``fit`` (``all``), and the two whose state each epoch's commit reads."""


def recipe_callbacks(run, extra=()):
    """The callbacks of ``run``, then ``extra`` (tests stop runs with these), as RecipeCallbacks.

    In the order Keras calls them at an epoch's end: ``TerminateOnNaN`` (it stops at the
    first batch whose loss is not finite); ``ValidationMetrics`` predicts the validation
    rows and adds ``val_loss``; the progress bar prints the epoch's line; ``PerClassLogs``
    adds the per-class scores; the paper's ``ReduceLROnPlateau`` and ``EarlyStopping`` watch
    ``val_loss``; ``KeepCounters`` carries their counters from one ``fit`` (and one resume)
    to the next; then TensorBoard.
    """
    import keras  # deferred: imports TensorFlow

    from ecgcode.training.callbacks import (  # deferred: imports Keras
        EpochProgbar,
        KeepCounters,
        PerClassLogs,
        ValidationMetrics,
    )

    validation = ValidationMetrics(run.validation_batches(), run.classes, run.device.jit)
    reduce_lr, early_stopping = paper_callbacks(run.options["lr"])
    counters = KeepCounters({"reduce_lr": reduce_lr, "early_stopping": early_stopping},
                            run.state.get("counters"))
    callbacks = [keras.callbacks.TerminateOnNaN(), validation,
                 EpochProgbar(run.options["epochs"]), PerClassLogs(validation), reduce_lr,
                 early_stopping, counters, *tensorboard_callbacks(run.out), *extra]
    return RecipeCallbacks(callbacks, validation, counters)


# --- Fit --------------------------------------------------------------------------------
def train(run, model_factory=paper_model, extra_callbacks=()):
    """The recipe on ``run`` (an ``ecgcode.training.run.Run``); returns the exit status.

    The model is new from ``model_factory`` and compiled (its weights from ``--init`` when
    given), or the checkpoint of the run being resumed, compiled with its optimizer state.
    Then the epochs are fitted with the callbacks (:func:`fit_epochs`).
    """
    with run.device.strategy.scope():
        if run.resumes:
            run.model = run.resumed_model()
        else:
            run.model = compile_model(run.new_model(model_factory), run.options["lr"],
                                      run.device.jit)
        prepare_fit(run.model, run.device)
        callbacks = recipe_callbacks(run, extra_callbacks)
    return fit_epochs(run, callbacks, verbose=1 if run.writes else 0)


def fit_epochs(run, callbacks, verbose=1):
    """Fit the remaining epochs, committing each to the run folder; return the exit status.

    One ``fit`` per epoch: Keras lacks a data order indexed by the epoch. ``fit`` passes
    over one dataset again and again, and tf.data reshuffles it by how many passes it has
    made in this process, so a resumed run would see other orders than the run it
    continues. Here epoch k's batches come from a dataset seeded by (seed, k) alone
    (``Run.train_batches``; the approach suggested in tensorflow/tensorflow#58925), and
    ``initial_epoch`` keeps Keras' epoch numbers, so ``--resume`` continues exactly.
    """
    state, out = run.state, run.run_folder
    started, first = time.perf_counter(), state["completed_epochs"]
    if state["stopped_early"] or first >= run.options["epochs"]:
        print(f"{out}: the run already finished after {first} epochs; nothing to do")
    epoch = first
    try:
        for epoch in range(first, run.options["epochs"]):
            if state["stopped_early"]:
                break
            history = run.model.fit(
                run.train_batches(epoch), initial_epoch=epoch, epochs=epoch + 1,
                steps_per_epoch=run.steps_per_epoch(), callbacks=callbacks.all,
                verbose=verbose, shuffle=False)
            logs = {key: values[-1] for key, values in history.history.items()}
            if not (math.isfinite(logs["loss"]) and math.isfinite(logs["val_loss"])):
                return report_nan(run, epoch, out)
            seconds = callbacks.validation.train_seconds
            run.commit(history_row(run, epoch, logs, seconds), callbacks.validation,
                       callbacks.counters)  # non-chief workers write to a temporary folder
    except KeyboardInterrupt:
        return report_interrupt(run, epoch, out)
    except Exception as error:  # a tracing that turned NaN/inf after the up-front scan
        message = input_error_in_pipeline(error)
        if message is None:
            raise
        return report_nan(run, epoch, out, cause=message)
    if run.writes:
        run.finish()
        print_summary(run, out, time.perf_counter() - started)
    return 0


def history_row(run, epoch, logs, seconds):
    """One row of history.csv: the epoch's losses, learning rate, time and scores.

    ``learning_rate`` is what ReduceLROnPlateau logged before any reduction: the rate the
    epoch trained with. ``seconds``: from the epoch's start to its validation.
    """
    row = {"epoch": epoch + 1, "loss": logs["loss"], "val_loss": logs["val_loss"],
           "lr": logs["learning_rate"], "epoch_seconds": seconds,
           "samples": min(run.steps_per_epoch() * run.global_batch, len(run.data.train_rows))}
    row.update({key: value for key, value in logs.items()
                if key.startswith(("val_auroc_", "val_ap_"))})
    return row
