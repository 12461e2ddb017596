"""What a model file says about itself: its class names, amplitude scale and provenance.

A model of this project may learn any set of classes (the paper's six by default). The
names are stored inside every model file the project writes, so that predictions and
evaluations can name their columns without guessing, and so are the amplitude scale of
the data it learned from (tracing units per mV, ``ecgcode.data.scale``) and the record of
what the model was trained on (its *provenance*, built by ``ecgcode.model.provenance``):

* ``.h5`` / ``.hdf5``: root attributes ``classes`` (a list of strings), ``units_per_mv``
  (a float) and ``provenance`` (a JSON string);
* ``.keras``: a zip entry ``ecgcode.json`` holding ``{"classes": [...], "units_per_mv":
  2.0, "provenance": {...}}``, which Keras itself ignores.

Plain ``keras.models.load_model`` (Keras 3 or tf.keras 2.x) loads both files unchanged.
Files written elsewhere (the original study's weights) hold none of them: reading gives
None. No TensorFlow or Keras is imported here.
"""

import datetime
import json
import os
import re
import zipfile

import h5py

from ecgcode.common import CLASSES, UNITS_PER_MV, ECGInputError
from ecgcode.data.scale import SCALE_ATTRIBUTE, model_scale

KERAS_ENTRY = "ecgcode.json"
"""Name of the zip entry that carries the class names and provenance in a ``.keras`` file."""

H5_ATTRIBUTE = "classes"
"""Root attribute that carries the class names in an ``.h5`` model file."""

H5_PROVENANCE_ATTRIBUTE = "provenance"
"""Root attribute that carries the provenance (a JSON string) in an ``.h5`` model file."""


def default_classes(n_outputs):
    """Names for a model without stored names: the paper's six, else ``class_0..``."""
    if n_outputs == len(CLASSES):
        return tuple(CLASSES)
    return tuple(f"class_{k}" for k in range(n_outputs))


def output_names(n_outputs, classes=None, source=None):
    """One name per output: ``classes`` checked against ``n_outputs``, else the defaults.

    Parameters
    ----------
    n_outputs : int
    classes : sequence of str, optional
    source : str, optional
        Where ``classes`` came from (an option, a file), named in the error.

    Returns
    -------
    tuple of str
    """
    if classes is None:
        return default_classes(n_outputs)
    classes = tuple(str(name) for name in classes)
    if len(classes) != n_outputs:
        prefix = f"{source}: " if source else ""
        raise ECGInputError(f"{prefix}{len(classes)} class names ({', '.join(classes)}) for a "
                            f"model with {n_outputs} outputs; give one name per output")
    return classes


def is_paper_set(classes):
    """True when ``classes`` are the paper's six, in the paper's order."""
    return tuple(classes) == tuple(CLASSES)


def parse_classes(text, option="--classes"):
    """A comma-separated list of class names -> tuple, refusing empty or repeated names.

    Parameters
    ----------
    text : str
        e.g. ``"NORM,MI,STTC,CD,HYP"``.
    option : str
        The option named in the error message.

    Returns
    -------
    tuple of str
    """
    names = tuple(name.strip() for name in str(text).split(","))
    if not names or any(not name for name in names):
        raise ECGInputError(f"{option} {text!r}: give comma-separated class names, e.g. "
                            f"{option} NORM,MI,STTC")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ECGInputError(f"{option} {text!r}: class {repeated[0]!r} is named twice")
    bad = [name for name in names if not re.fullmatch(r"[^\s,]+", name)]
    if bad:
        raise ECGInputError(f"{option} {text!r}: class name {bad[0]!r} has white space")
    return names


def write_model_info(path, classes, provenance=None, units_per_mv=None):
    """Store ``classes``, ``units_per_mv`` (and ``provenance``) inside the model file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.keras`` zip or an ``.h5``/``.hdf5`` model file, written just before.
    classes : sequence of str
        One name per output.
    provenance : dict, optional
        JSON-serialisable record of what the model was trained on
        (``ecgcode.model.provenance.training_provenance``); stored with its ``created`` set to
        the current UTC time, the moment this file is written.
    units_per_mv : float, optional
        The amplitude scale of the data the model learned from (and expects); default the
        provenance's ``units_per_mv``, else ``UNITS_PER_MV``.
    """
    path = os.fspath(path)
    if units_per_mv is None:
        units_per_mv = (provenance or {}).get(SCALE_ATTRIBUTE, UNITS_PER_MV)
    info = {"classes": [str(name) for name in classes], SCALE_ATTRIBUTE: float(units_per_mv)}
    if provenance is not None:
        info["provenance"] = dict(provenance, created=utc_now())
    if _is_keras_zip(path):
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(KERAS_ENTRY, json.dumps(info))
        return
    with h5py.File(path, "a") as handle:
        handle.attrs[H5_ATTRIBUTE] = info["classes"]
        handle.attrs[SCALE_ATTRIBUTE] = info[SCALE_ATTRIBUTE]
        if provenance is not None:
            handle.attrs[H5_PROVENANCE_ATTRIBUTE] = json.dumps(info["provenance"])


