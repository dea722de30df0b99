"""decide_k: the level-1 elbow, the noise edge, the IQA evidence, and the signal method."""

import hyperspy.api as hs
import numpy as np
import pytest
from scipy import ndimage

from hyperspy_nmfdecide.data import simulated_scan
from hyperspy_nmfdecide.decide import (
    NoiseSpectrum,
    choose_k,
    elbow_k,
    iqa_evidence,
    noise_spectrum,
    restart_agreement,
)
from hyperspy_nmfdecide.nmf.operators import DenseOperator
from hyperspy_nmfdecide.results import KDecision


def planted_counts(rank=3, n=400, p=(16, 16), dose=30.0, seed=0, gain=1.0, smooth=False):
    """Poisson counts of ``rank`` spot patterns times ``gain``.

    The maps are random per probe, or with ``smooth`` smooth over a 20 × 20 scan as in a real
    scan (neighbouring probes then hold nearly the same pattern).
    """
    rng = np.random.default_rng(seed)
    h = np.full((rank, p[0] * p[1]), 0.05)
    for j in range(rank):
        h[j, rng.choice(h.shape[1], 12, replace=False)] = rng.uniform(1, 3, 12)
    h /= h.sum(axis=1, keepdims=True)
    w = rng.gamma(1.0, dose, (n, rank))
    if smooth:
        side = int(np.sqrt(n))
        fields = ndimage.gaussian_filter(rng.standard_normal((side, side, rank)), (3, 3, 0))
        w = dose * np.exp(fields / fields.std()).reshape(n, rank)
    return gain * rng.poisson(w @ h).astype(float)


# -- level 1 --------------------------------------------------------------------------------------
def test_elbow_agrees_with_hyperspy():
    loss = np.array([50.0, 12.0, 4.0, 3.2, 3.0, 2.9, 2.85, 2.8])
    index = hs.signals.Signal1D(np.zeros(3)).estimate_elbow_position(loss)
    assert elbow_k(range(1, 9), loss) == index + 1
    assert elbow_k([3, 4, 5], [9.0, 2.0, 1.9]) == 4


def test_elbow_needs_three_points():
    with pytest.raises(ValueError, match="at least 3"):
        elbow_k([1, 2], [2.0, 1.0])


# -- the noise edge -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rank", [1, 3, 5])
def test_noise_edge_counts_the_planted_rank(rank, seed):
    counts = planted_counts(rank=rank, seed=seed, smooth=True)
    spectrum = noise_spectrum(DenseOperator(counts), 8, random_state=seed)
    assert spectrum.n_components() == rank
    # Noise components sit at the edge, within its Tracy-Widom fluctuations.
    assert 0.85 < spectrum.ratio[rank] < spectrum.default_margin


def test_unrelated_neighbours_still_give_the_count():
    # Maps random per probe: neighbouring probes differ by more than noise, so the contrasts
    # hold structure too; each pixel's noise (its counts: variance = mean) stays within 20 %
    # and the count right, the tail of the spectrum scaling the rest back (``noise_scale``).
    counts = planted_counts(rank=3, seed=0)
    spectrum = noise_spectrum(DenseOperator(counts), 8, random_state=0)
    assert spectrum.n_components() == 3
    model = spectrum.noise
    ratio = model.column_variance / model.mean_pattern
    assert np.median(ratio) * spectrum.noise_scale == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("seed", [0, 1])
