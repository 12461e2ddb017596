"""What a training run tells its user when it ends: the summary, a NaN, an interruption.

Each function takes the ``Run`` of ``train.py`` (its ``state``, ``model``, ``classes`` and
``writes``) and the run folder, prints its message and returns the exit status.
"""

import os
import sys

from ecgcode.model.modelfiles import save_model
from ecgcode.model.runfolder import (
    BEST_MODEL,
    CONFIG_NAME,
    FINAL_MODEL_NAME,
    HISTORY_NAME,
    LAST_MODEL,
    RESUME_DIR,
    RUN_THRESHOLDS_NAME,
    TENSORBOARD_DIR,
    run_file,
)
from ecgcode.model.thresholds import read_validation_f1

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def report_nan(run, epoch, out, cause=None):
    """Say where the loss (or, with ``cause``, the data) became NaN, which model is kept; 2."""
    done = run.state["completed_epochs"]
    kept = (f"the last good model (epoch {done}) is kept in {out}/{LAST_MODEL}.keras"
            if done else "no epoch completed, so no model was saved")
    if cause:
        print(f"error: epoch {epoch + 1} met bad data: {cause}; training stopped and {kept}",
              file=sys.stderr)
        return 2
    print(f"error: the loss became NaN in epoch {epoch + 1}; training stopped and {kept}; "
          "lower --lr or check the data", file=sys.stderr)
    return 2


def report_interrupt(run, epoch, out):
    """Save the last model at the interruption, say how to resume; return status 130."""
    if run.writes:
        save_model(run.model, run_file(out, LAST_MODEL), formats=(".keras",),
                   classes=run.classes, provenance=run.provenance)  # with the optimizer
        save_model(run.portable_model(), run_file(out, LAST_MODEL), formats=(".h5",),
                   classes=run.classes, provenance=run.provenance)
    done = run.state["completed_epochs"]
    print(f"\nInterrupted in epoch {epoch + 1}: {out}/{LAST_MODEL}.keras/.h5 hold the weights "
          f"at the interruption. Continue from the end of epoch {done} with:\n"
          f"  python train.py --resume --out {out}", file=sys.stderr)
    return INTERRUPTED


def print_summary(run, out, seconds):
    """One paragraph: epochs, best epoch, val_loss, per-class F1, speed, files."""
    state, history = run.state, run.state["history"]
    samples = sum(r["samples"] for r in history)
    train_seconds = sum(r["epoch_seconds"] for r in history)
    f1 = ""
    path = run_file(out, RUN_THRESHOLDS_NAME)
    if os.path.isfile(path):
        f1 = ", ".join(f"{c} {_fmt(value)}" for c, value in
                       read_validation_f1(path, run.classes).items())
    stop = "stopped early" if state["stopped_early"] else "reached --epochs"
    print(f"\nSummary: {len(history)} epoch(s) in total ({stop}); this session took "
          f"{seconds:.0f} s, training at {samples / max(train_seconds, 1e-9):.1f} ECGs/s. "
          f"Best epoch {state['best_epoch']} with val_loss {_fmt(state['best_val_loss'])}; "
          f"validation F1 at the F1-maximising thresholds: {f1}. Files in {out}: "
          f"{_run_files(out)}.")


def _run_files(out):
    """The files of a finished run folder, as the summary lists them."""
    tensorboard = os.path.isdir(run_file(out, TENSORBOARD_DIR))
    return (f"{BEST_MODEL}.keras/.h5 and {FINAL_MODEL_NAME} (best epoch), "
            f"{LAST_MODEL}.keras/.h5, {HISTORY_NAME}, {RUN_THRESHOLDS_NAME}, {CONFIG_NAME}, "
            f"{TENSORBOARD_DIR + '/, ' if tensorboard else ''}{RESUME_DIR}/")


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"