def read_model_classes(path):
    """The class names stored in a model file, or None when it holds none.

    Reads ``.keras`` zips (entry ``ecgcode.json``) and HDF5 files (root attribute
    ``classes``); unreadable files give None (loading the model reports them).
    """
    path = os.fspath(path)
    if _is_keras_zip(path):
        names = (_keras_entry(path) or {}).get("classes")
        return tuple(str(name) for name in names) if names else None
    names = _h5_attribute(path, H5_ATTRIBUTE)
    if names is None:
        return None
    return tuple(_as_str(name) for name in names)


def read_model_scale(path, given=None):
    """The amplitude scale a model file expects, by the rules of ``ecgcode.data.scale``.

    Parameters
    ----------
    path : str or os.PathLike
    given : float, optional
        ``--model-units-per-mv``: the scale of a model that records none.

    Returns
    -------
    (ecgcode.data.scale.Scale, str or None)
        Recorded; else ``given``; else 10 units per mV for a model of an earlier version of
        this project (class names but no scale); else the original scale (the published
        weights). The note says when ``given`` was ignored.
    """
    path = os.fspath(path)
    if _is_keras_zip(path):
        stored = (_keras_entry(path) or {}).get(SCALE_ATTRIBUTE)
    else:
        stored = _h5_attribute(path, SCALE_ATTRIBUTE)
    stored = None if stored is None else float(stored)
    return model_scale(path, stored, read_model_classes(path) is not None, given)


def read_model_provenance(path):
    """The provenance stored in a model file (a dict), or None when it holds none.

    Files of the original study, of other projects or from before provenance was recorded
    give None, as do unreadable files.
    """
    path = os.fspath(path)
    if _is_keras_zip(path):
        record = (_keras_entry(path) or {}).get("provenance")
    else:
        text = _h5_attribute(path, H5_PROVENANCE_ATTRIBUTE)
        try:
            record = None if text is None else json.loads(_as_str(text))
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


def _keras_entry(path):
    """The JSON object of a ``.keras`` file's ``ecgcode.json`` entry, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            if KERAS_ENTRY not in archive.namelist():
                return None
            info = json.loads(archive.read(KERAS_ENTRY))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _h5_attribute(path, name):
    """A root attribute of an HDF5 file, or None (absent, or the file unreadable)."""
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get(name)
    except OSError:
        return None


def utc_now():
    """The current UTC time, ISO 8601 to the second (``2026-01-31T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _as_str(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def model_classes(path, n_outputs, given=None):
    """Class names of a model: ``given``, else stored ones, else the defaults (with a warning).

    Parameters
    ----------
    path : str
        The model file (for messages and the stored names).
    n_outputs : int
        The model's number of outputs.
    given : sequence of str, optional
        Names from the command line (``--classes``); they override stored names.

    Returns
    -------
    (tuple of str, str or None)
        The names, and a warning to print (names guessed), or None.
    """
    return choose_model_classes(path, n_outputs, given, read_model_classes(path))


def choose_model_classes(path, n_outputs, given=None, stored=None):
    """The rule of :func:`model_classes`, given the names stored with the model.

    ``given`` (``--classes``) wins over ``stored`` (the model file's names, or an export's
    metadata); without either the defaults are used, with a warning unless they are the
    paper's six.

    Returns
    -------
    (tuple of str, str or None)
        The names, and a warning to print (names guessed), or None.
    """
    for source, names in (("--classes", given), (path, stored)):
        if names is not None:
            return output_names(n_outputs, names, source), None
    names = default_classes(n_outputs)
    if is_paper_set(names):
        return names, None
    return names, (f"{path}: the model stores no class names; its {n_outputs} outputs are "
                   f"called {names[0]}..{names[-1]} (name them with --classes A,B,...)")


def _is_keras_zip(path):
    return path.endswith(".keras") or (os.path.isfile(path) and zipfile.is_zipfile(path))
