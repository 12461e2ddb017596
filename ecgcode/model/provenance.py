"""Provenance: what a model was trained on, recorded inside the model files it is saved in.

``train.py`` builds one record per run (:func:`training_provenance`) and every model file
of the run stores it (``ecgcode.model.metadata.write_model_info``); ``model.py export`` copies
it into the exports' metadata. The record, a JSON object::

    {"format": 1,
     "project": {"name": "ecg-code-keras", "version": "0.1.0"},
     "created": "2026-01-31T12:00:00+00:00",      # UTC, when the file was written
     "classes": ["1dAVb", ...],
     "units_per_mv": 2.0,     # the amplitude scale the model learned at (and expects)
     "data": [{"path": ..., "bytes": ..., "exams": ..., "synthetic": true,
               "units_per_mv": 2.0,           # the file's own scale, before rescaling
               "fingerprint": {"method": "sha256", "sha256": "..."}}, ...],
     "labels": null,          # or the label CSV: {"path", "bytes", "fingerprint"}
     "synthetic_only": true,  # every data file was written by ecgcode.data.synthetic.generate
     "initialised_from": null}   # train.py --init: {"path", "fingerprint", "provenance"}

A fingerprint is the SHA-256 of the whole file (``"method": "sha256"``), except for files
over :data:`FULL_HASH_LIMIT` bytes, whose fingerprint is sampled (``"method":
"sha256-sampled"``): the SHA-256 of the file's size and of :data:`SAMPLED_BLOCKS` blocks
of :data:`BLOCK_BYTES` bytes at evenly spaced offsets (the first at the start, the last
ending at the end). A sampled fingerprint tells a changed size or a changed sampled block,
not every changed byte; its method and parameters are recorded with it.

:func:`synthetic_model_warning` is predict.py's warning for a model trained only on
synthetic ECGs that is applied to other ones. Neither TensorFlow nor Keras is imported.
"""

import hashlib
import os

from tqdm import tqdm

from ecgcode import __version__
from ecgcode.data.hdf5 import is_synthetic_file
from ecgcode.data.scale import SCALE_ATTRIBUTE, read_units_per_mv
from ecgcode.model.metadata import read_model_provenance
from ecgcode.model.modelfiles import model_file
from ecgcode.model.runtimes import read_provenance

PROVENANCE_FORMAT = 1
"""Version of the record's layout."""

PROJECT = "ecg-code-keras"
"""The distribution name recorded as the record's ``project``."""

FULL_HASH_LIMIT = 2 * 1024**3
"""Files up to this size (2 GiB) are hashed whole; larger ones are sampled."""

SAMPLED_BLOCKS = 64
BLOCK_BYTES = 1024**2
"""A sampled fingerprint hashes ``SAMPLED_BLOCKS`` blocks of ``BLOCK_BYTES`` bytes (64 MiB)."""

PROGRESS_BYTES = 256 * 1024**2
"""Hashing more than this many bytes in all shows a progress bar (stderr)."""

SYNTHETIC_NOTE = "the demo's model scores F1 0.0-0.5 on real CinC 2021 ECGs"
"""Why a synthetic-only model's outputs on real ECGs mean nothing (docs/predict.md)."""


