"""nmf_sweep on the signal, as a user meets it: calibrations, lazy data, masks, persistence."""

import hyperspy.api as hs
import numpy as np
import pytest
from pyxem.signals import ElectronDiffraction2D

from hyperspy_nmfdecide.data import simulated_scan
from hyperspy_nmfdecide.results import NMFSweep
from hyperspy_nmfdecide.signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D


@pytest.fixture(scope="module")
def scan():
    return simulated_scan(nav_shape=(12, 10), pattern_size=32, n_crystals=2, random_state=1)


def make_signal(scan, lazy):
    s = scan.signal.deepcopy()
    if lazy:
        s = s.as_lazy()
        s.rechunk(nav_chunks=(10, 4))
    return s


def sweep_of(s, **kwargs):
    arguments = {"k_range": range(1, 5), "n_restarts": 3, "random_state": 0} | kwargs
    return s.nmf_sweep(**arguments)


def test_sweep_shapes_and_calibrated_results(scan, lazy):
    s = make_signal(scan, lazy)
    sweep = sweep_of(s)
    assert isinstance(sweep, NMFSweep)
    assert sweep.loss.shape == (4, 3) and sweep.k_values.tolist() == [1, 2, 3, 4]
    assert np.all(np.diff(sweep.best_loss) < 0)

    factors = sweep.get_factors(3)
    assert isinstance(factors, ElectronDiffraction2D)
    assert factors.axes_manager.navigation_shape == (3,)
    for ours, source in zip(factors.axes_manager.signal_axes, s.axes_manager.signal_axes):
        assert (ours.name, ours.units, ours.size) == (source.name, source.units, source.size)
        assert ours.scale == pytest.approx(source.scale)
        assert ours.offset == pytest.approx(source.offset)

    loadings = sweep.get_loadings(3)
    assert loadings.axes_manager.navigation_shape == (3,)
    for ours, source in zip(loadings.axes_manager.signal_axes, s.axes_manager.navigation_axes):
        assert (ours.name, ours.units, ours.size) == (source.name, source.units, source.size)
        assert ours.scale == pytest.approx(source.scale)

    model = sweep.get_model(3)
    assert model._lazy == lazy
    assert isinstance(model, LazyNMFDecideDiffraction2D if lazy else NMFDecideDiffraction2D)
    assert model.data.shape == s.data.shape
    reconstructed = np.asarray(model.data if not lazy else model.data.compute())
    data = np.asarray(s.data if not lazy else s.data.compute(), dtype=float)
    # The MSE is over the fitted pixels: by default the direct beam is left out (and zero in
    # the model).
    fitted = ~sweep.signal_mask
    assert sweep.params["signal_mask"]["source"] == "automatic" and sweep.signal_mask.any()
    assert np.all(reconstructed[..., ~fitted] == 0)
    error = (reconstructed - data)[..., fitted]
    assert np.mean(error**2) == pytest.approx(sweep.best_loss[2], rel=1e-4)


def test_lazy_matches_eager(scan):
    eager = sweep_of(make_signal(scan, False))
    lazy = sweep_of(make_signal(scan, True))
    # Different chunkings sum float32 products in a different order; over a full fit that
    # moves the MSE in the 5th digit, never more.
    np.testing.assert_allclose(lazy.best_loss, eager.best_loss, rtol=1e-3)
    np.testing.assert_allclose(lazy.pca_loss, eager.pca_loss, rtol=1e-4)


def test_lazy_sweep_never_computes_the_whole_scan(scan, monkeypatch):
    import dask.array as da

    s = make_signal(scan, True)
    largest = []
    original = da.Array.compute

    def watched(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        largest.append(np.asarray(result).size)
        return result

    monkeypatch.setattr(da.Array, "compute", watched)
    sweep_of(s, k_range=[2], n_restarts=2)
    assert max(largest) <= s.data.size // 3  # chunks of 10 x 4 probes out of 12 x 10


def test_same_seed_same_result(scan):
    s = make_signal(scan, False)
    a, b = sweep_of(s), sweep_of(s)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.get_factors(2).data, b.get_factors(2).data)


def test_user_signal_is_not_modified(scan, lazy):
    s = make_signal(scan, lazy)
    before = np.array(s.data)
    sweep_of(s, store=False)
    np.testing.assert_array_equal(np.array(s.data), before)
    assert not s.metadata.has_item("NMFDecide")


