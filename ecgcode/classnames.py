"""Class names: which label columns a model learns, and how the names travel with it.

A model of this project may learn any set of classes (the paper's six by default). The
names are stored inside every model file the project writes, so that predictions and
evaluations can name their columns without guessing:

* ``.h5`` / ``.hdf5``: a root attribute ``classes`` (a list of strings);
* ``.keras``: a zip entry ``ecgcode.json`` holding ``{"classes": [...]}``, which Keras
  itself ignores.

Plain ``keras.models.load_model`` (Keras 3 or tf.keras 2.x) loads both files unchanged.
No TensorFlow or Keras is imported here.
"""

import json
import os
import re
import zipfile

import h5py

from ecgcode.common import CLASSES, ECGInputError

KERAS_ENTRY = "ecgcode.json"
"""Name of the zip entry that carries the class names inside a ``.keras`` file."""

H5_ATTRIBUTE = "classes"
"""Root attribute that carries the class names in an ``.h5`` model file."""


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


def write_model_classes(path, classes):
    """Store ``classes`` inside the model file ``path`` (``.keras`` or ``.h5``/``.hdf5``)."""
    path = os.fspath(path)
    names = [str(name) for name in classes]
    if _is_keras_zip(path):
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(KERAS_ENTRY, json.dumps({"classes": names}))
        return

    with h5py.File(path, "a") as handle:
        handle.attrs[H5_ATTRIBUTE] = names


def read_model_classes(path):
    """The class names stored in a model file, or None when it holds none.

    Reads ``.keras`` zips (entry ``ecgcode.json``) and HDF5 files (root attribute
    ``classes``); unreadable files give None (loading the model reports them).
    """
    path = os.fspath(path)
    if _is_keras_zip(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if KERAS_ENTRY not in archive.namelist():
                    return None
                names = json.loads(archive.read(KERAS_ENTRY)).get("classes")
        except (OSError, zipfile.BadZipFile, ValueError, AttributeError):
            return None
        return tuple(str(name) for name in names) if names else None
    try:

        with h5py.File(path, "r") as handle:
            names = handle.attrs.get(H5_ATTRIBUTE)
    except OSError:
        return None
    if names is None:
        return None
    return tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)


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
    for source, names in (("--classes", given), (path, read_model_classes(path))):
        if names is not None:
            return output_names(n_outputs, names, source), None
    names = default_classes(n_outputs)
    if is_paper_set(names):
        return names, None
    return names, (f"{path}: the model stores no class names; its {n_outputs} outputs are "
                   f"called {names[0]}..{names[-1]} (name them with --classes A,B,...)")


def _is_keras_zip(path):
    return path.endswith(".keras") or (os.path.isfile(path) and zipfile.is_zipfile(path))
