"""The simulated scans: reproducible, calibrated, physically sensible and true to their truth."""

import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage
from threadpoolctl import threadpool_limits

from hyperspy_nmfdecide.data import CRYSTALS, SimulatedScan, crystal_phase, simulated_scan
from hyperspy_nmfdecide.signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D

SMALL = {"nav_shape": (12, 10), "pattern_size": 32}


@pytest.fixture(scope="module")
def scan() -> SimulatedScan:
    return simulated_scan(**SMALL, n_crystals=3, random_state=7)


@pytest.fixture(scope="module")
def grains() -> SimulatedScan:
    return simulated_scan(**SMALL, n_crystals=4, layout="grains", random_state=7)


@pytest.fixture(scope="module")
def gradient() -> SimulatedScan:
    return simulated_scan((24, 24), 32, 2, layout="gradient", random_state=3)


def test_same_seed_same_scan_other_seed_other_scan(scan):
    again = simulated_scan(**SMALL, n_crystals=3, random_state=7)
    np.testing.assert_array_equal(again.signal.data, scan.signal.data)
    np.testing.assert_array_equal(again.sources, scan.sources)
    np.testing.assert_array_equal(again.weights, scan.weights)
    np.testing.assert_array_equal(again.labels, scan.labels)
    assert again.params == scan.params
    other = simulated_scan(**SMALL, n_crystals=3, random_state=8)
    assert not np.array_equal(other.signal.data, scan.signal.data)
    assert not np.array_equal(other.sources, scan.sources)


