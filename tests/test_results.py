"""The result objects: one base for where they are kept, how they are saved, their axes."""

import hyperspy.api as hs
import numpy as np
import pytest

import hyperspy_nmfdecide
from hyperspy_nmfdecide import decide, phases
from hyperspy_nmfdecide.data import simulated_scan
from hyperspy_nmfdecide.results import (
    METADATA_DECISION,
    METADATA_PHASE_MAPS,
    METADATA_SWEEP,
    STORED_RESULTS,
    KDecision,
    NMFSweep,
    PhaseMaps,
)


@pytest.fixture(scope="module")
def analysed():
    """A 12 × 10 scan with calibrated, non-trivial axes, swept, decided and phase-mapped."""
    s = simulated_scan(
        nav_shape=(12, 10), pattern_size=32, n_crystals=2, dose=2000, random_state=3
    ).signal
    for axis, (scale, offset, units) in zip(
        s.axes_manager.navigation_axes + s.axes_manager.signal_axes,
        [(2.5, 10.0, "nm"), (3.0, -4.0, "nm"), (0.02, -0.3, "1/Å"), (0.03, -0.5, "1/Å")],
    ):
        axis.scale, axis.offset, axis.units = scale, offset, units
    sweep = s.nmf_sweep(range(1, 5), n_restarts=3, random_state=0)
    decision = s.decide_k()
    pm = s.phase_maps(k=3)
    return s, sweep, decision, pm


@pytest.mark.parametrize(
    "result_type, key, method",
    [
        (NMFSweep, METADATA_SWEEP, "nmf_sweep"),
        (KDecision, METADATA_DECISION, "decide_k"),
        (PhaseMaps, METADATA_PHASE_MAPS, "phase_maps"),
    ],
)
def test_each_result_has_one_metadata_key_and_names_the_method_that_makes_it(
    analysed, result_type, key, method
):
    s = analysed[0]
    assert result_type.metadata_path == key and key in STORED_RESULTS
    stored = result_type.from_signal(s)
    assert isinstance(stored, result_type)
    with pytest.raises(RuntimeError, match=rf"No {result_type.__name__} .* run s\.{method}\(\)"):
        result_type.from_signal(hs.signals.Signal2D(np.zeros((2, 4, 4))))


def test_stored_results_read_back_the_same(analysed):
    s, sweep, decision, pm = analysed
    fresh = s.deepcopy()
    for result in (sweep, decision, pm):
        result.store(fresh)
    np.testing.assert_array_equal(NMFSweep.from_signal(fresh).loss, sweep.loss)
    assert KDecision.from_signal(fresh).reason == decision.reason
    np.testing.assert_array_equal(PhaseMaps.from_signal(fresh).label_array, pm.label_array)


def _axes(signal):
    return [(a.name, a.units, a.size, a.scale, a.offset) for a in signal.axes_manager.signal_axes]


def test_every_getter_carries_the_source_calibration(analysed):
    s, sweep, _, pm = analysed
    scan_axes = [
        (a.name, a.units, a.size, a.scale, a.offset) for a in s.axes_manager.navigation_axes
    ]
    pattern_axes = _axes(s)
    for getter in (sweep.get_loadings(3), pm.labels, pm.overlap, pm.component_masks):
        assert _axes(getter) == scan_axes
    for getter in (sweep.get_factors(3), pm.components, pm.raw_means, pm.reconstructed_means):
        assert _axes(getter) == pattern_axes
    assert sweep.scan_shape == pm.scan_shape == s.data.shape[:2]
    assert sweep.pattern_shape == pm.pattern_shape == s.data.shape[2:]


def test_phase_maps_from_a_sweep_are_what_the_signal_method_gives(analysed):
    s, sweep, _, pm = analysed
    x = s.data.reshape(120, 32 * 32)
    direct = PhaseMaps.from_sweep(sweep, 3, x)
    np.testing.assert_array_equal(direct.label_array, pm.label_array)
    np.testing.assert_array_equal(direct.raw_mean_array, pm.raw_mean_array)
    assert direct.legend == pm.legend and direct.params == pm.params
    with pytest.raises(ValueError, match=r"k=7 is not in the sweep; available k: \[1, 2, 3, 4\]"):
        PhaseMaps.from_sweep(sweep, 7, x)


def test_a_decision_keeps_what_evaluate_found(analysed):
    s, sweep, decision, _ = analysed
    steps = []
    found = decide.evaluate(
        sweep.arrays,
        s.data.reshape(120, 32 * 32),
        pattern_shape=(32, 32),
        scan_shape=(12, 10),
        progress=lambda: steps.append(1),
        **sweep.matrix_options(),
    )
    # The progress bar of decide_k: the noise spectrum, the IQA metrics, then each k.
    assert len(steps) == len(sweep.k_values) + 2
    kept = KDecision.from_decision(found)
    assert (kept.k, kept.elbow_k, kept.reason) == (decision.k, decision.elbow_k, decision.reason)
    np.testing.assert_array_equal(kept.noise_ratio, found.spectrum.ratio)
    assert kept.noise == found.spectrum.noise.to_dict()
    assert set(kept.columns) == set(found.columns)


def test_label_phases_reports_each_stage(analysed):
    s, sweep, _, pm = analysed
    factors, loadings = sweep.best_factorisation(3)
    steps = []
    arrays = phases.label_phases(
        factors,
        loadings,
        s.data.reshape(120, -1),
        (12, 10),
        signal_mask=sweep.signal_mask.ravel(),
        pattern_shape=(32, 32),
        progress=lambda: steps.append(1),
    )
    assert len(steps) == phases.N_STAGES
    assert arrays.legend.keys() == pm.legend.keys()


