"""ePattern registration: finds the true spots, lazy = eager, reconstruction keeps intensities."""

import dataclasses
import json
import math

import dask.array as da
import numpy as np
import pytest

from hyperspy_nmfdecide.data import _render_spots, simulated_scan
from hyperspy_nmfdecide.epattern import SpotTable, reconstruct, register_spots, to_sparse

SIZE = 64
MATCH_RADIUS = 1.5  # px: a registered spot this close to a true spot has found it


@pytest.fixture(scope="module")
def scan():
    return simulated_scan((8, 8), SIZE, 3, dose=1000, random_state=3)


@pytest.fixture(scope="module")
def table(scan):
    return register_spots(scan.signal.data)


def _distance_to_nearest(probe, x, y, table):
    """Distance from each (probe, x, y) to the nearest registered spot of its pattern."""
    return np.array(
        [
            np.hypot(table.x[table.probe == p] - xp, table.y[table.probe == p] - yp).min(
                initial=np.inf
            )
            for p, xp, yp in zip(probe, x, y)
        ]
    )


def _gaussian_spots(shape, spots, sigma):
    """Noise-free image of Gaussian spots (x, y, total counts), sampled at pixel centres."""
    yy, xx = np.indices(shape, dtype=float)
    image = np.zeros(shape)
    for x, y, counts in spots:
        image += counts * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return image / (2 * np.pi * sigma**2)


def test_ground_truth_spots_draw_the_sources(scan):
    # A spot's fraction is its share of its source's counts on the detector: drawing each
    # crystal's spots with those shares gives the source back (spots with < 1 % of their disc
    # on the detector are left out, hence the tolerance).
    sigma = scan.params["spot_sigma"]
    assert sorted(scan.spots) == list(range(len(scan.sources)))
    for source in range(1, len(scan.sources)):
        xy, share = scan.spots[source][:, :2], scan.spots[source][:, 2]
        on_detector = np.array([_render_spots(p[None], np.ones(1), SIZE, sigma).sum() for p in xy])
        drawn = _render_spots(xy, share / on_detector, SIZE, sigma)
        np.testing.assert_allclose(drawn, scan.sources[source], atol=1e-4)
    beam = scan.spots[scan.background_index]
    np.testing.assert_allclose(beam[:, :2], [[SIZE / 2 + 1.5, SIZE / 2 - 2.0]])
    assert beam[0, 2] == pytest.approx(0.7, abs=1e-3)  # the direct beam's share


def test_expected_spots_are_weights_times_fractions(scan):
    probe, x, y, counts = scan.expected_spots(min_counts=25)
    assert np.all(np.diff(probe) >= 0) and (counts >= 25).all()
    weights = scan.weights.reshape(-1, len(scan.sources))
    beam = scan.spots[scan.background_index][0]
    at_beam = (x == beam[0]) & (y == beam[1])
    np.testing.assert_allclose(counts[at_beam], weights[probe[at_beam], 0] * beam[2])
    everything = scan.expected_spots(min_counts=0)
    assert len(everything[0]) == 64 * sum(len(s) for s in scan.spots.values())
    with pytest.raises(ValueError, match="min_counts"):
        scan.expected_spots(min_counts=-1)


def test_true_spots_are_found_at_dose_1000(scan, table):
    # Spots expected to hold ≥ 30 electrons with their centre on the detector.  The
    # benchmark (benchmarks/peaks.py) measures 97-100 % recall for them at this dose; the
    # centre of mass of a 30-count spot of σ = 1.2 px scatters by σ/√30 = 0.22 px per axis,
    # a median distance of ~0.26 px, and brighter spots do better.
    probe, x, y, _ = scan.expected_spots(min_counts=30)
    on = (x > -0.5) & (x < SIZE - 0.5) & (y > -0.5) & (y < SIZE - 0.5)
    distance = _distance_to_nearest(probe[on], x[on], y[on], table)
    found = distance <= MATCH_RADIUS
    assert on.sum() > 100
    assert found.mean() >= 0.95
    assert np.median(distance[found]) <= 0.3
    # Nearly every registered spot is a real one (any true spot of ≥ 1 expected count, also
    # one centred just off the detector).
    truth = scan.expected_spots(min_counts=1)
    backwards = _distance_to_nearest(table.probe, table.x, table.y, _as_table(truth, table))
    assert np.mean(backwards <= MATCH_RADIUS) >= 0.95


def _as_table(truth, like):
    probe, x, y, counts = truth
    ones = np.ones(len(probe))
    return SpotTable(probe, x, y, ones, counts, like.nav_shape, like.signal_shape)


