"""The README's main job, end to end on a tiny budget, with the paper's full model."""

import os

import pandas as pd
import pytest

from ecgcode.cli import demo
from ecgcode.common import CLASSES, run_cli


@pytest.mark.slow
def test_demo_runs_every_step_and_says_where_things_went(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--n-train", "24", "--n-test", "8", "--epochs", "1",
            "--batch-size", "8", "--val-split", "0.34"]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Held-out F1 per class: 1dAVb" in printed
    # it starts with the paper's Table 2 from the shipped CODE-test files, before the pipeline
    paper_line = "The paper's DNN on CODE-test, F1 reproduced (published): 1dAVb 0.897 (0.897)"
    assert paper_line in printed and "all six as published" in printed
    assert printed.index(paper_line) < printed.index("synthetic ECGs")
    assert (out / "paper" / "tables" / "scores.csv").is_file()
    for name in ("train.hdf5", "test.hdf5", "test_predictions.csv", "test_gold.csv"):
        assert (out / name).is_file()
    assert (out / "run" / "model_best.h5").is_file()
    assert (out / "report" / "report.md").is_file()
    assert "## Thresholds by rule" in (out / "validation" / "report.md").read_text()
    scores = pd.read_csv(out / "report" / "tables" / "scores.csv", header=[0, 1], index_col=0)
    assert list(scores.index) == list(CLASSES)
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert len(predictions) == 8 and set(CLASSES) <= set(predictions.columns)


def test_demo_refuses_a_non_empty_output_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("earlier results")
    with pytest.raises(SystemExit) as stop:
        run_cli(demo.main, ["--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["keep.txt"]
