"""Tests of the preprocessing chain (``hyperspy_nmfdecide.prepare``), eager and lazy."""

from __future__ import annotations

import copy
import json

import dask.array as da
import numpy as np
import pytest

from hyperspy_nmfdecide.data import simulated_scan
from hyperspy_nmfdecide.prepare import (
    METADATA_PREPROCESSING,
    prepare_for_nmf,
    preprocessing_record,
)

SIZE = 32
CENTRE = SIZE // 2
FULL_CHAIN = dict(
    bad_pixels=True,
    center=True,
    background="rolling_ball",
    background_kwargs={"radius": 5},
    binning=2,
    blur_sigma=0.5,
    scaling="sqrt",
    beam_mask_radius=2,
)


def _scan(lazy: bool = False, **kwargs):
    return simulated_scan(nav_shape=(8, 8), pattern_size=SIZE, random_state=0, lazy=lazy, **kwargs)


def _values(signal) -> np.ndarray:
    data = signal.data
    return np.asarray(data.compute() if isinstance(data, da.Array) else data)


def _with_data(signal, data, lazy: bool):
    """A copy of the eager ``signal`` holding ``data``, made lazy when asked."""
    out = signal.deepcopy()
    out.data = np.asarray(data, dtype=np.float32)
    return out.as_lazy() if lazy else out


def _beam_yx(pattern: np.ndarray) -> np.ndarray:
    """Intensity centroid of the 5 × 5 pixels around the brightest pixel, (y, x)."""
    y, x = np.unravel_index(np.argmax(pattern), pattern.shape)
    window = pattern[y - 2 : y + 3, x - 2 : x + 3]
    yy, xx = np.mgrid[y - 2 : y + 3, x - 2 : x + 3]
    return np.array([(yy * window).sum(), (xx * window).sum()]) / window.sum()