# --- Fingerprints ----------------------------------------------------------------------
def fingerprint(path, bar=None):
    """The content fingerprint of the file ``path`` (see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
    bar : tqdm.tqdm, optional
        A progress bar in bytes, advanced by the bytes read.

    Returns
    -------
    dict
        ``{"method": "sha256", "sha256": hex}`` or, over :data:`FULL_HASH_LIMIT` bytes,
        ``{"method": "sha256-sampled", "blocks": n, "block_bytes": b, "sha256": hex}``.
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: handle.read(8 * BLOCK_BYTES), b""):
                digest.update(chunk)
                _advance(bar, len(chunk))
            return {"method": "sha256", "sha256": digest.hexdigest()}
        digest.update(f"size {size}\n".encode())
        for offset in sampled_offsets(size, SAMPLED_BLOCKS, BLOCK_BYTES):
            handle.seek(offset)
            block = handle.read(BLOCK_BYTES)
            digest.update(block)
            _advance(bar, len(block))
    return {"method": "sha256-sampled", "blocks": SAMPLED_BLOCKS, "block_bytes": BLOCK_BYTES,
            "sha256": digest.hexdigest()}


def sampled_offsets(size, blocks=SAMPLED_BLOCKS, block_bytes=BLOCK_BYTES):
    """Start offsets of the blocks of a sampled fingerprint: evenly spaced, both ends in."""
    last = max(size - block_bytes, 0)
    return [round(k * last / (blocks - 1)) for k in range(blocks)]


def hashed_bytes(path):
    """How many bytes :func:`fingerprint` reads from ``path``."""
    size = os.path.getsize(path)
    return size if size <= FULL_HASH_LIMIT else min(size, SAMPLED_BLOCKS * BLOCK_BYTES)


def _advance(bar, n):
    if bar is not None:
        bar.update(n)


# --- The record of a training run --------------------------------------------------------
def training_provenance(collection, classes, labels_path=None, init=None, progress=True):
    """The provenance record of a model trained on ``collection``.

    Parameters
    ----------
    collection : ecgcode.data.hdf5.Collection
        The HDF5 tracing files as given to train.py, with their exams (rows), amplitude
        scales and the gains that bring them to the run's scale
        (``ecgcode.data.scale.bring_to_scale``).
    classes : sequence of str
        The classes the model learns, in output order.
    labels_path : str, optional
        The label CSV, when the labels do not come from the files' ``labels`` dataset.
    init : str, optional
        ``--init``: the model file or run folder the weights start from.
    progress : bool
        Show a progress bar when more than :data:`PROGRESS_BYTES` are hashed.

    Returns
    -------
    dict
        The record (module docstring) without ``created``, which is set when a model
        file is written.
    """
    files = [os.fspath(path) for path in collection.paths]
    extra = [labels_path] if labels_path else []
    init_file = model_file(init) if init else None
    extra += [init_file] if init_file and os.path.isfile(init_file) else []
    total = sum(hashed_bytes(path) for path in files + extra)
    with tqdm(total=total, unit="B", unit_scale=True, desc="fingerprints",
              disable=not progress or total <= PROGRESS_BYTES) as bar:
        data = [{"path": path, "bytes": os.path.getsize(path), "exams": int(n),
                 "synthetic": is_synthetic_file(path), "units_per_mv": scale.units_per_mv,
                 "fingerprint": fingerprint(path, bar)}
                for path, n, scale in zip(files, collection.sizes, collection.scales)]
        labels = None
        if labels_path:
            labels = {"path": labels_path, "bytes": os.path.getsize(labels_path),
                      "fingerprint": fingerprint(labels_path, bar)}
        initialised_from = initial_model(init_file, bar) if init_file else None
    return {"format": PROVENANCE_FORMAT, "project": {"name": PROJECT, "version": __version__},
            "classes": [str(name) for name in classes],
            SCALE_ATTRIBUTE: read_units_per_mv(collection), "data": data, "labels": labels,
            "synthetic_only": bool(data) and all(item["synthetic"] for item in data),
            "initialised_from": initialised_from}


def initial_model(path, bar=None):
    """What a fine-tuned model started from: ``{"path", "fingerprint", "provenance"}``.

    ``provenance`` is the starting model's own record, None for a model that holds none
    (the original study's weights); ``fingerprint`` is None when the file is gone (a
    resumed run whose ``--init`` model was moved).
    """
    found = os.path.isfile(path)
    return {"path": path, "fingerprint": fingerprint(path, bar) if found else None,
            "provenance": read_model_provenance(path) if found else None}


# --- Reading it back ---------------------------------------------------------------------
def export_source(path):
    """The record of the model file an export is made from: ``{"file", "sha256"}``.

    ``file`` is the file's name (an export next to it finds it by that name); ``sha256`` its
    :func:`fingerprint`'s digest.
    """
    return {"file": os.path.basename(os.fspath(path)), "sha256": fingerprint(path)["sha256"]}


def model_provenance(path):
    """The provenance stored in a model file or an export, or None when it holds none.

    Parameters
    ----------
    path : str
        A ``.keras``/``.h5``/``.hdf5`` model file or a train.py run folder, or an
        ``.onnx``/``.tflite`` export or a SavedModel folder of ``model.py export``.

    Returns
    -------
    dict or None
    """
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        path = model_file(path)  # a train.py run folder: its best model
    if path.endswith((".onnx", ".tflite")) or os.path.isdir(path):
        return read_provenance(path)
    return read_model_provenance(path)


def synthetic_model_warning(provenance, model_path, input_paths):
    """predict.py's warning when a synthetic-only model meets ECGs that are not synthetic.

    Parameters
    ----------
    provenance : dict or None
        The model's record (:func:`model_provenance`, or a loaded
        ``ecgcode.inference.predictor.Predictor``'s). A model without one (the original study's
        weights) gives no warning.
    model_path : str
        The model file (or export), named in the warning.
    input_paths : sequence of str
        The HDF5 files predicted (converted clinical or WFDB records are never synthetic).

    Returns
    -------
    str or None
        One line (without "warning: "), or None.
    """
    warning = synthetic_only_warning(provenance, model_path)
    if warning is None or all(is_synthetic_file(path) for path in input_paths):
        return None
    return warning


def synthetic_only_warning(provenance, model_path):
    """The warning that a model trained only on synthetic ECGs is not diagnostic, or None.

    :func:`synthetic_model_warning` gives it when such a model meets other ECGs; the
    service (``predict.py --serve``) prints it when it starts.
    """
    if not provenance or not provenance.get("synthetic_only"):
        return None
    trained_on = ", ".join(os.path.basename(str(item.get("path", "?")))
                           for item in provenance.get("data", [])) or "synthetic files"
    return (f"{model_path} was trained only on synthetic ECGs ({trained_on}); its outputs on "
            f"real ECGs are not diagnostic ({SYNTHETIC_NOTE})")


def describe_provenance(provenance):
    """Short lines for ``model.py``'s summary: version, date, classes, data, init."""
    if not provenance:
        return ["Provenance: none stored (e.g. the original study's weights)"]
    project = provenance.get("project", {})
    first = (f"Provenance: trained by {project.get('name', '?')} {project.get('version', '?')}"
             f", written {provenance.get('created', '?')}; classes "
             f"{','.join(provenance.get('classes', []))}")
    lines = [first]
    for item in provenance.get("data", []):
        kind = "synthetic" if item.get("synthetic") else "not synthetic"
        lines.append(f"  data: {item.get('path')} ({item.get('exams')} exams, {kind}, "
                     f"{_short(item.get('fingerprint'))})")
    if provenance.get("labels"):
        labels = provenance["labels"]
        lines.append(f"  labels: {labels.get('path')} ({_short(labels.get('fingerprint'))})")
    start = provenance.get("initialised_from")
    if start:
        lines.append(f"  initialised from: {start.get('path')} "
                     f"({_short(start.get('fingerprint'))}"
                     f"{', with provenance' if start.get('provenance') else ''})")
    if provenance.get("synthetic_only"):
        lines.append(f"  trained only on synthetic ECGs: not a diagnostic model ({SYNTHETIC_NOTE})")
    return lines


def _short(fingerprint_record):
    if not fingerprint_record:
        return "no fingerprint"
    return f"{fingerprint_record.get('method')} {str(fingerprint_record.get('sha256'))[:12]}"
