"""Tests of ecg_synthetic: clinical definitions measured on generated ECGs, leads, units, I/O.

Amplitudes are written in mV times ``UNITS_PER_MV`` (the tracings' scale, 1 mV = 2 units).
Intervals are measured with simple detectors: PR and QRS width on the noise-free P and QRS
components (onset/offset where the largest lead exceeds 3 % of the wave's peak), heart
rate and RR irregularity with an R-peak detector on the noisy tracings.
"""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from ecgcode.cli import synthetic as synthetic_cli
from ecgcode.common import (
    CLASSES,
    LEADS,
    N_SAMPLES,
    SAMPLING_RATE,
    UNITS_PER_MV,
    ECGInputError,
    run_cli,
)
from ecgcode.data.synthetic import generate as ecg_synthetic

ROOT = Path(__file__).resolve().parents[1]
FS = SAMPLING_RATE
MV = UNITS_PER_MV  # tracing units in one mV
N_EXAMS = 96  # balanced prevalence: ~17 exams per class


@pytest.fixture(scope="module")
def exams():
    """Noisy tracings, labels and info (with noise-free components) of N_EXAMS exams."""
    tracings, labels, info = ecg_synthetic.generate(N_EXAMS, seed=11, return_components=True)
    assert (labels.sum(axis=0) >= 6).all(), "too few exams of some class for the tests"
    return tracings, labels.astype(bool), info


def has(labels, name):
    return labels[:, CLASSES.index(name)]


def runs(active):
    """(starts, ends) sample indices of True runs in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def wave_runs(component):
    """Runs where the largest |lead| of a (T, 12) component exceeds 3 % of its peak,
    excluding runs cut by the recording's edges."""
    envelope = np.abs(component).max(axis=1)  # (T,)
    starts, ends = runs(envelope > 0.03 * envelope.max())
    inside = np.flatnonzero(envelope)  # the recording (zero padding outside)
    keep = (starts > inside[0]) & (ends <= inside[-1])
    return starts[keep], ends[keep]


def qrs_width_ms(qrs):
    starts, ends = wave_runs(qrs)
    return 1000 * np.median(ends - starts) / FS


def pr_interval_ms(p, qrs):
    p_starts, _ = wave_runs(p)
    qrs_starts, _ = wave_runs(qrs)
    intervals = [q - p_starts[(p_starts < q) & (p_starts > q - 0.45 * FS)].max()
                 for q in qrs_starts if ((p_starts < q) & (p_starts > q - 0.45 * FS)).any()]
    return 1000 * np.median(intervals) / FS


QRS_BAND = butter(2, [12, 40], btype="bandpass", fs=FS, output="sos")


def rr_intervals(tracing):
    """RR intervals (s) from an R-peak detector on a noisy (T, 12) tracing."""
    inside = np.flatnonzero(np.abs(tracing).sum(axis=1))
    x = sosfiltfilt(QRS_BAND, tracing[inside[0]:inside[-1] + 1], axis=0)  # 12-40 Hz
    energy = (x ** 2).sum(axis=1)  # (T,) QRS-band energy over the leads
    energy = np.convolve(energy, np.ones(32) / 32, mode="same")  # 80 ms window
    peaks, _ = find_peaks(energy, height=0.3 * energy.max(), distance=int(0.25 * FS))
    return np.diff(peaks) / FS


# --- Clinical definitions ----------------------------------------------------------
def test_qrs_width_wide_in_bundle_branch_blocks_only(exams):
    _, labels, info = exams
    widths = np.array([qrs_width_ms(q) for q in info["components"]["qrs"]])
    block = has(labels, "RBBB") | has(labels, "LBBB")
    assert (widths[block] >= 120).all(), widths[block].min()
    assert (widths[block] <= 175).all(), widths[block].max()
    assert (widths[~block] < 110).all(), widths[~block].max()
    assert (widths[~block] >= 60).all(), widths[~block].min()