def test_sweep_saved_with_the_signal_and_on_its_own(scan, tmp_path, lazy):
    s = make_signal(scan, lazy)
    sweep = sweep_of(s)
    path = tmp_path / "scan.zspy"
    s.save(path)
    back = hs.load(path, lazy=lazy).get_nmf_sweep()
    for name in ("loss", "n_iter", "converged", "pca_loss", "nndsvd_loss", "best_run"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sweep, name))
    np.testing.assert_array_equal(back.get_factors(3).data, sweep.get_factors(3).data)
    np.testing.assert_array_equal(back.get_loadings(2).data, sweep.get_loadings(2).data)
    np.testing.assert_array_equal(back.loss_history(4), sweep.loss_history(4))
    assert back.params == sweep.params
    own = NMFSweep.load(sweep.save(tmp_path / "sweep"))
    np.testing.assert_array_equal(own.get_factors(4).data, sweep.get_factors(4).data)
    assert own.get_factors(4).axes_manager.signal_axes[0].units == (
        s.axes_manager.signal_axes[0].units
    )


def test_get_nmf_sweep_before_any_sweep_is_an_error(scan):
    with pytest.raises(RuntimeError, match="run s.nmf_sweep"):
        scan.signal.deepcopy().get_nmf_sweep()


def test_learning_results_for_hyperspy(scan):
    s = make_signal(scan, False)
    sweep = sweep_of(s)
    sweep.write_learning_results(s, 3)
    model = s.get_decomposition_model()
    np.testing.assert_allclose(model.data, sweep.get_model(3).data, rtol=1e-4, atol=1e-3)
    assert s.get_decomposition_factors().data.shape[0] == 3
    s.plot_decomposition_results()
    with pytest.raises(ValueError, match="k=9 is not in the sweep"):
        sweep.write_learning_results(s, 9)


def test_plot_shows_every_run_min_mean_and_pca(scan):
    sweep = sweep_of(make_signal(scan, False))
    fig = sweep.plot()
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    np.testing.assert_allclose(lines["minimum MSE"].get_ydata(), sweep.best_loss)
    np.testing.assert_allclose(lines["mean MSE"].get_ydata(), sweep.mean_loss)
    np.testing.assert_allclose(lines["PCA (rank-k bound)"].get_ydata(), sweep.pca_loss)
    counts = ax.collections[0].get_array()
    assert int(counts.sum()) == sweep.loss.size  # every run lands in the frequency map


def test_direct_beam_mask_is_at_the_beam_not_the_centre():
    scan = simulated_scan(
        nav_shape=(4, 4), pattern_size=48, n_crystals=1, beam_offset=(4.0, -3.0), random_state=0
    )
    mask = scan.signal.direct_beam_mask(radius=3)
    yy, xx = np.nonzero(mask)
    assert xx.mean() == pytest.approx(24 + 4.0, abs=1.0)
    assert yy.mean() == pytest.approx(24 - 3.0, abs=1.0)
    lazy_mask = scan.signal.as_lazy().direct_beam_mask(radius=3)
    np.testing.assert_array_equal(lazy_mask, mask)


def test_the_sweep_masks_the_direct_beam_by_default(scan, lazy):
    s = make_signal(scan, lazy)
    beam = s.direct_beam()
    assert beam.found
    sweep = sweep_of(s, k_range=range(1, 3), n_restarts=2)
    np.testing.assert_array_equal(sweep.signal_mask, beam.mask(scan.sources.shape[1:]))
    record = sweep.params["signal_mask"]
    assert record["source"] == "automatic" and record["n_pixels"] == sweep.signal_mask.sum()
    assert record["beam"]["radius"] == pytest.approx(beam.radius)
    # The true beam (simulated at the detector centre + beam_offset) is inside the mask.
    x, y = np.array(scan.sources.shape[1:][::-1]) / 2 + scan.params["beam_offset"]
    assert sweep.signal_mask[round(y), round(x)]
    assert not np.asarray(sweep.get_factors(2).data)[:, sweep.signal_mask].any()
    # The record travels with the sweep into metadata and back.
    assert s.get_nmf_sweep().params["signal_mask"] == record


def test_the_default_beam_mask_can_be_switched_off_or_replaced(scan):
    s = make_signal(scan, False)
    unmasked = sweep_of(s, k_range=range(1, 3), n_restarts=2, signal_mask=False)
    assert unmasked.signal_mask is None
    assert unmasked.params["signal_mask"] == {"source": "none", "n_pixels": 0}
    own = np.zeros(scan.sources.shape[1:], dtype=bool)
    own[:2] = True
    given = sweep_of(s, k_range=range(1, 3), n_restarts=2, signal_mask=own)
    np.testing.assert_array_equal(given.signal_mask, own)
    assert given.params["signal_mask"]["source"] == "given"
    with pytest.raises(TypeError, match="signal_mask"):
        sweep_of(s, signal_mask=True)