def test_counts_are_measured_as_counts_on_a_smooth_scan(seed):
    counts = planted_counts(rank=3, seed=seed, smooth=True)
    spectrum = noise_spectrum(DenseOperator(counts), 8, random_state=seed)
    assert spectrum.n_components() == 3
    # Counts are their own variance: gain 1 and no offset, within 10 %; the measured noise
    # matches the data's noise floor within 10 %.
    assert spectrum.noise.gain == pytest.approx(1.0, abs=0.1)
    assert spectrum.noise.offset < 0.1
    assert spectrum.noise_scale == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(
    "gain, offset, readout",
    [(0.3, 0.0, 0.0), (8.0, 0.0, 0.0), (50.0, 0.0, 0.0), (5.0, 100.0, 0.0), (10.0, 50.0, 5.0)],
)
def test_detector_noise_is_measured_and_does_not_change_the_count(gain, offset, readout):
    rng = np.random.default_rng(1)
    counts = planted_counts(rank=3, seed=1, gain=gain, smooth=True)
    data = counts + offset + rng.normal(0.0, readout, counts.shape) if readout else counts + offset
    spectrum = noise_spectrum(DenseOperator(data), 8, random_state=0)
    # A constant dark offset is one more non-negative source, present in every pattern.
    assert spectrum.n_components() == 3 + (offset > 0)
    # Within 15 %: with an offset the dark pixels all sit at one intensity, and the slope is
    # set by the few bright ones.
    assert spectrum.noise.gain == pytest.approx(gain, rel=0.15)
    assert spectrum.noise_scale == pytest.approx(1.0, abs=0.15)
    if offset and not readout:
        assert spectrum.noise.offset == pytest.approx(offset, rel=0.1)
    assert spectrum.problem() is None


def test_noise_free_data_are_recognised():
    counts = planted_counts(rank=3, seed=2, smooth=True)
    expected = ndimage.uniform_filter(counts, size=(1, 1))  # any fixed data without noise
    clean = np.repeat(expected[::4], 4, axis=0)  # groups of 4 identical probes: no noise
    spectrum = noise_spectrum(DenseOperator(clean), 8, random_state=0)
    assert spectrum.noise.noise_free
    assert "no noise" in spectrum.problem()


def test_too_few_probes_to_measure_the_noise_fall_back():
    scan = simulated_scan(nav_shape=(2, 3), pattern_size=32, n_crystals=1, random_state=0)
    s = scan.signal
    s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0, show_progressbar=False)
    decision = s.decide_k(show_progressbar=False)
    assert decision.fallback in ("stability", "iqa")
    assert "6 probes are too few to measure the noise" in decision.reason


def test_binning_keeps_the_count_and_lifts_weak_components():
    counts = planted_counts(rank=3, dose=3.0, seed=4)
    op = DenseOperator(counts, drop_dark=False)
    plain = noise_spectrum(op, 6)
    binned = noise_spectrum(op, 6, pattern_shape=(16, 16), binning=2)
    assert binned.n_components() == 3
    assert binned.ratio[binned.n_components()] < 1.05  # no false component from binning
    assert binned.ratio[2] >= plain.ratio[2]
    with pytest.raises(ValueError, match="binning"):
        noise_spectrum(op, 6, pattern_shape=(16, 16), binning=0)


# -- the decision ---------------------------------------------------------------------------------
SPECTRUM = NoiseSpectrum(np.array([90.0, 12.0, 3.0, 1.02, 1.0, 0.98]), 1.0, 1.0, (900, 400))


def test_decide_methods_and_reason():
    ks, loss = [2, 3, 4, 5, 6], [5.0, 2.0, 1.1, 1.05, 1.0]
    noise = choose_k(ks, loss, spectrum=SPECTRUM)
    assert (noise.k, noise.method, noise.suggested_range) == (3, "noise", None)
    assert "above the noise edge" in noise.reason and "k = 3" in noise.reason
    assert choose_k(ks, loss, method="elbow").k == noise.elbow_k
    ssim = {"ssim": np.array([0.5, 0.8, 0.9, 0.901, 0.9015])}
    assert choose_k(ks, loss, method="iqa", fidelity=ssim).k == 4


