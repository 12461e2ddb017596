"""Tests of datasets.py on tiny generated HDF5 files (see conftest.make_hdf5)."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import row_ids, synthetic_tracings

from ecgcode import data as datasets
from ecgcode.cli import datasets as datasets_cli
from ecgcode.common import CLASSES, LEADS, UNITS_PER_MV, run_cli

CODE15_COLUMNS = [
    "exam_id",
    "age",
    "is_male",
    "nn_predicted_age",
    "1dAVb",
    "RBBB",
    "LBBB",
    "SB",
    "ST",
    "AF",
    "patient_id",
    "death",
    "timey",
    "normal_ecg",
    "trace_file",
]


def ids_of(dataset):
    """Row ids of every tracing a dataset yields, in order."""
    return np.concatenate([row_ids(e[0] if isinstance(e, tuple) else e) for e in dataset])


def code15_csv(path, exam_ids, labels, patient_ids=None):
    """Write a CSV with CODE-15%'s column order (ST before AF) and extra columns."""
    frame = pd.DataFrame({c: 0 for c in CODE15_COLUMNS}, index=range(len(exam_ids)))
    frame["exam_id"] = exam_ids
    for j, name in enumerate(CLASSES):
        frame[name] = labels[:, j].astype(int)
    frame["patient_id"] = np.arange(len(exam_ids)) if patient_ids is None else patient_ids
    frame["trace_file"] = "exams_part0.hdf5"
    frame.to_csv(path, index=False)
    return str(path)


# --- formats: one file, several files, labels -------------------------------------------
def test_single_file_in_file_order_with_hdf5_labels(make_hdf5):
    path = make_hdf5("a.hdf5", 40, labels=True)
    table = datasets.load_labels(path)
    batches = list(datasets.make_dataset(path, table.labels, batch_size=16))
    assert [x.shape[0] for x, _ in batches] == [16, 16, 8]
    x, y = batches[0]
    assert x.dtype == tf.float32 and x.shape[1:] == (4096, 12) and y.shape == (16, 6)
    assert ids_of(batches).tolist() == list(range(40))
    with h5py.File(path) as handle:
        np.testing.assert_array_equal(x.numpy(), handle["tracings"][:16])
        np.testing.assert_array_equal(table.labels, handle["labels"][()])
    np.testing.assert_array_equal(table.exam_ids, 1000 + np.arange(40))


def test_several_files_are_one_collection(make_hdf5):
    paths = [
        make_hdf5(f"exams_part{i}.hdf5", 7 + i, first_id=sum(range(7, 7 + i))) for i in range(3)
    ]
    collection = datasets.open_collection(paths)
    assert collection.sizes == [7, 8, 9] and collection.n == 24
    np.testing.assert_array_equal(collection.exam_ids, 1000 + np.arange(24))
    assert ids_of(datasets.make_dataset(collection, batch_size=5)).tolist() == list(range(24))


def test_hdf5_labels_columns_matched_by_name(make_hdf5):
    values = (np.random.default_rng(0).random((10, 6)) < 0.5).astype(np.float32)
    reversed_classes = CLASSES[::-1]
    path = make_hdf5("a.hdf5", 10, labels=values[:, ::-1], classes=reversed_classes)
    np.testing.assert_array_equal(datasets.load_labels(path).labels, values)


def test_csv_joined_on_exam_id_with_code15_column_order(make_hdf5, tmp_path):
    path = make_hdf5("a.hdf5", 12)
    labels = (np.random.default_rng(1).random((20, 6)) < 0.4).astype(np.float32)
    exam_ids = 1000 + np.arange(20)  # 8 exams absent from the file
    order = np.random.default_rng(2).permutation(20)  # CSV order differs from the file's
    csv = code15_csv(tmp_path / "exams.csv", exam_ids[order], labels[order])
    table = datasets.load_labels(path, csv)
    np.testing.assert_array_equal(table.labels, labels[:12])
    np.testing.assert_array_equal(table.frame["exam_id"], exam_ids[:12])
    assert table.matched.all()


def test_csv_without_exam_id_is_in_file_order(make_hdf5, tmp_path):
    path = make_hdf5("a.hdf5", 5, exam_ids=False)
    labels = np.eye(5, 6, dtype=np.float32)
    pd.DataFrame(labels[:, ::-1].astype(int), columns=CLASSES[::-1]).to_csv(
        tmp_path / "l.csv", index=False
    )
    np.testing.assert_array_equal(datasets.load_labels(path, tmp_path / "l.csv").labels, labels)