def test_no_beam_nothing_masked_and_said_so():
    scan = simulated_scan(
        nav_shape=(8, 8), pattern_size=32, direct_beam=False, background="none", random_state=0
    )
    sweep = scan.signal.nmf_sweep(range(1, 3), n_restarts=2, random_state=0)
    record = sweep.params["signal_mask"]
    assert record["source"] == "automatic" and not record["beam"]["found"]
    assert sweep.signal_mask is None and "not masked" in record["beam"]["reason"]
    with pytest.raises(ValueError, match="give radius"):
        scan.signal.direct_beam_mask()


def test_prepared_signal_keeps_the_class_and_its_beam_mask_reaches_the_sweep(scan, lazy):
    s = make_signal(scan, lazy)
    prepared = s.prepare_for_nmf(center=True, beam_mask_radius=3)
    assert type(prepared) is type(s)
    assert not s.metadata.has_item("NMFDecide")  # the user's signal is untouched
    recorded = prepared.metadata.NMFDecide.preprocessing.signal_mask
    sweep = sweep_of(prepared, k_range=range(1, 3), n_restarts=2)
    np.testing.assert_array_equal(sweep.signal_mask, recorded)
    assert not np.asarray(sweep.get_factors(2).data)[:, recorded].any()
    # An explicit mask wins over the recorded one.
    own = np.zeros_like(recorded)
    own[0, 0] = True
    np.testing.assert_array_equal(sweep_of(prepared, signal_mask=own, k_range=[1]).signal_mask, own)


def test_epattern_spots_sweep_as_sparse_matrix_or_redrawn_patterns(scan, lazy):
    s = make_signal(scan, lazy)
    table = s.register_spots()
    clean = s.epattern(table)
    assert type(clean) is type(s) and clean.data.shape == s.data.shape
    assert clean.metadata.NMFDecide.preprocessing.steps[-1]["n_spots"] == table.n_spots
    assert clean.axes_manager[-1].scale == s.axes_manager[-1].scale
    beam = s.direct_beam_mask()  # the same pixels for both (the default finds it on each)
    sparse_sweep = sweep_of(s, spots=table, signal_mask=beam)
    dense_sweep = sweep_of(clean, signal_mask=beam)
    np.testing.assert_allclose(sparse_sweep.best_loss, dense_sweep.best_loss, rtol=1e-3)
    assert sparse_sweep.params["input"] == "spots (sparse)"
    other = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
    with pytest.raises(ValueError, match="registered on a scan of shape"):
        other.nmf_sweep(spots=table)
    with pytest.raises(TypeError, match="SpotTable"):
        s.epattern(spots="table")


def test_masks_from_arrays_and_signals(scan, lazy):
    s = make_signal(scan, lazy)
    beam = s.direct_beam_mask(radius=3)
    vacuum = np.zeros(s.axes_manager.navigation_shape[::-1], dtype=bool)
    vacuum[0, :] = True
    sweep = sweep_of(s, signal_mask=beam, navigation_mask=hs.signals.BaseSignal(vacuum).T)
    factors = sweep.get_factors(2).data
    assert np.all(factors[:, beam] == 0)
    assert np.all(sweep.get_loadings(2).data[:, 0, :] == 0)
    assert np.array_equal(sweep.signal_mask, beam)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k_range": [0, 2]}, ValueError, "≥ 1"),
        ({"k_range": [2, 10_000]}, ValueError, "k can be at most"),
        ({"n_restarts": 0}, ValueError, "n_restarts"),
        ({"signal_mask": np.zeros((3, 3), bool)}, ValueError, "signal_mask has shape"),
        ({"signal_mask": np.ones((32, 32), bool)}, ValueError, "signal_mask excludes everything"),
        ({"navigation_mask": np.zeros((10, 12), bool)}, ValueError, "navigation_mask has shape"),
        ({"navigation_mask": np.zeros((12, 10))}, TypeError, "navigation_mask must be boolean"),
        ({"solver": "cd"}, ValueError, "solver must be one of"),
    ],
)
def test_bad_arguments(scan, kwargs, error, match):
    with pytest.raises(error, match=match):
        sweep_of(scan.signal, **kwargs)


def test_bad_data(scan, lazy):
    s = make_signal(scan, False).deepcopy()
    s.data = s.data.astype(np.float32)
    s.data[1, 2, 3, 4] = np.nan
    s = s.as_lazy() if lazy else s
    with pytest.raises(ValueError, match="NaN"):
        sweep_of(s)
    t = scan.signal.deepcopy()
    t.data = t.data.astype(np.float32) - 5
    with pytest.raises(ValueError, match="negative values"):
        sweep_of(t)
    assert np.isfinite(sweep_of(t, negative_values="clip").best_loss).all()


