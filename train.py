"""The program: ``ecgcode/cli/train.py``; the paper's recipe: ``ecgcode/training/recipe.py``.

Train the paper's ResNet on CODE-style HDF5 tracings; resumable, on one CPU or many GPUs:

    python train.py data.hdf5 annotations.csv             # the original two-argument form
    python train.py exams_part*.hdf5 exams.csv --val-split-by patient_id --out runs/a
    python train.py --resume --out runs/a                  # continue a killed run

Installed, the program is ``ecg-train`` (also ``python -m ecgcode.cli.train``);
``python train.py --help`` lists its options.
"""

from ecgcode.cli.train import cli

if __name__ == "__main__":
    cli()
