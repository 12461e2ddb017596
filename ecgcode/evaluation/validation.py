"""Validate a model on labelled ECGs: validate.py's library (its options live in ``ecgcode.cli``).

The steps, each a function:

1. :func:`load_labelled`: the ECGs (HDF5 files, and recordings converted on the fly by
   ``ecgcode.data.formats.inputs.contract_inputs``), their labels (the files' ``labels``, the
   converter's CinC ``#Dx``/CPSC/PTB-XL labels, or a gold CSV joined on ``exam_id``, on a
   ``record`` column or by row order) and what the data say about each exam for subgroups
   (age, sex, source database or site);
2. :func:`model_function` and :func:`predict_labelled`: the model's probabilities;
3. :func:`make_split`: the exams that choose thresholds (and fit a calibration) and those
   that measure them, never silently the same;
4. :func:`validate`: every table of the report (``ecgcode.evaluation.report``);
5. :func:`threshold_record` and :func:`write_back`: the chosen thresholds (and calibration)
   with their provenance, into a run folder, an ONNX export's metadata or a JSON file.
"""

import dataclasses
import hashlib
import os

import h5py
import numpy as np

from ecgcode import __version__
from ecgcode.common import ECGInputError
from ecgcode.data import RowReader, open_collection
from ecgcode.data.formats.challenge import read_cinc_demographics
from ecgcode.data.formats.inputs import row_names
from ecgcode.data.hdf5 import open_hdf5
from ecgcode.data.labels import (
    LabelColumnsError,
    LabelTable,
    check_label_values,
    hdf5_label_classes,
    load_labels,
    parse_where,
    read_label_csv,
    row_values,
    rows_where,
    split_indices,
)
from ecgcode.evaluation import metrics as em
from ecgcode.evaluation.measures import score_table, threshold_table
from ecgcode.evaluation.subgroups import (
    DEFAULT_AGE_EDGES,
    MIN_SUBGROUP_EXAMS,
    age_bands,
    category_values,
    sex_values,
    subgroup_table,
)
from ecgcode.evaluation.sweep import scale_sweep
from ecgcode.inference.predictor import predict_collection
from ecgcode.model.calibration import apply_calibration, fit_calibration
from ecgcode.model.export import update_onnx_metadata
from ecgcode.model.metadata import utc_now
from ecgcode.model.provenance import PROJECT, fingerprint
from ecgcode.model.runfolder import RUN_THRESHOLDS_NAME, run_file
from ecgcode.model.thresholds import rule_text, rule_thresholds, write_chosen_thresholds

DEFAULT_TUNE_SPLIT = "0.5"
"""validate.py's ``--tune-split``: a random half of the exams chooses, the other measures."""

SITE_COLUMNS = ("site", "database", "hospital")
"""Columns (or HDF5 datasets) read as the source database or site of each exam."""


# --- The labelled ECGs -------------------------------------------------------------------
@dataclasses.dataclass
class LabelledECGs:
    """ECGs with labels for the classes a model predicts.

    Attributes
    ----------
    collection : ecgcode.data.Collection
        The HDF5 files (converted recordings included), rows in input order.
    labels : numpy.ndarray
        (n, n_classes) float32 0/1, columns in ``classes`` order.
    classes : tuple of str
        The model's classes that have labels, in the model's order.
    missing : tuple of str
        The model's classes without labels (not evaluated).
    names : list of str or None
        Each row's record name (converted inputs), else None.
    attributes : dict
        Subgroup attribute -> (n,) text values (``""``: unknown).
    patients : numpy.ndarray or None
        (n,) patient ids, when the data have them (splits keep a patient's exams together).
    source : str
        Where the labels came from.
    table : ecgcode.data.LabelTable
        The labels as loaded (its ``frame`` is the label CSV's rows, aligned).
    """

    collection: object
    labels: np.ndarray
    classes: tuple
    missing: tuple
    names: object
    attributes: dict
    patients: object
    source: str
    table: object