def test_pr_interval_long_in_first_degree_block_only(exams):
    _, labels, info = exams
    components = info["components"]
    sinus = ~has(labels, "AF")
    pr = np.array([pr_interval_ms(components["p"][i], components["qrs"][i])
                   for i in np.flatnonzero(sinus)])
    block = has(labels, "1dAVb")[sinus]
    assert (pr[block] > 210).all(), pr[block].min()
    assert (pr[block] < 340).all(), pr[block].max()
    assert (pr[~block] < 200).all(), pr[~block].max()
    assert (pr[~block] >= 110).all(), pr[~block].min()


def test_heart_rate_and_rhythm_regularity(exams):
    tracings, labels, _ = exams
    measured = [rr_intervals(x) for x in tracings]
    rate = np.array([60 / np.median(rr) for rr in measured])
    variation = np.array([rr.std() / rr.mean() for rr in measured])
    af, sb, st = has(labels, "AF"), has(labels, "SB"), has(labels, "ST")
    assert (rate[sb] < 50).all(), rate[sb].max()
    assert (rate[st] > 100).all(), rate[st].min()
    normal_rate = ~(af | sb | st)
    assert ((rate[normal_rate] >= 55) & (rate[normal_rate] <= 100)).all()
    assert (variation[af] > 0.12).all(), variation[af].min()
    assert (variation[~af] < 0.06).all(), variation[~af].max()


def test_atrial_fibrillation_has_f_waves_and_no_p_waves(exams):
    _, labels, info = exams
    p_size = np.abs(info["components"]["p"]).max(axis=(1, 2))
    atrial = info["components"]["atrial"]
    af = has(labels, "AF")
    assert (p_size[af] == 0).all()
    assert (p_size[~af] > 0.05 * MV).all(), p_size[~af].min()  # P waves >= 0.05 mV
    assert (atrial[~af] == 0).all()
    v1, lead_1, lead_2 = LEADS.index("V1"), LEADS.index("DI"), LEADS.index("DII")
    for row in atrial[af]:
        inside = np.flatnonzero(np.abs(row).sum(axis=1))
        spectrum = np.abs(np.fft.rfft(row[inside, v1]))
        peak_hz = np.argmax(spectrum) * FS / len(inside)
        assert 4.0 <= peak_hz <= 9.0, peak_hz
        rms = np.sqrt((row[inside] ** 2).mean(axis=0))  # (12,)
        assert max(rms[v1], rms[lead_2]) > rms[lead_1]  # most visible in V1/II
        assert 0.01 * MV < max(rms[v1], rms[lead_2]) < 0.2 * MV  # 0.01-0.2 mV


def test_morphology_of_bundle_branch_blocks(exams):
    """RBBB: R' (terminal positive wave) in V1 and terminal S in I/V6; LBBB: no septal q
    in I/V6, predominantly negative V1 (deep S), positive I/V6."""
    _, labels, info = exams
    qrs = info["components"]["qrs"]
    i, v1, v6 = LEADS.index("DI"), LEADS.index("V1"), LEADS.index("V6")
    for index in np.flatnonzero(has(labels, "RBBB") | has(labels, "LBBB")):
        starts, ends = wave_runs(qrs[index])
        beat = qrs[index, starts[0]:ends[0]]  # (width, 12) first whole QRS
        late = beat[int(0.6 * len(beat)):]  # last 40 % of the QRS
        early = beat[:int(0.15 * len(beat))]  # first 15 %
        if has(labels, "RBBB")[index]:
            assert late[:, v1].max() > 0.2 * MV  # R' >= 0.2 mV
            assert late[:, v1].max() > -late[:, v1].min()
            assert late[:, v6].min() < -0.05 * MV and late[:, i].min() < -0.05 * MV  # wide S
        else:
            assert early[:, i].min() > -0.03 * MV and early[:, v6].min() > -0.03 * MV  # no q
            assert beat[:, v1].min() < -0.5 * MV  # deep S/QS in V1 (> 0.5 mV)
            assert -beat[:, v1].min() > beat[:, v1].max()
            assert beat[:, v6].max() > 0.3 * MV and beat[:, i].max() > -beat[:, i].min()


