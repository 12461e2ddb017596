"""Tests of ecgcode/inference/plotting.py and ecgcode/cli/plot.py: sheet geometry, true mm
scale, file formats, command line."""

import h5py
import numpy as np
import pytest
from conftest import synthetic_tracings, write_hdf5

from ecgcode.cli import plot as plot_cli
from ecgcode.common import CLASSES, LEADS, SAMPLING_RATE, UNITS_PER_MV, ECGInputError, run_cli
from ecgcode.inference import plotting as ecg_plot

PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"


def lines_by_gid(figure):
    return {line.get_gid(): line for line in figure.axes[0].get_lines() if line.get_gid()}


def segments_baseline(rhythm):
    return next(s["baseline"] for s in ecg_plot.sheet_segments() if s["rhythm"] == rhythm)


def test_layout_is_the_standard_3x4_plus_rhythm_strip():
    segments = ecg_plot.sheet_segments()
    assert [s["lead"] for s in segments] == [
        "DI", "aVR", "V1", "V4", "DII", "aVL", "V2", "V5", "DIII", "aVF", "V3", "V6", "DII",
    ]
    block, rhythm = segments[:12], segments[12]
    assert sorted({s["t0"] for s in block}) == [0.0, 2.5, 5.0, 7.5]
    assert all(s["t1"] - s["t0"] == 2.5 for s in block)
    assert (rhythm["t0"], rhythm["t1"]) == (0.0, 10.0)
    assert len({s["baseline"] for s in segments}) == 4  # 3 block rows + rhythm strip
    assert all(s["baseline"] % 5 == 0 for s in segments)  # baselines on bold grid lines
    assert [ecg_plot.display_name(lead) for lead in ("DI", "DII", "DIII", "aVR")] == [
        "I", "II", "III", "aVR",
    ]


def test_traces_have_paper_scale_25mm_per_s_and_10mm_per_mv():
    tracing = synthetic_tracings(1, seed=3)[0]  # (4096, 12) at UNITS_PER_MV
    figure = ecg_plot.draw_ecg_sheet(tracing)
    start, stop = ecg_plot.sheet_window(len(tracing))
    assert (start, stop) == (48, 4048)  # the central 10 s
    v1 = lines_by_gid(figure)["lead-V1-5"]
    segment = next(s for s in ecg_plot.sheet_segments() if s["lead"] == "V1")
    first = start + int(5.0 * SAMPLING_RATE)
    mm_per_unit = 10.0 / UNITS_PER_MV  # 10 mm per mV: 1 unit = 0.5 mV = 5 mm
    expected_mm = tracing[first : first + 1000, LEADS.index("V1")] * mm_per_unit
    np.testing.assert_allclose(v1.get_ydata(), segment["baseline"] + expected_mm, atol=1e-4)
    x = np.asarray(v1.get_xdata())
    np.testing.assert_allclose(np.diff(x), 25.0 / SAMPLING_RATE)  # 25 mm/s
    assert x[0] == segment["x0"]
    rhythm = lines_by_gid(figure)["rhythm-DII-0"]
    np.testing.assert_allclose(rhythm.get_ydata()[-1] - segments_baseline(rhythm=True),
                               tracing[stop - 1, LEADS.index("DII")] * mm_per_unit, atol=1e-4)
    assert len(rhythm.get_xdata()) == 4000  # the full 10 s
    assert len(lines_by_gid(figure)) == 13


def test_figure_is_sized_in_true_millimetres():
    figure = ecg_plot.draw_ecg_sheet(synthetic_tracings(1)[0])
    axes = figure.axes[0]
    width_mm = axes.get_position().width * figure.get_figwidth() * 25.4
    height_mm = axes.get_position().height * figure.get_figheight() * 25.4
    assert width_mm == pytest.approx(np.ptp(axes.get_xlim()))
    assert height_mm == pytest.approx(np.ptp(axes.get_ylim()))


