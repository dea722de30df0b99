"""Phase maps (Cao et al.): thresholds, background, overlap, tracking, raw clustering, results.

The scans are 24 x 24 probes of 32 x 32 pixels at 5000 e- per pattern.  At the default dose of
1000 e- (about one count per pixel) the sweep itself does not resolve the crystals at the true k
with four restarts (the best factorisation mixes background into the crystal factors or fits
noise), which no thresholding can repair; at 5000 e- it does, and these tests judge the phase
maps, not the sweep.
"""

import dataclasses
import json

import dask.array as da
import numpy as np
import pytest
from pyxem.signals import ElectronDiffraction2D
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from hyperspy_nmfdecide import phases
from hyperspy_nmfdecide.data import simulated_scan
from hyperspy_nmfdecide.results import METADATA_PHASE_MAPS, PhaseMaps

DOSE = 5000.0


def _case(n_crystals, layout, seed, **sweep_kw):
    scan = simulated_scan(
        nav_shape=(24, 24),
        pattern_size=32,
        n_crystals=n_crystals,
        layout=layout,
        dose=DOSE,
        random_state=seed,
    )
    k = scan.true_k
    arguments = {"n_restarts": 4, "random_state": 0} | sweep_kw
    sweep = scan.signal.nmf_sweep(range(k - 1, k + 2), **arguments)
    return scan, sweep, matrix(scan.signal)


def matrix(signal):
    nav = signal.axes_manager.navigation_size
    return signal.data.reshape(nav, -1)


@pytest.fixture(scope="module")
def two():
    return _case(2, "overlapping", 0)


@pytest.fixture(scope="module")
def three():
    return _case(3, "overlapping", 1)


@pytest.fixture(scope="module")
def pm_two(two):
    scan, sweep, x = two
    return PhaseMaps.from_sweep(sweep, scan.true_k, x)


def overlap_f1(predicted, truth):
    both = np.sum(predicted & truth)
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * both / total


def source_of_component(factors, scan):
    """Component -> matched source index, by factor cosine similarity (Hungarian)."""
    sources = scan.sources.reshape(len(scan.sources), -1)
    sim = phases.cosine_similarity(factors, sources)
    rows, cols = linear_sum_assignment(-sim)
    return dict(zip(rows.tolist(), cols.tolist()))


# -- accuracy on ground truth ----------------------------------------------------------------
@pytest.mark.parametrize("case", ["two", "three"])
def test_labels_and_overlap_match_the_truth(case, request):
    # Tolerances: the truth counts a crystal present where its weight exceeds 10 % of its
    # maximum, and crystal edges are 1.5 probes wide (10-90 %), so every boundary is uncertain
    # by about a probe; on a 24 x 24 scan the overlaps are bands a few probes wide, of which
    # the boundary is a large share.  ARI >= 0.8 and overlap F1 >= 0.7 leave room for that and
    # still fail for a wrong number of phases, a missed overlap or a split crystal.
    scan, sweep, x = request.getfixturevalue(case)
    pm = PhaseMaps.from_sweep(sweep, scan.true_k, x)
    assert adjusted_rand_score(scan.labels.ravel(), pm.label_array.ravel()) >= 0.8
    assert scan.overlap.any()
    assert overlap_f1(pm.overlap_array, scan.overlap) >= 0.7
    # Every overlap phase is a set of two or more crystal components, never the background.
    for members in pm.legend.values():
        assert pm.background_index not in members
    assert any(len(m) >= 2 for m in pm.legend.values())


@pytest.mark.parametrize("case", ["two", "three"])
def test_background_is_recognised(case, request):
    scan, sweep, x = request.getfixturevalue(case)
    pm = PhaseMaps.from_sweep(sweep, scan.true_k, x)
    match = source_of_component(pm.factors, scan)
    expected = next(c for c, s in match.items() if s == scan.background_index)
    assert pm.background_index == expected
    # Its mask is presence nearly everywhere; the crystals' masks are not.
    assert pm.mask_array[expected].mean() > 0.9
    # Given explicitly, or switched off, the background is used as told.
    assert PhaseMaps.from_sweep(sweep, scan.true_k, x, background=expected).legend == pm.legend
    none = PhaseMaps.from_sweep(sweep, scan.true_k, x, background=None)
    assert none.background_index is None
    assert any(expected in m for m in none.legend.values())