def load_labelled(hdf5_paths, converted, model_classes, labels_csv=None, classes=None,
                  dataset_name="tracings", subgroups=(), age_edges=DEFAULT_AGE_EDGES):
    """Open the ECGs, their labels for the model's classes and their subgroup attributes.

    Parameters
    ----------
    hdf5_paths, converted :
        As ``ecgcode.data.formats.inputs.contract_inputs`` yields them.
        ``hdf5_paths`` may be an opened collection (``ecgcode.data.open_collection``, e.g.
        with ``--units-per-mv`` for files that record no amplitude scale).
    model_classes : sequence of str
        The model's output names.
    labels_csv : str, optional
        A gold CSV: one 0/1 column per class (matched by name), rows joined on ``exam_id``
        (HDF5 inputs), on a ``record`` column naming the recordings (converted inputs) or
        taken in input order; other columns (``age``, ``sex``, ``site``...) may give
        subgroups. Without it, the files' own ``labels``.
    classes : sequence of str, optional
        Evaluate these of the model's classes only (each must have labels).
    dataset_name : str
    subgroups : sequence of str
        More columns (of the CSV, or 1-D datasets of the files) to form subgroups by.
    age_edges : sequence of float
        Age-band boundaries.

    Returns
    -------
    LabelledECGs
    """
    collection = open_collection(hdf5_paths, dataset_name)
    names = row_names(collection.paths, collection.sizes, converted)
    frame = read_label_csv(labels_csv) if labels_csv else None
    source = os.fspath(labels_csv) if labels_csv else ", ".join(collection.paths)
    if frame is not None:
        available = [str(c) for c in frame.columns]
    else:
        available = hdf5_label_classes(collection)
        if available is None:
            raise ECGInputError(f"{source}: no 'labels' dataset in the file(s) (the converter "
                                "writes them for CinC #Dx, CPSC and PTB-XL records); give "
                                "--labels GOLD.csv with one 0/1 column per class")
    chosen, missing = evaluated_classes(model_classes, available, classes, source)
    if frame is not None and names is not None and "record" in frame.columns:
        table = _labels_by_record(frame, names, chosen, labels_csv)
    else:
        table = load_labels(collection, labels_csv, dataset_name, classes=chosen)
    attributes = find_attributes(collection, table, subgroups, age_edges)
    patients = _optional_column(collection, table, "patient_id")
    described = source if labels_csv else labels_description(collection, converted)
    return LabelledECGs(collection, table.labels, tuple(chosen), tuple(missing), names,
                        attributes, patients, described, table)


def labels_description(collection, converted):
    """Where the files' own labels come from: each file (or "the converted recordings")
    and the mapping its ``labels`` dataset names (e.g. CinC #Dx SNOMED CT)."""
    parts = []
    for path in collection.paths:
        with open_hdf5(path) as handle:
            mapping = str(handle["labels"].attrs.get("source", "")).split(":")[0].strip()
        name = "the converted recordings" if path in converted else os.path.basename(path)
        parts.append(f"{name} ({mapping})" if mapping else name)
    return "the 'labels' of " + ", ".join(dict.fromkeys(parts))


def evaluated_classes(model_classes, available, classes, source):
    """The model's classes that have labels, and those that have none.

    Parameters
    ----------
    model_classes : sequence of str
    available : sequence of str
        Label columns found.
    classes : sequence of str or None
        ``--classes``: a subset of the model's classes, every one with labels.
    source : str
        The labels' file(s), named in the errors.

    Returns
    -------
    (list of str, list of str)
    """
    if classes is not None:
        unknown = [name for name in classes if name not in model_classes]
        if unknown:
            raise ECGInputError(f"--classes: the model has no class {', '.join(unknown)} (its "
                                f"classes: {', '.join(model_classes)})")
        absent = [name for name in classes if name not in available]
        if absent:
            raise ECGInputError(f"{source}: no labels for {', '.join(absent)} (label columns: "
                                f"{', '.join(available)}); drop them from --classes")
        return list(classes), []
    chosen = [name for name in model_classes if name in available]
    if not chosen:
        raise ECGInputError(f"{source}: no label column for any of the model's classes "
                            f"({', '.join(model_classes)}; found {', '.join(available)}); "
                            "name the columns after the classes")
    return chosen, [name for name in model_classes if name not in available]


