"""The paper's 1-D ResNet: its summary and parameter count, or an export of a saved model.

    python model.py                        # the paper's ResNet: 6,425,638 parameters
    python model.py export MODEL OUT       # OUT.onnx, OUT.tflite and the SavedModel OUT/

The network is ``ecgcode/network.py``; this program is ``ecgcode/cli/model.py`` (also
``ecg-model`` and ``python -m ecgcode.cli.model``).
"""

from ecgcode.cli.model import cli

if __name__ == "__main__":
    cli()