def test_class_kept_and_lazy_stays_lazy(lazy):
    s = _scan(lazy).signal
    prepared = prepare_for_nmf(s, **FULL_CHAIN)
    assert prepared is not s
    assert type(prepared) is type(s)
    assert prepared._lazy is lazy
    assert isinstance(prepared.data, da.Array) is lazy
    values = _values(prepared)
    assert values.shape == (8, 8, SIZE // 2, SIZE // 2)
    assert np.all(np.isfinite(values)) and values.min() >= 0


def test_input_unmodified(lazy):
    s = _scan(lazy).signal
    s.metadata.set_item("NMFDecide.sweep", {"stale": 1})
    data = _values(s).copy()
    metadata = copy.deepcopy(s.metadata.as_dictionary())
    axes = copy.deepcopy(s.axes_manager.as_dictionary())
    name = s.data.name if lazy else None
    prepared = prepare_for_nmf(s, **FULL_CHAIN)
    _values(prepared)  # run the lazy graph too
    np.testing.assert_array_equal(_values(s), data)
    assert s.metadata.as_dictionary() == metadata
    assert s.axes_manager.as_dictionary() == axes
    assert not s.metadata.has_item(METADATA_PREPROCESSING)
    if lazy:
        assert s.data.name == name
    # A result stored on the raw data does not follow it to the prepared data.
    assert not prepared.metadata.has_item("NMFDecide.sweep")


def test_centring_moves_an_off_centre_beam(lazy):
    s = _scan(lazy, beam_offset=(5.0, -4.0)).signal
    before = _beam_yx(_values(s).mean(axis=(0, 1)))
    np.testing.assert_allclose(before, [CENTRE - 4, CENTRE + 5], atol=1)
    prepared = prepare_for_nmf(s, center=True)
    after = _beam_yx(_values(prepared).mean(axis=(0, 1)))
    assert np.all(np.abs(after - CENTRE) <= 1)
    (step,) = preprocessing_record(prepared)
    assert step["step"] == "center" and step["method"] == "blur" and step["sigma"] == 2
    np.testing.assert_allclose(step["mean_shift_px"], [-5, 4], atol=1)
    assert step["n_fallback"] == 0
    # Centring keeps the calibration.
    assert prepared.axes_manager.as_dictionary() == s.axes_manager.as_dictionary()


def test_centring_without_a_beam_raises(lazy):
    s = _scan(lazy).signal * 0
    with pytest.raises(ValueError, match="center: the direct beam was not found in 64 of 64"):
        prepare_for_nmf(s, center=True)
    with pytest.raises(ValueError, match="center: the direct beam was not found in 64 of 64"):
        prepare_for_nmf(s, center={"on_failure": "median"})


def test_centring_fallback_to_the_median_shift(lazy):
    s = _scan(beam_offset=(3.0, 3.0)).signal
    data = _values(s).copy()
    data[0, :3] = 0  # three empty patterns: no beam to find
    s = _with_data(s, data, lazy)
    with pytest.raises(ValueError, match=r"not found in 3 of 64 .*on_failure"):
        prepare_for_nmf(s, center=True)
    prepared = prepare_for_nmf(s, center={"on_failure": "median", "sigma": 1.5})
    (step,) = preprocessing_record(prepared)
    assert step["n_fallback"] == 3 and step["sigma"] == 1.5
    np.testing.assert_allclose(step["mean_shift_px"], [-3, -3], atol=1)


def test_bad_pixels_corrected(lazy):
    s = _scan().signal
    data = _values(s).copy()
    hot_yx, dead_yx = (10, 6), (CENTRE - 1, CENTRE + 3)
    data[2, 3][hot_yx] = 5000.0
    data[..., dead_yx[0], dead_yx[1]] = 0.0
    s = _with_data(s, data, lazy)
    prepared = prepare_for_nmf(s, bad_pixels=True)
    out = _values(prepared)

    def neighbour_mean(pattern, y, x):
        return (pattern[y - 1 : y + 2, x - 1 : x + 2].sum() - pattern[y, x]) / 8

    assert out[2, 3][hot_yx] == pytest.approx(neighbour_mean(data[2, 3], *hot_yx))
    assert out[2, 3][hot_yx] < 100
    assert np.all(out[..., dead_yx[0], dead_yx[1]] > 0)
    assert out[5, 5][dead_yx] == pytest.approx(neighbour_mean(data[5, 5], *dead_yx))
    (step,) = preprocessing_record(prepared)
    assert step["n_hot_pixels"] == 1
    assert step["n_dead_pixels"] >= 1  # ours, and pixels that counted nothing in the scan
    assert step["threshold_multiplier"] == 500


def test_binning_sums_counts_and_scales_axes(lazy):
    s = _scan(lazy).signal
    prepared = prepare_for_nmf(s, binning=2)
    raw, out = _values(s), _values(prepared)
    expected = raw.reshape(8, 8, SIZE // 2, 2, SIZE // 2, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.sum() == pytest.approx(raw.sum(), rel=1e-6)
    for before, after in zip(s.axes_manager.signal_axes, prepared.axes_manager.signal_axes):
        assert after.scale == pytest.approx(2 * before.scale)
        assert after.offset == pytest.approx(before.offset + before.scale / 2)
        assert after.units == before.units and after.name == before.name
    for before, after in zip(s.axes_manager.navigation_axes, prepared.axes_manager.navigation_axes):
        assert (after.size, after.scale, after.offset) == (before.size, before.scale, before.offset)
    (step,) = preprocessing_record(prepared)
    assert step == {
        "step": "binning",
        "factor": 2,
        "pattern_shape": [16, 16],
        "signal_scale": [2 * s.axes_manager.signal_axes[0].scale] * 2,
    }
    with pytest.raises(ValueError, match=r"binning=3 does not divide the pattern shape \(32, 32\)"):
        prepare_for_nmf(s, binning=3)


def test_rolling_ball_removes_a_smooth_background_and_keeps_spots(lazy):
    scan = _scan()
    yy, xx = np.indices((SIZE, SIZE))
    smooth = 20 + 20 * np.exp(-((xx - 10) ** 2 + (yy - 20) ** 2) / (2 * 12.0**2))
    raw = _values(scan.signal)
    s = _with_data(scan.signal, raw + smooth, lazy)
    prepared = prepare_for_nmf(s, background="rolling_ball", background_kwargs={"radius": 5})
    out = _values(prepared).mean(axis=(0, 1))
    raw = raw.mean(axis=(0, 1))
    expected = scan.noise_free().mean(axis=(0, 1))
    crystals = np.einsum("k,kyx->yx", scan.weights[..., 1:].mean(axis=(0, 1)), scan.sources[1:])
    spot = np.unravel_index(np.argmax(crystals), crystals.shape)
    beam = np.unravel_index(np.argmax(expected), expected.shape)
    quiet = np.unravel_index(np.argmin(expected), expected.shape)
    assert (raw + smooth)[quiet] > 20 and out[quiet] < 0.1 * (raw + smooth)[quiet]
    assert out.mean() < 0.15 * (raw + smooth).mean()
    assert out[spot] > 0.8 * raw[spot] and out[spot] > out[quiet] + 2
    assert out[beam] > 0.8 * raw[beam]
    assert preprocessing_record(prepared) == [
        {"step": "background", "method": "rolling_ball", "radius": 5.0, "clipped_at": 0.0}
    ]


@pytest.mark.parametrize(
    "method, kwargs",
    [("difference of gaussians", {}), ("median kernel", {"footprint": 5}), ("radial median", {})],
)
def test_pyxem_backgrounds_are_clipped_and_recorded(lazy, method, kwargs):
    s = _scan(lazy).signal
    prepared = prepare_for_nmf(s, background=method, background_kwargs=kwargs)
    out = _values(prepared)
    assert out.dtype == np.float32 and out.min() >= 0 and np.all(np.isfinite(out))
    assert out.sum() < _values(s).sum()
    (step,) = preprocessing_record(prepared)
    assert step["method"] == method and step["clipped_at"] == 0.0
    if method == "radial median":  # the detector centre, not pyxem's pixel (128, 128)
        assert (step["center_x"], step["center_y"]) == (CENTRE, CENTRE)


def test_blur_and_scaling(lazy):
    s = _scan(lazy).signal
    raw = _values(s)
    np.testing.assert_allclose(_values(prepare_for_nmf(s, scaling="sqrt")), np.sqrt(raw))
    np.testing.assert_allclose(_values(prepare_for_nmf(s, scaling="log")), np.log1p(raw), rtol=1e-6)
    blurred = _values(prepare_for_nmf(s, blur_sigma=1.0))
    assert blurred.sum() == pytest.approx(raw.sum(), rel=0.01)
    assert blurred.max() < raw.max()


def test_beam_mask_at_the_found_beam(lazy):
    s = _scan(lazy, beam_offset=(5.0, -4.0)).signal
    prepared = prepare_for_nmf(s, beam_mask_radius=3)
    mask = prepared.metadata.get_item(METADATA_PREPROCESSING + ".signal_mask")
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (SIZE, SIZE)
    assert mask[CENTRE - 4, CENTRE + 5] and not mask[CENTRE, CENTRE]
    np.testing.assert_array_equal(_values(prepared), _values(s))  # the data are not changed
    (step,) = preprocessing_record(prepared)
    assert step["beam_position_px"] == [CENTRE + 5, CENTRE - 4]
    assert step["n_masked_pixels"] == mask.sum() == 29  # disc of radius 3
    # After centring (and binning) the mask follows the beam to the centre.
    centred = prepare_for_nmf(s, center=True, binning=2, beam_mask_radius=2)
    mask = centred.metadata.get_item(METADATA_PREPROCESSING + ".signal_mask")
    assert mask.shape == (CENTRE, CENTRE) and mask[CENTRE // 2, CENTRE // 2]
    with pytest.raises(ValueError, match="beam_mask_radius=8 px is too large .*16, 16"):
        prepare_for_nmf(s, binning=2, beam_mask_radius=8)


def test_record_in_order_appended_and_saved():
    s = _scan().signal
    assert preprocessing_record(s) == []
    s16 = s.deepcopy()
    s16.change_dtype("uint16")
    prepared = prepare_for_nmf(s16, **FULL_CHAIN)
    assert prepared.data.dtype == np.float32
    steps = preprocessing_record(prepared)
    assert [step["step"] for step in steps] == [
        "dtype",
        "bad_pixels",
        "center",
        "background",
        "binning",
        "blur",
        "scaling",
        "beam_mask",
    ]
    assert steps[0] == {"step": "dtype", "from": "uint16", "to": "float32"}
    assert steps[3]["radius"] == 5.0 and steps[4]["factor"] == 2
    assert steps[5]["sigma_px"] == 0.5 and steps[6]["scaling"] == "sqrt"
    assert steps[7]["radius_px"] == 2.0
    json.dumps(steps)  # plain JSON values only
    # A second call appends; a mask that no longer fits the binned data is dropped.
    again = prepare_for_nmf(prepared, scaling="log")
    assert [step["step"] for step in preprocessing_record(again)][-2:] == ["beam_mask", "scaling"]
    assert again.metadata.has_item(METADATA_PREPROCESSING + ".signal_mask")
    rebinned = prepare_for_nmf(prepared, binning=2)
    assert not rebinned.metadata.has_item(METADATA_PREPROCESSING + ".signal_mask")
    assert len(preprocessing_record(prepared)) == 8  # the first result is unchanged
    # The record survives saving and loading.
    import hyperspy.api as hs

    prepared.save("prepared.hspy")
    loaded = hs.load("prepared.hspy")
    assert preprocessing_record(loaded) == steps
    assert type(loaded) is type(prepared)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"center": "yes"}, TypeError, "center must be a bool or a dict"),
        ({"center": {"method": "magic"}}, ValueError, "center: method must be one of"),
        ({"center": {"on_failure": "skip"}}, ValueError, "center: on_failure must be"),
        ({"center": {"max_shift": -1}}, ValueError, r"center\['max_shift'\] must be"),
        ({"center": {"shifts": 1}}, TypeError, "set by prepare_for_nmf"),
        ({"center": {"sigmaa": 1}}, TypeError, r"center: \['sigmaa'\] not accepted by"),
        ({"bad_pixels": 1}, TypeError, "bad_pixels must be a bool or a dict"),
        ({"bad_pixels": {"hott": True}}, TypeError, "bad_pixels: unknown keys"),
        ({"bad_pixels": {"hot": False, "dead": False}}, ValueError, "nothing to correct"),
        ({"bad_pixels": {"mask": np.zeros((3, 3), bool)}}, ValueError, "bad_pixels: mask"),
        ({"background": "h-dome"}, ValueError, "background must be one of .*'rolling_ball'"),
        ({"background": 3}, TypeError, "background must be a str"),
        ({"background_kwargs": {"radius": 5}}, ValueError, "background_kwargs given without"),
        ({"background": "median kernel", "background_kwargs": [5]}, TypeError, "must be a dict"),
        (
            {"background": "rolling_ball", "background_kwargs": {"radius": -1}},
            ValueError,
            r"background_kwargs\['radius'\] must be a finite number > 0",
        ),
        (
            {"background": "median kernel", "background_kwargs": {"radius": 3}},
            TypeError,
            "background_kwargs: \\['radius'\\] not accepted by 'median kernel'",
        ),
        ({"binning": 2.0}, TypeError, "binning must be an int"),
        ({"binning": 0}, ValueError, "binning must be >= 1"),
        ({"blur_sigma": -1.0}, ValueError, "blur_sigma must be a finite number > 0"),
        ({"blur_sigma": "1"}, TypeError, "blur_sigma must be a number"),
        ({"scaling": "cube"}, ValueError, "scaling must be None or one of"),
        ({"scaling": 2}, TypeError, "scaling must be a str or None"),
        ({"beam_mask_radius": 0}, ValueError, "beam_mask_radius must be a finite number > 0"),
        ({"beam_mask_radius": 20}, ValueError, "beam_mask_radius=20 px is too large"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    s = _scan().signal
    with pytest.raises(error, match=match):
        prepare_for_nmf(s, **kwargs)


def test_not_a_diffraction_signal():
    import hyperspy.api as hs

    with pytest.raises(TypeError, match="signal must be a pyxem Diffraction2D"):
        prepare_for_nmf(hs.signals.Signal2D(np.zeros((2, 4, 4))))
