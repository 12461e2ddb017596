"""Fuzz test: corrupted copies of every input format, fed to convert, inspect and predict.

Each format is one line of ``FORMATS``: a name and a factory that writes a valid sample
into a folder and returns which of its files to corrupt and the ``convert`` arguments.
Every file of every sample is damaged in each way of ``CORRUPTIONS`` (truncated, emptied,
zeroed, random bytes, flipped bytes, broken header), deterministically from a seed. An
HDF5 collection of two files, its second file damaged the same ways, goes to ``inspect``
and ``predict``. The rule: never a traceback, never a partial output; exit 0 with a valid
file, or exit 2 with one ``error:`` line and no output.
"""

import dataclasses
import warnings
import zlib

import keras
import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import synthetic_tracings, write_hdf5
from holter_files import TWELVE, twelve_lead_counts, write_edf, write_ishne, write_mfer

from ecgcode import data as datasets
from ecgcode.cli import datasets as datasets_cli
from ecgcode.cli import predict
from ecgcode.common import CLASSES, UNITS_PER_MV, run_cli

pytestmark = pytest.mark.filterwarnings("ignore")  # wfdb/pandas warnings on broken files

LEADS_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
SEED = 16


@dataclasses.dataclass
class Sample:
    """A valid input written into a folder: the files to corrupt and convert's arguments."""

    targets: list
    convert_args: list


def _signal_mv(n_samples=2000, seed=0):
    """(n_samples, 12) ECG-like signal in mV (limb leads consistent)."""
    return synthetic_tracings(1, seed)[0, :n_samples].astype(np.float64) / UNITS_PER_MV


def wfdb_sample(folder):
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=LEADS_12, p_signal=_signal_mv(),
                fmt=["16"] * 12, write_dir=str(folder))
    return Sample(["rec.hea", "rec.dat"], ["rec.hea"])


def csv_sample(folder):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(_signal_mv(), columns=LEADS_12).to_csv(folder / "ecg.csv", index=False)
    return Sample(["ecg.csv"], ["ecg.csv", "--fs", "400", "--units", "mV"])


def npy_sample(folder):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "ecgs.npy", np.stack([_signal_mv(seed=k) for k in range(3)]))
    return Sample(["ecgs.npy"], ["ecgs.npy", "--fs", "400", "--units", "mV", "--leads",
                                 ",".join(LEADS_12)])


def ptbxl_sample(folder):
    records = folder / "records500" / "00000"
    records.mkdir(parents=True)
    rows = []
    for ecg_id in (1, 2):
        wfdb.wrsamp(f"{ecg_id:05d}_hr", fs=500, units=["mV"] * 12, sig_name=LEADS_12,
                    p_signal=_signal_mv(seed=ecg_id), fmt=["16"] * 12, write_dir=str(records))
        rows.append({"ecg_id": ecg_id, "patient_id": 10 + ecg_id, "strat_fold": ecg_id,
                     "scp_codes": "{'AFIB': 100.0}", "filename_hr": f"records500/00000/"
                     f"{ecg_id:05d}_hr", "filename_lr": f"records100/00000/{ecg_id:05d}_lr"})
    pd.DataFrame(rows).to_csv(folder / "ptbxl_database.csv", index=False)
    return Sample(["ptbxl_database.csv", "records500/00000/00001_hr.hea",
                   "records500/00000/00001_hr.dat"], ["."])


def holter_sample(writer, name):
    """Factory of a 12-lead long-term recording (EDF, ISHNE, MFER) of 12 s at 400 Hz."""
    def factory(folder):
        folder.mkdir(parents=True, exist_ok=True)
        writer(folder / name, twelve_lead_counts(4800), TWELVE)
        return Sample([name], [name])
    return factory


FORMATS = [
    ("wfdb", wfdb_sample),
    ("csv", csv_sample),
    ("npy", npy_sample),
    ("ptbxl", ptbxl_sample),
    ("edf", holter_sample(write_edf, "holter.edf")),
    ("ishne", holter_sample(write_ishne, "holter.ecg")),
    ("mfer", holter_sample(write_mfer, "holter.mwf")),
]
"""Every format ``datasets.py convert`` reads: add a format with one (name, factory) line."""


