"""The program: ``ecgcode/cli/predict.py``; the predictor: ``ecgcode/inference/predictor.py``.

Run a trained or published model on ECG tracings and write its class probabilities:

    python predict.py TRACINGS.hdf5 [MORE.hdf5 ...] MODEL [--output-file OUT.npy|OUT.csv]
    python predict.py exam.xml runs/a --output-file exam.csv    # a clinical export, a run folder

Installed, the program is ``ecg-predict`` (also ``python -m ecgcode.cli.predict``);
``python predict.py --help`` lists its options.
"""

from ecgcode.cli.predict import cli

if __name__ == "__main__":
    cli()