def test_grains_have_no_overlap_beyond_a_speck_at_their_boundary():
    scan, sweep, x = _case(2, "grains", 2)
    pm = PhaseMaps.from_sweep(sweep, scan.true_k, x)
    assert not scan.overlap.any()
    # A probe next to a boundary may pass both thresholds (the loadings of the fit with the
    # lowest MSE leak ~20 % across this scan's boundary near its edge); no more than the
    # smallest region kept (min_size, 4 probes here), and only within two probes of the
    # boundary.
    overlap = pm.overlap_array
    assert overlap.sum() <= phases.default_min_size(overlap.size)
    grains = [scan.labels == label for label in np.unique(scan.labels)]
    near_boundary = np.logical_and.reduce(
        [ndimage.binary_dilation(grain, np.ones((3, 3)), iterations=2) for grain in grains]
    )
    assert not (overlap & ~near_boundary).any()
    assert adjusted_rand_score(scan.labels.ravel(), pm.label_array.ravel()) >= 0.8


def test_gradient_is_one_phase_at_the_true_k():
    scan, sweep, x = _case(2, "gradient", 3)
    pm = PhaseMaps.from_sweep(sweep, scan.true_k, x)
    graded = 1  # crystal 1 (source 1) carries the x4 thickness ramp
    assert scan.params["gradient"]["crystal"] == 1
    alone = scan.labels == next(lab for lab, m in scan.label_sets.items() if m == (graded,))
    # One phase covers the graded crystal's own region, thin end and thick end alike ...
    counts = np.bincount(pm.label_array[alone], minlength=pm.n_phases + 1)
    assert counts.max() >= 0.8 * alone.sum()
    assert counts.argmax() != 0
    # ... and one component mask covers all of the crystal (it is not cut into two).
    present = scan.weights[..., graded] > 0.1 * scan.weights[..., graded].max()
    crystal = [j for j in range(pm.k) if j != pm.background_index]
    cover = [np.mean(pm.mask_array[j][present]) for j in crystal]
    assert max(cover) >= 0.85
    assert sum(c >= 0.5 for c in cover) == 1
    assert sum(len(m) == 1 for m in pm.legend.values()) == 2


# -- tracking across k -----------------------------------------------------------------------
def test_tracking_on_the_sweep(two, pm_two):
    scan, sweep, x = two
    tracking = pm_two.tracking
    assert tracking["neighbours"] == [scan.true_k - 1, scan.true_k + 1]
    rows = tracking["components"]
    assert len(rows) == pm_two.k
    # The two crystals are found at k - 1, k and k + 1 (with the direct beam masked, the
    # background is the weakest component and k - 1 = 2 fits the crystals alone).
    crystals = [j for j in range(pm_two.k) if j != pm_two.background_index]
    assert all(rows[j]["stable"] is True for j in crystals)
    # The overlap found at k is also an overlap at k - 1 and k + 1.
    assert tracking["overlaps"]
    assert all(o["holds_prev"] and o["holds_next"] for o in tracking["overlaps"])
    json.dumps(tracking)


