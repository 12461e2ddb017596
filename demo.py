"""The main job: the whole pipeline on synthetic ECGs, from data to figures, in one command.

    python demo.py                      # about 12 minutes on a 2-core CPU

The program is ``ecgcode/cli/demo.py`` (also ``ecg-demo`` and ``python -m ecgcode.cli.demo``).
"""

from ecgcode.cli.demo import cli

if __name__ == "__main__":
    cli()