def _record_key(name):
    """A recording's name as a ``record`` column may write it: base name, no WFDB extension."""
    base = os.path.basename(str(name).strip().rstrip("/"))
    stem, extension = os.path.splitext(base)
    return stem if extension.lower() in (".hea", ".mat", ".dat") else base


def _labels_by_record(frame, names, classes, path):
    """A LabelTable of a gold CSV whose ``record`` column names the converted recordings."""
    keys = frame["record"].map(_record_key)
    repeated = keys[keys.duplicated()]
    if len(repeated):
        raise ECGInputError(f"{path}: record {repeated.iloc[0]!r} is listed twice; one row "
                            "per recording")
    position = {key: row for row, key in enumerate(keys)}
    wanted = [_record_key(name) for name in names]
    absent = [key for key in wanted if key not in position]
    if absent:
        raise ECGInputError(f"{path}: {len(absent)} of {len(wanted)} recordings have no row "
                            f"(first: {absent[0]}); the record column must name every one")
    aligned = frame.iloc[[position[key] for key in wanted]].reset_index(drop=True)
    labels = check_label_values(aligned.loc[:, list(classes)].to_numpy(), path, classes)
    return LabelTable(labels, None, aligned, np.ones(len(wanted), dtype=bool), os.fspath(path),
                      tuple(classes))


def _optional_column(collection, table, column):
    """:func:`ecgcode.data.labels.row_values`, or None when neither CSV nor files have it."""
    try:
        return row_values(collection, table, column)
    except LabelColumnsError:
        return None


def find_attributes(collection, table, subgroups=(), age_edges=DEFAULT_AGE_EDGES):
    """Subgroup attributes the data state: age band, sex, source database or site, and more.

    Looked for in the label CSV's columns, then in 1-D datasets of the HDF5 files (``age``;
    ``sex`` or ``is_male``; ``site``, ``database`` or ``hospital``), then in what converted
    recordings say (a CinC header's ``#Age``/``#Sex``; the folder of each record as its
    database, when the records come from several folders). ``subgroups`` adds columns by
    name (each must exist).

    Returns
    -------
    dict
        Attribute -> (n,) text values; attributes without any known value are left out.
    """
    records = records_attributes(collection)
    attributes = {}
    age = _optional_column(collection, table, "age")
    age = records.get("age") if age is None else age
    if age is not None:
        attributes["age"] = age_bands(age, age_edges)
    sex = _optional_column(collection, table, "sex")
    if sex is not None:
        attributes["sex"] = sex_values(sex)
    elif (is_male := _optional_column(collection, table, "is_male")) is not None:
        attributes["sex"] = sex_values(is_male, is_male=True)
    elif "sex" in records:
        attributes["sex"] = records["sex"]
    for column in SITE_COLUMNS:
        values = _optional_column(collection, table, column)
        if values is not None:
            attributes[column] = category_values(values)
            break
    else:
        if "database" in records:
            attributes["database"] = records["database"]
    for column in subgroups:
        attributes[column] = category_values(row_values(collection, table, column))
    return {name: values for name, values in attributes.items()
            if any(value != "" for value in values)}


