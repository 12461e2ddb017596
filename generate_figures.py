"""Reproduce the paper's tables and figures on CODE-test, or evaluate your own predictions.

    python generate_figures.py                  # the paper's tables and figures (shipped data)
    python generate_figures.py --gold gold.csv --predictions predictions.csv --thresholds f1

The program is ``ecgcode/cli/generate_figures.py`` (also ``ecg-generate-figures`` and
``python -m ecgcode.cli.generate_figures``).
"""

from ecgcode.cli.generate_figures import cli

if __name__ == "__main__":
    cli()