def test_r_waves_in_physiological_units(exams):
    _, _, info = exams
    r_peak = info["components"]["qrs"].max(axis=(1, 2))  # largest R over the 12 leads
    assert (r_peak >= 0.5 * MV).all() and (r_peak <= 2.0 * MV).all(), (r_peak.min(),
                                                                       r_peak.max())


def test_ground_truth_matches_labels(exams):
    _, labels, info = exams
    sinus = ~has(labels, "AF")
    assert np.isnan(info["pr_interval"][~sinus]).all()
    assert (info["pr_interval"][has(labels, "1dAVb")] > 0.2).all()
    assert (info["pr_interval"][sinus & ~has(labels, "1dAVb")] < 0.2).all()
    assert (info["heart_rate"][has(labels, "SB")] < 50).all()
    assert (info["heart_rate"][has(labels, "ST")] > 100).all()
    block = has(labels, "RBBB") | has(labels, "LBBB")
    assert (info["qrs_duration"][block] >= 0.12).all()
    assert (info["qrs_duration"][~block] < 0.12).all()


# --- Leads, padding, reproducibility -------------------------------------------------
def test_limb_lead_relations_hold_with_noise(exams):
    x = exams[0].astype(np.float64)
    lead = {name: x[:, :, k] for k, name in enumerate(LEADS)}
    tolerance = {"atol": 1e-4, "rtol": 0}
    np.testing.assert_allclose(lead["DIII"], lead["DII"] - lead["DI"], **tolerance)
    np.testing.assert_allclose(lead["aVR"], -(lead["DI"] + lead["DII"]) / 2, **tolerance)
    np.testing.assert_allclose(lead["aVL"], lead["DI"] - lead["DII"] / 2, **tolerance)
    np.testing.assert_allclose(lead["aVF"], lead["DII"] - lead["DI"] / 2, **tolerance)


def test_output_types_padding_and_components(exams):
    tracings, _, info = exams
    assert tracings.shape == (N_EXAMS, N_SAMPLES, 12) and tracings.dtype == np.float32
    assert np.isfinite(tracings).all()
    seconds = info["recording_seconds"]
    assert set(seconds) == {7, 10}
    for x, duration in zip(tracings, seconds):
        pad = (N_SAMPLES - duration * FS) // 2
        assert (x[:pad] == 0).all() and (x[N_SAMPLES - pad:] == 0).all()
        assert (np.abs(x[pad:N_SAMPLES - pad]).sum(axis=1) > 0).all()
    clean, _, _ = ecg_synthetic.generate(N_EXAMS, seed=11, noise=False)
    parts = sum(info["components"][name] for name in ("p", "qrs", "t", "atrial"))
    np.testing.assert_allclose(parts, clean, atol=1e-3)
    assert (np.abs(tracings - clean).max(axis=(1, 2)) > 0.01 * MV).all()  # noise was added


def test_same_seed_same_exams_other_seed_different():
    first = ecg_synthetic.generate(6, seed=3)
    second = ecg_synthetic.generate(6, seed=3)
    other = ecg_synthetic.generate(6, seed=4)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_exclusions_and_prevalence_over_many_draws():
    rng = np.random.default_rng(0)
    for preset in ("balanced", "code"):
        labels = ecg_synthetic.sample_labels(rng, 200_000, preset)
        lab = {name: labels[:, k] for k, name in enumerate(CLASSES)}
        for a, b in (("AF", "SB"), ("AF", "ST"), ("AF", "1dAVb"), ("SB", "ST"),
                     ("RBBB", "LBBB")):
            assert not (lab[a] & lab[b]).any(), (preset, a, b)
        expected = ecg_synthetic.resolve_prevalence(preset)
        np.testing.assert_allclose(labels.mean(axis=0), [expected[c] for c in CLASSES],
                                   atol=0.005)
    balanced = ecg_synthetic.sample_labels(rng, 20_000, "balanced")
    lab = {name: balanced[:, k] for k, name in enumerate(CLASSES)}
    assert (lab["1dAVb"] & lab["RBBB"]).any() and (lab["LBBB"] & lab["AF"]).any()
    assert (~balanced.any(axis=1)).mean() > 0.15  # normal exams too


