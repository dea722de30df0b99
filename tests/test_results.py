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
