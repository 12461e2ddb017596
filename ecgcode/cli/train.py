"""Train the paper's ResNet on CODE-style HDF5 tracings; resumable, on one CPU or many GPUs.

The recipe of Ribeiro et al., Nat Commun 11:1760 (2020), its numbers, compile, callbacks
and fit, is ``ecgcode/training/recipe.py``; this program checks the options and the data,
sets up the devices and the run folder (``ecgcode/training/run_setup.py``), then runs it.

Examples::

    python train.py data.hdf5 annotations.csv             # the original two-argument form
    python train.py exams_part*.hdf5 exams.csv --val-split-by patient_id --out runs/a
    python train.py --resume --out runs/a                  # continue a killed run
    python train.py ptbxl.hdf5 --classes NORM,MI,STTC,CD,HYP --val-where strat_fold=9 \
        --test-where strat_fold=10 --init model.hdf5           # fine-tune on other classes

Exit status: 0 done, 2 bad input / NaN loss / non-empty output folder, 130 Ctrl-C.
"""

import argparse

from ecgcode.cli.options import add_units_option
from ecgcode.common import CLASSES, run_cli
from ecgcode.data.screening import screen_rows
from ecgcode.model.metadata import parse_classes
from ecgcode.model.precision import global_policy
from ecgcode.model.provenance import training_provenance
from ecgcode.model.quiet import import_tensorflow
from ecgcode.model.runfolder import CONFIG_NAME, HISTORY_NAME, LAST_MODEL, RUN_THRESHOLDS_NAME
from ecgcode.training import recipe
from ecgcode.training import state as ts
from ecgcode.training.run_setup import (
    check_options,
    describe_setup,
    load_data,
    print_setup,
    resolve_run,
    set_up_device,
    writable_folder,
    write_config,
)


# --- The program ---------------------------------------------------------------------
def main(argv=None, *, model_factory=None, extra_callbacks=()):
    """Train; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (``sys.argv[1:]`` when None).
    model_factory : callable, optional
        ``model_factory(n_classes)`` returns a new, uncompiled keras.Model with input
        (4096, 12) and n_classes sigmoid outputs (a factory without parameters is called
        as ``model_factory()``); the paper's ResNet (``ecgcode.model.network.get_model``) when
        None. Tests pass tiny models here.
    extra_callbacks : sequence of keras.callbacks.Callback
        Appended to the training callbacks (tests use this to kill a run mid-epoch).

    Returns
    -------
    int
        0 done, 2 NaN loss, 130 interrupted (bad input raises ECGInputError: exit 2).
    """
    args = parse_arguments(argv)
    out, options, state = resolve_run(args)  # a new run folder, or the one to resume
    check_options(options)
    data = load_data(options)  # rows, labels and the train/validation/test split
    data.train_rows, data.val_rows = screen_rows(data.collection, data.train_rows,
                                                 data.val_rows, skip=options["skip_nonfinite"])
    data.provenance = training_provenance(data.collection, data.classes, options["labels"],
                                          options["init"])  # with the run's amplitude scale
    import_tensorflow(verbose=args.verbose)  # tf.data feeds every backend
    # Imports Keras, so only now that every input was checked:
    from ecgcode.training.run import Run

    device = set_up_device(options, resumed=args.resume)  # strategy, precision, XLA, seed
    options = dict(options, mixed_precision=device.mixed_precision)  # as config.json keeps it
    setup = describe_setup(device, data, options,
                           getattr(model_factory, "__name__", "model.get_model"))
    print_setup(setup, options, data.collection, len(data.train_rows), len(data.val_rows),
                len(data.test_rows))
    with global_policy(device.policy), writable_folder(out, device.writes) as folder:
        if device.writes:
            write_config(out, options, data, setup, state)
        run = Run(options, data, device, out, folder, state or ts.new_state())
        return recipe.train(run, model_factory or recipe.paper_model, extra_callbacks)


# --- Command line ---------------------------------------------------------------------
def parse_arguments(argv):
    """The parsed command line, with --classes split into a list."""
    args = build_parser().parse_args(argv)
    if args.classes is not None:
        args.classes = list(parse_classes(args.classes))
    return args