def test_track_components_split_and_merge():
    eye = np.eye(5)
    k2 = np.array([eye[0], (eye[1] + eye[2]) / 2])  # component 1 = parts 1 and 2 of k = 3
    k3 = eye[:3].copy()
    k4 = np.array([eye[0], eye[1], (eye[2] + eye[3]) / 2, eye[4]])
    t = phases.track_components({2: k2, 3: k3, 4: k4}, 3)
    rows = t["components"]
    assert [r["stable"] for r in rows] == [True, False, False]
    assert rows[1]["merges_at_prev"]["partner"] == 2 and rows[1]["merges_at_prev"]["into"] == 1
    assert rows[2]["merges_at_prev"]["partner"] == 1
    assert rows[0]["splits_at_next"] is None and rows[1]["splits_at_next"] is None
    # Component 2 of k = 3 (eye[2]) is half of component 2 of k = 4: no split, a poor match.
    assert rows[2]["similarity_next"] == pytest.approx(np.sqrt(0.5))
    t = phases.track_components({2: k2, 3: k3}, 2)
    assert t["components"][1]["splits_at_next"]["parts"] == [1, 2]
    assert t["components"][0]["stable"] is True
    assert phases.track_components({3: k3}, 3)["components"][0]["stable"] is None


# -- numerics on small arrays ----------------------------------------------------------------
def test_labels_are_numbered_deterministically():
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[0, :, :4] = True  # background-free: component 0 left
    masks[1, :, 2:] = True  # component 1 right: overlap 0+1 in columns 2-3
    masks[2, :2, :] = True  # component 2 on top: overlaps with both
    labels, legend, overlap = phases.phase_labels(masks)
    # Singles in component order ({2} alone never occurs), then overlaps by size (8 probes,
    # then three of 4 probes: fewer components first, then by indices).
    assert legend == {1: (0,), 2: (1,), 3: (0, 1), 4: (0, 2), 5: (1, 2), 6: (0, 1, 2)}
    assert [int(np.sum(labels == lab)) for lab in legend] == [8, 8, 8, 4, 4, 4]
    assert overlap.sum() == np.sum(masks.sum(axis=0) >= 2) == 20
    again = phases.phase_labels(masks.copy())
    assert again[1] == legend and np.array_equal(again[0], labels)


def test_smooth_background_is_not_split_by_otsu():
    yy, xx = np.indices((20, 20))
    background = 100.0 + 60.0 * xx / 19  # a smooth ramp: Otsu alone would cut it in two
    crystal = np.where((yy - 10) ** 2 + (xx - 10) ** 2 < 30, 40.0, 0.0)
    loadings = np.stack([background, crystal], axis=-1)
    assert phases.find_background(loadings.reshape(400, 2)) == 0
    masks, _ = phases.component_masks(loadings, background_index=0, min_size=0)
    assert masks[0].all()
    labels, legend, _ = phases.phase_labels(masks, background_index=0)
    assert legend == {1: (1,)}
    assert np.array_equal(labels == 1, crystal > 0)


def test_thresholds_and_specks():
    maps = np.zeros((10, 10, 1))
    maps[2:8, 2:8, 0] = 4.0  # a thin rim (soft edge) ...
    maps[3:7, 3:7, 0] = 20.0  # ... around a 16-probe core
    maps[0, 9, 0] = 4.0  # a faint speck away from the core
    maps[9, 0, 0] = 20.0  # a bright one-probe speck
    masks, t = phases.component_masks(maps, threshold=0.75, min_size=0)
    assert masks.sum() == 17 and t[0] == pytest.approx(15.0)
    masks, _ = phases.component_masks(maps, threshold=0.75, min_size=2)
    assert masks.sum() == 16
    # Otsu's level falls between rim and core: the rim is lost.
    masks, _ = phases.component_masks(maps, threshold="otsu-level", min_size=2)
    assert masks.sum() == 16
    # The presence level keeps the rim, connected to the core; the faint speck reaches the
    # presence level but not Otsu's anywhere, so the hysteresis leaves it out.
    masks, t = phases.component_masks(maps, threshold="otsu", min_size=0)
    assert masks.sum() == 36 + 1 and not masks[0, 0, 9] and masks[0, 9, 0]
    assert 0 < t[0] < 4
    masks, _ = phases.component_masks(maps, threshold="otsu", min_size=2)
    assert masks.sum() == 36
    nav = np.zeros((10, 10), dtype=bool)
    nav[:, :5] = True
    masks, _ = phases.component_masks(maps, threshold="otsu", min_size=0, navigation_mask=nav)
    assert not masks[0][nav].any() and masks[0].any()


