"""The data tools: inspect, convert and generate CODE-style HDF5 files.

    python datasets.py inspect exams.hdf5
    python datasets.py convert records/ -o exams.hdf5     # WFDB, CinC, MUSE, HL7 aECG, DICOM...
    python datasets.py synthetic demo.hdf5 --n 256

The program is ``ecgcode/cli/datasets.py`` (also ``ecg-datasets`` and
``python -m ecgcode.cli.datasets``); the data code is ``ecgcode.data``.
"""

from ecgcode.cli.datasets import cli

if __name__ == "__main__":
    cli()