def test_direct_beam_is_registered_unless_excluded(scan, table):
    beam_x, beam_y = SIZE / 2 + 1.5, SIZE / 2 - 2.0  # simulated_scan's default beam_offset
    n = math.prod(table.nav_shape)
    near_beam = _distance_to_nearest(np.arange(n), np.full(n, beam_x), np.full(n, beam_y), table)
    assert (near_beam <= 0.3).all()
    yy, xx = np.indices((SIZE, SIZE))
    beam = np.hypot(xx - beam_x, yy - beam_y) <= 3
    masked = register_spots(scan.signal.data, exclude=beam)
    assert not beam[np.rint(masked.y).astype(int), np.rint(masked.x).astype(int)].any()
    assert masked.n_spots < table.n_spots
    assert masked.params["n_excluded"] == int(beam.sum())


def test_lazy_equals_eager_and_is_computed_chunk_by_chunk(scan, table):
    seen = []

    def record(block):
        seen.append(block.shape)
        return block

    data = scan.signal.data
    lazy = da.from_array(data, chunks=(3, 5, SIZE, SIZE)).map_blocks(
        record, dtype=data.dtype, meta=np.array((), dtype=data.dtype)
    )
    progress = []
    result = register_spots(lazy, show_progress=lambda done, total: progress.append((done, total)))
    for name in ("probe", "x", "y", "radius", "intensity"):
        np.testing.assert_array_equal(getattr(result, name), getattr(table, name))
    assert result.params == table.params
    assert len(seen) == 6 and max(math.prod(s) for s in seen) == 3 * 5 * SIZE * SIZE
    assert progress[-1] == (64, 64) and len(progress) == 6
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_flat_navigation_gives_the_same_spots(scan, table):
    flat = register_spots(scan.signal.data.reshape(64, SIZE, SIZE))
    assert flat.nav_shape == (64,)
    np.testing.assert_array_equal(flat.probe, table.probe)
    np.testing.assert_array_equal(flat.intensity, table.intensity)


def test_table_is_sorted_and_sane(table):
    assert np.all(np.diff(table.probe) >= 0)
    assert table.probe.dtype == np.int64 and table.x.dtype == np.float64
    assert (table.radius >= 1.0).all() and (table.radius <= table.params["max_radius"]).all()
    assert (table.intensity > 0).all()
    assert table.spots_per_pattern.shape == (8, 8)
    assert table.spots_per_pattern.sum() == len(table) == table.n_spots
    json.dumps(table.params)


def test_reconstruct_equals_to_sparse(table):
    matrix = to_sparse(table)
    assert matrix.shape == (64, SIZE * SIZE) and matrix.dtype == np.float32
    dense = reconstruct(table)
    assert dense.shape == (8, 8, SIZE, SIZE) and dense.dtype == np.float32
    np.testing.assert_array_equal(dense.reshape(64, -1), matrix.toarray())
    assert reconstruct(table, dtype=np.float64).dtype == np.float64
    # Entries only on the footprints: no more than the discs' pixels, every one positive.
    assert matrix.nnz <= np.sum(np.pi * (table.radius + 1) ** 2)
    assert (matrix.data > 0).all()


def test_relative_intensities_are_kept():
    # Two spots of the same size, 4000 and 1000 counts, on a flat background of 50 counts
    # per pixel (about the mean inside the fainter spot): only a subtracted background gives
    # the 4:1 ratio.
    truth = [(20.3, 24.6, 4000.0), (42.8, 40.2, 1000.0)]
    image = 50.0 + _gaussian_spots((SIZE, SIZE), truth, sigma=1.3)
    table = register_spots(image[np.newaxis])
    assert table.n_spots == 2
    order = np.argsort(table.x)
    np.testing.assert_allclose(table.x[order], [20.3, 42.8], atol=0.05)
    np.testing.assert_allclose(table.y[order], [24.6, 40.2], atol=0.05)
    np.testing.assert_allclose(table.radius, 2 * 1.3, rtol=0.1)
    ratio = table.intensity[order[0]] / table.intensity[order[1]]
    assert ratio == pytest.approx(4.0, rel=0.05)
    # The drawn discs have the registered intensities as their means.
    drawn = reconstruct(table)[0]
    yy, xx = np.indices(drawn.shape)
    for x, y, r, value in zip(table.x, table.y, table.radius, table.intensity):
        inside = np.hypot(xx - x, yy - y) <= r
        assert drawn[inside].mean() == pytest.approx(value, rel=1e-6)
        assert (drawn[~inside & (np.hypot(xx - x, yy - y) <= r + 3)] == 0).all()


@pytest.mark.parametrize("mean", [0.2, 2.0, 20.0])
def test_prominence_is_in_noise_units(mean):
    # Spotless Poisson noise: at most a false spot per ten patterns at the default 4 σ (they
    # number 0.1-0.3 per pattern at 3.5 σ, 1-2 at 3 σ).
    noise = np.random.default_rng(1).poisson(mean, (50, SIZE, SIZE)).astype(np.float32)
    assert register_spots(noise).n_spots <= 10
    assert register_spots(noise, prominence=3.0).n_spots >= 40