def test_decide_says_when_the_range_does_not_bracket():
    result = choose_k(
        [1, 2, 3], [3.0, 2.0, 1.5], spectrum=NoiseSpectrum(np.full(5, 9.0), 1, 1, (900, 400))
    )
    assert result.k == 3 and result.suggested_range == (1, 7)
    assert "does not bracket" in result.reason
    low = choose_k([4, 5, 6], [3.0, 2.0, 1.5], spectrum=SPECTRUM)
    assert low.k == 4 and low.suggested_range[0] == 1


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([1, 2], [2.0, 1.0]), {"spectrum": SPECTRUM}, "at least 3 values of k"),
        (([1, 2, 3], [2.0, np.nan, 1.0]), {"spectrum": SPECTRUM}, "NaN"),
        (([1, 2, 3], [3.0, 2.0, 1.0]), {"method": "magic"}, "method must be one of"),
        (([1, 2, 3], [3.0, 2.0, 1.0]), {}, "needs the noise spectrum"),
        (([1, 2, 3], [3.0, 2.0, 1.0]), {"method": "iqa"}, "needs the IQA evidence"),
    ],
)
def test_decide_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        choose_k(*args, **kwargs)


# -- IQA evidence ---------------------------------------------------------------------------------
def test_iqa_evidence_prefers_the_truth_and_checks_input():
    rng = np.random.default_rng(0)
    truth = np.zeros((6, 24, 24))
    truth[:, 8:14, 8:14] = 40.0
    raw = rng.poisson(truth + 2.0).astype(float)
    table = iqa_evidence(raw, {1: np.full_like(raw, raw.mean()), 2: truth + 2.0})
    assert table["ssim"][1] > table["ssim"][0] and table["gmsd"][1] < table["gmsd"][0]
    assert table["psnr"][1] > table["psnr"][0] and table["mdsi"][1] < table["mdsi"][0]
    assert table["residual_nsd_ratio"][1] == pytest.approx(1.0, abs=0.15)
    assert np.isnan(table["next_ssim"][1]) and 0 < table["next_ssim"][0] < 1
    same = iqa_evidence(raw, {1: raw, 2: raw})
    assert same["ssim"][0] == pytest.approx(1.0) and same["next_ssim"][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        iqa_evidence(raw, {1: raw[:, :10]})
    with pytest.raises(ValueError, match="all zero"):
        iqa_evidence(np.zeros_like(raw), {1: raw})
    with pytest.raises(ValueError, match="NaN"):
        iqa_evidence(np.where(truth > 0, np.nan, raw), {1: raw})


def test_restart_agreement():
    loss = np.array([[1.0, 1.0005, 1.2], [2.0, 3.0, 4.0]])
    np.testing.assert_allclose(restart_agreement(loss, loss.min(axis=1)), [2 / 3, 1 / 3])


# -- on the signal --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scan():
    return simulated_scan(
        nav_shape=(16, 16), pattern_size=32, n_crystals=2, dose=2000, random_state=0
    )


@pytest.fixture(scope="module")
def swept(scan):
    s = scan.signal.deepcopy()
    s.nmf_sweep(range(1, 6), n_restarts=4, random_state=0)
    return s


def test_decide_k_finds_the_true_k_eager_and_lazy(scan, swept):
    decision = swept.decide_k()
    assert decision.k == scan.true_k
    assert [row["k"] for row in decision.table] == [1, 2, 3, 4, 5]
    assert {
        "noise_ratio",
        "ssim",
        "gmsd",
        "mdsi",
        "psnr",
        "next_ssim",
        "residual_nsd_ratio",
    } <= set(decision.table[0])
    # The rank-1 fit is unique: the two best runs have the same component.
    assert decision.table[0]["component_agreement"] == pytest.approx(1.0, abs=1e-3)
    assert all(0 < row["component_agreement"] <= 1 + 1e-9 for row in decision.table)
    # The fit at the true k leaves noise: residual NSD at the Poisson level.
    assert decision.table[scan.true_k - 1]["residual_nsd_ratio"] == pytest.approx(1.0, abs=0.2)
    lazy = swept.as_lazy()
    lazy_decision = lazy.decide_k(sweep=swept.get_nmf_sweep())
    assert lazy_decision.k == decision.k
    np.testing.assert_allclose(lazy_decision.noise_ratio, decision.noise_ratio, rtol=1e-3)


def test_decision_is_stored_saved_and_plotted(swept, tmp_path):
    decision = swept.decide_k()
    again = KDecision.from_dict(decision.to_dict())
    np.testing.assert_equal(again.table, decision.table)  # NaN (last next_ssim) equal to NaN
    assert again.reason == decision.reason
    path = tmp_path / "decided.zspy"
    swept.save(path)
    loaded = hs.load(path, signal_type="nmf_decide").get_k_decision()
    assert loaded.k == decision.k
    np.testing.assert_equal(loaded.table, decision.table)
    fig = decision.plot()
    assert len(fig.axes) == 4
    assert any(line.get_xdata()[0] == decision.k for line in fig.axes[0].lines)


def test_decide_k_warns_when_the_sweep_does_not_bracket():
    scan = simulated_scan(
        nav_shape=(16, 16), pattern_size=32, n_crystals=4, dose=5000, random_state=0
    )
    s = scan.signal
    s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0)
    with pytest.warns(UserWarning, match=r"does not bracket.*nmf_sweep\(range\(1, "):
        decision = s.decide_k()
    assert decision.k == 3 and decision.suggested_range[1] >= scan.true_k


