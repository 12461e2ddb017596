"""The network: ``ecgcode/model/network.py`` (``get_model``); the program: ``ecgcode/cli/``.

As in the original repository, ``from model import get_model`` gives the paper's 1-D ResNet,
and ``python model.py`` prints its summary and parameter count:

    python model.py                        # the paper's ResNet: 6,425,638 parameters
    python model.py export MODEL OUT       # OUT.onnx, OUT.tflite and the SavedModel OUT/

Installed, the program is ``ecg-model`` (also ``python -m ecgcode.cli.model``).
"""

from ecgcode.cli.model import cli


def __getattr__(name):
    """``from model import get_model``: Keras is imported then, not for ``--help``."""
    if name == "get_model":
        from ecgcode.model.network import get_model  # deferred: imports Keras

        return get_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    cli()