def test_the_package_hands_on_its_public_names():
    assert hyperspy_nmfdecide.NMFSweep is NMFSweep
    assert hyperspy_nmfdecide.PhaseMaps is PhaseMaps
    assert hyperspy_nmfdecide.simulated_scan is simulated_scan
    assert "BatchedNMF" in dir(hyperspy_nmfdecide)
    assert set(hyperspy_nmfdecide.__all__) >= {"KDecision", "BatchedNMF", "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        hyperspy_nmfdecide.Nothing  # noqa: B018


# -- reading damaged or foreign files (issue 13) -------------------------------------------------
@pytest.fixture(scope="module")
def small_results():
    """A small real sweep, decision and phase maps, to damage copies of."""
    s = simulated_scan(nav_shape=(8, 8), pattern_size=16, random_state=0).signal
    sweep = s.nmf_sweep(range(1, 4), n_restarts=2, max_iter=30, random_state=0)
    decision = s.decide_k()
    pm = s.phase_maps(2)
    return s, sweep, decision, pm


def _save_changed(result, path, change):
    """``result`` saved to ``path`` with ``change(dict)`` applied to what it stores."""
    stored = result.to_dict()
    change(stored)
    np.savez(path, **stored)
    return path


def test_loading_a_text_file_names_it_and_says_it_is_no_sweep(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not a sweep\n")
    with pytest.raises(ValueError, match=r"notes\.npz is not a stored NMF sweep"):
        NMFSweep.load(path)


def test_loading_a_truncated_file_says_so(small_results, tmp_path):
    whole = small_results[1].save(tmp_path / "sweep.npz").read_bytes()
    for cut in (len(whole) // 2, len(whole) - 30):
        path = tmp_path / f"cut{cut}.npz"
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=rf"cut{cut}\.npz is truncated or damaged"):
            NMFSweep.load(path)


def test_loading_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        NMFSweep.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("loadings"), r"lacks 'loadings'"),
        (lambda d: d.update(params_json="{broken"), r"'params_json' is not valid JSON"),
        (lambda d: d.update(axes_json="[1, 2"), r"'axes_json' is not valid JSON"),
        (lambda d: d.update(factors=0 * d["factors"]), r"factors at k = 1 rows \[0\] sum to"),
        (lambda d: d.update(loadings=d["loadings"][:10]), r"loadings at k = 1 has shape"),
        (lambda d: d.update(loss=np.nan * d["loss"]), r"best MSE holds NaN"),
        (lambda d: d.update(k_values=np.array([1, 3, 2])), r"k_values \[1, 3, 2\]"),
        (lambda d: d.update(format="other"), r"not a stored NMF sweep"),
    ],
    ids=["missing key", "params json", "axes json", "zero factors", "shape", "nan", "k", "format"],
)
def test_a_damaged_sweep_file_is_refused_naming_file_and_fault(
    small_results, tmp_path, change, message
):
    path = _save_changed(small_results[1], tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=r"bad\.npz: .*" + message):
        NMFSweep.load(path)


def test_a_dead_component_is_not_damage(small_results, tmp_path):
    # A component that died in the fit has zero factors *and* zero loadings: still loadable.
    def kill_last(d):
        d["factors"][-1] = 0
        d["loadings"][:, -1] = 0

    sweep = NMFSweep.load(_save_changed(small_results[1], tmp_path / "dead.npz", kill_last))
    assert not sweep.get_factors(3).data[-1].any()


def test_a_zspy_with_a_lost_chunk_does_not_load_zero_factors(small_results, tmp_path):
    import hyperspy.api as hs

    s = small_results[0]
    s.save(tmp_path / "scan.zspy")
    sweep_group = "Experiments/*/metadata/NMFDecide/sweep"
    chunks = list((tmp_path / "scan.zspy").glob(f"{sweep_group}/factors/0/0"))
    assert len(chunks) == 1
    chunks[0].unlink()  # zarr reads a missing chunk as zeros, silently
    loaded = hs.load(tmp_path / "scan.zspy")
    with pytest.raises(ValueError, match=r"metadata \(NMFDecide\.sweep\): damaged NMF sweep"):
        NMFSweep.from_signal(loaded)


@pytest.mark.parametrize(
    "index, change, message",
    [
        (2, lambda d: d.update(k=7), r"k = 7 is not among its k values"),
        (2, lambda d: d.update(columns=d["columns"][:, :2]), r"table has shape"),
        (2, lambda d: d.pop("reason"), r"lacks 'reason'"),
        (2, lambda d: d.update(noise_json="{"), r"'noise_json' is not valid JSON"),
        (3, lambda d: d.update(factors=0 * d["factors"]), r"factors rows \[0, 1\] sum to"),
        (3, lambda d: d.update(labels=d["labels"] + 5), r"labels outside 0 to"),
        (3, lambda d: d.update(legend_json="[1"), r"legend_json"),
        (3, lambda d: d.update(masks=d["masks"][:1]), r"masks has shape"),
        (3, lambda d: d.pop("loadings"), r"lacks 'loadings'"),
    ],
    ids=[
        "decision k",
        "decision table",
        "decision key",
        "decision json",
        "phases zero factors",
        "phases labels",
        "phases legend",
        "phases masks",
        "phases key",
    ],
)
def test_damaged_decision_and_phase_maps_are_refused(
    small_results, tmp_path, index, change, message
):
    result = small_results[index]
    path = _save_changed(result, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=r"bad\.npz: .*" + message):
        type(result).load(path)
    assert type(result).load(result.save(tmp_path / "good.npz")).to_dict().keys() == (
        result.to_dict().keys()
    )