def test_generator_random_state_is_reproducible():
    a = simulated_scan((4, 4), 32, random_state=np.random.default_rng(5))
    b = simulated_scan((4, 4), 32, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(a.signal.data, b.signal.data)
    assert a.params["random_state"] == "Generator"


def test_shapes_and_dtypes(scan):
    n = scan.true_k
    assert scan.signal.data.shape == (12, 10, 32, 32)
    assert scan.signal.data.dtype == np.float32
    assert scan.sources.shape == (n, 32, 32) and scan.sources.dtype == np.float64
    assert scan.weights.shape == (12, 10, n)
    assert scan.labels.shape == (12, 10) and scan.labels.dtype.kind == "i"
    assert scan.overlap.shape == (12, 10) and scan.overlap.dtype == bool
    assert scan.noise_free().shape == (12, 10, 32, 32)
    assert n == 4 and scan.background_index == 0
    assert scan.source_names == ["background", "crystal 1", "crystal 2", "crystal 3"]
    assert np.all(scan.signal.data == np.round(scan.signal.data))  # counts


def test_axes_are_calibrated_like_pyxem(scan):
    am = scan.signal.axes_manager
    assert [a.name for a in am.navigation_axes] == ["x", "y"]
    assert [a.name for a in am.signal_axes] == ["kx", "ky"]
    for axis in am.navigation_axes:
        assert axis.units == "nm" and axis.scale == pytest.approx(scan.params["probe_step"])
    scale = scan.params["k_max"] / 16
    for axis in am.signal_axes:
        assert axis.units == r"$\AA^{-1}$"
        assert axis.scale == pytest.approx(scale)
        assert axis.axis[16] == pytest.approx(0.0, abs=1e-12)  # k = 0 at the detector centre
        assert axis.axis[-1] == pytest.approx(scan.params["k_max"] - scale)
    assert scan.signal.metadata.Acquisition_instrument.TEM.beam_energy == 200.0
    assert "3 crystals" in scan.signal.metadata.General.title
    assert json.loads(scan.signal.metadata.Simulation.parameters) == scan.params
    assert json.loads(json.dumps(scan.params)) == scan.params


def test_eager_and_lazy_classes_chunks_and_identical_counts(scan):
    assert type(scan.signal) is NMFDecideDiffraction2D
    lazy = simulated_scan(**SMALL, n_crystals=3, random_state=7, lazy=True, chunks=5)
    assert type(lazy.signal) is LazyNMFDecideDiffraction2D
    assert lazy.signal.data.chunks == ((5, 5, 2), (10,), (32,), (32,))
    np.testing.assert_array_equal(lazy.signal.data.compute(), scan.signal.data)


def test_mean_counts_per_pattern_match_the_dose():
    dose = 500.0
    scan = simulated_scan((16, 16), 32, dose=dose, random_state=2)
    assert scan.weights.sum(axis=-1).mean() == pytest.approx(dose, rel=1e-12)
    counts = scan.signal.data.sum(axis=(2, 3), dtype=float)
    # Poisson: the mean of 256 patterns has a standard deviation of sqrt(dose / 256).
    assert abs(counts.mean() - dose) < 5 * np.sqrt(dose / counts.size)
    # and each pattern scatters around its own expected total, not around the dose
    expected = scan.weights.sum(axis=-1)
    z = (counts - expected) / np.sqrt(expected)
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and 0.7 < z.std() < 1.3


def test_noise_free_is_weights_times_sources(scan):
    expected = np.einsum("yxn,nhw->yxhw", scan.weights, scan.sources)
    np.testing.assert_allclose(scan.noise_free(), expected, rtol=1e-12, atol=1e-12)
    # The counts are drawn around it: the mean pattern matches within Poisson noise.
    mean_counts = scan.signal.data.mean(axis=(0, 1), dtype=float)
    mean_expected = expected.mean(axis=(0, 1))
    sigma = np.sqrt(mean_expected / 120)
    assert np.abs(mean_counts - mean_expected).max() < 6 * sigma.max()


def test_sources_and_weights_are_normalised_and_non_negative(scan):
    assert np.all(scan.sources >= 0) and np.all(scan.weights >= 0)
    np.testing.assert_allclose(scan.sources.sum(axis=(1, 2)), 1.0, rtol=1e-12)
    # The crystal patterns have no direct beam: nothing at the beam position.
    x, y = 16 + np.array(scan.params["beam_offset"])
    beam_pixel = (int(round(y)), int(round(x)))
    for j in range(1, scan.true_k):
        assert scan.sources[j][beam_pixel] < 1e-3 * scan.sources[j].max()


@pytest.mark.parametrize("offset", [(1.5, -2.0), (-4.0, 3.0)])
def test_direct_beam_is_off_centre_by_beam_offset(offset):
    scan = simulated_scan((4, 4), 48, 1, beam_offset=offset, random_state=0)
    background = scan.sources[scan.background_index]
    peak = np.unravel_index(background.argmax(), background.shape)
    window = tuple(slice(p - 4, p + 5) for p in peak)
    yy, xx = np.indices(background.shape)
    w = background[window]
    centre = ((xx[window] * w).sum() / w.sum(), (yy[window] * w).sum() / w.sum())
    np.testing.assert_allclose(centre, (24 + offset[0], 24 + offset[1]), atol=0.1)
    # and it dominates: the brightest pixel of the mean pattern
    mean = scan.signal.data.mean(axis=(0, 1))
    assert np.unravel_index(mean.argmax(), mean.shape) == peak


def test_overlapping_layout_overlaps_and_leaves_vacuum(scan):
    assert scan.overlap.any()
    assert (scan.labels == 0).any()
    assert any(len(members) >= 2 for members in scan.label_sets.values())
    for j in range(1, scan.true_k):  # every crystal is also seen on its own
        assert (j,) in scan.label_sets.values()


def test_grains_layout_has_one_crystal_per_probe(grains):
    assert not grains.overlap.any()
    crystals = grains.weights[..., 1:]
    assert np.all(np.count_nonzero(crystals, axis=-1) == 1)
    assert np.all(grains.labels > 0)
    assert sorted(grains.label_sets.values()) == [(1,), (2,), (3,), (4,)]


def test_gradient_layout_ramps_one_crystal_smoothly(gradient):
    assert gradient.true_k == 3  # still one source per crystal
    j = gradient.params["gradient"]["crystal"]
    assert gradient.params["crystals"][j - 1]["thickness_gradient"]
    angle = np.radians(gradient.params["gradient"]["direction_deg"])

    def end_to_end_ratio(w):
        """Thick-to-thin ratio of a straight-line fit along the gradient, inside the crystal."""
        core = ndimage.binary_erosion(w > 0.1 * w.max(), iterations=1)
        yy, xx = np.indices(w.shape)
        along = (xx * np.cos(angle) + yy * np.sin(angle))[core]
        slope, intercept = np.polyfit(along, w[core], 1)
        ends = intercept + slope * np.array([along.min(), along.max()])
        return ends[1] / ends[0], core

    ratio, core = end_to_end_ratio(gradient.weights[..., j])
    assert ratio > 2.2  # ×4 from end to end of the crystal's core
    # the other crystal only varies by ±25 %, whichever way it is looked at
    other = end_to_end_ratio(gradient.weights[..., 3 - j])[0]
    assert max(other, 1 / other) < 1.8
    # smooth: away from its soft edge, neighbouring probes differ by a few % of the maximum
    w = gradient.weights[..., j]
    inner = ndimage.binary_erosion(core, iterations=1)
    for axis in (0, 1):
        both = np.logical_and(*(np.moveaxis(inner, axis, 0)[s] for s in (np.s_[1:], np.s_[:-1])))
        steps = np.abs(np.diff(np.moveaxis(w, axis, 0), axis=0))[both]
        assert steps.size and steps.max() < 0.2 * w.max()


def test_labels_agree_with_weights_and_label_sets(scan, grains, gradient):
    for s in (scan, grains, gradient):
        first = 1
        crystals = s.weights[..., first:]
        present = crystals > s.params["presence_threshold"] * crystals.max(axis=(0, 1))
        assert sorted(s.label_sets) == list(range(1, len(s.label_sets) + 1))
        assert set(np.unique(s.labels)) - {0} == set(s.label_sets)
        for (y, x), label in np.ndenumerate(s.labels):
            members = tuple(int(j) + first for j in np.flatnonzero(present[y, x]))
            assert members == s.label_sets.get(int(label), ())
        np.testing.assert_array_equal(
            s.overlap, np.sum(present, axis=-1) >= 2, err_msg=s.params["layout"]
        )


@pytest.mark.parametrize("layout", ["overlapping", "grains", "gradient"])
def test_true_k_is_the_rank_of_the_noise_free_data(layout):
    s = simulated_scan((16, 16), 32, 3, layout=layout, background="varying", random_state=4)
    with threadpool_limits(1):  # a small SVD: threads only contend
        singular = np.linalg.svd(s.noise_free().reshape(256, -1), compute_uv=False)
    assert np.sum(singular > 1e-8 * singular[0]) == s.true_k == 4


def test_background_options():
    uniform = simulated_scan((10, 10), 32, 2, random_state=1)
    assert np.ptp(uniform.weights[..., 0]) < 1e-9 * uniform.weights[..., 0].max()
    varying = simulated_scan((10, 10), 32, 2, background="varying", random_state=1)
    bg = varying.weights[..., 0]
    assert bg.min() > 0 and bg.max() / bg.min() > 1.3
    assert np.abs(np.diff(bg, axis=1)).max() < 0.3 * np.ptp(bg)  # smooth
    no_beam = simulated_scan((10, 10), 32, 2, direct_beam=False, random_state=1)
    beam = simulated_scan((10, 10), 32, 2, background="none", random_state=1)
    # the direct beam is a Gaussian disc; the diffuse scattering spreads much wider
    yy, xx = np.indices((32, 32))
    x, y = 16 + np.array(beam.params["beam_offset"])
    disc = np.hypot(xx - x, yy - y) <= 3 * beam.params["spot_sigma"]
    assert beam.sources[0][disc].sum() > 0.95
    assert no_beam.sources[0][disc].sum() < 0.3
    assert beam.background_index == no_beam.background_index == 0
    bare = simulated_scan((10, 10), 32, 2, direct_beam=False, background="none", random_state=1)
    assert bare.background_index is None and bare.true_k == 2
    assert bare.source_names == ["crystal 1", "crystal 2"]
    assert set(bare.label_sets.values()) <= {(0,), (1,), (0, 1)}


def test_crystals_carry_a_modest_share_of_the_counts(scan):
    total = scan.weights.sum(axis=-1)
    share = scan.weights[..., 1:].sum(axis=-1) / total
    assert 0.08 < share[scan.labels > 0].max() < 0.6
    assert np.all(share[scan.labels == 0] < 0.05)


def test_crystal_spots_sit_on_the_fcc_reciprocal_lattice():
    """Al: every spot is at |g| = sqrt(h² + k² + l²) / a with h, k, l all odd or all even."""
    scan = simulated_scan((4, 4), 64, 1, crystals=["Al"], random_state=11)
    pattern = scan.sources[1]
    a = 4.0495
    allowed = sorted(
        {
            np.sqrt(h * h + k * k + l * l) / a
            for h in range(-4, 5)
            for k in range(-4, 5)
            for l in range(-4, 5)  # noqa: E741
            if (h % 2 == k % 2 == l % 2) and (h, k, l) != (0, 0, 0)
        }
    )
    peaks = (pattern == ndimage.maximum_filter(pattern, size=5)) & (pattern > 0.05 * pattern.max())
    scale = scan.params["reciprocal_scale"]
    beam = 32 + np.array(scan.params["beam_offset"])
    found = 0
    for y, x in zip(*np.nonzero(peaks)):
        if min(x, y) < 3 or max(x, y) > 60:
            continue  # cut by the detector edge
        w = pattern[y - 2 : y + 3, x - 2 : x + 3]
        yy, xx = np.mgrid[y - 2 : y + 3, x - 2 : x + 3]
        cx, cy = (xx * w).sum() / w.sum(), (yy * w).sum() / w.sum()
        g = np.hypot(cx - beam[0], cy - beam[1]) * scale
        assert np.min(np.abs(np.array(allowed) - g)) < 0.5 * scale, g
        found += 1
    assert found >= 4


def test_crystal_sources_differ():
    scan = simulated_scan((8, 8), 64, 4, random_state=0)
    phases = [c["phase"] for c in scan.params["crystals"]]
    assert len(set(phases)) == 4 and set(phases) <= set(CRYSTALS)
    unit = scan.sources[1:].reshape(4, -1)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert similarity[~np.eye(4, dtype=bool)].max() < 0.9


def test_crystal_phase_has_the_whole_unit_cell():
    al = crystal_phase("Al")
    assert al.space_group.number == 225 and len(al.structure) == 4
    assert len(crystal_phase("MgO").structure) == 8
    al.structure.lattice.setLatPar(a=5.0)  # a copy: the library is not changed
    assert crystal_phase("Al").structure.lattice.a == pytest.approx(4.0495)


def test_integer_dtypes_hold_the_same_counts_clipped_to_range(scan):
    u16 = simulated_scan(**SMALL, n_crystals=3, random_state=7, dtype=np.uint16)
    assert u16.signal.data.dtype == np.uint16
    np.testing.assert_array_equal(u16.signal.data.astype(np.float32), scan.signal.data)
    bright = simulated_scan((4, 4), 32, 1, dose=2e5, random_state=0, dtype=np.uint8)
    as_float = simulated_scan((4, 4), 32, 1, dose=2e5, random_state=0)
    assert bright.signal.data.max() == 255 and as_float.signal.data.max() > 255
    np.testing.assert_array_equal(
        bright.signal.data, np.minimum(as_float.signal.data, 255).astype(np.uint8)
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_crystals": 0}, "n_crystals"),
        ({"n_crystals": 2.5}, "n_crystals"),
        ({"pattern_size": 8}, "pattern_size"),
        ({"layout": "stripes"}, "layout"),
        ({"dose": -10.0}, "dose"),
        ({"dose": 0}, "dose"),
        ({"background": "ramp"}, "background"),
        ({"nav_shape": (0, 4)}, "nav_shape"),
        ({"nav_shape": 4}, "nav_shape"),
        ({"beam_offset": (20.0, 0.0)}, "beam_offset"),
        ({"dtype": bool}, "dtype"),
        ({"chunks": 0, "lazy": True}, "chunks"),
        ({"crystals": ["Unobtainium"]}, "crystals"),
        ({"layout": "grains", "n_crystals": 17}, "n_crystals"),
        ({"random_state": -1}, "random_state"),
        ({"k_max": 0.05}, "k_max"),
        ({"beam_depletion": 1.5}, "beam_depletion"),
        ({"beam_depletion": "yes"}, "beam_depletion"),
        ({"beam_depletion": True, "direct_beam": False}, "beam_depletion"),
        ({"absorption": -0.1}, "absorption"),
        ({"detector": {"gain": 0.0}}, "detector gain"),
        ({"detector": {"readout_noise": -1.0}}, "detector readout_noise"),
        ({"detector": {"offset": float("nan")}}, "detector offset"),
        ({"detector": {"dark": 3.0}}, "detector"),
        ({"detector": 5.0}, "detector"),
        ({"detector": {"readout_noise": 2.0}, "dtype": np.uint16}, "dtype"),
        ({"detector": {"gain": 2.5}, "dtype": np.int32}, "dtype"),
        ({"descan": -1.0}, "descan"),
        ({"descan": 30.0}, "descan"),
        ({"dynamical": 1.0}, "dynamical"),
        ({"overlap_physics": 1.5}, "overlap_physics"),
        ({"shared_reflections": ("Al", "Fe")}, "shared_reflections"),
        ({"shared_reflections": "Al"}, "shared_reflections"),
        ({"shared_reflections": True, "n_crystals": 1}, "shared_reflections"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    arguments = {"nav_shape": (4, 4), "pattern_size": 32} | kwargs
    with pytest.raises(ValueError, match=name):
        simulated_scan(**arguments)


# -- physics beyond the additive model -------------------------------------------------------
def _digest(*arrays) -> str:
    """sha256 of arrays, float ones rounded to float32 (robust to last-bit float64 maths)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
        h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


# Recorded with the additive-only simulator (before the physics options were added), numpy
# 2.4 and diffsims 0.7: (counts, sources + weights + labels).
_RECORDED_WITH = {"numpy": "2.4", "diffsims": "0.7"}
_RECORDED = {
    "overlapping": (
        {"nav_shape": (12, 10), "pattern_size": 32, "n_crystals": 3, "random_state": 7},
        ("142b442491640004", "7186eaffcaf8cc7c"),
    ),
    "grains-uint16-lazy": (
        {"nav_shape": (6, 8), "pattern_size": 32, "n_crystals": 3, "layout": "grains"}
        | {"dtype": np.uint16, "lazy": True, "chunks": 4, "random_state": 11},
        ("a01b689e866f2ecc", "5d22441bfb13b419"),
    ),
    "gradient-varying": (
        {"nav_shape": (8, 6), "pattern_size": 48, "n_crystals": 2, "layout": "gradient"}
        | {"background": "varying", "random_state": 3},
        ("5aa3190cced72c8d", "300e846a362c58e8"),
    ),
    "no-beam": (
        {"nav_shape": (6, 6), "pattern_size": 32, "n_crystals": 2, "direct_beam": False}
        | {"random_state": 1},
        ("8032db9c0957958b", "7ac53994586c47a9"),
    ),
}
_OFF = {
    "beam_depletion": False,
    "absorption": 0.0,
    "detector": None,
    "descan": 0.0,
    "dynamical": 0.0,
    "shared_reflections": False,
    "overlap_physics": 0.0,
}


@pytest.mark.parametrize("case", sorted(_RECORDED))
def test_defaults_are_bit_identical_to_the_additive_simulator(case):
    import diffsims

    versions = {"numpy": np.__version__, "diffsims": diffsims.__version__}
    if any(not versions[k].startswith(v + ".") for k, v in _RECORDED_WITH.items()):
        pytest.skip(f"hashes recorded with {_RECORDED_WITH}, running {versions}")
    kwargs, (counts, truth) = _RECORDED[case]
    for extra in ({}, _OFF):  # the options left out, and explicitly off
        s = simulated_scan(**kwargs, **extra)
        data = s.signal.data.compute() if kwargs.get("lazy") else s.signal.data
        assert _digest(data) == counts
        assert _digest(s.sources, s.weights, s.labels) == truth
        assert s.physics is None
        np.testing.assert_array_equal(s.noise_free(), s.noise_free(detector=True))
        assert s.params["beam_depletion"] == 0 and s.params["detector"] is None


def test_vanishing_physics_reproduces_the_additive_model(scan):
    """The spot-by-spot renderer of the non-additive scans agrees with weights @ sources."""
    tiny = dict.fromkeys(["beam_depletion", "absorption", "descan", "dynamical"], 1e-9)
    s = simulated_scan(**SMALL, n_crystals=3, random_state=7, overlap_physics=1e-9, **tiny)
    assert s.physics is not None
    np.testing.assert_allclose(s.weights, scan.weights, rtol=1e-8)  # depletion rescales
    np.testing.assert_array_equal(s.sources, scan.sources)
    expected = scan.noise_free()
    np.testing.assert_allclose(s.noise_free(), expected, rtol=0, atol=1e-7 * expected.max())


def test_non_additive_scan_is_reproducible_eager_equals_lazy_and_keeps_its_truth(scan):
    physics = {
        "beam_depletion": 0.8,
        "absorption": 0.2,
        "descan": 2.0,
        "dynamical": 0.4,
        "overlap_physics": 1.0,
        "detector": {"gain": 3.0, "offset": 20.0, "readout_noise": 2.0, "psf_sigma": 0.6},
    }
    eager = simulated_scan(**SMALL, n_crystals=3, random_state=7, **physics)
    lazy = simulated_scan(**SMALL, n_crystals=3, random_state=7, lazy=True, chunks=5, **physics)
    np.testing.assert_array_equal(lazy.signal.data.compute(), eager.signal.data)
    np.testing.assert_array_equal(eager.noise_free(), lazy.noise_free())
    # the phases and their maps are those of the additive scan
    assert eager.true_k == scan.true_k == 4
    np.testing.assert_array_equal(eager.labels, scan.labels)
    np.testing.assert_array_equal(eager.sources, scan.sources)
    assert eager.label_sets == scan.label_sets
    # every option is recorded, JSON-serialisable, in params and the metadata
    params = json.loads(eager.signal.metadata.Simulation.parameters)
    assert params == eager.params == json.loads(json.dumps(eager.params))
    for key in physics:
        assert params[key] == pytest.approx(physics[key])
    assert params["descan_directions"] and params["extinction_lengths"]
    assert params["double_diffraction"]["crystal_pairs"] == [[1, 2], [1, 3], [2, 3]]
    assert eager.signal.metadata.Signal.quantity == "Intensity (detector units)"
    # the counts scatter around the true expected output, not around weights @ sources
    mean_data = eager.signal.data.mean(axis=(0, 1), dtype=float)
    mean_expected = eager.noise_free(detector=True).mean(axis=(0, 1))
    sigma = np.sqrt((9 * eager.noise_free().mean(axis=(0, 1)) + 4) / 120)
    assert np.abs(mean_data - mean_expected).max() < 6 * sigma.max()


def test_beam_depletion_takes_the_crystal_counts_out_of_the_beam():
    kwargs = {"nav_shape": (12, 12), "pattern_size": 32, "n_crystals": 2, "random_state": 4}
    additive = simulated_scan(**kwargs)
    depleted = simulated_scan(**kwargs, beam_depletion=True)
    crystals = depleted.weights[..., 1:].sum(axis=-1)
    # the weights are the same layout, scaled so that the dose is the incident electrons
    ratio = depleted.weights[additive.weights > 0] / additive.weights[additive.weights > 0]
    np.testing.assert_allclose(ratio, ratio.max(), rtol=1e-12)
    assert ratio.max() > 1.05
    # counts per pattern are conserved: the dose at every probe of a uniform background
    totals = depleted.noise_free().sum(axis=(2, 3))
    np.testing.assert_allclose(totals, depleted.dose, rtol=1e-4)
    assert np.ptp(additive.noise_free().sum(axis=(2, 3))) > 0.1 * additive.dose
    # the beam disc loses what the crystals hold (exactly, up to the saturation)
    x, y = np.round(16 + np.array(depleted.params["beam_offset"])).astype(int)
    disc = np.s_[..., y - 3 : y + 4, x - 3 : x + 4]
    beam = depleted.noise_free()[disc].sum(axis=(-2, -1))
    background = depleted.weights[..., :1] @ depleted.sources[:1].reshape(1, -1)
    undepleted = background.reshape(12, 12, 32, 32)[disc].sum(axis=(-2, -1))
    assert np.corrcoef(crystals.ravel(), beam.ravel())[0, 1] < -0.99
    vacuum = crystals == 0
    assert vacuum.any() and (~vacuum).any()
    np.testing.assert_allclose(beam[vacuum], undepleted[vacuum], rtol=1e-9)
    thick = np.unravel_index(crystals.argmax(), crystals.shape)
    lost = undepleted[thick] - beam[thick]
    assert 0.9 * crystals[thick] < lost < 1.001 * crystals[thick]
    assert depleted.params["beam_saturation"]["max_kinematic_fraction"] > 0.1
    # absorption: everything at a probe falls by exp(-mu t), t the crystal thickness there
    absorbed = simulated_scan(**kwargs, beam_depletion=True, absorption=0.3)
    path = absorbed.physics.path
    assert path.max() > 0.5
    np.testing.assert_allclose(
        absorbed.noise_free().sum(axis=(2, 3)), totals * np.exp(-0.3 * path), rtol=1e-9
    )


def test_detector_gain_offset_and_readout_noise_follow_the_row_seeds(scan):
    settings = {"gain": 5.0, "offset": 100.0, "readout_noise": 3.0}
    s = simulated_scan(**SMALL, n_crystals=3, random_state=7, detector=settings)
    assert s.signal.data.dtype == np.float32
    assert s.params["detector"] == settings | {"psf_sigma": 0.0}
    # the same Poisson draws, then gain, offset and readout noise from the same row seeds
    noise = s.signal.data.astype(float) - (5.0 * scan.signal.data + 100.0)
    assert abs(noise.mean()) < 5 * 3.0 / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(3.0, rel=0.02)
    # mean gain × counts + offset, variance gain² × counts + readout²
    expected = s.noise_free(detector=True)
    np.testing.assert_allclose(expected, 5.0 * scan.noise_free() + 100.0, rtol=1e-12)
    z = (s.signal.data - expected) / np.sqrt(25.0 * scan.noise_free() + 9.0)
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.02)
    # whole-number detector output fits an integer dtype
    counts = simulated_scan(
        **SMALL, n_crystals=3, random_state=7, dtype=np.uint16, detector={"gain": 2, "offset": 7}
    )
    np.testing.assert_array_equal(counts.signal.data, 2 * scan.signal.data + 7)


def test_detector_point_spread_function_correlates_neighbours_and_keeps_counts(scan):
    s = simulated_scan(**SMALL, n_crystals=3, random_state=7, detector={"psf_sigma": 0.8})

    def neighbour_correlation(data, mean):
        residual = data - mean
        return np.corrcoef(residual[..., :-1].ravel(), residual[..., 1:].ravel())[0, 1]

    assert abs(neighbour_correlation(scan.signal.data, scan.noise_free())) < 0.05
    assert neighbour_correlation(s.signal.data, s.noise_free(detector=True)) > 0.4
    np.testing.assert_allclose(
        s.signal.data.sum(axis=(2, 3), dtype=float), scan.signal.data.sum(axis=(2, 3)), rtol=1e-5
    )
    # the blurred expected pattern: broader beam, same total
    blurred = s.noise_free(detector=True)
    assert blurred.max() < 0.8 * scan.noise_free().max()
    np.testing.assert_allclose(blurred.sum(axis=(2, 3)), scan.noise_free().sum(axis=(2, 3)))


def test_descan_moves_the_whole_pattern_by_the_requested_amount():
    descan = 3.0
    kwargs = {"nav_shape": (6, 10), "pattern_size": 48, "n_crystals": 1, "random_state": 2}
    s = simulated_scan(**kwargs, background="none", descan=descan)
    positions = s.beam_positions()
    span = positions.reshape(-1, 2).max(axis=0) - positions.reshape(-1, 2).min(axis=0)
    assert np.hypot(*span) == pytest.approx(descan, rel=1e-9)
    # the beam centroid of the expected patterns follows, sub-pixel
    expected = s.noise_free()
    yy, xx = np.indices((48, 48))
    for (y, x), (cx, cy) in zip(np.ndindex(6, 10), positions.reshape(-1, 2)):
        near = np.hypot(xx - cx, yy - cy) <= 4.5
        w = expected[y, x] * near
        centroid = ((xx * w).sum() / w.sum(), (yy * w).sum() / w.sum())
        np.testing.assert_allclose(centroid, (cx, cy), atol=0.02)
    # along one direction, linearly over the scan, centred on the beam offset
    moved = positions.reshape(-1, 2) - (24 + np.array(s.params["beam_offset"]))
    assert np.linalg.svd(moved, compute_uv=False)[1] < 1e-9
    np.testing.assert_allclose(moved.mean(axis=0), 0.0, atol=0.2)
    # no counts lost to the sub-pixel shifts: in vacuum the beam holds all of them
    vacuum = s.weights[..., 1] == 0
    assert vacuum.sum() >= 3
    np.testing.assert_allclose(
        expected.sum(axis=(2, 3))[vacuum], s.weights[..., 0][vacuum], rtol=1e-6
    )


def test_dynamical_intensities_make_a_crystal_pattern_depend_on_thickness():
    kwargs = {"nav_shape": (10, 10), "pattern_size": 32, "n_crystals": 2, "layout": "grains"}

    def crystal_patterns(dynamical):
        s = simulated_scan(**kwargs, random_state=2, dynamical=dynamical)
        background = s.weights[..., :1] @ s.sources[:1].reshape(1, -1)
        return s, (s.noise_free().reshape(100, -1) - background.reshape(100, -1))

    kinematic, plain = crystal_patterns(0.0)
    s, dynamic = crystal_patterns(0.6)
    np.testing.assert_array_equal(s.weights, kinematic.weights)  # same layout and thickness
    inside = np.flatnonzero(s.weights[..., 1].ravel() > 0)
    t = s.weights[..., 1].ravel()[inside]
    thin, thick = inside[t.argmin()], inside[t.argmax()]

    def cosine(a, b):
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    assert cosine(plain[thin], plain[thick]) == pytest.approx(1.0, abs=1e-12)
    assert cosine(dynamic[thin], dynamic[thick]) < 0.95  # no longer one pattern times a map
    singular = np.linalg.svd(dynamic[inside], compute_uv=False)
    assert singular[1] > 0.05 * singular[0]
    # still the same reflections: nothing appears where the kinematic pattern is empty
    empty = kinematic.sources[1] < 1e-6 * kinematic.sources[1].max()
    assert np.all(dynamic[inside][:, empty.ravel()] < 1e-4 * dynamic[inside].max())
    assert np.all(dynamic >= -1e-9)
    assert s.params["dynamical"] == 0.6 and s.params["extinction_lengths"]["strongest"] == 0.5


@pytest.mark.parametrize(
    ("pair", "similarity"), [(True, (0.85, 0.99)), (("Al", "Au"), (0.95, 0.9999))]
)
def test_shared_reflections_pair_two_phases_with_coinciding_spots(pair, similarity):
    s = simulated_scan((4, 4), 32, 3, random_state=0, shared_reflections=pair, crystals=["Fe"])
    expected_pair = ("Mg", "ZnO") if pair is True else pair
    phases = [c["phase"] for c in s.params["crystals"]]
    assert tuple(phases[:2]) == expected_pair and phases[2] == "Fe"
    one, two = s.params["crystals"][:2]
    assert one["rotation_matrix"] == two["rotation_matrix"]
    assert two["shares_reflections_with"] == "crystal 1"
    record = s.params["shared_reflections"]
    assert record["pair"] == list(expected_pair) and record["crystals"] == [1, 2]
    unit = s.sources[1:3].reshape(2, -1)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    assert float(unit[0] @ unit[1]) == pytest.approx(record["cosine_similarity"], rel=1e-9)
    assert similarity[0] < record["cosine_similarity"] < similarity[1]  # high, yet not equal
    # every visible spot of crystal 2 sits on a spot of crystal 1
    table1, table2 = s.spots[1], s.spots[2]
    strong = table2[table2[:, 2] > 0.02 * table2[:, 2].max()]
    distance = np.hypot(*(strong[:, np.newaxis, :2] - table1[np.newaxis, :, :2]).T)
    assert len(strong) >= 6 and distance.min(axis=0).max() < 0.3
    assert s.true_k == 4  # still two phases
    # the pair is additive physics: the scan is otherwise unchanged
    assert s.physics is None


def test_overlap_physics_weakens_overlapping_crystals_and_adds_double_diffraction():
    kwargs = {"nav_shape": (16, 16), "pattern_size": 48, "n_crystals": 2, "random_state": 5}
    additive = simulated_scan(**kwargs)
    s = simulated_scan(**kwargs, overlap_physics=1.0)
    np.testing.assert_array_equal(s.weights, additive.weights)
    change = s.noise_free() - additive.noise_free()
    crystals = s.weights[..., 1:]
    alone = np.any(crystals == 0, axis=-1)  # at most one crystal: nothing changes
    assert alone.any() and s.overlap.any()
    np.testing.assert_allclose(change[alone], 0.0, atol=1e-9 * s.dose)
    # in the overlaps: new spots (gains) and weaker spots (losses)
    gained = np.maximum(change, 0).sum(axis=(2, 3))
    lost = np.maximum(-change, 0).sum(axis=(2, 3))
    assert gained[s.overlap].min() > 0 and lost[s.overlap].min() > 0
    assert gained[s.overlap].mean() > 10 * gained[~s.overlap].mean()
    # the new spots sit at g1 + g2
    y, x = np.unravel_index(np.argmax(crystals.prod(axis=-1)), crystals.shape[:2])
    peak = np.unravel_index(np.argmax(change[y, x]), (48, 48))[::-1]
    beam = 24 + np.array(s.params["beam_offset"])
    g1, g2 = s.spots[1][:, :2] - beam, s.spots[2][:, :2] - beam
    combined = beam + (g1[:, np.newaxis] + g2[np.newaxis]).reshape(-1, 2)
    assert np.hypot(*(combined - peak).T).min() < 1.0
    # the crystals lose what the other scatters: less crystal signal than the sum
    assert change[y, x].sum() < 0
    assert s.params["double_diffraction"]["crystal_pairs"] == [[1, 2]]


@pytest.mark.parametrize(
    ("option", "rank_rises"),
    [
        ({"beam_depletion": True, "background": "varying"}, False),
        ({"dynamical": 0.5}, True),
        ({"overlap_physics": 1.0}, True),
        ({"descan": 2.0}, True),
    ],
)
def test_true_k_counts_the_phases_whatever_the_physics_does_to_the_rank(option, rank_rises):
    s = simulated_scan((12, 12), 32, 2, random_state=4, **option)
    assert s.true_k == 3 and s.overlap.any()
    with threadpool_limits(1):  # a small SVD: threads only contend
        singular = np.linalg.svd(s.noise_free().reshape(144, -1), compute_uv=False)
    rank = int(np.sum(singular > 1e-8 * singular[0]))
    assert rank > s.true_k if rank_rises else rank == s.true_k


def test_the_first_bad_argument_in_signature_order_is_the_one_reported():
    bad = {"n_crystals": 0, "dose": -1.0, "chunks": 0, "descan": -1.0}
    with pytest.raises(ValueError, match="n_crystals"):
        simulated_scan((4, 4), 32, **bad)
    with pytest.raises(ValueError, match="dose"):
        simulated_scan((4, 4), 32, **{**bad, "n_crystals": 1})
    with pytest.raises(ValueError, match="chunks"):
        simulated_scan((4, 4), 32, **{**bad, "n_crystals": 1, "dose": 1.0})


def test_the_simulator_package_keeps_its_import_paths_and_declares_its_modules():
    """One module a concept; every name other code imports stays at ``hyperspy_nmfdecide.data``."""
    import importlib
    import pkgutil

    import hyperspy_nmfdecide.data as data

    kept = [*data.__all__, "BEAM_ENERGY", "MIN_PATTERN_SIZE", "MIN_K_MAX", "_render_spots"]
    assert all(hasattr(data, name) for name in kept)
    assert data.simulated_scan.__module__ == "hyperspy_nmfdecide.data.scan"
    for info in pkgutil.iter_modules(data.__path__):
        module = importlib.import_module(f"{data.__name__}.{info.name}")
        assert all(hasattr(module, name) for name in module.__all__), info.name


def test_true_orientations_give_the_crystal_patterns():
    """Diffsims at the accessor's orientation puts the spots where the source has them."""
    from diffsims.generators.simulation_generator import SimulationGenerator

    from hyperspy_nmfdecide.data import crystal_phase

    scan = simulated_scan(
        nav_shape=(4, 4), pattern_size=64, n_crystals=2, crystals=["Fe", "Au"], random_state=0
    )
    truth = scan.true_orientations()
    assert [o.symmetry.name for o in truth] == ["m-3m", "m-3m"]
    generator = SimulationGenerator(accelerating_voltage=200.0)
    scale = scan.params["reciprocal_scale"]
    for j, (crystal, orientation) in enumerate(zip(scan.params["crystals"], truth), start=1):
        sim = generator.calculate_diffraction2d(
            crystal_phase(crystal["phase"]),
            rotation=orientation,
            reciprocal_radius=0.9,
            with_direct_beam=False,
            max_excitation_error=0.04,
        )
        xy = np.asarray(sim.coordinates.data)[:, :2] / scale
        spots = scan.spots[j][:, :2] - (32 + np.asarray(scan.params["beam_offset"]))
        inside = np.linalg.norm(spots, axis=1) * scale < 0.85  # the simulated radius, less a margin
        assert inside.sum() >= 3
        # every true spot inside that radius has a simulated reflection on it (within 0.1 px)
        distance = np.linalg.norm(spots[inside, None] - xy[None], axis=-1).min(axis=1)
        assert np.all(distance < 0.1)
