"""ECG-CODE in Keras 3: the library behind the root scripts (see ARCHITECTURE in docs/).

Importing the package keeps TensorFlow's oneDNN off AMX, whose bfloat16 convolutions are
wrong (``ecgcode.model.precision.keep_onednn_off_amx``); it imports no TensorFlow.
"""

from ecgcode.model.precision import keep_onednn_off_amx

__version__ = "0.1.0"
"""The project's version (setup.cfg reads it from here); recorded in every model's provenance."""

keep_onednn_off_amx()