def test_prevalence_parsing_and_errors():
    assert ecg_synthetic.parse_prevalence("code") == ecg_synthetic.resolve_prevalence("code")
    custom = ecg_synthetic.parse_prevalence("code,AF=0.3")
    assert custom["AF"] == 0.3 and custom["ST"] == 0.025
    assert ecg_synthetic.parse_prevalence("ST=0.1")["SB"] == 0.18
    for bad in ("rare", "AF=2", "AF=x", "XYZ=0.1", "AF=0.5,SB=0.4,ST=0.2", "AF=0.1,code"):
        with pytest.raises(ECGInputError):
            ecg_synthetic.parse_prevalence(bad)
    with pytest.raises(ECGInputError):
        ecg_synthetic.generate(0)
    with pytest.raises(ECGInputError):
        ecg_synthetic.generate(2, seed=-1)


# --- Files and command line ----------------------------------------------------------
def test_cli_writes_a_valid_code_file(tmp_path, capsys):
    path = tmp_path / "synthetic.hdf5"
    assert run_cli(synthetic_cli.main, [str(path), "--n", "5", "--seed", "2", "--quiet",
                                        "--prevalence", "code,AF=0.5"]) == 0
    assert "wrote 5 synthetic exams" in capsys.readouterr().out
    tracings, labels, _ = ecg_synthetic.generate(5, seed=2, prevalence="code,AF=0.5")
    with h5py.File(path, "r") as handle:
        assert handle["tracings"].shape == (5, N_SAMPLES, 12)
        assert handle["tracings"].dtype == np.float32
        assert handle["exam_id"].dtype == np.int64
        np.testing.assert_array_equal(handle["exam_id"][:], np.arange(1, 6))
        assert [str(c) for c in handle["labels"].attrs["classes"]] == list(CLASSES)
        np.testing.assert_array_equal(handle["tracings"][:], tracings)
        np.testing.assert_array_equal(handle["labels"][:], labels)
        for attrs in (handle["tracings"].attrs, handle.attrs):  # the scale, recorded
            assert attrs["units_per_mv"] == UNITS_PER_MV and "unit_volts" not in attrs
            assert attrs["units"] == f"mV x {UNITS_PER_MV:g} (1 mV = {UNITS_PER_MV:g} units)"
        assert handle.attrs["generator"] == "ecg_synthetic"
        assert handle.attrs["seed"] == 2 and handle.attrs["n"] == 5
        assert '"AF": 0.5' in handle.attrs["prevalence"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left


def test_write_in_several_chunks_matches_generate(tmp_path):
    n = ecg_synthetic.CHUNK_SIZE + 3
    path = ecg_synthetic.write_synthetic(tmp_path / "big.hdf5", n, seed=9, progress=False,
                                         noise=False, first_exam_id=100)
    tracings, labels, _ = ecg_synthetic.generate(n, seed=9, noise=False)
    with h5py.File(path, "r") as handle:
        np.testing.assert_array_equal(handle["tracings"][-5:], tracings[-5:])
        np.testing.assert_array_equal(handle["labels"][:], labels)
        assert handle["exam_id"][0] == 100 and handle["exam_id"][-1] == 100 + n - 1
        assert not handle.attrs["noise"]


def test_script_bad_input_exits_2_without_traceback(tmp_path):
    out = tmp_path / "x.hdf5"
    for args in (["--n", "0"], ["--n", "3", "--prevalence", "AF=1.5"]):
        command = [sys.executable, "-m", "ecgcode.cli.synthetic", str(out), *args]
        result = subprocess.run(command, check=False, capture_output=True, text=True,
                                cwd=tmp_path, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})  # this checkout
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
        assert not out.exists()