def test_signal_that_is_not_2d_is_refused():
    spectrum = hs.signals.Signal1D(np.ones((4, 4, 16)))
    with pytest.raises(ValueError, match="2-D patterns"):
        NMFDecideDiffraction2D.nmf_sweep(spectrum, k_range=[1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_integer_detector_data_gives_the_float_answer(scan, dtype):
    counts = np.clip(scan.signal.data, 0, None).astype(np.float64)
    counts *= np.iinfo(dtype).max / counts.max()  # use the whole range: squares would overflow
    as_int = hs.signals.Signal2D(np.round(counts).astype(dtype))
    as_float = hs.signals.Signal2D(np.round(counts))
    for s in (as_int, as_float):
        s.set_signal_type("nmf_decide")
    a = sweep_of(as_int, k_range=[2], n_restarts=2)
    b = sweep_of(as_float, k_range=[2], n_restarts=2)
    np.testing.assert_allclose(a.best_loss, b.best_loss, rtol=1e-5)


def test_progressbar_shows_when_asked(scan, capsys):
    sweep_of(scan.signal.deepcopy(), k_range=[2], n_restarts=1, show_progressbar=True)
    assert "pass" in capsys.readouterr().err


def test_a_new_sweep_drops_the_decision_and_phase_maps_of_the_old_one(scan):
    s = make_signal(scan, False)
    sweep_of(s)
    s.decide_k(n_sample=16)
    s.phase_maps(k=2)
    assert s.metadata.has_item("NMFDecide.decision")
    sweep_of(s, n_restarts=2)
    assert not s.metadata.has_item("NMFDecide.decision")
    assert not s.metadata.has_item("NMFDecide.phase_maps")
    with pytest.raises(RuntimeError, match=r"run s\.decide_k\(\)"):
        s.get_k_decision()


def test_the_beam_is_not_looked_for_on_data_holding_nan(scan):
    s = scan.signal.deepcopy()
    s.data[2, 3, 5, 7] = np.nan
    for call in (s.direct_beam, lambda: s.direct_beam_mask(radius=3), lambda: sweep_of(s)):
        with pytest.raises(ValueError, match="NaN or infinite values .* replace them"):
            call()


def test_k_range_that_is_not_a_range_is_named(scan):
    with pytest.raises(TypeError, match=r"k_range must be an iterable .* got 3"):
        scan.signal.deepcopy().nmf_sweep(3)


@pytest.fixture(scope="module")
def analysed(scan):
    s = make_signal(scan, False)
    sweep_of(s)
    s.decide_k(n_sample=16)
    s.phase_maps(k=2)
    return s


@pytest.mark.parametrize(
    "changed",
    [
        lambda s: s.inav[::-1, :],  # the scan flipped: its metadata (and results) are copied
        lambda s: s * 0 + 1,  # new values, same shape
        lambda s: s.isig[::-1, :],  # the patterns flipped
    ],
    ids=["probes reordered", "values changed", "pixels reordered"],
)
def test_stored_results_are_refused_on_other_data(analysed, changed):
    other = changed(analysed)
    for call in (
        other.get_nmf_sweep,
        other.get_k_decision,
        other.get_phase_maps,
        lambda: other.decide_k(n_sample=16),
        lambda: other.phase_maps(k=2),
    ):
        with pytest.raises(ValueError, match=r"computed from other data .* run s\.\w+\(\)"):
            call()


def test_stored_results_are_used_on_the_same_data_lazy_or_saved(analysed, tmp_path):
    path = tmp_path / "scan.zspy"
    analysed.save(path)
    for same in (analysed.as_lazy(), hs.load(path, lazy=True), analysed.deepcopy()):
        assert same.get_phase_maps().k == 2
        assert same.get_k_decision().k == analysed.get_k_decision().k
        sweep = same.get_nmf_sweep()
        assert sweep.arrays.fingerprint == analysed.get_nmf_sweep().arrays.fingerprint


def test_a_stored_decision_of_other_data_does_not_choose_k(analysed):
    # The copy keeps the original's decision in its metadata; its own sweep is not stored.
    other = analysed * 0.5
    own_sweep = sweep_of(other, store=False)
    with pytest.raises(ValueError, match=r"KDecision at hand was computed from other data"):
        other.phase_maps(sweep=own_sweep)
    assert other.phase_maps(k=2, sweep=own_sweep, store=False).k == 2