def test_decide_k_errors(scan, swept):
    fresh = scan.signal.deepcopy()
    with pytest.raises(RuntimeError, match="nmf_sweep"):
        fresh.decide_k()
    with pytest.raises(RuntimeError, match="decide_k"):
        fresh.get_k_decision()
    with pytest.raises(ValueError, match="method"):
        swept.decide_k(method="magic")
    with pytest.raises(ValueError, match="margin"):
        swept.decide_k(margin=0.5)
    with pytest.raises(ValueError, match="n_sample"):
        swept.decide_k(n_sample=0)
    with pytest.raises(TypeError, match="random_state"):
        swept.decide_k(random_state=None)
    with pytest.raises(TypeError, match="NMFSweep"):
        swept.decide_k(sweep="a sweep")
    small = scan.signal.inav[:8, :8].deepcopy()
    with pytest.raises(ValueError, match="shape"):
        small.decide_k(sweep=swept.get_nmf_sweep())
    single = scan.signal.deepcopy()
    single.nmf_sweep([3], n_restarts=2, random_state=0)
    with pytest.raises(ValueError, match="at least 3 values of k"):
        single.decide_k()


def test_phase_maps_use_the_decision(scan, swept, tmp_path):
    s = scan.signal.deepcopy()
    s.metadata.set_item("NMFDecide.sweep", swept.metadata.NMFDecide.sweep.as_dictionary())
    with pytest.raises(RuntimeError, match="decide_k"):
        s.phase_maps()
    decision = s.decide_k()
    pm = s.phase_maps()
    assert pm.k == decision.k
    path = tmp_path / "phases.zspy"
    s.save(path)
    loaded = hs.load(path, signal_type="nmf_decide").get_phase_maps()
    np.testing.assert_array_equal(loaded.label_array, pm.label_array)
    with pytest.raises(ValueError, match="available k"):
        s.phase_maps(k=9)


# -- the decision on data that are not unit-gain counts -------------------------------------------
NOT_COUNTS = {
    "gain 0.3": {"detector": {"gain": 0.3}},
    "gain 50": {"detector": {"gain": 50.0}},
    "offset and readout": {"detector": {"gain": 4.0, "offset": 60.0, "readout_noise": 2.0}},
    "point-spread blur": {"detector": {"psf_sigma": 0.7}},
    "descan (sub-pixel shifts)": {"descan": 2.5},
    "2 x 2 binning": {"binning": 2},
}


