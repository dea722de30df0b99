"""The built-in crystals and their kinematic reflections at an orientation.

The crystal structures are written out here (no CIF file, nothing downloaded) and turned into
orix phases; diffsims simulates their zone-axis spot patterns at :data:`BEAM_ENERGY`.  This is
the diffraction geometry only: rendering the spots on the detector is :mod:`.render`'s job and
choosing the orientations of a scan's crystals :mod:`.sources`'.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "BEAM_ENERGY",
    "CRYSTALS",
    "crystal_phase",
    "_CRYSTAL_DATA",
    "_MAX_EXCITATION_ERROR",
    "_MAX_TILT",
    "_RELROD_WIDTH",
    "_ZONES",
    "_count_spots",
    "_draw_orientation",
    "_phase",
    "_reflections",
    "_rotation_matrix",
    "_wavelength",
]

#: Accelerating voltage of the simulated microscope, kV.
BEAM_ENERGY = 200.0
_MAX_EXCITATION_ERROR = 0.04  # Å^-1, reflections further from the Ewald sphere are dropped
_RELROD_WIDTH = 0.015  # Å^-1, Lorentzian shape factor: roughly 1 / thickness
_MAX_TILT = 1.0  # degrees off the zone axis
_FCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))
_BCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5))


def _shifted(sites, shift):
    """Fractional ``sites`` translated by ``shift``, wrapped into the unit cell."""
    return tuple(tuple((c + s) % 1.0 for c, s in zip(site, shift)) for site in sites)


# name: (structure type, space group, (a, b, c, alpha, beta, gamma) in Å and degrees,
#        [(element, fractional xyz), ...], Debye-Waller B factors in Å^2)
_CRYSTAL_DATA = {
    "Al": ("fcc", 225, (4.0495,) * 3 + (90.0,) * 3, [("Al", p) for p in _FCC], {"Al": 0.85}),
    "Fe": ("bcc", 229, (2.8665,) * 3 + (90.0,) * 3, [("Fe", p) for p in _BCC], {"Fe": 0.35}),
    "Si": (
        "diamond",
        227,
        (5.431,) * 3 + (90.0,) * 3,
        [("Si", p) for p in _FCC + _shifted(_FCC, (0.25, 0.25, 0.25))],
        {"Si": 0.46},
    ),
    "MgO": (
        "rock salt",
        225,
        (4.212,) * 3 + (90.0,) * 3,
        [("Mg", p) for p in _FCC] + [("O", p) for p in _shifted(_FCC, (0.5, 0.0, 0.0))],
        {"Mg": 0.30, "O": 0.35},
    ),
    "Mg": (
        "hcp",
        194,
        (3.209, 3.209, 5.211, 90.0, 90.0, 120.0),
        [("Mg", (1 / 3, 2 / 3, 0.25)), ("Mg", (2 / 3, 1 / 3, 0.75))],
        {"Mg": 1.2},
    ),
    "Cu": ("fcc", 225, (3.615,) * 3 + (90.0,) * 3, [("Cu", p) for p in _FCC], {"Cu": 0.55}),
    "ZnO": (
        "wurtzite",
        186,
        (3.250, 3.250, 5.207, 90.0, 90.0, 120.0),
        [
            ("Zn", (1 / 3, 2 / 3, 0.0)),
            ("Zn", (2 / 3, 1 / 3, 0.5)),
            ("O", (1 / 3, 2 / 3, 0.382)),
            ("O", (2 / 3, 1 / 3, 0.882)),
        ],
        {"Zn": 0.5, "O": 0.6},
    ),
    "Au": ("fcc", 225, (4.0782,) * 3 + (90.0,) * 3, [("Au", p) for p in _FCC], {"Au": 0.62}),
}

#: Names of the crystals :func:`simulated_scan` can use.
CRYSTALS: tuple[str, ...] = tuple(_CRYSTAL_DATA)
# Low-index zone axes [uvw] (three-index, direct lattice) giving spotty patterns.
_ZONES = {
    "cubic": ((0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2)),
    "hexagonal": ((0, 0, 1), (1, 0, 0), (1, 2, 0)),  # [0001], [2-1-10], [10-10]
}


def crystal_phase(name: str):
    """The orix phase of one of the built-in crystals (structure written out, no CIF file).

    Parameters
    ----------
    name : str
        One of :data:`CRYSTALS`.

    Returns
    -------
    orix.crystal_map.Phase
        With a :class:`diffpy.structure.Structure` holding every atom of the unit cell.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import CRYSTALS, crystal_phase
    >>> CRYSTALS[:4]
    ('Al', 'Fe', 'Si', 'MgO')
    >>> phase = crystal_phase("Si")
    >>> phase.space_group.number, len(phase.structure)
    (227, 8)
    """
    if name not in _CRYSTAL_DATA:
        raise ValueError(f"crystal must be one of {CRYSTALS}, got {name!r}")
    return _phase(name).deepcopy()


@functools.cache
def _phase(name: str):
    from diffpy.structure import Atom, Lattice, Structure
    from orix.crystal_map import Phase

    _, space_group, cell, sites, _ = _CRYSTAL_DATA[name]
    lattice = Lattice(*cell)
    atoms = [Atom(element, xyz, lattice=lattice) for element, xyz in sites]
    return Phase(name=name, space_group=space_group, structure=Structure(atoms, lattice))


@functools.cache
def _generator():
    from diffsims.generators.simulation_generator import SimulationGenerator

    return SimulationGenerator(
        accelerating_voltage=BEAM_ENERGY,
        scattering_params="lobato",
        shape_factor_model="lorentzian",
    )


def _wavelength() -> float:
    """Relativistic electron wavelength at :data:`BEAM_ENERGY`, Å."""
    return float(_generator().wavelength)


def _rotation_matrix(phase, zone, tilt: float, tilt_azimuth: float, in_plane: float):
    """Lab-from-crystal rotation: zone axis to the beam (z), tilted, turned about z."""
    from orix.vector import Miller

    d = Miller(uvw=[zone], phase=phase).data[0]
    d = d / np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    align = _axis_angle(np.cross(d, z), math.atan2(np.linalg.norm(np.cross(d, z)), d @ z))
    axis = np.array([math.cos(tilt_azimuth), math.sin(tilt_azimuth), 0.0])
    return _axis_angle(z, in_plane) @ _axis_angle(axis, tilt) @ align


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    norm = np.linalg.norm(axis)
    if norm < 1e-12:
        return np.eye(3) if abs(angle) < 1e-12 else np.diag([1.0, -1.0, -1.0])
    k = axis / norm
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _draw_orientation(
    rng: np.random.Generator, zones: tuple[tuple[int, int, int], ...]
) -> tuple[tuple[int, int, int], float, float, float]:
    """A random orientation near a zone axis: the arguments of :func:`_rotation_matrix`.

    The zone axis, the tilt off it (radians, uniform over the disc of ``_MAX_TILT``), its
    azimuth and the in-plane rotation (radians).
    """
    zone = zones[rng.integers(len(zones))]
    tilt = math.radians(_MAX_TILT) * math.sqrt(rng.uniform())
    tilt_azimuth, in_plane = rng.uniform(0, 2 * math.pi, size=2)
    return zone, tilt, tilt_azimuth, in_plane


def _reflections(name: str, matrix: np.ndarray, size: int, scale: float, centre, sigma: float):
    """Kinematic reflections of crystal ``name`` at lab-from-crystal rotation ``matrix``.

    Returns the spot centres (n, 2) in pixels and their intensities, for the reflections with
    more than 1e-4 of the strongest one within reach of the detector.
    """
    from orix.quaternion import Rotation

    # Reciprocal radius reaching the far detector corner from the beam, plus a spot's width.
    corner = max(abs(c - e) for c in centre for e in (-0.5, size - 0.5))
    radius = scale * (math.sqrt(2) * corner + 4 * sigma)
    # diffsims turns the reciprocal lattice by the inverse of the rotation it is given.
    sim = _generator().calculate_diffraction2d(
        _phase(name),
        Rotation.from_matrix(matrix.T),
        reciprocal_radius=radius,
        with_direct_beam=False,
        max_excitation_error=_MAX_EXCITATION_ERROR,
        shape_factor_width=_RELROD_WIDTH,
        debye_waller_factors=_CRYSTAL_DATA[name][4],
    )
    coords = sim.coordinates
    intensity = np.asarray(coords.intensity, dtype=float)
    keep = intensity > 1e-4 * intensity.max(initial=0)
    xy = np.asarray(coords.data, dtype=float)[keep, :2] / scale + np.asarray(centre)
    return xy, intensity[keep]


def _count_spots(xy: np.ndarray, intensity: np.ndarray, size: int) -> int:
    """Reflections centred on the detector with > 2 % of the strongest one there."""
    on = np.all((xy > -0.5) & (xy < size - 0.5), axis=1)
    return int(np.count_nonzero(intensity[on] > 0.02 * intensity[on].max(initial=0)))