# --- Corruptions: (bytes, numpy Generator) -> bytes --------------------------------------
def _zeroed(data, rng):
    start = len(data) // 4
    return data[:start] + bytes(len(data) // 4) + data[2 * start:]


def _flipped(data, rng):
    array = np.frombuffer(data, dtype=np.uint8).copy()
    where = rng.choice(len(array), size=max(1, len(array) // 100), replace=False)
    array[where] ^= rng.integers(1, 256, size=len(where), dtype=np.uint8)
    return array.tobytes()


def _broken_header(data, rng):
    """Text: scramble the first line's characters. Binary: random first 64 bytes."""
    if data[:1].isascii() and b"\n" in data[:200] and data[:1] != b"\x93":
        first, rest = data.split(b"\n", 1)
        line = np.frombuffer(first, dtype=np.uint8).copy()
        rng.shuffle(line)
        return line.tobytes()[: max(1, len(line) - 3)] + b"\n" + rest
    return rng.bytes(64) + data[64:]


CORRUPTIONS = {
    "truncated-half": lambda data, rng: data[: len(data) // 2],
    "truncated-7-bytes": lambda data, rng: data[:7],
    "empty": lambda data, rng: b"",
    "zeroed-quarter": _zeroed,
    "random-bytes": lambda data, rng: rng.bytes(len(data)),
    "flipped-1%": _flipped,
    "broken-header": _broken_header,
}


RANDOM_REPEATS = 4
"""Draws of each random corruption (random and flipped bytes): different damage each."""


def corrupt(path, how, draw=0):
    """Damage ``path`` in place, reproducibly (the seed depends on the case and draw only)."""
    rng = np.random.default_rng([SEED, draw, zlib.crc32(f"{path.name}/{how}".encode())])
    path.write_bytes(CORRUPTIONS[how](path.read_bytes(), rng))


def damage_cases():
    """(corruption, draw): each deterministic corruption once, the random ones repeatedly."""
    return [(how, draw) for how in CORRUPTIONS
            for draw in range(RANDOM_REPEATS if how in ("random-bytes", "flipped-1%") else 1)]


# --- Running a tool and judging the outcome ------------------------------------------------
def run(main, argv, capsys):
    """(status, stderr) of ``main`` run as its command line; any other exception fails.

    NumPy's RuntimeWarnings (overflow on damaged values) would print two lines of noise
    on the user's terminal: they fail the test too.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            status = run_cli(main, argv)
        except SystemExit as stop:
            status = stop.code
    noise = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not noise, f"RuntimeWarnings on the terminal: {noise[:3]}"
    return status, capsys.readouterr().err


def judge(status, err, output, valid):
    """Exit 0 with a valid ``output``, or exit 2 with one error line and no output at all."""
    assert "Traceback" not in err
    leftovers = [p.name for p in output.parent.glob(f".{output.name}.*")]
    assert not leftovers, f"temporary files left: {leftovers}"
    if status == 0:
        valid(output)
        return "ok"
    errors = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert status == 2 and len(errors) == 1 and errors[0].startswith("error: "), err
    assert not output.exists(), "exit 2 left an output file"
    return "error"


def valid_hdf5(path):
    collection = datasets.open_collection([path])
    x = datasets.RowReader(collection).read(np.arange(collection.n))  # (n, 4096, 12)
    assert np.isfinite(x).all()


def valid_predictions(n_rows):
    def check(path):
        assert np.load(path).shape == (n_rows, len(CLASSES))
    return check


# --- The tests -----------------------------------------------------------------------------
@pytest.mark.parametrize("how, draw", damage_cases())
@pytest.mark.parametrize("name, factory", FORMATS, ids=[name for name, _ in FORMATS])
def test_convert_survives_corruption(tmp_path, capsys, name, factory, how, draw):
    for target in range(len(factory(tmp_path / "probe").targets)):
        folder = tmp_path / f"target{target}"
        sample = factory(folder)
        corrupt(folder / sample.targets[target], how, draw)
        output = folder / "out.hdf5"
        args = [str(folder / arg) if (folder / arg).exists() else arg
                for arg in sample.convert_args]
        status, err = run(datasets_cli.main, ["convert", *args, "-o", str(output), "-q"], capsys)
        outcome = judge(status, err, output, valid_hdf5)
        if outcome == "ok":  # a file that convert accepted must also pass inspect
            status, err = run(datasets_cli.main, ["inspect", str(output)], capsys)
            assert status == 0 and "Traceback" not in err, (sample.targets[target], err)


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    signal = keras.Input((4096, 12))  # (batch, 4096, 12)
    x = keras.layers.Flatten()(keras.layers.Conv1D(2, 16, strides=128)(signal))  # (batch, 64)
    model = keras.Model(signal, keras.layers.Dense(len(CLASSES), activation="sigmoid")(x))
    path = tmp_path_factory.mktemp("fuzz-model") / "tiny.keras"
    model.save(path)
    return str(path)


@pytest.mark.parametrize("how, draw", damage_cases())
def test_inspect_and_predict_survive_a_corrupted_shard(tmp_path, capsys, tiny_model_path, how,
                                                       draw):
    first = write_hdf5(tmp_path / "part0.hdf5", 3, labels=True)
    second = tmp_path / "part1.hdf5"
    write_hdf5(second, 4, first_id=3, labels=True)
    corrupt(second, how, draw)
    status, err = run(datasets_cli.main, ["inspect", first, str(second)], capsys)
    assert status in (0, 2) and "Traceback" not in err
    if status == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    output = tmp_path / "scores.npy"
    status, err = run(predict.main, [first, str(second), tiny_model_path, "--quiet",
                                     "--output-file", str(output)], capsys)
    judge(status, err, output, valid_predictions(7))