def records_attributes(collection):
    """Age, sex and database of converted recordings, from the files' ``records/`` group.

    A WFDB record still at its ``records/source`` path gives its header's ``#Age`` and
    ``#Sex`` (CinC); its folder names its database when the records span several folders.

    Returns
    -------
    dict
        Any of ``age`` (float, NaN unknown), ``sex`` and ``database`` (text) -> (n,) values.
    """
    ages = np.full(collection.n, np.nan)
    sexes = np.full(collection.n, "", dtype=object)
    folders = np.full(collection.n, "", dtype=object)
    for path, start, size in zip(collection.paths, collection.starts, collection.sizes):
        sources, formats = _record_sources(path, size)
        for row, (source, kind) in enumerate(zip(sources, formats)):
            folders[start + row] = os.path.basename(os.path.dirname(source.rstrip("/")))
            if kind.startswith("WFDB") and os.path.isfile(source + ".hea"):
                ages[start + row], sexes[start + row] = read_cinc_demographics(source)
    found = {}
    if np.isfinite(ages).any():
        found["age"] = ages
    if (sexes != "").any():
        found["sex"] = sexes
    if len(set(folders) - {""}) > 1:
        found["database"] = folders
    return found


def _record_sources(path, size):
    """The ``records/source`` and ``records/format`` of a converted file ([] when absent)."""
    with open_hdf5(path) as handle:
        group = handle.get("records")
        if not isinstance(group, h5py.Group) or "source" not in group or "format" not in group:
            return [], []
        sources = group["source"].asstr()[()].tolist()
        formats = group["format"].asstr()[()].tolist()
    return (sources, formats) if len(sources) == size else ([], [])


# --- The model's probabilities ---------------------------------------------------------
def model_function(predictor, collection):
    """The model as validate.py calls it: (n, 4096, 12) float32 -> (n, n_classes) float32.

    Every prediction of validate.py (the report's and the scale sweep's) goes through the
    function returned here, for the ECGs of ``collection``.
    """
    # The amplitude scale: validate.py brings ``collection`` to the model's scale first
    # (ecgcode.inference.predictor.at_model_scale), so its rows are read as the model expects them.
    return predictor.predict


def predict_labelled(predictor, data, batch_size, progress=True):
    """The model's probabilities of every exam: (n, n_classes) float32, in the order of
    ``data.classes`` (the model's other outputs dropped)."""
    model = dataclasses.replace(predictor, predict=model_function(predictor, data.collection))
    probabilities = predict_collection(model, data.collection, batch_size, progress=progress)
    if not np.isfinite(probabilities).all():
        rows = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
        raise ECGInputError(f"{len(rows)} exams give no probability (first: row {rows[0]}): "
                            "their tracings hold NaN or infinite values; remove them "
                            "(datasets.py inspect finds them)")
    columns = [list(predictor.classes).index(name) for name in data.classes]
    return probabilities[:, columns]


class CollectionRows:
    """The tracings of a collection, read on demand: ``rows[start:stop]`` is (k, 4096, 12)."""

    def __init__(self, collection):
        self.collection = collection
        self.reader = RowReader(collection)

    def __len__(self):
        return self.collection.n

    def __getitem__(self, rows):
        return self.reader.read(np.arange(self.collection.n)[rows])


def sweep_labelled(predictor, data, thresholds, factors):
    """``ecgcode.evaluation.sweep.scale_sweep`` of the model on the labelled ECGs."""
    columns = [list(predictor.classes).index(name) for name in data.classes]
    model = model_function(predictor, data.collection)
    rows = CollectionRows(data.collection)
    try:
        return scale_sweep(lambda x: model(x)[:, columns], rows, data.labels, data.classes,
                           thresholds, factors)
    finally:
        rows.reader.close()


# --- Which exams choose, which measure ---------------------------------------------------
@dataclasses.dataclass
class Split:
    """The exams that choose thresholds (and fit a calibration) and those that measure them.

    Attributes
    ----------
    tune, measure : numpy.ndarray
        Sorted row numbers.
    tune_text, measure_text : str
        What each is, for the report and the thresholds' provenance.
    same : bool
        Both are all the exams (``--tune-split none``): the measures are optimistic.
    spec : str
        The ``--tune-split`` given.
    """

    tune: np.ndarray
    measure: np.ndarray
    tune_text: str
    measure_text: str
    same: bool
    spec: str


