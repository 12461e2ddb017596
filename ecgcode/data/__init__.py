"""The data contract's code: HDF5 collections, labels, checks and the tf.data pipeline.

    from ecgcode import data
    collection = data.open_collection(["exams_part0.hdf5", "exams_part1.hdf5"])
    table = data.load_labels(collection, "exams.csv")
    dataset = data.make_dataset(collection, table, batch_size=64, shuffle=True)

Modules: ``hdf5`` (opening and validating files; the error classes), ``rows`` (reading
rows, NaN/inf checks), ``labels``
(labels and splits), ``inspection`` (statistics and warnings), ``pipeline`` (tf.data).
Importing this package does not import TensorFlow.
"""

from ecgcode.data.hdf5 import (
    Collection,
    EmptyCollectionError,
    MissingDatasetError,
    MissingFileError,
    NonFiniteError,
    NotHDF5Error,
    TruncatedFileError,
    WrongDtypeError,
    WrongShapeError,
    open_collection,
)
from ecgcode.data.inspection import (
    collection_warnings,
    inspect_collection,
    lead_order_warnings,
    lead_statistics,
    signal_warnings,
)
from ecgcode.data.labels import (
    ExamIdJoinError,
    LabelColumnsError,
    LabelError,
    LabelRowCountError,
    LabelTable,
    LabelValuesError,
    load_labels,
    split_indices,
)
from ecgcode.data.pipeline import make_dataset
from ecgcode.data.rows import RowReader, check_finite, find_nonfinite

__all__ = [
    "Collection",
    "EmptyCollectionError",
    "ExamIdJoinError",
    "LabelColumnsError",
    "LabelError",
    "LabelRowCountError",
    "LabelTable",
    "LabelValuesError",
    "MissingDatasetError",
    "MissingFileError",
    "NonFiniteError",
    "NotHDF5Error",
    "RowReader",
    "TruncatedFileError",
    "WrongDtypeError",
    "WrongShapeError",
    "check_finite",
    "collection_warnings",
    "find_nonfinite",
    "inspect_collection",
    "lead_order_warnings",
    "lead_statistics",
    "load_labels",
    "make_dataset",
    "open_collection",
    "signal_warnings",
    "split_indices",
]
