"""predict.py on clinical exports and challenge records: converted on the fly, one row each."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import write_hdf5

from ecgcode.cli import predict
from ecgcode.common import CLASSES, run_cli
from ecgcode.data.formats import convert as ecg_convert

keras = pytest.importorskip("keras")

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "ecg-samples"
FORMATS = SAMPLES / "formats"
pytestmark = [
    pytest.mark.skipif(not FORMATS.is_dir(), reason=f"the example ECG files are not in {SAMPLES}"),
    pytest.mark.filterwarnings("ignore:The inplace keyword"),  # inside wfdb
]
INPUTS = [
    FORMATS / "ge-muse" / "guangxi_teaching_sinus_rhythm.xml",
    FORMATS / "hl7-aecg" / "Example_aECG.xml",
    FORMATS / "scp-ecg" / "Example.scp",
    FORMATS / "dicom" / "waveform_ecg.dcm",
    FORMATS / "philips" / "2020-5-18_15-48-11.xml",
    FORMATS / "cpsc2018" / "A1983.mat",
    SAMPLES / "cinc2021" / "G12EC" / "E00001.hea",
]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small functional model with input-dependent outputs, saved as .keras."""
    keras.utils.set_random_seed(0)
    signal = keras.Input(shape=(4096, 12))  # (batch, 4096, 12)
    x = keras.layers.Flatten()(keras.layers.Conv1D(4, 16, strides=64)(signal))  # (batch, 256)
    model = keras.Model(signal, keras.layers.Dense(6, activation="sigmoid")(x))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return str(path), model


def run_predict(argv, capsys):
    try:
        status = run_cli(predict.main, [str(arg) for arg in argv])
    except SystemExit as stop:
        status = stop.code
    return status, capsys.readouterr().err


def test_every_format_predicts_one_named_row_like_its_conversion(model_path, tmp_path, capsys,
                                                                 monkeypatch):
    path, model = model_path
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    out = tmp_path / "out.csv"
    status, err = run_predict([*INPUTS, path, "--output-file", out, "--quiet"], capsys)
    assert status == 0, err
    frame = pd.read_csv(out)
    assert list(frame["record"]) == ["guangxi_teaching_sinus_rhythm.xml", "Example_aECG.xml",
                                     "Example.scp", "waveform_ecg.dcm",
                                     "2020-5-18_15-48-11.xml", "A1983.mat", "E00001"]
    converted = tmp_path / "converted.hdf5"
    ecg_convert.convert(INPUTS, converted, progress=False)
    with h5py.File(converted) as file:
        expected = model.predict(file["tracings"][()], verbose=0)  # (7, 6)
    np.testing.assert_allclose(frame[list(CLASSES)].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not list(temporary.iterdir())  # the converted temporary files are gone


def test_hdf5_and_converted_inputs_keep_the_input_order(model_path, tmp_path, capsys):
    path, _ = model_path
    exams = tmp_path / "exams.hdf5"
    write_hdf5(exams, 2)
    out = tmp_path / "out.csv"
    status, err = run_predict([INPUTS[0], exams, INPUTS[3], path, "--output-file", out,
                               "--quiet"], capsys)
    assert status == 0, err
    assert list(pd.read_csv(out)["record"]) == ["guangxi_teaching_sinus_rhythm.xml",
                                                "exams.hdf5[0]", "exams.hdf5[1]",
                                                "waveform_ecg.dcm"]


def test_hdf5_only_output_is_unchanged(model_path, tmp_path, capsys):
    path, _ = model_path
    exams = tmp_path / "exams.hdf5"
    write_hdf5(exams, 2)
    out = tmp_path / "out.csv"
    assert run_predict([exams, path, "--output-file", out, "--quiet"], capsys)[0] == 0
    assert "record" not in pd.read_csv(out).columns


def test_a_bad_recording_gives_the_one_line_error(model_path, tmp_path, capsys):
    bad = tmp_path / "ecg.xml"
    bad.write_bytes(INPUTS[0].read_bytes()[:50000])
    out = tmp_path / "out.csv"
    status, err = run_predict([bad, model_path[0], "--output-file", out, "--quiet"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in err
    assert not out.exists()


def test_csv_recordings_take_the_conversion_options(model_path, tmp_path, capsys):
    rng = np.random.default_rng(0)
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    recording = tmp_path / "ecg.csv"
    pd.DataFrame(rng.normal(0, 0.3, (5000, 8)), columns=names).to_csv(recording, index=False)
    out = tmp_path / "out.csv"
    status, err = run_predict([recording, model_path[0], "--output-file", out, "--quiet"], capsys)
    assert status == 2 and "pass --fs" in err
    status, err = run_predict([recording, model_path[0], "--output-file", out, "--quiet",
                               "--fs", "500", "--units", "mV"], capsys)
    assert status == 0, err
    assert list(pd.read_csv(out)["record"]) == ["ecg.csv"]


def test_plot_of_a_converted_row_is_titled_by_its_file(model_path, tmp_path, capsys,
                                                       monkeypatch):
    from ecgcode.inference import plotting
    titles = []
    monkeypatch.setattr(plotting, "save_ecg_sheet",
                        lambda tracing, path, title, **kwargs: titles.append(title))
    out = tmp_path / "out.csv"
    status, err = run_predict([INPUTS[3], model_path[0], "--output-file", out, "--quiet",
                               "--plot", "0"], capsys)
    assert status == 0, err
    assert titles and titles[0].startswith("waveform_ecg.dcm   row 0")