def make_split(spec, data, seed=0):
    """The :class:`Split` of ``--tune-split``.

    Parameters
    ----------
    spec : str
        A fraction in (0, 1): that share of the exams, drawn at random from ``seed`` (whole
        patients when the data have ``patient_id``), choose and the others measure;
        ``COLUMN=V1,V2``: the exams with those values choose (e.g. ``strat_fold=9``) and the
        others measure; ``none``: all exams do both, and the report says so.
    data : LabelledECGs
    seed : int
    """
    n = data.collection.n
    everything = np.arange(n)
    text = str(spec).strip()
    if text.lower() == "none":
        described = f"all {n} exams"
        return Split(everything, everything, described,
                     f"{described}, the same exams (optimistic)", True, text)
    if "=" in text:
        column, values = parse_where(text, "--tune-split")
        chosen = rows_where(row_values(data.collection, data.table, column), values)
        tune, measure = everything[chosen], everything[~chosen]
        tune_text = f"the {len(tune)} exams with {column} in {', '.join(values)}"
        measure_text = f"the other {len(measure)} exams"
    else:
        try:
            fraction = float(text)
        except ValueError:
            fraction = float("nan")
        if not 0 < fraction < 1:
            raise ECGInputError(f"--tune-split {spec!r}: give a fraction between 0 and 1 "
                                "(e.g. 0.5), COLUMN=VALUE[,VALUE...] or none")
        groups = data.patients if data.patients is not None else everything
        measure, tune = split_indices(n, fraction, groups, seed)
        whole = ", whole patients" if data.patients is not None else ""
        tune_text = (f"a random {fraction:.0%} of the exams ({len(tune)} exams{whole}; "
                     f"seed {seed})")
        measure_text = f"the other {len(measure)} exams"
    if not len(tune) or not len(measure):
        raise ECGInputError(f"--tune-split {spec}: leaves {len(tune)} exams to choose and "
                            f"{len(measure)} to measure; both need exams")
    return Split(tune, measure, tune_text, measure_text, False, text)


# --- The tables ------------------------------------------------------------------------
@dataclasses.dataclass
class Validation:
    """Every result of :func:`validate` (the report's content).

    Attributes
    ----------
    classes : tuple of str
    scores : pandas.DataFrame
        AUROC, AUPRC, ECE and Brier score per class, all exams (``score_table``).
    thresholds : dict
        The model's own thresholds (class -> float), as Table 2 uses them.
    thresholds_source : str
    at_thresholds : pandas.DataFrame
        Table 2 at the model's thresholds, all exams (``threshold_table``).
    rules : dict
        Rule text -> ``threshold_table`` of its thresholds on the measuring exams.
    rule_thresholds : dict
        Rule text -> {class: float or None}, chosen on the tuning exams.
    calibration : dict or None
        The recalibration fitted on the tuning exams.
    calibrated : pandas.DataFrame or None
        ECE and Brier score on the measuring exams, before and after it.
    subgroups : pandas.DataFrame
    sweep : pandas.DataFrame or None
    split : Split
    notes : list of str
        One line per thing the reader must know (undefined measures, small subgroups...).
    labels, probabilities : numpy.ndarray
        (n, n_classes), for the figures.
    """

    classes: tuple
    scores: object
    thresholds: dict
    thresholds_source: str
    at_thresholds: object
    rules: dict
    rule_thresholds: dict
    calibration: object
    calibrated: object
    subgroups: object
    sweep: object
    split: Split
    notes: list
    labels: np.ndarray
    probabilities: np.ndarray


