"""The input pipeline: ``ecgcode/data/`` (``make_dataset`` in ``ecgcode/data/pipeline.py``);
the data tools' program: ``ecgcode/cli/datasets.py``.

As in the original repository, ``from datasets import make_dataset, open_collection,
load_labels`` gives the HDF5 input pipeline (tf.data); ``python datasets.py`` runs the tools
that inspect, convert and generate CODE-style HDF5 files:

    python datasets.py inspect exams.hdf5
    python datasets.py convert records/ -o exams.hdf5     # WFDB, CinC, MUSE, HL7 aECG, DICOM...
    python datasets.py synthetic demo.hdf5 --n 256

Installed, the program is ``ecg-datasets`` (also ``python -m ecgcode.cli.datasets``).
"""

from ecgcode.cli.datasets import cli
from ecgcode.data import load_labels, make_dataset, open_collection

__all__ = ["cli", "load_labels", "make_dataset", "open_collection"]

if __name__ == "__main__":
    cli()