def test_title_marks_probabilities_above_threshold():
    thresholds = dict.fromkeys(CLASSES, 0.5)
    thresholds["ST"] = None
    text = ecg_plot.format_probabilities([0.9, 0.1, 0.5, 0.51, 0.0, 0.99], thresholds)
    assert "1dAVb 0.900*" in text and "RBBB 0.100 " in text and "LBBB 0.500 " in text
    assert "SB 0.510*" in text and "ST 0.990" in text and "ST 0.990*" not in text
    assert "*" not in ecg_plot.format_probabilities([0.9] * 6)


@pytest.mark.parametrize("name, magic", [("sheet.png", PNG_MAGIC), ("sheet.pdf", PDF_MAGIC)])
def test_save_png_and_pdf(tmp_path, name, magic):
    path = tmp_path / name
    ecg_plot.save_ecg_sheet(synthetic_tracings(1)[0], path, title="t", probabilities=[0.5] * 6)
    assert path.read_bytes()[: len(magic)] == magic


def test_unsupported_format_keeps_earlier_file(tmp_path):
    with pytest.raises(ECGInputError, match=".png or .pdf"):
        ecg_plot.save_ecg_sheet(synthetic_tracings(1)[0], tmp_path / "sheet.jpg")
    assert list(tmp_path.iterdir()) == []


def test_command_line_with_predictions(tmp_path, capsys):
    path = write_hdf5(tmp_path / "exams.hdf5", 3)
    predictions = tmp_path / "p.npy"
    np.save(predictions, np.linspace(0, 1, 18, dtype=np.float32).reshape(3, 6))
    out = tmp_path / "exam2.png"
    argv = [path, "2", "-o", str(out), "--predictions", str(predictions)]
    assert run_cli(plot_cli.main, argv) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    np.testing.assert_allclose(ecg_plot.read_prediction_row(str(predictions), 2),
                               np.linspace(0, 1, 18)[12:], atol=1e-6)


@pytest.mark.parametrize("index, fragment", [("3", "out of range"), ("0", "no dataset")])
def test_command_line_bad_input_exits_2(tmp_path, capsys, index, fragment):
    path = write_hdf5(tmp_path / "exams.hdf5", 3)
    argv = [path, index, "-o", str(tmp_path / "x.png")]
    if fragment == "no dataset":
        argv += ["--dataset-name", "signals"]
    with pytest.raises(SystemExit) as stop:
        run_cli(plot_cli.main, argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "exams.hdf5" in err
    assert not (tmp_path / "x.png").exists()


def test_several_exams_are_read_with_one_open(tmp_path, monkeypatch):
    path = write_hdf5(tmp_path / "exams.hdf5", 4)
    opened = []
    real_open = ecg_plot.open_hdf5
    monkeypatch.setattr(ecg_plot, "open_hdf5", lambda p: opened.append(p) or real_open(p))
    exams = ecg_plot.read_exams(path, [3, 0, 3])
    assert opened == [path]
    np.testing.assert_array_equal(exams[0][0], exams[2][0])
    np.testing.assert_array_equal(exams[1][0], ecg_plot.read_exam(path, 0)[0])
    with pytest.raises(ECGInputError, match="not found"):
        ecg_plot.read_exams(str(tmp_path / "nope.hdf5"), [0])


@pytest.mark.parametrize("attrs, argument", [({"units": "1e-4 V", "unit_volts": 1e-4}, None),
                                             ({}, 10.0)])
def test_legacy_and_stated_scales_are_drawn_in_true_mv(tmp_path, attrs, argument):
    """A legacy 1e-4 V file (10 units per mV), or one stated to be at 10 with
    --units-per-mv, is read at UNITS_PER_MV: the sheet shows the same millivolts."""
    legacy = 10.0 / UNITS_PER_MV  # the same millivolts at 10 units per mV
    path = write_hdf5(tmp_path / "legacy.hdf5", 2, data=synthetic_tracings(2) * legacy)
    with h5py.File(path, "a") as handle:
        handle["tracings"].attrs.update(attrs)
    tracing, exam_id = ecg_plot.read_exam(path, 1, units_per_mv=argument)
    np.testing.assert_allclose(tracing, synthetic_tracings(2)[1], rtol=1e-6, atol=1e-6)
    assert exam_id == 1001