def build_parser():
    """The argparse parser of ``train.py`` (options default to None: see DEFAULTS)."""
    parser = argparse.ArgumentParser(
        description="Train the paper's ResNet (Ribeiro et al. 2020) on CODE-style HDF5 "
        f"tracings with the paper's recipe; writes a run folder (models, {HISTORY_NAME}, "
        f"{RUN_THRESHOLDS_NAME}, {CONFIG_NAME}, TensorBoard logs) that --resume can continue. "
        "Every model file records its provenance: the data files' SHA-256 fingerprints, "
        "whether they are synthetic, the classes, the date and the project's version.",
        epilog="Exit status: 0 done, 2 bad input / NaN loss / non-empty --out, 130 Ctrl-C "
        f"({LAST_MODEL} saved; continue with --resume --out DIR).",
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="FILE",
        help="one or more .hdf5/.h5 tracing files (rows numbered in the order given) and "
        "optionally one .csv of labels (one 0/1 column per class, matched by name; joined "
        "on exam_id when present). Without a CSV the files' `labels` dataset is used. "
        "May be omitted with --resume.",
    )
    parser.add_argument("--out", help="run folder (default: runs/train-DATE-TIME); must be "
                        "new or empty unless --resume")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last completed epoch")
    parser.add_argument("--epochs", type=int,
                        help=f"maximum number of epochs ({recipe.EPOCHS})")
    parser.add_argument("--batch-size", type=int,
                        help=f"batch size per replica ({recipe.BATCH_SIZE}); global batch = "
                        "this x replicas")
    parser.add_argument("--lr", type=float,
                        help=f"initial learning rate of Adam ({recipe.LEARNING_RATE:g}); not "
                        "scaled automatically with the number of replicas")
    parser.add_argument("--val-split", type=float,
                        help="fraction of rows for validation "
                        f"({recipe.VALIDATION_SPLIT:g}: the last {100 * recipe.VALIDATION_SPLIT:g}%%)")
    parser.add_argument("--val-split-by", metavar="COLUMN",
                        help="label-CSV column (e.g. patient_id) whose groups go whole to "
                        "validation or training, drawn at random from --seed")
    parser.add_argument("--dataset-name", help="signal dataset in the HDF5 files (tracings)")
    parser.add_argument("--seed", type=int, help="seed of weights, dropout and data order (0)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="at most this many batches per epoch (for quick runs)")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                        help="mixed bfloat16 (CPUs, GPUs >= Ampere) or float16 (older GPUs) "
                        "compute with float32 weights and output layer; default on where the "
                        "device computes bfloat16 natively (AVX512-BF16 CPUs without AMX under "
                        "TensorFlow, GPUs >= Ampere), off elsewhere; the saved models are "
                        "float32 either way")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction,
                        help="XLA compilation (default: on with a GPU or under jax, off on "
                        "TensorFlow's CPU)")
    parser.add_argument("--distribute",
                        choices=("auto", "none", "mirrored", "multi-worker", "data-parallel"),
                        help="auto (default): multi-worker when TF_CONFIG is set, mirrored "
                        "with several GPUs, else none; under KERAS_BACKEND=jax: data-parallel "
                        "(keras.distribution.DataParallel) with several devices, else none")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                        help="deterministic ops (slower): a killed and resumed run ends with "
                        "the same weights as an uninterrupted one (under jax: deterministic "
                        "GPU ops; JAX on the CPU is deterministic anyway)")
    labels = parser.add_argument_group("classes, rows and fine-tuning")
    labels.add_argument("--classes", metavar="A,B,...",
                        help="label columns to learn, in this order (CSV columns or names in "
                        "the HDF5 labels' `classes`); default the paper's six "
                        f"({','.join(CLASSES)})")
    labels.add_argument("--val-where", metavar="COLUMN=V[,V]",
                        help="validation rows: those whose COLUMN (label CSV, or a 1-D HDF5 "
                        "dataset such as PTB-XL's strat_fold) has one of the values")
    labels.add_argument("--test-where", metavar="COLUMN=V[,V]",
                        help="held-out test rows, in neither training nor validation "
                        "(e.g. strat_fold=10)")
    labels.add_argument("--init", metavar="MODEL",
                        help="start from the weights of a model file or run folder (e.g. the "
                        "original study's model.hdf5); with other classes the output layer "
                        "is new. Not with --resume")
    labels.add_argument("--freeze-backbone", action=argparse.BooleanOptionalAction,
                        help="with --init: train only the output layer")
    add_units_option(parser)
    parser.add_argument("--skip-nonfinite", action=argparse.BooleanOptionalAction,
                        help="train without the tracings that hold NaN/inf values (default: "
                        "such tracings stop the run with an error naming them)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up logging")
    return parser


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
