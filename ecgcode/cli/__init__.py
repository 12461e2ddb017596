"""The command-line programs: one module per root script, each with ``main(argv)`` and ``cli()``.

The root scripts (``python train.py ...``) and the console scripts (``ecg-train ...``) both run
these; ``python -m ecgcode.cli.train ...`` does too. A program here may call another's
``main`` (the demo runs the others as a user would), but no other part of the package
imports this one.
"""