def validate(data, probabilities, thresholds, thresholds_source, split, rules, *,
             calibrate=None, n_bootstrap=1000, seed=123, min_subgroup=MIN_SUBGROUP_EXAMS,
             sweep=None):
    """Compute every table of the report.

    Parameters
    ----------
    data : LabelledECGs
    probabilities : numpy.ndarray
        (n, n_classes) the model's, columns in ``data.classes`` order.
    thresholds : dict
        The model's thresholds, class -> float (Table 2 and the sweep's F1).
    thresholds_source : str
        Where they come from, for the report.
    split : Split
    rules : sequence of str
        Threshold rules (``ecgcode.model.thresholds.parse_rule``).
    calibrate : str, optional
        ``platt`` or ``temperature``: fit one on the tuning exams.
    n_bootstrap, seed : int
        The bootstrap (``ecgcode.evaluation.metrics.bootstrap_indices``).
    min_subgroup : int
        Smallest subgroup with intervals.
    sweep : pandas.DataFrame, optional
        The scale sweep's table, carried into the report.

    Returns
    -------
    Validation
    """
    y, classes = data.labels, data.classes
    notes = class_notes(y, classes)
    indices = em.bootstrap_indices(len(y), n_bootstrap, seed)
    measure_y, measure_p = y[split.measure], probabilities[split.measure]
    measure_indices = em.bootstrap_indices(len(split.measure), n_bootstrap, seed)
    tune_y, tune_p = y[split.tune], probabilities[split.tune]
    chosen, tables = {}, {}
    for rule in rules:
        text = rule_text(rule)
        chosen[text] = rule_thresholds(tune_y, tune_p, rule, classes)
        tables[text] = threshold_table(measure_y, measure_p, chosen[text], classes,
                                       measure_indices)
    notes += undecided_notes(chosen, y, classes, len(split.tune))
    calibration = calibrated = None
    if calibrate:
        calibration = fit_calibration(tune_y, tune_p, classes, calibrate)
        after = apply_calibration(measure_p, calibration, classes)
        before_table = score_table(measure_y, measure_p, classes, measure_indices)
        after_table = score_table(measure_y, after, classes, measure_indices)
        calibrated = before_table[["class", "exams", "positives"]].copy()
        for measure in ("ece", "brier"):
            for suffix in ("", "_low", "_high"):
                calibrated[f"{measure}_before{suffix}"] = before_table[f"{measure}{suffix}"]
                calibrated[f"{measure}_after{suffix}"] = after_table[f"{measure}{suffix}"]
    subgroups, small = subgroup_table(y, probabilities, data.attributes, classes, n_bootstrap,
                                      seed, min_subgroup)
    return Validation(
        classes, score_table(y, probabilities, classes, indices), thresholds,
        thresholds_source, threshold_table(y, probabilities, thresholds, classes, indices),
        tables, chosen, calibration, calibrated, subgroups, sweep, split, notes + small, y,
        probabilities)


def class_notes(y_true, classes):
    """One line per class whose discrimination the exams cannot measure."""
    notes = []
    for k, name in enumerate(classes):
        positives = int((y_true[:, k] > 0.5).sum())
        if positives == 0:
            notes.append(f"{name}: no positive exam among the {len(y_true)}: its AUROC and "
                         "AUPRC are undefined, and only specificity=X chooses its threshold")
        elif positives == len(y_true):
            notes.append(f"{name}: all {len(y_true)} exams are positive: its AUROC is "
                         "undefined, and specificity=X chooses no threshold")
    return notes


def undecided_notes(chosen, y_true, classes, n_tune):
    """One line per class (with positive and negative exams) that some rule left without a
    threshold: the exams that choose lack positives (or negatives) of it."""
    notes = []
    for k, name in enumerate(classes):
        if not 0 < (y_true[:, k] > 0.5).sum() < len(y_true):
            continue  # said by class_notes
        rules = [rule for rule, values in chosen.items() if values[name] is None]
        if rules:
            notes.append(f"{name}: no threshold by {', '.join(rules)}: the {n_tune} exams "
                         "that choose have no positive (or no negative) exam of it")
    return notes