def test_compression_ratio_formula(table):
    expected = 64 * SIZE * SIZE / (5 * table.n_spots)
    assert table.compression_ratio == pytest.approx(expected)
    empty = SpotTable([], [], [], [], [], nav_shape=(2, 3), signal_shape=(8, 8))
    assert empty.compression_ratio == math.inf and len(empty) == 0
    assert to_sparse(empty).nnz == 0 and not reconstruct(empty).any()


def test_to_dict_round_trip_is_lossless(table):
    d = table.to_dict()
    again = SpotTable.from_dict(d)
    via_json = SpotTable.from_dict(
        json.loads(json.dumps({k: v.tolist() if hasattr(v, "tolist") else v for k, v in d.items()}))
    )
    for copy in (again, via_json):
        for name in ("probe", "x", "y", "radius", "intensity"):
            np.testing.assert_array_equal(getattr(copy, name), getattr(table, name))
            assert getattr(copy, name).dtype == getattr(table, name).dtype
        assert copy.nav_shape == table.nav_shape and copy.signal_shape == table.signal_shape
        assert copy.params == table.params


def test_table_is_read_only(table):
    with pytest.raises(ValueError, match="read-only"):
        table.x[0] = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.x = np.zeros(3)
    d = table.to_dict()
    d["x"][0] = -1.0  # to_dict hands out copies
    assert table.x[0] != -1.0


def test_input_is_never_modified(scan):
    for data in (scan.signal.data.astype(np.float64), scan.signal.data.astype(np.uint16)):
        before = data.copy()
        register_spots(data[:2, :2])
        np.testing.assert_array_equal(data, before)


def test_all_zero_pattern_has_no_spot_and_all_zero_scan_raises(scan):
    data = scan.signal.data[:2, :2].copy()
    data[1, 0] = 0
    table = register_spots(data)
    assert table.spots_per_pattern[1, 0] == 0 and table.spots_per_pattern[0, 0] > 0
    with pytest.raises(ValueError, match="data are all zero"):
        register_spots(np.zeros((2, 2, 16, 16)))
    with pytest.raises(ValueError, match="data are all zero"):
        register_spots(da.zeros((2, 2, 16, 16), chunks=(1, 2, 16, 16)))


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        (np.ones((16, 16)), {}, ValueError, "data must have at least 3 dimensions"),
        (np.ones((0, 16, 16)), {}, ValueError, "data must not be empty"),
        (-np.ones((2, 16, 16)), {}, ValueError, "data must be non-negative"),
        (np.full((2, 16, 16), np.nan), {}, ValueError, "data must be finite"),
        (np.ones((2, 16, 16)), {"max_radius": 9}, ValueError, "max_radius must be at most"),
        (np.ones((2, 16, 16)), {"max_radius": 0.5}, ValueError, "max_radius must be ≥ 1"),
        (
            np.ones((2, 16, 16)),
            {"prominence": 0},
            ValueError,
            "prominence must be a finite number > 0",
        ),
        (
            np.ones((2, 16, 16)),
            {"prominence": -1},
            ValueError,
            "prominence must be a finite number > 0",
        ),
        (np.ones((2, 16, 16)), {"min_distance": 0}, ValueError, "min_distance must be"),
        (np.ones((2, 16, 16)), {"exclude": np.ones((8, 8), bool)}, ValueError, "exclude must"),
        (np.ones((2, 16, 16)), {"exclude": np.ones((16, 16))}, ValueError, "exclude must"),
        (np.ones((2, 16, 16)), {"show_progress": True}, TypeError, "show_progress must"),
    ],
)
def test_invalid_arguments_are_named(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        register_spots(data, **kwargs)


def test_lazy_invalid_values_are_caught():
    data = np.ones((4, 16, 16))
    data[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="data must be finite"):
        register_spots(da.from_array(data, chunks=(2, 16, 16)))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x": [1.0, 2.0]}, "1-D of one length"),
        ({"probe": [4]}, "probe must lie in"),
        ({"radius": [0.0]}, "radius must be positive"),
        ({"intensity": [-1.0]}, "intensity must be non-negative"),
        ({"y": [np.nan]}, "y must be finite"),
        ({"signal_shape": (8,)}, "signal_shape must be"),
        ({"nav_shape": (0,)}, "nav_shape must be"),
    ],
)
def test_invalid_tables_are_refused(change, match):
    columns = {"probe": [0], "x": [1.0], "y": [2.0], "radius": [1.0], "intensity": [3.0]}
    shapes = {"nav_shape": (4,), "signal_shape": (8, 8)}
    with pytest.raises(ValueError, match=match):
        SpotTable(**{**columns, **shapes, **change})
