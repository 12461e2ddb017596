"""Smoke tests of bench.py: every section on tiny files with a tiny model; no timed asserts."""

import math
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from ecgcode.bench import measure as bench_measure
from ecgcode.bench import model_speed as bench_model
from ecgcode.cli import bench
from ecgcode.common import CLASSES, INPUT_SHAPE, UNITS_PER_MV
from ecgcode.model.modelfiles import resolve_model

keras = pytest.importorskip("keras")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory):
    """A 200-tracing benchmark file (enough for 2 training batches of 64 plus validation)."""
    return bench_measure.write_bench_file(str(tmp_path_factory.mktemp("bench") / "b.hdf5"), 200, 64)


def table_lines(text):
    """The rows of the markdown table in ``text`` (header and separator excluded)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == "| section | measurement | value | unit | note |"
    assert lines[1].startswith("|---")
    return lines[2:]


def test_write_bench_file_has_the_data_contract(bench_file):
    with h5py.File(bench_file, "r") as handle:
        assert handle["tracings"].shape == (200,) + INPUT_SHAPE
        assert handle["tracings"].dtype == np.float32
        assert handle["labels"].shape == (200, len(CLASSES))
        assert list(handle["labels"].attrs["classes"]) == list(CLASSES)
        assert handle["exam_id"][-1] == 199
        std_mv = np.std(handle["tracings"][:2]) / UNITS_PER_MV  # at the contract's scale
        assert 0.5 < std_mv < 2, std_mv  # about 1 mV


def test_window_rates_skip_warmup_and_split_windows():
    times = [10.0, 11.0, 13.0, 14.0, 16.0]  # ends of batches 0..4
    assert bench_measure.window_rates(times, 8, warmup=1, window=2) == [8 * 2 / 3, 8 * 2 / 3]
    assert bench_measure.window_rates(times, 8, warmup=2, window=1) == [4.0, 8.0, 4.0]
    assert bench_measure.window_rates(times, 8, warmup=4, window=2) == []  # incomplete window
    with pytest.raises(ValueError):
        bench_measure.window_rates(times, 8, warmup=0, window=1)


def test_model_flops_counts_conv_and_dense_shapes():
    tiny = bench_model.tiny_model()  # Conv1D(8, 16, strides 16) -> pooling -> Dense(6)
    assert bench_measure.model_flops(tiny) == 2 * 256 * 16 * 12 * 8 + 2 * 8 * 6
    assert 3.5e9 < bench_measure.model_flops(bench_model.paper_model()) < 3.8e9  # the paper's ResNet


def test_peak_is_the_flop_count_over_the_median_time(monkeypatch):
    """With a clock that times every numpy product at 0.5 s (one outlier at 9 s, which the
    median leaves out) and every TensorFlow product at 0.25 s, the rates follow exactly."""
    durations = iter([0.5, 9.0, 0.5] + [0.25] * 3)
    now = [0.0]

    def clock():  # called at each product's start and end: start, end, start, end, ...
        now[0] += next(durations) if clock.ending else 1.0
        clock.ending = not clock.ending
        return now[0]

    clock.ending = False
    monkeypatch.setattr(bench_measure, "time", types.SimpleNamespace(perf_counter=clock))
    rows, peak = bench_measure.peak_rows(size=256, repeats=3)
    flops = 2 * 256**3
    assert [r["value"] for r in rows] == pytest.approx([flops / 0.5 / 1e9, flops / 0.25 / 1e9])
    assert peak == rows[1]["value"]  # the larger of the two


@pytest.mark.slow
def test_speed_section_in_process(bench_file):
    rows = bench.speed_rows(bench_file, "tiny", repeats=1, warmup=1, window=1, windows=1,
                            predict_window_ecgs=32, peak_gflops=100.0, forward_flops=1e6,
                            gpu=False, isolate=False)
    assert [r["measurement"] for r in rows] == [label for _, label, _ in bench.SPEED_RUNS]
    assert all(r["value"] > 0 and r["unit"] == "ECGs/s" for r in rows)
    assert "x baseline" in rows[0]["note"] and "of peak" in rows[0]["note"]
    assert "batch 32" in rows[3]["note"]
    lines = table_lines(bench_model.format_table(rows, {"cpu": "test"}))
    assert len(lines) == 4 and all(line.count("|") == 6 for line in lines)


@pytest.mark.slow
def test_measure_in_subprocess_reports_rates_and_memory(bench_file):
    result = bench.measure_in_subprocess("predict_default", bench_file, "tiny", 1, 1, 2,
                                         batch_size=32, intra=1)
    assert len(result["rates"]) == 2 and result["ecg_per_s"] > 0
    assert 50 < result["max_rss_MB"] < 20000


@pytest.mark.slow
def test_memory_rows_compare_file_sizes(bench_file, tmp_path):
    larger = bench_measure.write_bench_file(str(tmp_path / "large.hdf5"), 260, 64)
    rows = bench.memory_rows({"small": bench_file, "large": larger}, "tiny", isolate=False)
    assert len(rows) == 6 and all(r["unit"] == "MB" and r["value"] > 0 for r in rows)
    assert "from smallest to largest" in rows[1]["note"] and rows[0]["note"] == ""


@pytest.mark.slow
def test_all_writes_the_table(bench_file, tmp_path, capsys):
    out = tmp_path / "results.md"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "bench_small.hdf5").symlink_to(bench_file)
    status = bench.main(["all", "--model", "tiny", "--data-dir", str(data_dir), "--out",
                         str(out), "--skip", "peak", "speed", "memory", "one_exam", "service",
                         "--precision-rows",
                         "160", "--rounds", "1", "--warmup", "1", "--window", "1",
                         "--windows", "1"])
    assert status == 0
    text = out.read_text()
    assert text.startswith("Machine: cpu ") and "tensorflow" in text and "cores" in text
    sections = [line.split("|")[1].strip() for line in table_lines(text)]
    assert sections == ["pipeline"] * 3 + ["flops"] * 2 + ["precision"] * 8
    assert text in capsys.readouterr().out


def test_unknown_section_is_a_usage_error(capsys):
    assert bench.main(["nonsense"]) == 2
    assert "usage: bench.py" in capsys.readouterr().err


def test_importing_bench_imports_neither_keras_nor_tensorflow():
    """The ``model`` section (ecgcode.bench.model_speed) must run without TensorFlow."""
    code = ("import sys, ecgcode.bench.model_speed\n"
            "assert not {'keras', 'tensorflow', 'ecgcode.bench.measure'} & set(sys.modules)\n"
            "import bench\n"
            "assert not {'keras', 'tensorflow'} & set(sys.modules), 'imported at load'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_model_section_prints_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "model.md"
    status = bench.main(["model", "--model", "tiny", "--batch-sizes", "2,4", "--jit", "off",
                         "--steps", "2", "--out", str(out)])
    assert status == 0
    text = out.read_text()
    assert text.startswith("Machine: python ") and "backend tensorflow" in text
    lines = table_lines(text)
    assert [line.split("|")[2].strip() for line in lines] == [
        "training, float32, XLA off, batch 2", "inference, float32, XLA off, batch 2",
        "training, float32, XLA off, batch 4", "inference, float32, XLA off, batch 4"]
    assert all(float(line.split("|")[3]) > 0 for line in lines)
    assert "first fit (compilation)" in lines[0] and "2 timed batches" in lines[1]
    assert text in capsys.readouterr().out
    assert keras.mixed_precision.dtype_policy().name == "float32"  # policy restored


def test_model_rows_report_a_failing_setting_and_go_on():
    def out_of_memory():
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nallocator details")

    rows = bench_model.model_rows((8,), ("mixed_bfloat16",), (True, False), 2, out_of_memory)
    assert len(rows) == 4 and all(math.isnan(r["value"]) for r in rows)
    assert rows[0]["measurement"] == "training, mixed_bfloat16, XLA on, batch 8"
    assert rows[0]["note"] == "failed: RESOURCE_EXHAUSTED: out of memory"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored after failure


def test_model_section_rejects_unknown_policies(capsys):
    with pytest.raises(SystemExit) as raised:
        bench.main(["model", "--policies", "float32,float64"])
    assert raised.value.code == 2 and "float64" in capsys.readouterr().err


@pytest.mark.slow
def test_model_section_fed_by_the_pipeline(bench_file, tmp_path):
    out = tmp_path / "fed.md"
    status = bench.main(["model", "--model", "tiny", "--batch-sizes", "16", "--jit", "off",
                         "--steps", "3", "--data", bench_file, "--out", str(out)])
    assert status == 0
    lines = table_lines(out.read_text())
    names = [line.split("|")[2].strip() for line in lines]
    assert names == [
        "training, float32, XLA off, batch 16",
        "training fed by make_dataset (shuffled), float32, XLA off, batch 16",
        "make_dataset alone (shuffled, no model), batch 16",
        "inference, float32, XLA off, batch 16",
        "inference fed by make_dataset (in file order), float32, XLA off, batch 16",
        "make_dataset alone (in file order, no model), batch 16"]
    assert all(float(line.split("|")[3]) > 0 for line in lines)
    assert "% of in-memory" in lines[1] and "3 timed batches" in lines[2]


def test_file_batches_read_the_file_as_train_and_predict_do(bench_file):
    training = bench_model.file_batches(bench_file, 64, train=True)
    batches = list(training.take(5).as_numpy_iterator())  # 200 rows: passes repeat
    assert all(x.shape == (64,) + INPUT_SHAPE and y.shape == (64, len(CLASSES))
               for x, y in batches)
    with h5py.File(bench_file, "r") as handle:
        first_rows = handle["tracings"][:64]
    inference = list(bench_model.file_batches(bench_file, 64, train=False).as_numpy_iterator())
    assert len(inference) == 3  # whole batches only: 200 // 64
    np.testing.assert_array_equal(inference[0], first_rows)  # file order
    assert len(list(bench_model.file_batches(bench_file, 64, train=False, batches=2))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["missing", "no labels"])
def test_model_section_rejects_a_bad_data_file_up_front(tmp_path, problem):
    path = tmp_path / "bad.hdf5"
    if problem == "no labels":
        with h5py.File(path, "w") as handle:
            handle.create_dataset("tracings", data=np.zeros((4,) + INPUT_SHAPE, np.float32))
    result = subprocess.run(
        [sys.executable, "bench.py", "model", "--model", "tiny", "--data", str(path)],
        check=False, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if str(path) in line]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    assert "| model |" not in result.stdout  # no setting ran


def test_file_batches_for_inference_need_one_whole_batch(bench_file):
    with pytest.raises(ValueError, match="200 rows, fewer than one batch of 256"):
        bench_model.file_batches(bench_file, 256, train=False)


# --- The precision section (issue 15, items 1-3) ---------------------------------------
def test_agreement_counts_the_largest_difference_and_the_agreeing_decisions():
    from ecgcode.bench.paths import agreement

    float32 = np.array([[0.1, 0.6], [0.4, 0.9]])
    bfloat16 = np.array([[0.1, 0.4], [0.45, 0.9]])  # one decision of four flips
    result = agreement(float32, bfloat16, [0.5, 0.5])
    assert result["max_abs_difference"] == pytest.approx(0.2)
    assert result["decisions_agree"] == 0.75 and result["decisions"] == 4
    assert agreement(float32, bfloat16, [0.5, 0.3])["decisions_agree"] == 1.0


def test_trained_model_takes_the_run_folders_thresholds(tmp_path, capsys):
    import json

    from ecgcode.bench.paths import trained_model
    from ecgcode.model.modelfiles import save_model

    save_model(bench_model.tiny_model(2), tmp_path / "model_best", classes=["a", "b"])
    (tmp_path / "thresholds.json").write_text(json.dumps(
        {"classes": {"a": {"threshold": 0.3}, "b": {"threshold": None}}}))
    model, thresholds, label = trained_model(*resolve_model(str(tmp_path)))
    assert int(model.outputs[0].shape[-1]) == 2
    assert thresholds == [0.3, 0.5] and "model_best.keras" in label
    assert "note: no validation threshold for b; using 0.5" in capsys.readouterr().out
    assert trained_model(str(tmp_path / "model_best.h5"))[1] == [0.5, 0.5]  # a bare file


@pytest.mark.slow
def test_precision_section_reports_items_1_to_3(bench_file, tmp_path):
    out = tmp_path / "precision.md"
    status = bench.main(["precision", bench_file, "--model", "tiny", "--rounds", "1",
                         "--warmup", "1", "--window", "1", "--windows", "1", "--out", str(out)])
    assert status == 0
    lines = table_lines(out.read_text())
    names = [line.split("|")[2].strip() for line in lines]
    assert names[:6] == [
        "inference, bare compiled forward pass, float32",
        "inference, predict.py path (predict_collection), float32",
        "inference, bare compiled forward pass, mixed bfloat16",
        "inference, predict.py --precision bfloat16",
        "bfloat16 vs float32: max abs. probability difference",
        "bfloat16 vs float32: thresholded decisions that agree"]
    assert names[6].startswith("training, train.py default (") and names[7] == (
        "training, train.py --no-mixed-precision (float32), batch 64")
    values = [float(line.split("|")[3]) for line in lines]
    assert all(value > 0 for value in values[:4] + values[5:]) and values[4] >= 0
    assert "of the bare pass (target >= 95 %)" in lines[1] and "x --no-mixed-precision" in lines[6]


@pytest.mark.slow
def test_one_exam_and_service_sections(make_hdf5, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    exam = make_hdf5("one.hdf5", 1)
    out = tmp_path / "one.md"
    assert bench.main(["one_exam", exam, "--model", "tiny", "--runs", "1", "--out",
                       str(out)]) == 0
    rows = table_lines(out.read_text())
    assert [line.split("|")[2].strip() for line in rows] == [
        "predict.py one exam, Keras .keras, wall", "predict.py one exam, Keras .keras, peak RSS",
        "predict.py one exam, ONNX export, wall", "predict.py one exam, ONNX export, peak RSS",
        "largest probability difference, ONNX export vs Keras .keras"]
    values = [float(line.split("|")[3]) for line in rows]
    assert all(value > 0 for value in values[:4]) and values[4] < 1e-4
    assert values[3] < values[1]  # the ONNX process never loads TensorFlow
    assert bench.main(["service", exam, "--model", "tiny", "--requests", "2", "--out",
                       str(out)]) == 0
    rows = table_lines(out.read_text())
    assert len(rows) == 6 and all(float(line.split("|")[3]) > 0 for line in rows)
    assert rows[0].split("|")[2].strip() == "ONNX export, latency per request, median"
