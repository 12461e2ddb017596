"""Run a trained or published model on ECG tracings and write its class probabilities.

    python predict.py TRACINGS.hdf5 [MORE.hdf5 ...] MODEL [--output-file OUT.npy|OUT.csv]
    python predict.py exam.xml runs/a --output-file exam.csv    # a clinical export, a run folder

The program is ``ecgcode/cli/predict.py`` (also ``ecg-predict`` and
``python -m ecgcode.cli.predict``); ``python predict.py --help`` lists its options.
"""

from ecgcode.cli.predict import cli

if __name__ == "__main__":
    cli()