# --- the pipeline -----------------------------------------------------------------------
def test_x_alone_without_labels_and_indices_order_kept(make_hdf5):
    path = make_hdf5("a.hdf5", 30)
    indices = [29, 3, 4, 5, 17, 0, 0, 12]
    dataset = datasets.make_dataset(path, batch_size=3, indices=indices)
    assert isinstance(dataset.element_spec, tf.TensorSpec)
    assert ids_of(dataset).tolist() == indices


def test_drop_remainder_and_repeat(make_hdf5):
    path = make_hdf5("a.hdf5", 10)
    dropped = datasets.make_dataset(path, batch_size=4, drop_remainder=True)
    assert [x.shape[0] for x in dropped] == [4, 4]
    repeated = datasets.make_dataset(path, batch_size=4, repeat=True).take(5)
    assert ids_of(repeated).tolist() == list(range(10)) * 2


def test_autotuning_is_off_so_deleting_an_iterator_never_waits(make_hdf5):
    # tf.data's autotuning thread made an iterator's deletion wait up to ~10 s (issue 15);
    # the pipeline's parallelism is fixed, so the thread is not started at all.
    for shuffle in (False, True):
        dataset = datasets.make_dataset(make_hdf5("a.hdf5", 10), batch_size=4, shuffle=shuffle)
        assert dataset.options().autotune.enabled is False


def test_repeated_shuffle_gives_each_row_once_per_pass(make_hdf5):
    path = make_hdf5("a.hdf5", 20)  # the shuffle window (64 rows) exceeds the collection
    options = {"batch_size": 5, "shuffle": True, "block_size": 2, "shuffle_buffer": 64}
    passes = ids_of(datasets.make_dataset(path, repeat=True, **options).take(12))
    for one_pass in passes.reshape(3, 20):
        assert sorted(one_pass.tolist()) == list(range(20))


def test_shuffle_is_a_reproducible_permutation_reshuffled_each_pass(make_hdf5):
    paths = [make_hdf5("a.hdf5", 60), make_hdf5("b.hdf5", 40, first_id=60)]
    options = {"batch_size": 8, "shuffle": True, "block_size": 4, "shuffle_buffer": 16}
    dataset = datasets.make_dataset(paths, seed=3, **options)
    first, second = ids_of(dataset), ids_of(dataset)
    assert sorted(first) == list(range(100)) and sorted(second) == list(range(100))
    assert first.tolist() != list(range(100)) and first.tolist() != second.tolist()
    again = datasets.make_dataset(paths, seed=3, **options)
    assert ids_of(again).tolist() == first.tolist()
    other_seed = datasets.make_dataset(paths, seed=4, **options)
    assert ids_of(other_seed).tolist() != first.tolist()
    # Blocks come from the whole collection: the first window reaches beyond its start.
    assert first[:16].max() - first[:16].min() > 30


def test_shuffle_with_labels_keeps_pairs_and_respects_indices(make_hdf5):
    path = make_hdf5("a.hdf5", 50, labels=True)
    labels = datasets.load_labels(path).labels
    indices = np.arange(0, 50, 2)
    dataset = datasets.make_dataset(
        path, labels, batch_size=7, shuffle=True, indices=indices, block_size=3, shuffle_buffer=9
    )
    seen = []
    for x, y in dataset:
        ids = row_ids(x.numpy())
        np.testing.assert_array_equal(y.numpy(), labels[ids])
        seen.extend(ids.tolist())
    assert sorted(seen) == indices.tolist()


def test_chunked_compressed_file_reads_like_contiguous(make_hdf5):
    plain = make_hdf5("plain.hdf5", 20, seed=5)
    packed = make_hdf5("packed.hdf5", 20, seed=5, chunks=(3, 4096, 12), compression="gzip")
    indices = [19, 2, 3, 4, 11, 7]
    for shuffle in (False, True):
        a = np.concatenate(
            [
                x.numpy()
                for x in datasets.make_dataset(
                    plain, batch_size=4, indices=indices, shuffle=shuffle, block_size=2
                )
            ]
        )
        b = np.concatenate(
            [
                x.numpy()
                for x in datasets.make_dataset(
                    packed, batch_size=4, indices=indices, shuffle=shuffle, block_size=2
                )
            ]
        )
        np.testing.assert_array_equal(a, b)