def test_overlap_specks_keep_the_strongest_component():
    maps = np.zeros((8, 8, 2))
    maps[:, :4, 0] = 10.0
    maps[:, 4:, 1] = 10.0
    maps[3, 4, 0] = 6.0  # one probe where both pass their threshold
    masks, _ = phases.component_masks(maps, threshold=0.5, min_size=0)
    assert (masks.sum(axis=0) >= 2).sum() == 1
    masks, _ = phases.component_masks(maps, threshold=0.5, min_size=2)
    assert not (masks.sum(axis=0) >= 2).any()
    assert masks[1, 3, 4] and not masks[0, 3, 4]


def test_compare_means_excludes_masked_pixels():
    rng = np.random.default_rng(0)
    raw = rng.random((2, 16 * 16)) + 0.5
    rec = raw.copy()
    mask = np.zeros((16, 16), dtype=bool)
    mask[:3, :3] = True
    rec[:, mask.ravel()] = 0.0  # the factors are zero on masked pixels
    rows = phases.compare_means(raw, rec, (16, 16), signal_mask=mask)
    assert rows[0]["ssim"] == 1.0 and rows[0]["psnr"] == np.inf
    assert rows[0]["data_range"] == pytest.approx(raw[0][~mask.ravel()].max())
    unmasked = phases.compare_means(raw, rec, (16, 16))
    assert unmasked[0]["ssim"] < 1.0


# -- raw clustering: eager, lazy, integer ----------------------------------------------------
def test_lazy_and_integer_data_give_the_same_raw_means(two, pm_two):
    scan, sweep, x = two
    before = x.copy()
    lazy = scan.signal.as_lazy()
    lazy_x = matrix(lazy)
    assert isinstance(lazy_x, da.Array)
    pm_lazy = PhaseMaps.from_sweep(sweep, scan.true_k, lazy_x)
    # The counts are integers held exactly in float64, so every summation order agrees.
    np.testing.assert_array_equal(pm_lazy.raw_mean_array, pm_two.raw_mean_array)
    np.testing.assert_array_equal(pm_lazy.label_array, pm_two.label_array)
    chunked = da.from_array(x, chunks=(50, x.shape[1]))
    pm_chunked = PhaseMaps.from_sweep(sweep, scan.true_k, chunked, chunk_rows=37)
    np.testing.assert_array_equal(pm_chunked.raw_mean_array, pm_two.raw_mean_array)
    pm_int = PhaseMaps.from_sweep(sweep, scan.true_k, x.astype(np.uint16), chunk_rows=7)
    np.testing.assert_array_equal(pm_int.raw_mean_array, pm_two.raw_mean_array)
    np.testing.assert_array_equal(x, before)
    # The raw means are the plain means over each phase's probes.
    flat = pm_two.label_array.ravel()
    for label in pm_two.legend:
        expected = x[flat == label].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(pm_two.raw_mean_array[label - 1].ravel(), expected)
    # And the NMF reconstruction matches them closely.
    assert all(row["cosine"] > 0.99 and row["ssim"] > 0.9 for row in pm_two.comparison)
    factors, loadings = sweep.best_factorisation(scan.true_k)
    label = 1
    rec = (loadings[flat == label] @ factors).mean(axis=0)
    np.testing.assert_allclose(pm_two.reconstructed_mean_array[0].ravel(), rec, rtol=1e-4)


def test_navigation_mask_excludes_probes(two):
    scan, _, x = two
    nav = np.zeros((24, 24), dtype=bool)
    nav[:4] = True
    k = scan.true_k
    sweep = scan.signal.nmf_sweep(
        range(k, k + 1), n_restarts=2, random_state=0, navigation_mask=nav
    )
    pm = PhaseMaps.from_sweep(sweep, k, x)
    assert not pm.label_array[nav].any()
    assert not pm.mask_array[:, nav].any()
    assert pm.tracking["neighbours"] == []
    flat = pm.label_array.ravel()
    np.testing.assert_allclose(
        pm.raw_mean_array[0].ravel(), x[flat == 1].astype(np.float64).mean(axis=0)
    )
    assert pm.summary()["no_phase_probes"] == int(np.sum((flat == 0) & ~nav.ravel()))


