"""``bench.py scale``: what a wrong amplitude scale costs a model, measured.

The labelled tracings are brought to the model's scale (``ecgcode.data.scale``), then
multiplied by each factor k (0.1 to 10 by default) and scored by
``ecgcode.evaluation.sweep.scale_sweep``: the F1 at the model's own thresholds and the AUROC
of every class. k = 1 is the right scale; k = 5 is what an input at this project's earlier
1e-4 V (10 units per mV) does to a model that expects the original study's 2 units per mV,
and k = 0.2 the other way round. docs/data-formats.md shows the table for the demo's model.
"""


from ecgcode.data import load_labels, open_collection
from ecgcode.data.rows import RowReader
from ecgcode.evaluation.sweep import scale_sweep, sweep_markdown
from ecgcode.inference.predictor import at_model_scale, load_predictor, resolve_predictor
from ecgcode.model.thresholds import choose_thresholds

FACTORS = (0.1, 0.2, 0.5, 1, 2, 5, 10)
"""The factors of the table in docs/data-formats.md."""


def scale_tables(model, tracings, factors=FACTORS):
    """(F1 table, AUROC table) in Markdown, rows the factors, columns the classes."""
    model_path, thresholds_path = resolve_predictor(model)
    predictor = load_predictor(model_path)
    thresholds = choose_thresholds(False, None, thresholds_path, predictor.classes,
                                   stored=predictor.thresholds)
    collection, _ = at_model_scale(predictor, open_collection(tracings))
    table = load_labels(collection, classes=list(predictor.classes))
    x = RowReader(collection).read(range(collection.n))  # (n, 4096, 12) at the model's scale
    frame = scale_sweep(predictor.predict, x, table.labels, predictor.classes, thresholds,
                        factors)
    return sweep_markdown(frame, "f1"), sweep_markdown(frame, "auroc")