def test_reader_recycles_buffers_and_bounds_its_pool(make_hdf5):
    reader = datasets.RowReader(datasets.open_collection(make_hdf5("a.hdf5", 8)), pool_size=2)
    first = reader.read([1, 2])
    address = first.ctypes.data
    del first
    assert reader.read([3, 4]).ctypes.data == address
    held = [reader.read([0]) for _ in range(5)]
    assert len(held) == 5 and len(reader._pool) <= 2


# --- splits and distribution ------------------------------------------------------------
def test_split_default_is_last_two_percent():
    train, val = datasets.split_indices(1000)
    np.testing.assert_array_equal(train, np.arange(980))
    np.testing.assert_array_equal(val, np.arange(980, 1000))


def test_split_by_groups_keeps_patients_apart():
    groups = np.repeat(np.arange(100), 3)[np.random.default_rng(0).permutation(300)]
    train, val = datasets.split_indices(300, 0.1, groups=groups, seed=1)
    assert not set(groups[train]) & set(groups[val])
    assert len(train) + len(val) == 300 and 30 <= len(val) < 33
    again = datasets.split_indices(300, 0.1, groups=groups, seed=1)[1]
    np.testing.assert_array_equal(val, again)


def test_input_context_gives_workers_disjoint_shares(make_hdf5):
    path = make_hdf5("a.hdf5", 45)
    shares = []
    for worker in range(3):
        context = tf.distribute.InputContext(3, worker, 3)
        shares.append(
            set(
                ids_of(
                    datasets.make_dataset(
                        path, batch_size=4, shuffle=True, block_size=4, input_context=context
                    )
                )
            )
        )
    assert set.union(*shares) == set(range(45))
    assert sum(len(s) for s in shares) == 45


def test_works_under_a_distribution_strategy(make_hdf5):
    path = make_hdf5("a.hdf5", 12, labels=True)
    labels = datasets.load_labels(path).labels
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    distributed = strategy.distribute_datasets_from_function(
        lambda context: datasets.make_dataset(
            path, labels, batch_size=context.get_per_replica_batch_size(4), input_context=context
        )
    )
    assert sum(int(x.shape[0]) for x, _ in distributed) == 12