# -- results: signals, persistence, plot -----------------------------------------------------
def test_signals_carry_the_calibrations(two, pm_two):
    scan, _, _ = two
    s = scan.signal
    labels = pm_two.labels
    assert np.issubdtype(labels.data.dtype, np.integer)
    assert labels.axes_manager.signal_shape == s.axes_manager.navigation_shape
    for ours, source in zip(labels.axes_manager.signal_axes, s.axes_manager.navigation_axes):
        assert (ours.name, ours.units, ours.size) == (source.name, source.units, source.size)
        assert ours.scale == pytest.approx(source.scale)
        assert ours.offset == pytest.approx(source.offset)
    assert pm_two.overlap.data.dtype == bool
    assert pm_two.component_masks.axes_manager.navigation_shape == (pm_two.k,)
    for signal, n in (
        (pm_two.components, pm_two.k),
        (pm_two.raw_means, pm_two.n_phases),
        (pm_two.reconstructed_means, pm_two.n_phases),
    ):
        assert isinstance(signal, ElectronDiffraction2D)
        assert signal.axes_manager.navigation_shape == (n,)
        for ours, source in zip(signal.axes_manager.signal_axes, s.axes_manager.signal_axes):
            assert (ours.name, ours.units, ours.size) == (source.name, source.units, source.size)
            assert ours.scale == pytest.approx(source.scale)
            assert ours.offset == pytest.approx(source.offset)
    assert pm_two.raw_means.axes_manager.navigation_axes[0].offset == 1  # index = label
    np.testing.assert_array_equal(pm_two.labels.data, pm_two.label_array)


def _same(a: PhaseMaps, b: PhaseMaps):
    da_, db_ = a.to_dict(), b.to_dict()
    assert da_.keys() == db_.keys()
    for key, value in da_.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == db_[key].dtype, key
            np.testing.assert_array_equal(value, db_[key], err_msg=key)
        else:
            assert value == db_[key], key
    assert a.legend == b.legend and a.background_index == b.background_index
    assert json.dumps(a.tracking) == json.dumps(b.tracking)
    assert json.dumps(a.comparison) == json.dumps(b.comparison)


def test_save_load_and_metadata_are_lossless(two, pm_two, tmp_path):
    scan, _, _ = two
    path = pm_two.save(tmp_path / "phase_maps")
    assert path.suffix == ".npz"
    loaded = PhaseMaps.load(path)
    _same(loaded, pm_two)
    _same(PhaseMaps.from_dict(pm_two.to_dict()), pm_two)
    s = scan.signal.deepcopy()
    s.metadata.set_item(METADATA_PHASE_MAPS, pm_two.to_dict())
    back = PhaseMaps.from_dict(s.metadata.get_item(METADATA_PHASE_MAPS).as_dictionary())
    _same(back, pm_two)
    assert back.labels.axes_manager.signal_axes[0].scale == pytest.approx(
        s.axes_manager.navigation_axes[0].scale
    )
    json.dumps(pm_two.summary(), allow_nan=False)
    with pytest.raises(ValueError, match="not stored phase maps"):
        PhaseMaps.from_dict({"format": "something else"})


def test_plot_returns_a_figure(pm_two):
    import matplotlib.figure

    fig = pm_two.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 2 + 2 * pm_two.n_phases
    labels_ax = fig.axes[0]
    np.testing.assert_array_equal(labels_ax.images[0].get_array(), pm_two.label_array)
    assert len(labels_ax.get_legend().get_texts()) == pm_two.n_phases + 1
    assert len(pm_two.plot(max_phases=1).axes) == 4


