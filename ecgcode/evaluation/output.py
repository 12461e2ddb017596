"""Writing results: Markdown tables and matplotlib figures drawn without pyplot, saved atomically.

Shared by generate_figures.py's report and validate.py's (``ecgcode.evaluation.report``).
"""

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ecgcode.common import atomic_output


def markdown_table(frame, decimals=3, corner=""):
    """A DataFrame as a GitHub Markdown table (MultiIndex columns joined by a space).

    Floats are written with ``decimals`` decimals, other values as text; ``corner`` heads
    the column of row labels.
    """
    columns = [" ".join(c) if isinstance(c, tuple) else str(c) for c in frame.columns]
    lines = [f"| {corner} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, row in frame.iterrows():
        cells = [f"{v:.{decimals}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def new_figure(size, rows=1, columns=1):
    """A Figure drawn by the Agg backend (no pyplot state) and its axes."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, columns)


def save_figure(fig, stem, folder, formats):
    """Save ``fig`` as folder/stem.<format> for each format; returns the paths."""
    paths = []
    for fmt in formats:
        paths.append(os.path.join(folder, f"{stem}.{fmt}"))
        with atomic_output(paths[-1]) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
    return paths


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
