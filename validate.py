"""The program: ``ecgcode/cli/validate.py``; the library: ``ecgcode/evaluation/``.

Validate a model on your own labelled ECGs: discrimination, calibration, thresholds by rule:

    python validate.py records/ runs/run1 --out validation --scale-sweep
    python validate.py exams.hdf5 model.hdf5 --labels gold.csv --write-thresholds t.json

Installed, the program is ``ecg-validate`` (also ``python -m ecgcode.cli.validate``);
``python validate.py --help`` lists its options.
"""

from ecgcode.cli.validate import cli

if __name__ == "__main__":
    cli()