# -- errors ----------------------------------------------------------------------------------
def test_errors(two):
    scan, sweep, x = two
    k = scan.true_k
    with pytest.raises(ValueError, match=r"available k: \[2, 3, 4\]"):
        PhaseMaps.from_sweep(sweep, 7, x)
    for bad in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="threshold"):
            PhaseMaps.from_sweep(sweep, k, x, threshold=bad)
    for bad in ("li", True, None):
        with pytest.raises(ValueError, match="threshold"):
            PhaseMaps.from_sweep(sweep, k, x, threshold=bad)
    with pytest.raises(ValueError, match="min_size must be >= 0"):
        PhaseMaps.from_sweep(sweep, k, x, min_size=-1)
    with pytest.raises(ValueError, match="min_size .* larger than the scan"):
        PhaseMaps.from_sweep(sweep, k, x, min_size=24 * 24 + 1)
    with pytest.raises(ValueError, match="min_size"):
        PhaseMaps.from_sweep(sweep, k, x, min_size=2.5)
    with pytest.raises(ValueError, match="background"):
        PhaseMaps.from_sweep(sweep, k, x, background=k)
    with pytest.raises(ValueError, match="background"):
        PhaseMaps.from_sweep(sweep, k, x, background="first")
    with pytest.raises(ValueError, match="data"):
        PhaseMaps.from_sweep(sweep, k, x[:10])
    with pytest.raises(ValueError, match="data"):
        PhaseMaps.from_sweep(sweep, k, x.ravel())
    axes = [dict(a) for a in sweep.axes]
    axes[0]["size"], axes[1]["size"] = 1, 24 * 24
    line = dataclasses.replace(sweep, axes=axes)
    with pytest.raises(ValueError, match="sweep: phase maps need a 2-D scan"):
        PhaseMaps.from_sweep(line, k, x)
    with pytest.raises(ValueError, match="2-D scan"):
        phases.component_masks(np.ones((1, 5, 2)))


# -- with the defaults, on scans that are hard for them ----------------------------------------
def _defaults(scan, k_range):
    """What a user types: the sweep, the decision and the phase maps, all with defaults."""
    s = scan.signal
    s.nmf_sweep(k_range, n_restarts=4, random_state=0, show_progressbar=False)
    decision = s.decide_k(show_progressbar=False)
    return decision, s.phase_maps(show_progressbar=False)


def test_low_dose_overlaps_with_the_defaults():
    # 300 e- per pattern (a few counts per spot), direct beam left in the data: the defaults
    # mask it, decide k and find the overlap.  Tolerances as in
    # test_labels_and_overlap_match_the_truth, a little wider for the noisier maps.
    scan = simulated_scan(
        nav_shape=(24, 24), pattern_size=64, n_crystals=2, dose=300, random_state=11
    )
    decision, pm = _defaults(scan, range(2, 7))
    assert abs(decision.k - scan.true_k) <= 1
    assert adjusted_rand_score(scan.labels.ravel(), pm.label_array.ravel()) >= 0.7
    assert overlap_f1(pm.overlap_array, scan.overlap) >= 0.6


def test_a_crystal_whose_spots_swing_with_thickness_stays_one_phase():
    # A x4 thickness ramp with dynamical-like intensities: the crystal is a pattern that
    # changes across it, and the noise edge counts more components than phases.  The
    # decision counts phases, and the crystal's own region is one phase.
    scan = simulated_scan(
        nav_shape=(24, 24),
        pattern_size=64,
        n_crystals=2,
        layout="gradient",
        dose=2000,
        dynamical=0.6,
        random_state=12,
    )
    decision, pm = _defaults(scan, range(2, 9))
    assert abs(decision.k - scan.true_k) <= 1
    graded = next(lab for lab, m in scan.label_sets.items() if m == (1,))
    alone = scan.labels == graded
    counts = np.bincount(pm.label_array[alone], minlength=pm.n_phases + 1)
    assert counts.argmax() != 0 and counts.max() >= 0.8 * alone.sum()
