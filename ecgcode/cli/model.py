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

from ecgcode.common import PUBLISHED_WEIGHTS_DOI, ECGInputError, run_cli
from ecgcode.model import export
from ecgcode.model.metadata import default_classes, read_model_scale
from ecgcode.model.provenance import describe_provenance, export_source, model_provenance
from ecgcode.model.quiet import import_tensorflow
from ecgcode.model.runfolder import resolve_model
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
    from ecgcode.model.modelfiles import load_model_and_classes  # deferred: Keras, after the checks
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
    args = export.build_parser().parse_args(argv)
    if not os.path.exists(args.model):
        raise ECGInputError(
            f"{args.model}: MODEL not found; give a .keras/.h5 model file or a train.py run folder"
        )
    model_path, thresholds_path = resolve_model(args.model)  # a model file or a run folder
    from ecgcode.model.modelfiles import load_model_and_classes  # deferred: Keras, after the checks

    model, args.classes, _ = load_model_and_classes(model_path, args.classes)
    args.thresholds = (read_thresholds(thresholds_path, args.classes) if thresholds_path
                       else None)  # a run's thresholds.json travels in the metadata
    args.units_per_mv = read_model_scale(model_path)[0].units_per_mv  # so does the scale
    return export.export_and_report(model, args, model_provenance(model_path),
                                    export_source(model_path))


def cli():
    """Console-script entry point: bad input gives a one-line error and exit status 2."""
    raise SystemExit(run_cli(main))


if __name__ == "__main__":
    cli()
