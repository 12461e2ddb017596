"""The program: ``ecgcode/cli/generate_figures.py``; its tables: ``ecgcode/evaluation/paper.py``.

Reproduce the paper's tables and figures on CODE-test (shipped with the package), or evaluate
your own predictions:

    python generate_figures.py                  # Table 2, supplementary tables, Figure 2
    python generate_figures.py --gold gold.csv --predictions predictions.csv --thresholds f1

Installed, the program is ``ecg-generate-figures`` (also
``python -m ecgcode.cli.generate_figures``).
"""

from ecgcode.cli.generate_figures import cli

if __name__ == "__main__":
    cli()
