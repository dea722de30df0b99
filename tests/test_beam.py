"""The direct beam: found on the mean pattern, its radius measured from its own profile."""

import numpy as np
import pytest

from hyperspy_nmfdecide.beam import beam_disc, find_direct_beam
from hyperspy_nmfdecide.data import simulated_scan


def gaussian_spot(shape, centre, sigma, height=500.0, floor=1.0):
    yy, xx = np.indices(shape)
    r2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    return height * np.exp(-r2 / (2 * sigma**2)) + floor


def blurred_disc(shape, centre, radius, blur, height=400.0, floor=2.0):
    from scipy import ndimage

    disc = beam_disc(shape, centre, radius).astype(float) * height
    return ndimage.gaussian_filter(disc, blur) + floor


@pytest.mark.parametrize("sigma", [0.8, 1.2, 2.5, 4.0])
def test_a_gaussian_spot_is_masked_to_three_sigma(sigma):
    beam = find_direct_beam(gaussian_spot((96, 96), (40.3, 52.6), sigma))
    assert beam.found
    assert beam.position == pytest.approx((40.3, 52.6), abs=0.25)
    # The excess falls to 1 % at 3.03 sigma; half a pixel of margin, binned profile.
    assert beam.radius == pytest.approx(3.03 * sigma + 0.5, abs=0.6)
    assert beam.half_radius == pytest.approx(1.18 * sigma, abs=0.4)


@pytest.mark.parametrize("radius, blur", [(6.0, 0.7), (12.0, 1.5)])
def test_a_convergent_beam_disc_is_masked_to_its_edge(radius, blur):
    beam = find_direct_beam(blurred_disc((128, 128), (60.0, 66.0), radius, blur))
    assert beam.found
    # Its edge plus ~2.3-2.8 blur widths and the margin: the whole disc, little beyond.
    assert radius + 1.5 * blur <= beam.radius <= radius + 3.5 * blur + 1.0
    assert beam.mask((128, 128)).sum() >= np.pi * radius**2


def test_a_beam_on_a_bright_halo_is_still_found():
    yy, xx = np.indices((128, 128))
    halo = 300 * (1 + ((xx - 64) ** 2 + (yy - 64) ** 2) / 15.0**2) ** -1.5
    beam = find_direct_beam(gaussian_spot((128, 128), (64, 64), 1.5, height=3000) + halo)
    assert beam.found and beam.radius < 8


@pytest.mark.parametrize(
    "pattern, reason",
    [
        (np.ones((32, 32)), "flat"),
        (np.indices((32, 32)).sum(axis=0).astype(float), "no direct beam"),  # a ramp
    ],
)
def test_no_beam_no_mask(pattern, reason):
    beam = find_direct_beam(pattern)
    assert not beam.found and reason in beam.reason
    assert beam.mask(pattern.shape) is None


def test_a_faint_bragg_spot_is_not_taken_for_the_beam():
    # Rings and a weak spot, no beam: the spot holds well under 5 % of the intensity.
    yy, xx = np.indices((64, 64))
    r = np.hypot(xx - 32, yy - 32)
    rings = 10 * np.exp(-0.5 * ((r - 20) / 2) ** 2) + 1
    pattern = rings + gaussian_spot((64, 64), (45, 20), 1.0, height=40, floor=0)
    assert not find_direct_beam(pattern).found


def test_bad_input():
    with pytest.raises(ValueError, match="2-D pattern"):
        find_direct_beam(np.ones(64))
    with pytest.raises(ValueError, match="NaN"):
        find_direct_beam(np.full((16, 16), np.nan))


def test_the_beam_of_a_simulated_scan_moving_across_it_is_masked_over_its_path():
    scan = simulated_scan(nav_shape=(12, 12), pattern_size=64, descan=6.0, random_state=3)
    mean = scan.signal.data.mean(axis=(0, 1))
    beam = find_direct_beam(mean)
    positions = scan.beam_positions().reshape(-1, 2)  # (x, y) of every probe's beam
    distance = np.hypot(*(positions - np.asarray(beam.position)).T)
    assert distance.max() + 1.0 < beam.radius
