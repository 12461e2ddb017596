"""The command-line programs, and the only command-line code of the package.

One module per root script (``train.py``, ``predict.py``, ...), each with ``main(argv)`` and
``cli()``; ``inspect``, ``convert`` and ``synthetic``, the commands of ``datasets.py`` (also
the console scripts ``ecg-convert`` and ``ecg-synthetic``); ``plot`` (``ecg-plot``); and
``options``, the options several programs share. The root scripts (``python train.py ...``)
and the console scripts (``ecg-train ...``) both run these; ``python -m ecgcode.cli.train
...`` does too. A program here may call another's ``main`` (the demo runs the others as a
user would), but no other part of the package imports this one.
"""
