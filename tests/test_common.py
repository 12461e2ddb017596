"""The shared helpers of ecgcode.common: one-line errors and safe output."""

import pytest

from ecgcode.common import ECGInputError, atomic_output, first_line, run_cli


def test_first_line_keeps_one_line_and_names_empty_errors():
    assert first_line(OSError("unable to open\nmore detail")) == "unable to open"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("x" * 50), 10) == "x" * 10


def test_run_cli_prints_one_line_and_exits_2(capsys):
    def main(argv):
        raise ECGInputError("a.hdf5: missing dataset 'tracings'\nsecond line")

    with pytest.raises(SystemExit) as stop:
        run_cli(main, [])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: a.hdf5: missing dataset 'tracings'\n"


def test_atomic_output_keeps_the_earlier_file_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        with open(tmp, "w") as handle:
            handle.write("partial")
        raise RuntimeError("crash")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
