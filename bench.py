"""The program: ``ecgcode/cli/bench.py``; the measurements: ``ecgcode/bench/``.

Benchmarks of the input pipeline, training, prediction and memory, against a baseline:

    python bench.py all --out bench_results.md
    python bench.py SECTION --help

Also ``python -m ecgcode.cli.bench``.
"""

from ecgcode.cli.bench import cli

if __name__ == "__main__":
    cli()
