"""The local refinement of a template match (``refinement``, ``orientation.refine_factors``).

Each test renders a noise-free factor from a diffsims template at a known rotation (Gaussian
spots of 1.2 pixels, as the simulator draws them), starts the refinement from that rotation
turned and tilted by a known amount, and checks how close it comes back.  Tolerances: 0.1° in
plane (the Procrustes fit of ~20 spots at 10–30 pixels from the beam; measured 0.01–0.05°) and
0.5° in all (the tilt search stops at 0.03° steps, the intensity score is flat to ~0.2°
around the truth; measured 0.1–0.3°).
"""

import numpy as np
import pytest
from diffsims.generators.simulation_generator import SimulationGenerator
from orix.quaternion import Orientation, Rotation
from pyxem.signals import ElectronDiffraction2D

from hyperspy_nmfdecide.data import crystal_phase
from hyperspy_nmfdecide.orientation import IndexArrays, refine_factors
from hyperspy_nmfdecide.refinement import cartesian_factor, in_plane_correction

SIZE, SCALE = 64, 1 / 32  # pixels, Å⁻¹ per pixel; 0 Å⁻¹ at pixel 32
RADIAL = (4 * SCALE, 0.96)
EXCITATION = 0.04


def _spots(phase, rotation) -> tuple[np.ndarray, np.ndarray]:
    """The template's spot positions (Å⁻¹) and intensities at ``rotation``."""
    sim = SimulationGenerator(200.0).calculate_diffraction2d(
        phase,
        rotation=rotation,
        reciprocal_radius=1.0,
        with_direct_beam=False,
        max_excitation_error=EXCITATION,
    )
    return sim.coordinates.data[:, :2], np.asarray(sim.coordinates.intensity)


def _render(phase, rotation) -> np.ndarray:
    """A (SIZE, SIZE) pattern of Gaussian spots at the template's positions and intensities."""
    xy, intensity = _spots(phase, rotation)
    xy = xy / SCALE + SIZE // 2
    grid = np.arange(SIZE)
    gx = np.exp(-((grid[None] - xy[:, :1]) ** 2) / (2 * 1.2**2))
    gy = np.exp(-((grid[None] - xy[:, 1:]) ** 2) / (2 * 1.2**2))
    return (gy * intensity[:, None]).T @ gx


def _factors(images) -> ElectronDiffraction2D:
    signal = ElectronDiffraction2D(np.stack(images))
    for axis in signal.axes_manager.signal_axes:
        axis.scale, axis.offset, axis.units = SCALE, -(SIZE // 2) * SCALE, "Å^-1"
    return signal


def _found(rotation) -> IndexArrays:
    """One component matched (on a grid, say) at ``rotation``."""
    euler = rotation.to_euler().reshape(1, 3)
    return IndexArrays(
        best_phase=np.zeros(1, int),
        euler=euler,
        score=np.ones(1),
        phase_reliability=np.ones(1),
        orientation_reliability=np.ones(1),
        candidate_phase=np.zeros((1, 1), int),
        candidate_euler=euler[:, None],
        candidate_score=np.ones((1, 1)),
        grid_euler=euler.copy(),
        in_plane_deg=np.zeros(1),
    )


def _near_zone(uvw, in_plane_deg: float, tilt_deg: float):
    """A rotation whose beam direction (rotation * z) is ``uvw`` tilted by ``tilt_deg`` about x,
    turned ``in_plane_deg`` about the beam."""
    v = np.asarray(uvw, float) / np.linalg.norm(uvw)
    axis = np.cross((0.0, 0.0, 1.0), v)
    angle = np.arccos(np.clip(v[2], -1, 1))
    align = Rotation.from_axes_angles(axis if angle > 0 else (0, 0, 1), angle)
    return (
        align
        * Rotation.from_axes_angles((1, 0, 0), np.radians(tilt_deg))
        * Rotation.from_axes_angles((0, 0, 1), np.radians(in_plane_deg))
    )


# (phase, zone axis, turn about the beam, tilt off the zone axis)
CASES = [("Fe", (0, 0, 1), 20.0, 0.6), ("Au", (0, 1, 1), 10.0, 0.4), ("Au", (1, 1, 1), 30.0, 0.8)]


@pytest.mark.parametrize(("name", "zone", "in_plane", "tilt"), CASES)
def test_in_plane_turn_is_recovered(name, zone, in_plane, tilt):
    phase = crystal_phase(name)
    truth = _near_zone(zone, in_plane, tilt)
    factor = cartesian_factor(_render(phase, truth), (-1.0, -1.0), (SCALE, SCALE), RADIAL)
    xy, intensity = _spots(phase, truth)
    for turn_deg in (-1.2, 0.7):
        a = np.radians(turn_deg)
        turned = xy @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T
        angle, used = in_plane_correction(factor, turned, intensity)
        assert used >= 4
        assert abs(np.degrees(angle) + turn_deg) < 0.1


@pytest.mark.parametrize(("name", "zone", "in_plane", "tilt"), CASES)
def test_refinement_returns_to_the_rendered_orientation(name, zone, in_plane, tilt):
    phase = crystal_phase(name)
    truth = _near_zone(zone, in_plane, tilt)
    # The start: 0.8° about the beam and 0.7° of tilt away, as a 1° grid can leave it.
    start = (
        truth
        * Rotation.from_axes_angles((0, 0, 1), np.radians(0.8))
        * Rotation.from_axes_angles((1, 1, 0), np.radians(0.7))
    )
    refined = refine_factors(
        _factors([_render(phase, truth)]), [phase], _found(start), 200.0, RADIAL
    )
    symmetry = phase.point_group
    before = Orientation(start.data, symmetry=symmetry).angle_with(
        Orientation(truth.data, symmetry=symmetry)
    )
    after = Orientation.from_euler(refined.euler, symmetry=symmetry).angle_with(
        Orientation(truth.data, symmetry=symmetry)
    )
    assert np.degrees(before[0]) > 1.0
    assert np.degrees(after[0]) < 0.5
    np.testing.assert_array_equal(refined.grid_euler, start.to_euler().reshape(1, 3))
    assert abs(refined.in_plane_deg[0]) > 0.3


def test_skipped_components_are_left_as_matched():
    phase = crystal_phase("Fe")
    start = _near_zone((0, 0, 1), 20.0, 1.0)
    factors = _factors([_render(phase, start)])
    refined = refine_factors(factors, [phase], _found(start), 200.0, RADIAL, skip=np.array([True]))
    np.testing.assert_array_equal(refined.euler, _found(start).euler)
    assert refined.in_plane_deg[0] == 0
