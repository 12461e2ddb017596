"""The program: ``ecgcode/cli/demo.py`` (it runs the other programs' ``main`` in turn).

The main job: the paper's Table 2, then the whole pipeline on synthetic ECGs, in one command:

    python demo.py                      # about 12 minutes on a 2-core CPU

Installed, the program is ``ecg-demo`` (also ``python -m ecgcode.cli.demo``).
"""

from ecgcode.cli.demo import cli

if __name__ == "__main__":
    cli()
