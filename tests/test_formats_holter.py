"""EDF, ISHNE Holter and MFER recordings (via ecgdatakit) into the data contract.

The files are written here byte by byte (tests/holter_files.py), so the physical signal is
known exactly: ``counts x 2.5 uV``, i.e. ``counts x 0.0025 x UNITS_PER_MV`` tracing units
(``counts / 200`` at the original study's 2 units per mV).
"""

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import run_main
from holter_files import TWELVE, WRITERS, twelve_lead_counts, write_edf, write_ishne
from scipy.signal import resample_poly

from ecgcode.common import N_SAMPLES, UNITS_PER_MV
from ecgcode.data.formats import convert as ecg_convert

NAMES = list(WRITERS)
UNITS_PER_COUNT = 2.5e-3 * UNITS_PER_MV
"""Tracing units per count of the written files (2.5 uV per count)."""


def convert_cli(argv, capsys):
    from ecgcode.cli import datasets

    return run_main(datasets.main, ["convert", *map(str, argv)], capsys)


def records_of(path):
    with h5py.File(path) as file:
        return file["tracings"][()], {key: value[()] for key, value in file["records"].items()}


@pytest.mark.parametrize("name", NAMES)
def test_each_format_converts_to_the_written_signal(name, tmp_path, capsys):
    writer, extension = WRITERS[name]
    counts = twelve_lead_counts(12000)  # 30 s at 400 Hz: centre-cropped to 10.24 s
    source = writer(tmp_path / f"holter{extension}", counts, TWELVE)
    out = tmp_path / "out.hdf5"
    status, _, err = convert_cli([source, "-o", out, "-q"], capsys)
    assert status == 0, err
    tracings, records = records_of(out)
    start = (12000 - N_SAMPLES) // 2
    np.testing.assert_allclose(tracings[0], counts[start:start + N_SAMPLES] * UNITS_PER_COUNT,
                               rtol=1e-6)
    assert records["format"][0].decode() == name
    assert records["lead_names"][0].decode() == ",".join(TWELVE)
    assert records["sampling_rate"][0] == 400 and records["n_samples"][0] == 12000


@pytest.mark.parametrize("name", NAMES)
def test_each_format_gives_windows(name, tmp_path, capsys):
    writer, extension = WRITERS[name]
    counts = twelve_lead_counts(12000)
    source = writer(tmp_path / f"holter{extension}", counts, TWELVE)
    out = tmp_path / "out.hdf5"
    status, _, err = convert_cli([source, "--windows", "-o", out, "-q"], capsys)
    assert status == 0, err
    tracings, records = records_of(out)
    assert records["window"].tolist() == [0, 1, 2]
    for window, start in enumerate([0, 4096, 12000 - N_SAMPLES]):
        np.testing.assert_allclose(tracings[window],
                                   counts[start:start + N_SAMPLES] * UNITS_PER_COUNT, rtol=1e-6)


def test_a_holter_rate_is_resampled(tmp_path, capsys):
    counts = twelve_lead_counts(4000)  # 20 s at 200 Hz
    source = write_ishne(tmp_path / "holter.ecg", counts, TWELVE, fs=200)
    out = tmp_path / "out.hdf5"
    assert convert_cli([source, "--windows", "-o", out, "-q"], capsys)[0] == 0
    tracings, records = records_of(out)
    assert records["sampling_rate"].tolist() == [200, 200]
    expected = resample_poly(counts * UNITS_PER_COUNT, 2, 1, axis=0)  # (8000, 12)
    np.testing.assert_allclose(tracings[1], expected[-N_SAMPLES:], rtol=1e-5, atol=1e-4)


def test_edf_in_millivolts_and_recognised_by_content(tmp_path, capsys):
    counts = twelve_lead_counts(4000)
    source = write_edf(tmp_path / "recording.bin", counts, [f"ECG {n}" for n in TWELVE],
                       dim="mV")
    out = tmp_path / "out.hdf5"
    status, _, err = convert_cli([source, "-o", out, "-q"], capsys)
    assert status == 0, err
    tracings, records = records_of(out)
    np.testing.assert_allclose(tracings[0, 48:48 + 4000], counts * UNITS_PER_COUNT, rtol=1e-5,
                               atol=1e-5)
    assert records["units"][0].decode() == "mV"