# --- What goes back --------------------------------------------------------------------
def rows_digest(data, rows):
    """SHA-256 of the rows' names or exam ids and labels: which exams, with which labels."""
    digest = hashlib.sha256()
    if data.names is not None:
        digest.update("\n".join(data.names[row] for row in rows).encode())
    elif data.table.exam_ids is not None:
        digest.update(np.asarray(data.table.exam_ids)[rows].astype(np.int64).tobytes())
    else:
        digest.update(np.asarray(rows, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(data.labels[rows], dtype=np.float32).tobytes())
    return digest.hexdigest()


def threshold_record(result, rule, data, inputs, model_path):
    """The thresholds of ``rule`` with their measures and provenance, as written back.

    Parameters
    ----------
    result : Validation
    rule : str
        One of the rules of ``result``.
    data : LabelledECGs
    inputs : sequence of str
        The ECG inputs as given (files or folders).
    model_path : str
        The model file validated.

    Returns
    -------
    dict
        ``thresholds`` (class -> float or None), ``measures`` (class -> the measuring
        exams' precision, recall, specificity, F1 and positives, or None), ``calibration``
        and ``provenance``: what chose them, on which exams, measured on which.
    """
    text = rule_text(rule)
    table = result.rules[text].set_index("class")
    thresholds = result.rule_thresholds[text]
    measures = {}
    for name in result.classes:
        row = table.loc[name]
        measures[name] = None if thresholds[name] is None else {
            "precision": row["precision"], "recall": row["recall"],
            "specificity": row["specificity"], "f1": row["f1"],
            "positives": int(row["positives"])}
    split = result.split
    provenance = {
        "tool": "validate.py", "project": {"name": PROJECT, "version": __version__},
        "created": utc_now(), "rule": text,
        "model": {"path": os.fspath(model_path), "fingerprint": fingerprint(model_path)},
        "data": [_input_record(path) for path in inputs],
        "labels": data.source,
        "chosen_on": {"exams": len(split.tune), "split": split.tune_text,
                      "tune_split": split.spec, "rows_sha256": rows_digest(data, split.tune)},
        "measured_on": {"exams": len(split.measure), "split": split.measure_text,
                        "rows_sha256": rows_digest(data, split.measure)},
        "same_exams": split.same,
    }
    if result.calibration:
        provenance["calibration"] = f"{result.calibration['method']}, fitted on chosen_on"
    return {"thresholds": thresholds, "measures": measures,
            "calibration": result.calibration, "provenance": provenance}


def _input_record(path):
    path = os.fspath(path)
    if os.path.isfile(path):
        return {"path": path, "bytes": os.path.getsize(path), "fingerprint": fingerprint(path)}
    return {"path": path, "fingerprint": None}


def destination(model_argument, given):
    """Where ``--write-thresholds`` writes: ``("json", path)`` or ``("onnx", path)``.

    Parameters
    ----------
    model_argument : str
        MODEL as given: a run folder, an ``.onnx`` export or a model file.
    given : str or None
        ``--write-thresholds FILE.json``; None: into MODEL itself.
    """
    if given:
        if not str(given).endswith(".json"):
            raise ECGInputError(f"--write-thresholds {given}: name a .json file (or give no "
                                "value to write into the run folder or ONNX export)")
        return "json", os.fspath(given)
    if os.path.isdir(model_argument):
        return "json", run_file(model_argument, RUN_THRESHOLDS_NAME)
    if str(model_argument).lower().endswith(".onnx"):
        return "onnx", os.fspath(model_argument)
    raise ECGInputError(f"--write-thresholds: {model_argument} is a model file, which "
                        "predict.py reads no thresholds from; give --write-thresholds "
                        "FILE.json (then predict.py --thresholds FILE.json), or validate the "
                        "run folder or ONNX export")


def write_back(where, record):
    """Write ``record`` (:func:`threshold_record`) to ``where`` (:func:`destination`).

    A JSON file is ``ecgcode.model.thresholds.write_chosen_thresholds``'s (keeping the file it
    replaces); an ONNX export gets the metadata predict.py reads
    (``ecgcode.model.export.update_onnx_metadata``).
    """
    kind, path = where
    if kind == "json":
        write_chosen_thresholds(path, record)
        return path
    update_onnx_metadata(path, {"thresholds": record["thresholds"],
                                "calibration": record["calibration"],
                                "thresholds_provenance": record["provenance"]})
    return path
