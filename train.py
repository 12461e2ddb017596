"""Train the paper's ResNet on CODE-style HDF5 tracings; resumable, on one CPU or many GPUs.

    python train.py data.hdf5 annotations.csv             # the original two-argument form
    python train.py exams_part*.hdf5 exams.csv --val-split-by patient_id --out runs/a
    python train.py --resume --out runs/a                  # continue a killed run

The program, with the paper's recipe step by step, is ``ecgcode/cli/train.py`` (also
``ecg-train`` and ``python -m ecgcode.cli.train``); ``python train.py --help`` lists its options.
"""

from ecgcode.cli.train import cli

if __name__ == "__main__":
    cli()