@pytest.mark.parametrize(("leads", "message"), [
    ([1, 6, 10], "cannot derive limb leads DI, DIII, aVR, aVL, aVF from DII alone"),
    ([6, 10], "missing leads DI, DII, DIII, aVR, aVL, aVF, V2, V3, V4, V6"),
])
@pytest.mark.parametrize("name", NAMES)
def test_a_holter_of_two_or_three_leads_gets_the_missing_leads_error(name, leads, message,
                                                                     tmp_path, capsys):
    writer, extension = WRITERS[name]
    source = writer(tmp_path / f"holter{extension}", twelve_lead_counts(4000)[:, leads],
                    [TWELVE[lead] for lead in leads])
    status, _, err = convert_cli([source, "-o", tmp_path / "out.hdf5", "-q"], capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {source}: {message}") and "fix:" in err


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:10] + bytes([data[10] ^ 1]) + data[11:], "checksum mismatch"),
    (lambda data: data[:206] + bytes(24) + data[230:], "no amplitude units"),
])
def test_ishne_damage_gives_one_line(tmp_path, capsys, damage, message):
    source = write_ishne(tmp_path / "holter.ecg", twelve_lead_counts(4000), TWELVE,
                         checksum=message != "no amplitude units")
    source.write_bytes(damage(source.read_bytes()))
    status, _, err = convert_cli([source, "-o", tmp_path / "out.hdf5", "-q"], capsys)
    errors = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert status == 2 and len(errors) == 1 and message in errors[0], err
    assert errors[0].startswith(f"error: {source}: ") and "fix:" in errors[0]


def test_bdf_is_refused_with_one_line(tmp_path, capsys):
    source = write_edf(tmp_path / "rec.bdf", twelve_lead_counts(800), TWELVE)
    data = source.read_bytes()
    source.write_bytes(b"\xffBIOSEMI" + data[8:])
    status, _, err = convert_cli([source, "-o", tmp_path / "out.hdf5", "-q"], capsys)
    assert status == 2 and err.count("\n") == 1 and "BDF" in err, err


def test_predict_windows_of_an_edf_recording(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    from ecgcode.cli import predict

    keras.utils.set_random_seed(0)
    signal = keras.Input(shape=(N_SAMPLES, 12))  # (batch, 4096, 12)
    x = keras.layers.GlobalAveragePooling1D()(signal)  # (batch, 12)
    model = keras.Model(signal, keras.layers.Dense(6, activation="sigmoid")(x))
    model_path = tmp_path / "tiny.keras"
    model.save(model_path)
    counts = twelve_lead_counts(12000)
    source = write_edf(tmp_path / "holter.edf", counts, TWELVE)
    out = tmp_path / "scores.csv"
    status, _, err = run_main(predict.main, [str(source), str(model_path), "--windows",
                                             "--output-file", str(out), "--quiet"], capsys)
    assert status == 0, err
    table = pd.read_csv(out)
    windows = ecg_convert.to_windows(counts * 2.5e-3, 400, TWELVE, "mV")[0]  # (3, 4096, 12)
    np.testing.assert_allclose(table.iloc[:, 4:10], model.predict(windows, verbose=0),
                               rtol=1e-4, atol=1e-6)
    assert table["record"].tolist() == ["holter.edf"] * 3


@pytest.mark.parametrize("name", NAMES)
def test_a_truncated_file_is_named_by_its_extension(name, tmp_path, capsys):
    writer, extension = WRITERS[name]
    source = writer(tmp_path / f"holter{extension}", twelve_lead_counts(4000), TWELVE)
    source.write_bytes(source.read_bytes()[:5])
    status, _, err = convert_cli([source, "-o", tmp_path / "out.hdf5", "-q"], capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {source}: not a readable {name} file") and "fix:" in err
