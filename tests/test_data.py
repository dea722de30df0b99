"""The simulated scans: reproducible, calibrated, physically sensible and true to their truth."""

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
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    arguments = {"nav_shape": (4, 4), "pattern_size": 32} | kwargs
    with pytest.raises(ValueError, match=name):
        simulated_scan(**arguments)