# --- inspect ----------------------------------------------------------------------------
def inspect_output(capsys, *args):
    status = run_cli(datasets_cli.main, ["inspect", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_inspect_prints_summary_without_warnings(make_hdf5, capsys):
    path = make_hdf5("a.hdf5", 20, labels=True)
    status, out, _ = inspect_output(capsys, path)
    assert status == 0 and "N = 20" in out and "(20, 4096, 12)" in out and "float32" in out
    assert all(name in out for name in CLASSES) and "prevalence" in out
    assert "DII" in out and "WARNING" not in out and "no NaN/inf" in out


@pytest.mark.parametrize(("factor", "expected"), [
    (0.2, "about 5x too small"),
    (5.0, "about 5x too large"),
    (100.0, "about 100x too large"),
])
def test_inspect_warns_about_scale(make_hdf5, capsys, factor, expected):
    path = make_hdf5("a.hdf5", 10, data=synthetic_tracings(10) * np.float32(factor))
    status, out, _ = inspect_output(capsys, path)
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert status == 0 and len(warnings) == 1 and expected in warnings[0], out
    likely = f"{UNITS_PER_MV * factor:g} units per mV"
    assert f"look like {likely}" in warnings[0] and path in warnings[0]
    assert f"--units-per-mv {UNITS_PER_MV * factor:g}" in warnings[0]


def mv_table(out):
    """The per-lead amplitude lines (in mV) of inspect's output."""
    return [line for line in out.splitlines() if line.strip().split(" ")[0] in LEADS]


def test_inspect_reads_legacy_and_stated_scales_in_mv(make_hdf5, capsys):
    """A legacy 1e-4 V file (10 units per mV) and a file stated to be at 10 with
    --units-per-mv give no warning and the same amplitudes in mV as one at UNITS_PER_MV."""
    legacy = np.float32(10.0 / UNITS_PER_MV)
    reference = inspect_output(capsys, make_hdf5("new.hdf5", 10))[1]
    old = make_hdf5("old.hdf5", 10, data=synthetic_tracings(10) * legacy)
    with h5py.File(old, "a") as handle:
        handle["tracings"].attrs.update(units="1e-4 V", unit_volts=1e-4)
    status, out, _ = inspect_output(capsys, old)
    assert status == 0 and "WARNING" not in out and "10 units per mV" in out
    assert len(mv_table(out)) == 12 and mv_table(out) == mv_table(reference)
    stated = make_hdf5("stated.hdf5", 10, data=synthetic_tracings(10) * legacy)
    assert "WARNING" in inspect_output(capsys, stated)[1]  # unstated: taken at UNITS_PER_MV
    status, out, _ = inspect_output(capsys, stated, "--units-per-mv", "10")
    assert status == 0 and "WARNING" not in out and mv_table(out) == mv_table(reference)


def test_inspect_warns_about_lead_order(make_hdf5, capsys):
    swapped = synthetic_tracings(10)[:, :, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]
    _, out, _ = inspect_output(capsys, make_hdf5("a.hdf5", 10, data=swapped))
    assert "Einthoven" in out
    flipped = synthetic_tracings(10)
    flipped[:, :, 3] *= -1
    _, out, _ = inspect_output(capsys, make_hdf5("b.hdf5", 10, data=flipped))
    assert "aVR" in out and "Einthoven" not in out


def test_single_abnormal_real_record_raises_no_lead_order_alarm(tmp_path, capsys):
    # PTB s0010_re: infero-lateral infarction, so aVR's largest deflection is positive;
    # one such patient must not make a whole collection look misordered.
    record = Path(__file__).resolve().parents[1].parent / "shared" / "ecg-samples" / "s0010_re"
    if not record.with_suffix(".hea").exists():
        pytest.skip(f"real PTB record not found at {record}")
    output = tmp_path / "ptb.hdf5"
    assert run_cli(datasets_cli.main, ["convert", str(record), "-o", str(output)]) == 0
    status, out, _ = inspect_output(capsys, output)
    assert status == 0 and "N = 1" in out
    assert "WARNING" not in out
    x = datasets.RowReader(datasets.open_collection(output)).read([0])  # (1, 4096, 12)
    assert datasets.lead_order_warnings(x) == []
    # the aVR check needs a collection-wide pattern: ten such records do warn
    assert datasets.lead_order_warnings(np.repeat(x, 9, axis=0)) == []
    assert "aVR" in datasets.lead_order_warnings(np.repeat(x, 10, axis=0))[0]


def test_help_lists_the_three_commands(capsys):
    with pytest.raises(SystemExit):
        datasets_cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in ("inspect", "convert", "synthetic"))


# --- bad data ---------------------------------------------------------------------------
def truncated(make_hdf5, tmp_path):
    path = make_hdf5("full.hdf5", 10)
    content = Path(path).read_bytes()
    (tmp_path / "cut.hdf5").write_bytes(content[: len(content) // 2])
    return tmp_path / "cut.hdf5"


def text_file(path):
    path.write_text("exam_id,AF\n1,0\n")
    return path


BAD_FILES = {
    "missing": (lambda make, tmp: tmp / "nope.hdf5", datasets.MissingFileError, "not found"),
    "not hdf5": (lambda make, tmp: text_file(tmp / "x.hdf5"), datasets.NotHDF5Error, "not an HDF5"),
    "truncated": (truncated, datasets.TruncatedFileError, "truncated"),
    "no dataset": (
        lambda make, tmp: make("a.hdf5", 3, dataset_name="signals"),
        datasets.MissingDatasetError,
        "exam_id, signals",
    ),
    "transposed": (
        lambda make, tmp: make("a.hdf5", 2, data=np.zeros((2, 12, 4096), "f4")),
        datasets.WrongShapeError,
        "transposed",
    ),
    "short": (
        lambda make, tmp: make("a.hdf5", 2, data=np.zeros((2, 1000, 12), "f4")),
        datasets.WrongShapeError,
        "(2, 1000, 12)",
    ),
    "integers": (
        lambda make, tmp: make("a.hdf5", 2, data=np.zeros((2, 4096, 12), "i2")),
        datasets.WrongDtypeError,
        "int16",
    ),
    "empty": (
        lambda make, tmp: make("a.hdf5", 0, data=np.zeros((0, 4096, 12), "f4")),
        datasets.EmptyCollectionError,
        "no tracings",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_specific_errors_and_exit_2(make_hdf5, tmp_path, capsys, case):
    make, error, words = BAD_FILES[case]
    path = str(make(make_hdf5, tmp_path))
    with pytest.raises(error) as raised:
        datasets.open_collection(path)
    message = str(raised.value)
    assert path in message and words in message and "\n" not in message
    with pytest.raises(SystemExit) as exit_info:
        run_cli(datasets_cli.main, ["inspect", path])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_non_finite_values_are_counted_and_located(make_hdf5):
    data = synthetic_tracings(30)
    data[4, 100, 2] = np.nan
    data[21, 5:8, 0] = np.inf
    path = make_hdf5("a.hdf5", 30, data=data)
    with pytest.raises(datasets.NonFiniteError, match=r"4 NaN/inf values in 2 tracings.*row 4"):
        datasets.check_finite(datasets.open_collection(path))
    with pytest.raises(tf.errors.OpError, match="NonFiniteError.*row 21"):
        list(datasets.make_dataset(path, batch_size=8, indices=np.arange(10, 30)))
    clean = datasets.make_dataset(path, batch_size=8, indices=np.arange(5, 20))
    assert ids_of(clean).tolist() == list(range(5, 20))


def test_rows_checked_once_still_fail_on_every_pass(make_hdf5):
    data = synthetic_tracings(40)
    data[33, 7, 1] = np.nan
    path = make_hdf5("a.hdf5", 40, data=data)
    options = {"batch_size": 8, "shuffle": True, "block_size": 4, "shuffle_buffer": 16}
    dataset = datasets.make_dataset(path, **options)
    for _ in range(2):  # clean rows are cached as checked; the bad one is never
        with pytest.raises(tf.errors.OpError, match="NonFiniteError.*row 33"):
            list(dataset)


def test_label_csv_errors(make_hdf5, tmp_path):
    path = make_hdf5("a.hdf5", 6)
    labels = np.zeros((6, 6), np.float32)
    good = code15_csv(tmp_path / "good.csv", 1000 + np.arange(6), labels)
    frame = pd.read_csv(good)
    frame.drop(columns=["AF"]).to_csv(tmp_path / "no_af.csv", index=False)
    with pytest.raises(datasets.LabelColumnsError,
                       match=r"no_af.csv: no paper class column AF;.*--classes"):
        datasets.load_labels(path, tmp_path / "no_af.csv")
    frame.assign(RBBB=[0, 1, 2, 0, 0, 0]).to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(datasets.LabelValuesError, match="two.csv.*not 0 or 1.*RBBB"):
        datasets.load_labels(path, tmp_path / "two.csv")
    frame.iloc[:4].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(datasets.ExamIdJoinError, match="short.csv: 2 of 6 exam ids"):
        datasets.load_labels(path, tmp_path / "short.csv")
    partial = datasets.load_labels(path, tmp_path / "short.csv", allow_missing=True)
    assert partial.matched.tolist() == [True] * 4 + [False] * 2
    no_ids = make_hdf5("b.hdf5", 6, exam_ids=False)
    with pytest.raises(datasets.LabelRowCountError, match="4 rows.*6 tracings"):
        datasets.load_labels(no_ids, tmp_path / "short.csv")
    with pytest.raises(datasets.LabelError, match="no 'labels' dataset"):
        datasets.load_labels(path)


def test_empty_selections_are_refused(make_hdf5):
    with pytest.raises(datasets.EmptyCollectionError):
        datasets.open_collection([])
    with pytest.raises(datasets.EmptyCollectionError, match="no rows selected"):
        datasets.make_dataset(make_hdf5("a.hdf5", 3), indices=[])


def test_bench_pipeline_section_runs(make_hdf5):
    from ecgcode.bench.measure import bench_pipeline

    results = bench_pipeline(make_hdf5("a.hdf5", 20), repeats=1, batch_size=8)
    assert results["shuffled_ecg_per_s_0"] > 0 and results["in_order_ecg_per_s_0"] > 0
    assert results["dd_GB_per_s_0"] > 0


def test_writers_share_the_contract_layout(tmp_path):
    import h5py

    from ecgcode.data.synthetic import generate as ecg_synthetic
    path = ecg_synthetic.write_synthetic(tmp_path / "s.hdf5", 3, seed=0, progress=False)
    with h5py.File(path) as handle:
        tracings = handle["tracings"]
        assert tracings.shape == (3, 4096, 12) and tracings.dtype == np.float32
        for attrs in (tracings.attrs, handle.attrs):
            assert attrs["units_per_mv"] == UNITS_PER_MV and "unit_volts" not in attrs
            assert attrs["units"] == f"mV x {UNITS_PER_MV:g} (1 mV = {UNITS_PER_MV:g} units)"
        assert tracings.attrs["sampling_rate"] == 400
        assert list(tracings.attrs["leads"]) == list(LEADS)
