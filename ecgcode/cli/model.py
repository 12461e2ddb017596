"""The paper's 1-D ResNet: print its summary, or export a model (``python model.py``).

Ribeiro et al., "Automatic diagnosis of the 12-lead ECG using a deep neural network",
Nature Communications 11:1760 (2020). The network maps a (4096, 12) tracing to
independent sigmoid probabilities, one per class (the paper's six by default). It is built
in ``ecgcode/model/network.py`` with plain Keras layers (no custom objects); saving and loading
live in ``ecgcode/model/modelfiles.py``::

    from ecgcode.model.network import get_model
    from ecgcode.model.modelfiles import load_model, save_model
    net = get_model()                            # the paper's ResNet, 6,425,638 parameters
    paths = save_model(net, "runs/net")          # runs/net.keras and runs/net.h5
    net = load_model("model.hdf5")               # any format the project knows

``python model.py`` prints the summary and the parameter count (and, for a saved model,
the provenance stored in it: ``ecgcode/model/provenance.py``); ``python model.py export
MODEL OUT`` exports a model as ONNX, TFLite and SavedModel (``ecgcode/model/export.py``).
"""

import argparse
import os
import sys

from ecgcode.common import PUBLISHED_WEIGHTS_DOI, UNITS_PER_MV, ECGInputError, run_cli
from ecgcode.model import export
from ecgcode.model.metadata import default_classes, read_model_scale
from ecgcode.model.modelfiles import load_model_and_classes, resolve_model
from ecgcode.model.provenance import describe_provenance, export_source, model_provenance
from ecgcode.model.quiet import import_tensorflow
from ecgcode.model.thresholds import read_thresholds


# --- Command line ------------------------------------------------------------------
def main(argv=None):
    """Print the model summary and its parameter count; ``export ...`` exports a model."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    parser = argparse.ArgumentParser(
        description="Print the summary of the paper's ResNet (or of a saved model, with the "
        "provenance stored in it: what it was trained on) and its parameter count. Published "
        "weights of the original study: "
        f"doi:{PUBLISHED_WEIGHTS_DOI}.",
        epilog="python model.py export MODEL OUT  exports MODEL as OUT.onnx, OUT.tflite and "
        "the SavedModel OUT/ (see python model.py export --help)",
    )
    parser.add_argument("model", nargs="?", help="a saved model to describe (default: a new one)")
    args = parser.parse_args(argv)
    import_tensorflow()
    from ecgcode.model.network import get_model  # deferred: imports Keras

    if args.model:
        model, classes, _ = load_model_and_classes(args.model)
    else:
        model, classes = get_model(), default_classes(6)
    model.summary()
    print(f"Parameters: {model.count_params():,}")
    print(f"Input: {tuple(model.inputs[0].shape)}  outputs: {', '.join(classes)}")
    if args.model:  # what the model was trained on, as stored in its file
        print(f"Amplitude scale: {read_model_scale(args.model)[0].describe()}")
        print("\n".join(describe_provenance(model_provenance(args.model))))


def export_main(argv=None):
    """``python model.py export MODEL OUT``: ONNX, TFLite and SavedModel exports of MODEL."""
    args = build_export_parser().parse_args(argv)
    if not os.path.exists(args.model):
        raise ECGInputError(
            f"{args.model}: MODEL not found; give a .keras/.h5 model file or a train.py run folder"
        )
    model_path, thresholds_path = resolve_model(args.model)  # a model file or a run folder

    model, args.classes, _ = load_model_and_classes(model_path, args.classes)
    args.thresholds = (read_thresholds(thresholds_path, args.classes) if thresholds_path
                       else None)  # a run's thresholds.json travels in the metadata
    args.units_per_mv = read_model_scale(model_path)[0].units_per_mv  # so does the scale
    return export_and_report(model, args, model_provenance(model_path),
                             export_source(model_path))


def build_export_parser(prog="model.py export"):
    """The argument parser of ``python model.py export MODEL OUT``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Export a model for serving: OUT.onnx (onnxruntime), OUT.tflite (LiteRT) "
        "and the TensorFlow SavedModel folder OUT/ (TF Serving, signature serving_default). "
        "Each takes float32 'signal' (batch, 4096, 12) at the model's amplitude scale, "
        "returns 'probabilities' (batch, n_classes) and holds the class names, the scale "
        "(units_per_mv) and the model's provenance in its metadata. Each export is then "
        f"run on {export.CHECK_EXAMS} synthetic ECGs and compared with the Keras model.",
        allow_abbrev=False,
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a .keras/.h5/.hdf5 model file or a train.py run folder (whose "
                        "thresholds.json is then stored in the metadata too)")
    parser.add_argument("out", metavar="OUT",
                        help="destination stem: writes OUT.onnx, OUT.tflite and OUT/")
    parser.add_argument(
        "--formats", default=",".join(export.FORMATS), type=_comma_list,
        help=f"comma-separated subset of {','.join(export.FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--classes", type=_comma_list, default=None,
        help="comma-separated output names for the metadata (default: the names stored in "
        "the model; without them the paper's six classes for a six-output model, else "
        "class_0, class_1, ...)",
    )
    parser.add_argument("--no-check", action="store_true",
                        help="do not run the exports to compare them with the Keras model")
    return parser


def _comma_list(text):
    return tuple(item.strip() for item in text.split(",") if item.strip())


def export_and_report(model, args, provenance=None, source=None):
    """Export ``model`` as ``args`` ask, check each export, print one line each; return 0.

    ``args.thresholds`` (a run's thresholds, or None) and ``provenance``, the source model
    file's record, and ``source`` (``ecgcode.model.export.export_metadata``) go into every
    export's metadata.
    """
    paths = export.export_model(model, args.out, args.formats, args.classes,
                                getattr(args, "thresholds", None), provenance, source,
                                getattr(args, "units_per_mv", UNITS_PER_MV))
    differences = {} if args.no_check else export.check_exports(model, paths)
    for kind, path in paths.items():
        line = f"wrote {path}{'/' if kind == 'saved_model' else ''}: {_size_mb(path):.1f} MB"
        if kind in differences:
            difference = differences[kind]
            line += (f", max |diff| vs Keras {difference:.2g}" if isinstance(difference, float)
                     else f", not checked ({difference})")
        print(line)
    return 0


def _size_mb(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(path) for name in names
        ) / 1e6
    return os.path.getsize(path) / 1e6


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
