"""The main job: the paper's Table 2, then the whole pipeline on synthetic ECGs, in one command.

    python demo.py                      # about 12 minutes on a 2-core CPU

The program is ``ecgcode/cli/demo.py`` (also ``ecg-demo`` and ``python -m ecgcode.cli.demo``).
"""

from ecgcode.cli.demo import cli

if __name__ == "__main__":
    cli()