@pytest.mark.parametrize("case", list(NOT_COUNTS))
def test_the_decision_holds_on_data_that_are_not_unit_gain_counts(case):
    options = dict(NOT_COUNTS[case])
    binning = options.pop("binning", None)
    scan = simulated_scan(
        nav_shape=(24, 24), pattern_size=64, n_crystals=2, dose=2000, random_state=5, **options
    )
    s = scan.signal if binning is None else scan.signal.prepare_for_nmf(binning=binning)
    s.nmf_sweep(range(1, 7), n_restarts=3, random_state=0, show_progressbar=False)
    decision = s.decide_k(show_progressbar=False)
    # Within one of the truth (a dark offset is one more source present everywhere), or a
    # fallback that the reason names.
    if decision.fallback is None:
        assert abs(decision.k - scan.true_k) <= 1, decision.reason
        assert "noise variance" in decision.reason
    else:
        assert "used because" in decision.reason
    if case.startswith("gain"):
        gain = options["detector"]["gain"]
        assert decision.noise["gain"] == pytest.approx(gain, rel=0.15)
    if case == "offset and readout":
        assert decision.table[0]["noise_offset"] > 0


def test_a_decision_is_always_a_swept_k():
    # The noise edge gives 3; the sweep holds 2, 5 and 9: the nearest swept k, and a range that
    # holds the answer, with the reason.
    spectrum = NoiseSpectrum(np.array([90.0, 12.0, 3.0, 1.02, 1.0]), 1.0, 1.0, (900, 400))
    verdict = choose_k([2, 5, 9], [5.0, 1.1, 1.0], spectrum=spectrum)
    assert verdict.k == 2 and verdict.suggested_range == (1, 5)
    assert "nearest swept k to 3" in verdict.reason
    assert choose_k([2, 3, 4, 5, 6], [5.0, 2.0, 1.1, 1.05, 1.0], spectrum=spectrum).k == 3


def test_binning_that_leaves_no_bins_is_named(swept):
    with pytest.raises(ValueError, match=r"binning must be between 1 and \d+ for patterns"):
        swept.decide_k(binning=64)
    with pytest.raises(TypeError, match="binning must be an integer"):
        swept.decide_k(binning=2.5)


def test_a_nan_in_an_excluded_pixel_is_no_concern_of_the_decision():
    s = simulated_scan(nav_shape=(10, 10), pattern_size=32, random_state=2).signal
    s.data[1, 1, 0, 0] = np.nan
    mask = np.zeros((32, 32), dtype=bool)
    mask[0, 0] = True
    s.nmf_sweep(range(1, 5), n_restarts=2, max_iter=30, signal_mask=mask, random_state=0)
    decision = s.decide_k(n_sample=16)
    assert decision.k in (1, 2, 3, 4) and np.isfinite(decision.columns["ssim"]).all()


@pytest.fixture(scope="module")
def counts_scan():
    return simulated_scan(nav_shape=(16, 16), pattern_size=32, n_crystals=2, random_state=1)


@pytest.mark.parametrize("scale", [1e-15, 1e30])
def test_the_decision_does_not_depend_on_the_unit_of_the_data(counts_scan, scale):
    # Before: at ×1e-15 the noise gain came out 0 (lstsq's relative cut-off dropped the
    # intensity column) and k ran to the top; at ×1e30 the spectrum's float32 squares overflowed.
    decisions = []
    for factor in (1.0, scale):
        s = counts_scan.signal.deepcopy()
        s.data = s.data.astype(np.float64) * factor
        s.nmf_sweep(range(1, 6), n_restarts=3, random_state=0)
        decision = s.decide_k(n_sample=32)
        decisions.append((decision.k, decision.noise["gain"] / factor, decision.fallback))
    (k, gain, fallback), (k_scaled, gain_scaled, fallback_scaled) = decisions
    assert (k_scaled, fallback_scaled) == (k, fallback) == (counts_scan.true_k, None)
    assert gain_scaled == pytest.approx(gain, rel=1e-3)
