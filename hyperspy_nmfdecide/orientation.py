"""Phase and orientation of NMF factors: pyxem's polar template matching on k patterns.

The numerics behind ``s.index_components``: a template bank per candidate phase (diffsims
kinematic simulations over each phase's reduced fundamental zone, :mod:`orix.sampling`), the
factors reprojected to polar coordinates (pyxem ``get_azimuthal_integral2d``), each factor
matched against every bank (pyxem ``PolarDiffraction2D.get_orientation``), and the best phase,
orientation and reliabilities read from the scores.

Three facts this module handles (checked with pyxem 0.21, diffsims 0.7, orix 0.15):

- pyxem's polar reprojection (pyFAI) runs its azimuth the other way round from the
  ``atan2(ky, kx)`` of the signal axes that diffsims' template coordinates use, and labels its
  bins by their lower edges while ``get_orientation`` snaps templates to the nearest label:
  :func:`polar_factors` samples the patterns itself at the axes' values.
- diffsims refuses an orientation with no reflection inside ``reciprocal_radius``: the default
  excitation error is the simulator's 0.04 Å⁻¹ rather than diffsims' 0.01.
- A factor holds, besides its spots, a smooth radial part (diffuse halo, rings): the per-radius
  median over azimuth is subtracted (clipped at 0) and each polar factor scaled to unit norm, so
  the correlation of every component is on one scale (0 to ~1) and comparable between phases.

No HyperSpy import at module level: pyxem, diffsims and orix are imported on first use.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .refinement import cartesian_factor, in_plane_correction, refine_tilt

if TYPE_CHECKING:
    from orix.crystal_map import Phase

__all__ = [
    "AMBIGUOUS_PHASE",
    "BACKGROUND_SCORE",
    "DEFAULT_RESOLUTION",
    "MAX_EXCITATION_ERROR",
    "IndexArrays",
    "as_phases",
    "background_components",
    "beam_energy_of",
    "index_factor_signal",
    "index_factors",
    "match_polar",
    "polar_factors",
    "reciprocal_range",
    "refine_factors",
    "reliability",
    "template_bank",
]

_logger = logging.getLogger(__name__)

#: Angular step of the template grid (degrees) when none is given.
DEFAULT_RESOLUTION = 1.0
#: Excitation error of the template simulations (Å⁻¹).
MAX_EXCITATION_ERROR = 0.04
#: A component whose phase reliability is below this is reported with its runner-up phase
#: (``"Fe|Au"``).  Measured (benchmarks/orientation.py, 34 crystals): every wrong phase had a
#: reliability of 0.004–0.11 (Si read as Au, Au as MgO, Mg as ZnO: lattices within 1–6 %),
#: right ones 0.01–0.9.
AMBIGUOUS_PHASE = 0.15
#: A component whose best correlation (any phase) is below this is the background, when no
#: stored phase maps name the background component.  Measured on seeded Fe + Au scans: crystal
#: factors score 0.17–0.24, the background factor 0.01–0.08.
BACKGROUND_SCORE = 0.1


@dataclass
class IndexArrays:
    """Per-component matches of k factors against n_phases template banks.

    Attributes
    ----------
    best_phase : numpy.ndarray
        (k,) int, index into the phases of the best-scoring phase.
    euler : numpy.ndarray
        (k, 3) Bunge Euler angles (radians) of the best orientation of the best phase.
    score : numpy.ndarray
        (k,) correlation of the best template.
    phase_reliability : numpy.ndarray
        (k,) ``1 - (best score of any other phase) / score`` (1 with one phase).
    orientation_reliability : numpy.ndarray
        (k,) ``1 - (second-best score of the best phase) / score``.  The second-best template
        is usually a neighbour of the best on the grid, so this is small (~0.001–0.01) even for
        a sure match; it says how sharply the grid point is picked, not whether another
        orientation far away fits as well.
    candidate_phase, candidate_euler, candidate_score : numpy.ndarray
        (k, n_phases * n_best) every phase's top ``n_best`` matches, best first (of the grid).
    grid_euler : numpy.ndarray
        (k, 3) the best grid orientation before refinement (equal to ``euler`` unrefined).
    in_plane_deg : numpy.ndarray
        (k,) the turn about the beam the refinement applied (degrees; 0 where not refined).
    """

    best_phase: np.ndarray
    euler: np.ndarray
    score: np.ndarray
    phase_reliability: np.ndarray
    orientation_reliability: np.ndarray
    candidate_phase: np.ndarray
    candidate_euler: np.ndarray
    candidate_score: np.ndarray
    grid_euler: np.ndarray
    in_plane_deg: np.ndarray


@contextmanager
def _quiet_pyxem():
    """Silence what pyxem's polar matching prints although asked not to.

    ``get_orientation`` maps a helper over its result without ``show_progressbar`` or
    ``silence_warnings`` (pyxem 0.21): a progress bar per phase and HyperSpy's warnings about
    the polar axes' mixed units, which say nothing to the user here; and it divides a template
    with no reflection in the radial range by its zero norm (numpy's "invalid value" warning;
    such a template scores NaN and is never the best).
    """
    from hyperspy.defaults_parser import preferences

    logger = logging.getLogger("hyperspy.signal")
    level, bar = logger.level, preferences.General.show_progressbar
    logger.setLevel(logging.ERROR)
    preferences.General.show_progressbar = False
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            yield
    finally:
        logger.setLevel(level)
        preferences.General.show_progressbar = bar


def as_phases(phases) -> list[Phase]:
    """Orix phases with structures from ``phases``: Phase objects or CIF paths.

    Raises
    ------
    ValueError
        When ``phases`` is empty, a path does not exist, a CIF cannot be read, or a phase has
        no atoms; names ``phases`` and the item.
    TypeError
        When an item is neither a Phase nor a path.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import crystal_phase
    >>> [p.name for p in as_phases([crystal_phase("Fe"), crystal_phase("Au")])]
    ['Fe', 'Au']
    >>> as_phases([])
    Traceback (most recent call last):
    ...
    ValueError: phases is empty: give at least one orix Phase or CIF path
    """
    from orix.crystal_map import Phase

    if isinstance(phases, (str, Path, Phase)):
        phases = [phases]
    phases = list(phases)
    if not phases:
        raise ValueError("phases is empty: give at least one orix Phase or CIF path")
    out = []
    for i, item in enumerate(phases):
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise ValueError(f"phases[{i}]: no CIF file at {str(path)!r}")
            try:
                phase = Phase.from_cif(str(path))
            except Exception as error:  # diffpy raises its own error classes
                raise ValueError(
                    f"phases[{i}]: cannot read {str(path)!r} as CIF: {error}"
                ) from error
            if not phase.name:
                phase.name = path.stem
        elif isinstance(item, Phase):
            phase = item
        else:
            raise TypeError(
                f"phases[{i}] must be an orix Phase or a CIF path, got {type(item).__name__}"
            )
        if phase.structure is None or len(phase.structure) == 0:
            raise ValueError(f"phases[{i}] ({phase.name!r}) has no atoms in its structure")
        out.append(phase)
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ValueError(f"phases must have distinct names, got {names}")
    return out


def template_bank(
    phases: Sequence[Phase],
    beam_energy: float,
    reciprocal_radius: float,
    resolution: float = DEFAULT_RESOLUTION,
    max_excitation_error: float = MAX_EXCITATION_ERROR,
) -> list:
    """One diffsims ``Simulation2D`` per phase, over its reduced fundamental zone.

    Parameters
    ----------
    phases : sequence of orix.crystal_map.Phase
    beam_energy : float
        Accelerating voltage, kV.
    reciprocal_radius : float
        Largest scattering vector simulated, Å⁻¹.
    resolution : float
        Angular step of the orientation grid, degrees
        (``orix.sampling.get_sample_reduced_fundamental``); the in-plane angle is found by the
        polar correlation at the azimuthal step of the polar factors.
    max_excitation_error : float
        Å⁻¹.

    Notes
    -----
    diffsims copies the phase (structure included) for every orientation, so a bank of ~1000
    orientations takes seconds: the banks of the last :data:`_BANK_CACHE_SIZE` settings are
    kept for this session (keyed by each phase's name, space group, lattice and atoms, and the
    other arguments), so indexing again, at another k or after new phase maps, reuses them.
    """
    options = (float(beam_energy), float(reciprocal_radius), float(resolution))
    options += (float(max_excitation_error),)
    return [_phase_bank(phase, *options) for phase in phases]


#: Template banks kept per session (one per phase and setting).
_BANK_CACHE_SIZE = 8
_BANK_CACHE: dict[tuple, object] = {}


def _phase_bank(phase, beam_energy, reciprocal_radius, resolution, max_excitation_error):
    """One phase's bank, from the session's cache when the same setting was simulated."""
    from diffsims.generators.simulation_generator import SimulationGenerator
    from orix.sampling import get_sample_reduced_fundamental

    lattice = phase.structure.lattice
    atoms = tuple(
        (str(atom.element), *np.round(atom.xyz, 6).tolist(), float(atom.occupancy))
        for atom in phase.structure
    )
    key = (phase.name, int(phase.space_group.number), atoms)
    key += (tuple(np.round(lattice.abcABG(), 6).tolist()), beam_energy, reciprocal_radius)
    key += (resolution, max_excitation_error)
    if key not in _BANK_CACHE:
        grid = get_sample_reduced_fundamental(resolution=resolution, point_group=phase.point_group)
        generator = SimulationGenerator(accelerating_voltage=beam_energy)
        _BANK_CACHE[key] = generator.calculate_diffraction2d(
            phase,
            rotation=grid,
            reciprocal_radius=reciprocal_radius,
            with_direct_beam=False,
            max_excitation_error=max_excitation_error,
        )
        _logger.debug("template bank of %s: %d orientations", phase.name, grid.size)
        while len(_BANK_CACHE) > _BANK_CACHE_SIZE:
            del _BANK_CACHE[next(iter(_BANK_CACHE))]
    return _BANK_CACHE[key]


def polar_factors(factors, radial_range: tuple[float, float], npt: int, npt_azim: int = 360):
    """The factors as unit-norm polar patterns, ready for ``get_orientation``.

    Each pattern is sampled (bilinear) at exactly the radii and azimuths of the polar axes,
    ``atan2(ky, kx)`` of the signal axes, from -π.  Written here rather than calling pyxem's
    ``get_azimuthal_integral2d``: pyFAI labels each bin by its lower edge while
    ``get_orientation`` places the templates at the nearest label, which turned every match by
    half an azimuthal step (+0.5° measured with single spots) and half a radial step; pyFAI
    also runs its azimuth the other way round (mirror-image orientations), and setting up its
    integrator costs about a second a call, most of the time of indexing k factors.

    Parameters
    ----------
    factors : pyxem.signals.Diffraction2D
        (n | ky, kx) calibrated in Å⁻¹ with 0 on the direct beam (any navigation shape: the
        patterns are taken in order).
    radial_range : (float, float)
        Å⁻¹, the first and last radius sampled.
    npt, npt_azim : int
        Radial and azimuthal points.

    Returns
    -------
    pyxem.signals.PolarDiffraction2D
        (n | radius, azimuth), the per-radius median removed (clipped at 0), each pattern of
        unit norm.

    Examples
    --------
    >>> from pyxem.signals import ElectronDiffraction2D
    >>> image = np.zeros((1, 33, 33)); image[0, 16, 24] = 1.0  # kx = 8, ky = 0
    >>> pattern = ElectronDiffraction2D(image)
    >>> for axis in pattern.axes_manager.signal_axes:
    ...     axis.offset = -16.0
    >>> polar = polar_factors(pattern, (2.0, 14.0), npt=13, npt_azim=8)
    >>> radius, azimuth = np.unravel_index(np.argmax(polar.data[0]), polar.data[0].shape)
    >>> float(polar.axes_manager.signal_axes[1].axis[radius]), float(
    ...     polar.axes_manager.signal_axes[0].axis[azimuth])
    (8.0, 0.0)
    """
    from pyxem.signals import PolarDiffraction2D
    from scipy.ndimage import map_coordinates

    x_axis, y_axis = factors.axes_manager.signal_axes
    images = np.asarray(factors.data, dtype=float).reshape(-1, y_axis.size, x_axis.size)
    radii = np.linspace(radial_range[0], radial_range[1], int(npt))
    azimuths = -np.pi + np.arange(int(npt_azim)) * (2 * np.pi / int(npt_azim))
    rows = (radii[:, None] * np.sin(azimuths) - y_axis.offset) / y_axis.scale
    cols = (radii[:, None] * np.cos(azimuths) - x_axis.offset) / x_axis.scale
    data = np.stack([map_coordinates(image, [rows, cols], order=1) for image in images])
    data = np.clip(data - np.median(data, axis=-1, keepdims=True), 0.0, None)
    norm = np.linalg.norm(data.reshape(len(data), -1), axis=1)
    data /= np.where(norm > 0, norm, 1.0)[:, None, None]
    step = radii[1] - radii[0] if len(radii) > 1 else 1.0
    axes = [
        {"name": "pattern", "size": len(data), "navigate": True},
        {
            "name": "radius",
            "size": len(radii),
            "offset": radii[0],
            "scale": step,
            "units": "Å^-1",
            "navigate": False,
        },
        {
            "name": "azimuth",
            "size": len(azimuths),
            "offset": -np.pi,
            "scale": 2 * np.pi / int(npt_azim),
            "units": "rad",
            "navigate": False,
        },
    ]
    return PolarDiffraction2D(data, axes=axes)


def match_polar(polar, simulation, n_best: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n_best`` templates of one phase for every polar factor.

    Returns
    -------
    scores : numpy.ndarray
        (k, n_best) correlations, best first.
    quaternions : numpy.ndarray
        (k, n_best, 4) the matching rotations (pyxem's own conversion of template index,
        in-plane angle and mirror factor).
    """
    from pyxem.signals.indexation_results import rotation_from_orientation_map

    with _quiet_pyxem():
        result = polar.get_orientation(simulation, n_best=int(n_best), show_progressbar=False)
    table = np.asarray(result.data, dtype=float).reshape(len(polar.data), int(n_best), 4)
    rotations = simulation.rotations.data
    quats = np.stack([rotation_from_orientation_map(row, rotations) for row in table])
    return table[..., 1], quats


def reliability(best: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``1 - other / best`` clipped to [0, 1] (0 where ``best`` is not positive).

    Examples
    --------
    >>> reliability(np.array([0.2, 0.1, 0.0]), np.array([0.05, 0.1, 0.0]))
    array([0.75, 0.  , 0.  ])
    """
    best = np.asarray(best, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(best > 0, 1.0 - np.asarray(other, dtype=float) / best, 0.0)
    return np.clip(r, 0.0, 1.0)


def index_factors(polar, bank: Sequence, n_best: int = 3) -> IndexArrays:
    """Match every polar factor against every phase's bank; best phase, orientation, scores.

    Parameters
    ----------
    polar : pyxem.signals.PolarDiffraction2D
        From :func:`polar_factors`.
    bank : sequence of diffsims Simulation2D
        From :func:`template_bank`, one per phase.
    n_best : int
        Candidates kept per phase (at least 2, for the orientation reliability).
    """
    from orix.quaternion import Rotation

    n_best = max(2, int(n_best))
    scores, quats = zip(*(match_polar(polar, sim, n_best) for sim in bank))
    scores = np.stack(scores, axis=1)  # (k, n_phases, n_best)
    quats = np.stack(quats, axis=1)  # (k, n_phases, n_best, 4)
    k, n_phases, _ = scores.shape
    top = scores[:, :, 0]
    best_phase = np.argmax(top, axis=1)
    rows = np.arange(k)
    score = top[rows, best_phase]
    others = np.where(np.eye(n_phases, dtype=bool)[best_phase], -np.inf, top).max(axis=1)
    others = np.where(np.isfinite(others), others, 0.0)
    flat_scores = scores.reshape(k, -1)
    order = np.argsort(-flat_scores, axis=1, kind="stable")
    flat_euler = Rotation(quats.reshape(-1, 4)).to_euler().reshape(k, -1, 3)
    euler = flat_euler.reshape(k, n_phases, n_best, 3)[rows, best_phase, 0]
    return IndexArrays(
        best_phase=best_phase.astype(int),
        euler=euler,
        score=score,
        phase_reliability=reliability(score, others),
        orientation_reliability=reliability(score, scores[rows, best_phase, 1]),
        candidate_phase=np.repeat(np.arange(n_phases), n_best)[order].astype(int),
        candidate_euler=np.take_along_axis(flat_euler, order[..., None], axis=1),
        candidate_score=np.take_along_axis(flat_scores, order, axis=1),
        grid_euler=euler.copy(),
        in_plane_deg=np.zeros(k),
    )


_RECIPROCAL_UNITS = ("Å^-1", "Å⁻¹", "$\\AA^{-1}$", "1/Å", "A^-1", "1/A", "\\AA^{-1}", "Å-1")


def beam_energy_of(metadata: dict) -> float:
    """``Acquisition_instrument.TEM.beam_energy`` (kV) of a signal's metadata as a dict.

    Raises
    ------
    ValueError
        When it is missing or not a positive number (set it with
        ``s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)``).

    Examples
    --------
    >>> beam_energy_of({"Acquisition_instrument": {"TEM": {"beam_energy": 200}}})
    200.0
    """
    value = metadata.get("Acquisition_instrument", {}).get("TEM", {}).get("beam_energy")
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(
            "the signal has no beam energy: set "
            "s.metadata.set_item('Acquisition_instrument.TEM.beam_energy', <kV>) "
            "(the template bank needs the wavelength)"
        )
    return value


def reciprocal_range(sig_axes: Sequence[dict], inner_pixels: float = 4.0) -> tuple[float, float]:
    """The radial range (Å⁻¹) of the polar factors, from the calibrated signal axes.

    From ``inner_pixels`` pixels off the direct beam (0 of both axes: centre the beam first)
    to the largest circle about it inside the detector.

    Raises
    ------
    ValueError
        When the axes are not calibrated in reciprocal Ångström (units such as ``Å^-1``) or
        do not hold 0 inside the detector.

    Examples
    --------
    >>> ax = {"size": 64, "scale": 0.03125, "offset": -1.0, "units": "$\\\\AA^{-1}$"}
    >>> reciprocal_range([ax, ax])
    (0.125, 0.96875)
    """
    extents, scales = [], []
    for a in sig_axes:
        units = str(a.get("units", ""))
        if units not in _RECIPROCAL_UNITS:
            raise ValueError(
                f"the signal axes are not calibrated in reciprocal Ångström (units {units!r}): "
                "set them, e.g. s.set_diffraction_calibration(<Å⁻¹ per pixel>) with the beam at 0"
            )
        scale, offset, size = float(a["scale"]), float(a["offset"]), int(a["size"])
        low, high = sorted((offset, offset + scale * (size - 1)))
        if not low < 0 < high:
            raise ValueError(
                "the signal axes' 0 (the direct beam) is not on the detector: centre the beam "
                "(s.center_direct_beam()) and calibrate with 0 on it"
            )
        extents.append(min(-low, high))
        scales.append(abs(scale))
    return float(inner_pixels * max(scales)), float(min(extents))


def index_factor_signal(
    factors,
    phases: Sequence[Phase],
    beam_energy: float,
    radial_range: tuple[float, float],
    *,
    n_best: int = 3,
    resolution: float = DEFAULT_RESOLUTION,
    npt_azim: int = 360,
    max_excitation_error: float = MAX_EXCITATION_ERROR,
) -> IndexArrays:
    """Template bank, polar factors and matching in one call (what the signal method runs).

    ``factors`` is a calibrated (k | ky, kx) pyxem diffraction signal; the polar factors get
    one radial point per detector pixel over ``radial_range``.
    """
    scale = abs(float(factors.axes_manager.signal_axes[0].scale))
    npt = max(8, int(round((radial_range[1] - radial_range[0]) / scale)))
    bank = template_bank(phases, beam_energy, radial_range[1], resolution, max_excitation_error)
    polar = polar_factors(factors, radial_range, npt, npt_azim)
    return index_factors(polar, bank, n_best)


def refine_factors(
    factors,
    phases: Sequence[Phase],
    found: IndexArrays,
    beam_energy: float,
    radial_range: tuple[float, float],
    *,
    max_excitation_error: float = MAX_EXCITATION_ERROR,
    skip: np.ndarray | None = None,
) -> IndexArrays:
    """Refine every factor's best orientation locally (:mod:`.refinement`).

    For each factor not in ``skip`` (e.g. the background): the angle about the beam from the
    spot positions, then the tilt from the spot intensities, then the angle about the beam
    once more (a tilt moves the spots a little).  Phases and candidates stay as matched on the
    grid.

    Parameters
    ----------
    factors : pyxem.signals.Diffraction2D
        (k | ky, kx) calibrated in Å⁻¹ with 0 on the direct beam.
    phases, beam_energy, radial_range, max_excitation_error
        As given to :func:`index_factor_signal` (the templates of the refinement are those of
        the bank).
    found : IndexArrays
        Its grid matches.
    skip : numpy.ndarray of bool, optional
        (k,) components left as matched.

    Returns
    -------
    IndexArrays
        ``euler`` and ``in_plane_deg`` replaced for the refined components (``grid_euler``
        keeps the grid match).
    """
    from diffsims.generators.simulation_generator import SimulationGenerator
    from orix.quaternion import Rotation

    generator = SimulationGenerator(accelerating_voltage=float(beam_energy))
    x_axis, y_axis = factors.axes_manager.signal_axes
    offset, scale = (x_axis.offset, y_axis.offset), (x_axis.scale, y_axis.scale)
    data = np.asarray(factors.data, dtype=float)
    euler, in_plane = found.euler.copy(), found.in_plane_deg.copy()
    for i in range(len(data)):
        if skip is not None and skip[i]:
            continue

        def simulate(rotations, phase=phases[int(found.best_phase[i])]):
            vectors = generator.calculate_diffraction2d(
                phase,
                rotation=rotations,
                reciprocal_radius=float(radial_range[1]),
                with_direct_beam=False,
                max_excitation_error=float(max_excitation_error),
            ).coordinates
            return [
                (np.asarray(v.data, dtype=float)[:, :2], np.asarray(v.intensity, dtype=float))
                for v in np.atleast_1d(vectors)
            ]

        factor = cartesian_factor(data[i], offset, scale, radial_range)
        rotation, turn = _turn_about_beam(factor, simulate, Rotation.from_euler(found.euler[i]))
        rotation = refine_tilt(factor, simulate, rotation).rotation
        rotation, turn_again = _turn_about_beam(factor, simulate, rotation)
        euler[i] = rotation.to_euler().reshape(3)
        in_plane[i] = np.degrees(turn + turn_again)
    return replace(found, euler=euler, in_plane_deg=in_plane)


def _turn_about_beam(factor, simulate, rotation):
    """``rotation`` turned about the beam onto the factor's spots, and the angle (radians)."""
    from orix.quaternion import Rotation

    ((xy, intensity),) = simulate(rotation)
    angle, _ = in_plane_correction(factor, xy, intensity)
    # Measured (tests/test_orientation.py): turning diffsims' pattern by +angle in the
    # detector's (x, y) is the rotation composed on the right with a turn of -angle about z.
    return rotation * Rotation.from_axes_angles((0.0, 0.0, 1.0), -angle), angle


def background_components(
    score: np.ndarray, background_index: int | None, threshold: float = BACKGROUND_SCORE
) -> tuple[np.ndarray, str]:
    """Which components are the background, and the rule used.

    The component the stored phase maps name (rule ``"phase_maps"``), else every component
    whose best score is below ``threshold`` (rule ``"score"``).

    Examples
    --------
    >>> background_components(np.array([0.01, 0.2]), None)
    (array([ True, False]), 'score')
    >>> background_components(np.array([0.01, 0.2]), 1)
    (array([False,  True]), 'phase_maps')
    """
    score = np.asarray(score, dtype=float)
    if background_index is not None:
        mask = np.zeros(score.shape, dtype=bool)
        mask[int(background_index)] = True
        return mask, "phase_maps"
    return score < float(threshold), "score"
