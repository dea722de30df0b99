"""Seeded simulated 4D-STEM scans with ground truth, for demos, tests and benchmarks.

Every scan is built from a few noise-free *source* patterns and their non-negative *weights*
over the scan, which is exactly the model NMF fits; the data are Poisson counts drawn around
``weights @ sources``.  Nothing is downloaded: the crystal structures are written out here.

The physics, per source:

* **crystal sources**: kinematic zone-axis spot patterns simulated with diffsims
  (:class:`~diffsims.generators.simulation_generator.SimulationGenerator`, 200 kV, Lobato
  scattering factors, Debye-Waller factors, a Lorentzian relrod) for a crystal (Al, Fe, Si,
  MgO, Mg, Cu, ZnO, Au) built in code with diffpy.structure and orix, at a random
  orientation a little off a low-index zone axis.  The spots are Gaussian discs (the probe
  convergence) around the transmitted beam, which is *not* at the detector centre.  No direct
  beam in these patterns: the beam belongs to the background source.
* **background source** (index 0 when present): the direct beam, a Gaussian disc of the same
  size as the spots carrying most of the intensity, plus diffuse scattering: a halo decaying
  from the beam and two faint amorphous rings of a carbon support film.
* **weights**: the crystals are soft-edged blobs that overlap in places (``"overlapping"``),
  Voronoi grains (``"grains"``) or blobs of which one has a ×3-×5 thickness ramp
  (``"gradient"``); every crystal also has a smooth thickness variation of ±25 % so that the
  background and the crystals stay independent.  Crystals scatter 10-40 % of the counts
  where they are.  The weights are scaled so that the mean expected counts per pattern are
  ``dose``.

>>> from hyperspy_nmfdecide.data import simulated_scan
>>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0)
>>> scan.signal.data.shape, scan.true_k, scan.source_names[0]
((8, 8, 32, 32), 4, 'background')
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage, special

if TYPE_CHECKING:
    from .signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D

_logger = logging.getLogger(__name__)

__all__ = ["CRYSTALS", "SimulatedScan", "crystal_phase", "simulated_scan"]

#: Accelerating voltage of the simulated microscope, kV.
BEAM_ENERGY = 200.0
#: Smallest pattern side accepted, pixels.
MIN_PATTERN_SIZE = 16
#: Smallest scattering vector accepted at the detector edge, Å^-1.
MIN_K_MAX = 0.4

_LAYOUTS = ("overlapping", "grains", "gradient")
_BACKGROUNDS = ("uniform", "varying", "none")
# Share of the incident electrons in each part of the background source (the rest of the
# diffuse scattering falls outside the detector or is absorbed in the model).
_BEAM_FRACTION = 0.70
_HALO_FRACTION = 0.22
_RING_FRACTION = 0.08
_HALO_WIDTH = 0.2  # Å^-1, half width of the diffuse halo around the beam
# Amorphous carbon support: rings at 1/2.13 Å and 1/1.17 Å (position, width, relative weight).
_RINGS = ((0.47, 0.045, 0.7), (0.855, 0.06, 0.3))
_STRENGTH_RANGE = (0.15, 0.45)  # crystal weight relative to the incident (background) weight
_MAX_EXCITATION_ERROR = 0.04  # Å^-1, reflections further from the Ewald sphere are dropped
_RELROD_WIDTH = 0.015  # Å^-1, Lorentzian shape factor: roughly 1 / thickness
_MAX_TILT = 1.0  # degrees off the zone axis
_MAX_SIMILARITY = 0.8  # cosine similarity allowed between two crystal patterns
_MIN_SPOTS = 6  # reflections with > 2 % of the strongest one, on the detector
_EDGE_CUT = 1e-3  # crystal coverage below this is set to exactly zero
_MIN_VISIBLE = 0.01  # true spots listed: ≥ 1 % of the disc on the detector

_FCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))
_BCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5))


def _shifted(sites, shift):
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


@dataclass(repr=False)
class SimulatedScan:
    """A simulated 4D-STEM scan and the ground truth it was drawn from.

    Attributes
    ----------
    signal : NMFDecideDiffraction2D or LazyNMFDecideDiffraction2D
        Poisson counts, calibrated (navigation ``x``, ``y`` in nm; signal ``kx``, ``ky`` in
        Å⁻¹ with 0 at the detector centre).
    sources : numpy.ndarray
        (n_sources, H, W) noise-free source patterns, each non-negative and summing to 1.
    weights : numpy.ndarray
        (ny, nx, n_sources) expected counts contributed by each source at each probe.
    labels : numpy.ndarray
        (ny, nx) int, 0 where no crystal is present, else a key of ``label_sets``.
    label_sets : dict of int to tuple of int
        Label -> indices (into ``sources``) of the crystal sources present.  Label 0 (no
        crystal) is not a key.
    source_names : list of str
        ``"background"`` then ``"crystal 1"``, ``"crystal 2"``, ...
    background_index : int or None
        Index of the background source (direct beam and diffuse scattering), or None.
    true_k : int
        Number of independent non-negative sources of the noise-free model.
    dose : float
        Mean expected electrons per pattern.
    params : dict
        Every generation parameter (JSON-serialisable), including each crystal's phase, zone
        axis and orientation.
    spots : dict of int to numpy.ndarray
        Source index (into ``sources``) -> (n, 3) array of the true spots of that source with
        at least 1 % of their disc on the detector: ``x`` (column), ``y`` (row) in pixels
        (pixel i spans i ± 0.5; a spot cut by the detector edge may be centred outside it) and
        the fraction of the source's counts on the detector that the spot holds.  The direct
        beam is the spot of the background source.  Not part of ``params``.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> scan = simulated_scan(nav_shape=(6, 6), pattern_size=32, random_state=0)
    >>> scan.sources.shape, scan.weights.shape
    ((4, 32, 32), (6, 6, 4))
    >>> bool(np.allclose(scan.sources.sum(axis=(1, 2)), 1.0))
    True
    """

    signal: NMFDecideDiffraction2D | LazyNMFDecideDiffraction2D
    sources: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    label_sets: dict[int, tuple[int, ...]]
    source_names: list[str]
    background_index: int | None
    true_k: int
    dose: float
    params: dict = field(default_factory=dict)
    spots: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def overlap(self) -> np.ndarray:
        """(ny, nx) bool: two or more crystal sources present.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, layout="grains")
        >>> bool(scan.overlap.any())
        False
        """
        table = np.zeros(int(self.labels.max(initial=0)) + 1, dtype=bool)
        for label, members in self.label_sets.items():
            table[label] = len(members) >= 2
        return table[self.labels]

    def noise_free(self) -> np.ndarray:
        """(ny, nx, H, W) float64 expected counts, ``weights @ sources``.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0)
        >>> expected = scan.noise_free()
        >>> expected.shape, round(float(expected.sum(axis=(2, 3)).mean()))
        ((4, 4, 32, 32), 1000)
        """
        n, h, w = self.sources.shape
        flat = self.weights @ self.sources.reshape(n, h * w)
        return flat.reshape(self.weights.shape[:-1] + (h, w))

    def expected_spots(
        self, min_counts: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The true spots of every probe expected to hold at least ``min_counts`` electrons.

        Parameters
        ----------
        min_counts : float
            Smallest expected counts (source weight at the probe × the spot's fraction of the
            source) of a spot returned, ≥ 0.

        Returns
        -------
        probe, x, y, counts : numpy.ndarray
            One entry per spot, sorted by probe: the flat probe index (C order of the
            navigation shape), the spot position in pixels (``x`` = column; just outside the
            detector for a spot cut by its edge) and its expected counts on the detector.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0)
        >>> probe, x, y, counts = scan.expected_spots(min_counts=10)
        >>> bool(counts.min() >= 10), sorted(set(probe.tolist())) == list(range(16))
        (True, True)
        """
        min_counts = float(min_counts)
        if not (np.isfinite(min_counts) and min_counts >= 0):
            raise ValueError(f"min_counts must be a number ≥ 0, got {min_counts!r}")
        flat = self.weights.reshape(-1, self.weights.shape[-1])
        found = [np.empty(0, dtype=np.int64)] + [np.empty(0)] * 3
        for source, table in self.spots.items():
            counts = flat[:, source, np.newaxis] * table[:, 2]
            probe, spot = np.nonzero(counts >= min_counts)
            found = [
                np.concatenate(pair)
                for pair in zip(found, (probe, table[spot, 0], table[spot, 1], counts[probe, spot]))
            ]
        order = np.argsort(found[0], kind="stable")
        return tuple(column[order] for column in found)

    def __repr__(self) -> str:
        shape = tuple(int(v) for v in self.weights.shape[:-1]) + self.sources.shape[1:]
        return (
            f"<SimulatedScan {shape}, {self.params.get('layout')}, true_k={self.true_k}, "
            f"dose={self.dose:g}, sources={self.source_names}>"
        )


def simulated_scan(
    nav_shape: tuple[int, int] = (32, 32),
    pattern_size: int = 64,
    n_crystals: int = 3,
    *,
    layout: str = "overlapping",
    dose: float = 1000.0,
    background: str = "uniform",
    direct_beam: bool = True,
    beam_offset: tuple[float, float] = (1.5, -2.0),
    lazy: bool = False,
    chunks: int | None = None,
    dtype=np.float32,
    random_state: int | np.random.Generator | None = 0,
    crystals: Sequence[str] | None = None,
    k_max: float = 1.0,
    spot_sigma: float = 1.2,
    probe_step: float = 2.0,
    gradient_ratio: float = 4.0,
    thickness_variation: float = 0.25,
    edge_width: float = 1.5,
    presence_threshold: float = 0.1,
) -> SimulatedScan:
    """Simulate a seeded 4D-STEM scan of a few crystals, with its ground truth.

    Each source pattern is simulated once (crystals with diffsims, see the module docstring),
    the weights are laid out over the scan, and the counts are Poisson draws around
    ``weights @ sources``.  The noise of scan row ``y`` comes from its own seed, so eager and
    lazy scans are bit-identical and a lazy scan is computed chunk by chunk.

    Parameters
    ----------
    nav_shape : tuple of int
        (ny, nx) probes.
    pattern_size : int
        Side of the square diffraction patterns, pixels (at least 16).
    n_crystals : int
        Number of crystal sources (≥ 1).  The first ones are different crystals; beyond
        :data:`CRYSTALS` they repeat at other orientations.
    layout : {"overlapping", "grains", "gradient"}
        ``"overlapping"``: soft-edged blobs that overlap in places, with some vacuum.
        ``"grains"``: a Voronoi tessellation, one crystal per probe, no vacuum, no overlap.
        ``"gradient"``: as ``"overlapping"``, but crystal 1 thickens ``gradient_ratio`` times
        along a random direction across its region (still one source).
    dose : float
        Mean expected electrons per pattern (> 0).
    background : {"uniform", "varying", "none"}
        Weight of the background source: the same at every probe, a smooth positive field
        (0.7-1.3 times the mean: support film thickness, beam current drift) or no diffuse
        scattering (the direct beam alone, uniform).
    direct_beam : bool
        Include the direct beam in the background source.  ``direct_beam=False`` with
        ``background="none"`` leaves no background source.
    beam_offset : tuple of float
        (x, y) position of the direct beam from the detector centre, pixels.  The crystal
        spots are centred on the beam.
    lazy : bool
        Return a lazy signal, computed chunk by chunk on demand.
    chunks : int or None
        Scan rows per navigation chunk of a lazy signal (None: about 32 MiB per chunk).
        Signal axes are never chunked.
    dtype : numpy dtype
        Output dtype.  Integer types hold the counts clipped to their range (no overflow in
        practice: the brightest pixel holds about 8 % of ``dose`` at the default spot size).
    random_state : int, numpy.random.Generator or None
        The same int gives bit-identical scans; a Generator is drawn from once.
    crystals : sequence of str, optional
        Names from :data:`CRYSTALS` for the crystal sources (cycled); default a seeded random
        order of all of them.
    k_max : float
        Scattering vector at the detector edge (half the detector width), Å⁻¹ (≥ 0.4).
    spot_sigma : float
        Standard deviation of the Gaussian discs (spots and direct beam), pixels.
    probe_step : float
        Scan step, nm.
    gradient_ratio : float
        Thick-to-thin weight ratio of the graded crystal in ``layout="gradient"`` (> 1).
    thickness_variation : float
        Relative amplitude (0 to < 1) of the smooth thickness variation inside every crystal.
    edge_width : float
        10-90 % width of the soft crystal edges, probes (``"overlapping"``, ``"gradient"``).
    presence_threshold : float
        A crystal is present at a probe, for ``labels``, where its weight exceeds this
        fraction of its maximum weight (0.1 keeps the thin end of a ×5 gradient present).

    Returns
    -------
    SimulatedScan

    Raises
    ------
    ValueError
        For an invalid argument; the message names it.

    Notes
    -----
    ``true_k`` counts the sources of the noise-free model, whose rank it is.  How clearly the
    noisy data show it depends on the layout: in ``"grains"`` every probe sees the background
    and exactly one crystal, so the background is told apart from the grains only by the
    thickness variation inside them (``thickness_variation``); at low dose that last
    component can sit below the noise.  Masking the direct beam lowers the noise a lot.

    Pixel ``pattern_size / 2`` is k = 0 (the origin pyxem's ``get_direct_beam_position``
    measures shifts from); the direct beam is at ``pattern_size / 2 + beam_offset``.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, n_crystals=2, random_state=1)
    >>> s = scan.signal
    >>> type(s).__name__, s.axes_manager.signal_shape, scan.true_k
    ('NMFDecideDiffraction2D', (32, 32), 3)
    >>> [ax.name for ax in s.axes_manager.navigation_axes]
    ['x', 'y']
    >>> lazy = simulated_scan(nav_shape=(8, 8), pattern_size=32, n_crystals=2, random_state=1,
    ...                       lazy=True, chunks=4)
    >>> lazy.signal.data.chunks[0], bool((lazy.signal.data.compute() == s.data).all())
    ((4, 4), True)
    """
    ny, nx = _check_nav_shape(nav_shape)
    size = _check_int(pattern_size, "pattern_size", MIN_PATTERN_SIZE)
    n_crystals = _check_int(n_crystals, "n_crystals", 1)
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if background not in _BACKGROUNDS:
        raise ValueError(f"background must be one of {_BACKGROUNDS}, got {background!r}")
    dose = _check_positive(dose, "dose")
    k_max = _check_positive(k_max, "k_max")
    if k_max < MIN_K_MAX:
        raise ValueError(
            f"k_max must be ≥ {MIN_K_MAX} Å^-1 so that first-order reflections reach the "
            f"detector, got {k_max!r}"
        )
    spot_sigma = _check_positive(spot_sigma, "spot_sigma")
    probe_step = _check_positive(probe_step, "probe_step")
    edge_width = _check_positive(edge_width, "edge_width")
    if not (np.isfinite(gradient_ratio) and gradient_ratio > 1):
        raise ValueError(f"gradient_ratio must be > 1, got {gradient_ratio!r}")
    if not 0 <= thickness_variation < 1:
        raise ValueError(f"thickness_variation must be in [0, 1), got {thickness_variation!r}")
    if not 0 < presence_threshold < 1:
        raise ValueError(f"presence_threshold must be in (0, 1), got {presence_threshold!r}")
    if layout == "grains" and n_crystals > ny * nx:
        raise ValueError(
            f"n_crystals ({n_crystals}) grains do not fit in a scan of {ny * nx} probes"
        )
    try:
        offset = tuple(float(v) for v in beam_offset)
    except TypeError:
        raise ValueError(f"beam_offset must be two numbers (x, y), got {beam_offset!r}") from None
    margin = size / 2 - 3 * spot_sigma
    if len(offset) != 2 or not all(np.isfinite(offset)) or max(map(abs, offset)) > margin:
        raise ValueError(
            f"beam_offset must be two numbers (x, y) within ±{margin:g} pixels of the detector "
            f"centre (pattern_size {size}, spot_sigma {spot_sigma:g}), got {beam_offset!r}"
        )
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a float or integer dtype, got {dtype!r}") from None
    if out_dtype.kind not in "fiu":
        raise ValueError(f"dtype must be a float or integer dtype, got {out_dtype}")
    if chunks is not None:
        chunks = _check_int(chunks, "chunks", 1)
    if crystals is None:
        names = None
    else:
        names = [crystals] if isinstance(crystals, str) else list(crystals)
        unknown = [c for c in names if c not in _CRYSTAL_DATA]
        if not names or unknown:
            raise ValueError(f"crystals must be names from {CRYSTALS}, got {crystals!r}")

    seed_sequence, seed_record = _seed_sequence(random_state)
    # Independent streams, spelled out (not spawned) so that they never depend on state:
    # (0,) crystals, (1,) layout, (2,) thickness and background fields, (3, y) noise of row y.
    ss_crystals, ss_layout, ss_fields = (_child(seed_sequence, i) for i in range(3))

    scale = k_max / (size / 2)  # Å^-1 per pixel
    centre = (size / 2 + offset[0], size / 2 + offset[1])  # beam (x, y), pixel index units

    # -- sources ---------------------------------------------------------------------------
    rng = np.random.default_rng(ss_crystals)
    if names is None:
        names = [CRYSTALS[i] for i in rng.permutation(len(CRYSTALS))]
    patterns, crystal_info, crystal_spots = [], [], []
    for j in range(n_crystals):
        pattern, info, spots = _crystal_source(
            names[j % len(names)], rng, patterns, size, scale, centre, spot_sigma
        )
        patterns.append(pattern)
        crystal_info.append({"name": f"crystal {j + 1}", **info})
        crystal_spots.append(spots)

    # -- weights ---------------------------------------------------------------------------
    rng = np.random.default_rng(ss_layout)
    if layout == "grains":
        coverage, layout_info = _grain_layout(rng, ny, nx, n_crystals)
    else:
        coverage, layout_info = _blob_layout(rng, ny, nx, n_crystals, edge_width)
    rng = np.random.default_rng(ss_fields)
    strengths = rng.uniform(*_STRENGTH_RANGE, size=n_crystals)
    thickness = np.empty_like(coverage)
    for j in range(n_crystals):
        thickness[..., j] = 1 + thickness_variation * _smooth_field(rng, ny, nx)
    gradient_info = None
    if layout == "gradient":
        thickness[..., 0], gradient_info = _thickness_ramp(rng, coverage[..., 0], gradient_ratio)
    crystal_weights = coverage * thickness * strengths
    for j, info in enumerate(crystal_info):
        info["strength"] = float(strengths[j])
        info["thickness_gradient"] = bool(layout == "gradient" and j == 0)

    parts = []
    if direct_beam:
        parts.append(
            _BEAM_FRACTION * _render_spots(np.array([centre]), np.ones(1), size, spot_sigma)
        )
    if background != "none":
        parts.append(_HALO_FRACTION * _halo(size, centre, scale))
        parts.append(_RING_FRACTION * _rings(size, centre, scale))
    if direct_beam and background == "none":
        parts[0] /= _BEAM_FRACTION  # no diffuse scattering: the beam carries it all
    background_index = None
    sources = np.stack(patterns)
    weights = crystal_weights
    source_names = [info["name"] for info in crystal_info]
    bg_range = None
    if parts:
        bg_pattern = np.sum(parts, axis=0)
        total = bg_pattern.sum()
        if background == "varying":
            bg_weight = 1 + 0.3 * _smooth_field(rng, ny, nx, gradient=True)
        else:
            bg_weight = np.ones((ny, nx))
        bg_range = [float(bg_weight.min()), float(bg_weight.max())]
        sources = np.concatenate([(bg_pattern / total)[np.newaxis], sources])
        weights = np.concatenate([(bg_weight * total)[..., np.newaxis], weights], axis=-1)
        source_names.insert(0, "background")
        background_index = 0
    first_crystal = 0 if background_index is None else 1
    weights = weights * (dose / weights.sum(axis=-1).mean())
    true_spots = {first_crystal + j: spots for j, spots in enumerate(crystal_spots)}
    if direct_beam:
        true_spots[0] = np.array([[*centre, parts[0].sum() / total]])

    labels, label_sets = _labels(weights[..., first_crystal:], presence_threshold, first_crystal)

    params = {
        "nav_shape": [ny, nx],
        "pattern_size": size,
        "n_crystals": n_crystals,
        "layout": layout,
        "dose": dose,
        "background": background,
        "direct_beam": bool(direct_beam),
        "beam_offset": list(offset),
        "lazy": bool(lazy),
        "chunks": chunks,
        "dtype": str(out_dtype),
        "random_state": seed_record,
        "seed_entropy": str(seed_sequence.entropy),
        "k_max": k_max,
        "reciprocal_scale": scale,
        "spot_sigma": spot_sigma,
        "probe_step": probe_step,
        "beam_energy_kV": BEAM_ENERGY,
        "max_excitation_error": _MAX_EXCITATION_ERROR,
        "relrod_width": _RELROD_WIDTH,
        "max_tilt_deg": _MAX_TILT,
        "background_fractions": {
            "direct_beam": (_BEAM_FRACTION if background != "none" else 1.0) * direct_beam,
            "halo": _HALO_FRACTION if background != "none" else 0.0,
            "rings": _RING_FRACTION if background != "none" else 0.0,
        },
        "background_weight_range": bg_range,
        "thickness_variation": thickness_variation,
        "edge_width": edge_width,
        "gradient_ratio": gradient_ratio if layout == "gradient" else None,
        "gradient": gradient_info,
        "presence_threshold": presence_threshold,
        "layout_details": layout_info,
        "crystals": crystal_info,
    }
    params = _jsonable(params)

    signal = _make_signal(
        weights,
        sources,
        seed_sequence,
        dtype=out_dtype,
        lazy=lazy,
        chunks=chunks,
        scale=scale,
        probe_step=probe_step,
        spot_sigma=spot_sigma,
        params=params,
    )
    _logger.debug("Simulated %s", params)
    return SimulatedScan(
        signal=signal,
        sources=sources,
        weights=weights,
        labels=labels,
        label_sets=label_sets,
        source_names=source_names,
        background_index=background_index,
        true_k=len(sources),
        dose=dose,
        params=params,
        spots=dict(sorted(true_spots.items())),
    )


# -- argument checks -------------------------------------------------------------------------
def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_positive(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _check_nav_shape(nav_shape) -> tuple[int, int]:
    try:
        ny, nx = nav_shape
    except (TypeError, ValueError):
        raise ValueError(f"nav_shape must be (ny, nx), got {nav_shape!r}") from None
    return _check_int(ny, "nav_shape", 1), _check_int(nx, "nav_shape", 1)


def _seed_sequence(random_state) -> tuple[np.random.SeedSequence, int | str | None]:
    """A SeedSequence for ``random_state`` and what to record of it in ``params``."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state, "SeedSequence"
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63))), "Generator"
    if random_state is None:
        return np.random.SeedSequence(), None
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise ValueError(
            f"random_state must be an int, a numpy Generator or None, got {random_state!r}"
        )
    if random_state < 0:
        raise ValueError(f"random_state must be ≥ 0, got {random_state!r}")
    return np.random.SeedSequence(int(random_state)), int(random_state)


def _child(seed_sequence: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The SeedSequence that ``seed_sequence.spawn`` would give as child ``key``."""
    return np.random.SeedSequence(
        seed_sequence.entropy,
        spawn_key=tuple(seed_sequence.spawn_key) + key,
        pool_size=seed_sequence.pool_size,
    )


def _jsonable(value):
    """``value`` with numpy scalars and arrays turned into Python objects (for JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- source patterns -------------------------------------------------------------------------
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


def _render_spots(xy: np.ndarray, intensity: np.ndarray, size: int, sigma: float):
    """Gaussian discs integrated over each pixel (pixel i spans i ± 0.5), (size, size)."""
    edges = np.arange(size + 1) - 0.5

    def profile(c):
        return np.diff(special.ndtr((edges[np.newaxis, :] - c[:, np.newaxis]) / sigma), axis=1)

    gx, gy = profile(xy[:, 0]), profile(xy[:, 1])
    return (gy * intensity[:, np.newaxis]).T @ gx


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


def _crystal_source(name, rng, previous, size, scale, centre, sigma):
    """One crystal's normalised spot pattern: the most distinct of a few random orientations.

    Returns the pattern, its description and its (n, 3) on-detector spots: x, y and the
    fraction of the pattern's counts in each.
    """
    from orix.quaternion import Rotation

    phase = _phase(name)
    kind, _, cell, _, debye_waller = _CRYSTAL_DATA[name]
    zones = _ZONES["hexagonal" if cell[5] == 120.0 else "cubic"]
    # Reciprocal radius reaching the far detector corner from the beam, plus a spot's width.
    corner = max(abs(c - e) for c in centre for e in (-0.5, size - 0.5))
    radius = scale * (math.sqrt(2) * corner + 4 * sigma)
    best = None
    for attempt in range(25):
        zone = zones[rng.integers(len(zones))]
        tilt = math.radians(_MAX_TILT) * math.sqrt(rng.uniform())
        tilt_azimuth, in_plane = rng.uniform(0, 2 * math.pi, size=2)
        matrix = _rotation_matrix(phase, zone, tilt, tilt_azimuth, in_plane)
        # diffsims turns the reciprocal lattice by the inverse of the rotation it is given.
        sim = _generator().calculate_diffraction2d(
            phase,
            Rotation.from_matrix(matrix.T),
            reciprocal_radius=radius,
            with_direct_beam=False,
            max_excitation_error=_MAX_EXCITATION_ERROR,
            shape_factor_width=_RELROD_WIDTH,
            debye_waller_factors=debye_waller,
        )
        coords = sim.coordinates
        intensity = np.asarray(coords.intensity, dtype=float)
        keep = intensity > 1e-4 * intensity.max(initial=0)
        xy = np.asarray(coords.data, dtype=float)[keep, :2] / scale + np.asarray(centre)
        intensity = intensity[keep]
        on = np.all((xy > -0.5) & (xy < size - 0.5), axis=1)
        n_spots = int(np.count_nonzero(intensity[on] > 0.02 * intensity[on].max(initial=0)))
        if n_spots == 0:
            continue
        pattern = _render_spots(xy, intensity, size, sigma)
        total = pattern.sum()
        pattern /= total
        unit = pattern.ravel() / np.linalg.norm(pattern)
        similarity = max(
            (float(unit @ p.ravel()) / np.linalg.norm(p) for p in previous), default=0.0
        )
        score = (n_spots >= _MIN_SPOTS and similarity <= _MAX_SIMILARITY, -similarity)
        if best is None or score > best[0]:
            best = (
                score,
                pattern,
                {
                    "phase": name,
                    "structure": kind,
                    "space_group": phase.space_group.number,
                    "lattice": list(cell),
                    "zone_axis": list(zone),
                    "tilt_deg": math.degrees(tilt),
                    "tilt_azimuth_deg": math.degrees(tilt_azimuth),
                    "in_plane_deg": math.degrees(in_plane),
                    "rotation_matrix": matrix,
                    "n_spots": n_spots,
                    "max_similarity": similarity,
                },
                _spot_table(xy, intensity, size, sigma, total),
            )
        if score[0]:
            break
    if best is None:
        raise ValueError(
            f"no reflection of {name} falls on the detector: k_max ({scale * size / 2:g} Å^-1 "
            "at the detector edge) is too small"
        )
    _logger.debug("%s at [%s]: %d spots", name, best[2]["zone_axis"], best[2]["n_spots"])
    return best[1], best[2], best[3]


def _spot_table(xy, intensity, size: int, sigma: float, total: float) -> np.ndarray:
    """(n, 3) x, y and share of ``total`` of the spots with ≥ 1 % of their disc on the detector."""
    inside = special.ndtr((size - 0.5 - xy) / sigma) - special.ndtr((-0.5 - xy) / sigma)
    on_detector = inside[:, 0] * inside[:, 1]
    keep = on_detector >= _MIN_VISIBLE
    return np.column_stack([xy[keep], intensity[keep] * on_detector[keep] / total])


def _halo(size: int, centre, scale: float) -> np.ndarray:
    """Diffuse scattering decaying from the beam, normalised to sum 1 on the detector."""
    k = _radius(size, centre) * scale
    halo = (1 + (k / _HALO_WIDTH) ** 2) ** -1.5
    return halo / halo.sum()


def _rings(size: int, centre, scale: float) -> np.ndarray:
    """Amorphous support-film rings, normalised to sum 1 on the detector."""
    k = _radius(size, centre) * scale
    rings = sum(w * np.exp(-0.5 * ((k - k0) / s) ** 2) for k0, s, w in _RINGS)
    return rings / rings.sum()


def _radius(size: int, centre) -> np.ndarray:
    yy, xx = np.indices((size, size), dtype=float)
    return np.hypot(xx - centre[0], yy - centre[1])


# -- layouts ---------------------------------------------------------------------------------
def _smooth_field(rng, ny: int, nx: int, gradient: bool = False) -> np.ndarray:
    """A smooth random field over the scan, zero mean, scaled to [-1, 1]."""
    noise = rng.standard_normal((ny, nx))
    field_ = ndimage.gaussian_filter(noise, sigma=max(2.0, max(ny, nx) / 3), mode="reflect")
    field_ -= field_.mean()
    field_ /= max(np.abs(field_).max(), 1e-12)
    if gradient:
        yy, xx = np.indices((ny, nx), dtype=float)
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        ramp -= ramp.mean()
        ramp /= max(np.abs(ramp).max(), 1e-12)
        field_ = 0.5 * field_ + 0.5 * ramp
        field_ /= max(np.abs(field_).max(), 1e-12)
    return field_


def _blob_layout(rng, ny: int, nx: int, n: int, edge_width: float):
    """Soft-edged irregular ellipses that overlap in places, leaving some vacuum.

    Layouts are drawn until the cores (coverage > 0.5) give 4-35 % overlap, 8-45 % vacuum and
    every crystal alone on ≥ min(3, 15 / n) % of the probes (or the best of 200 draws on tiny
    scans).  The draws are judged on a grid of at most 32 × 32 points, so that large scans cost
    no more.
    """
    width = edge_width / (2 * math.log(9))  # logistic scale for a 10-90 % width of edge_width
    coarse = np.meshgrid(
        np.linspace(0, ny - 1, min(ny, 32)), np.linspace(0, nx - 1, min(nx, 32)), indexing="ij"
    )
    # Blob areas add up to about the scan area.
    typical = math.sqrt(1.0 * ny * nx / (n * math.pi))
    best = None
    for attempt in range(200):
        blobs = [_draw_blob(rng, ny, nx, typical) for _ in range(n)]
        penalty = _blob_penalty(_render_blobs(blobs, *coarse, width) > 0.5)
        if best is None or penalty < best[0]:
            best = (penalty, blobs)
        if penalty == 0:
            break
    _logger.debug("blob layout after %d draws, penalty %.3g", attempt + 1, best[0])
    coverage = _render_blobs(best[1], *np.indices((ny, nx), dtype=float), width)
    return coverage, {"blobs": best[1], "draws": attempt + 1, "penalty": best[0]}


def _draw_blob(rng, ny: int, nx: int, typical: float) -> dict:
    """Centre, semi-axes, angle and boundary ripples of one irregular ellipse (probe units)."""
    a, b = typical * rng.uniform(1.0, 1.35), typical * rng.uniform(0.65, 1.0)
    return {
        "centre_yx": list(rng.uniform(0.1, 0.9, size=2) * (ny, nx) - 0.5),
        "semi_axes": [a, b],
        "angle_deg": rng.uniform(0, 180),
        "ripple_amplitudes": list(rng.uniform(-0.07, 0.07, size=3)),  # cos(m theta), m = 2-4
        "ripple_phases": list(rng.uniform(0, 2 * math.pi, size=3)),
    }


def _render_blobs(blobs, yy: np.ndarray, xx: np.ndarray, width: float) -> np.ndarray:
    """Coverage (..., n) in [0, 1] of each blob: a logistic of the distance to its edge."""
    coverage = np.empty(yy.shape + (len(blobs),))
    for j, blob in enumerate(blobs):
        (cy, cx), (a, b) = blob["centre_yx"], blob["semi_axes"]
        angle = math.radians(blob["angle_deg"])
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = (yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)
        rho, theta = np.hypot(u / a, v / b), np.arctan2(v / b, u / a)
        edge = 1 + sum(
            amp * np.cos(m * theta + phi)
            for m, amp, phi in zip((2, 3, 4), blob["ripple_amplitudes"], blob["ripple_phases"])
        )
        distance = (rho - edge) * math.sqrt(a * b)  # ≈ probes outside the edge
        coverage[..., j] = special.expit(-distance / width)
    # Exactly zero far outside, so vacuum probes hold the background alone.
    return np.clip((coverage - _EDGE_CUT) / (1 - _EDGE_CUT), 0, 1)


def _blob_penalty(core: np.ndarray) -> float:
    count = core.sum(axis=-1)
    n = core.shape[-1]
    vacuum = float(np.mean(count == 0))
    penalty = max(0.0, 0.08 - vacuum) + max(0.0, vacuum - 0.45)
    if n == 1:
        return penalty
    overlap = float(np.mean(count >= 2))
    penalty += max(0.0, 0.04 - overlap) + max(0.0, overlap - 0.35)
    alone = np.mean(core & (count == 1)[..., np.newaxis], axis=(0, 1))
    return penalty + float(np.sum(np.maximum(0.0, min(0.03, 0.15 / n) - alone)))


def _grain_layout(rng, ny: int, nx: int, n: int):
    """A Voronoi tessellation into ``n`` grains (hard boundaries: one crystal per probe)."""
    yy, xx = np.indices((ny, nx), dtype=float)
    best = None
    for attempt in range(50):
        seeds = _spread_points(rng, ny, nx, n)
        d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
        owner = np.argmin(d2, axis=-1)
        smallest = int(np.bincount(owner.ravel(), minlength=n).min())
        if best is None or smallest > best[0]:
            best = (smallest, owner, seeds)
        if smallest >= max(1, 0.3 * ny * nx / n):
            break
    owner = best[1]
    coverage = (owner[..., None] == np.arange(n)).astype(float)
    return coverage, {"seeds_yx": best[2], "smallest_grain": best[0]}


def _spread_points(rng, ny: int, nx: int, n: int) -> np.ndarray:
    """``n`` random points over the scan, kept apart by dart throwing."""
    radius = 0.7 * math.sqrt(ny * nx / n)
    points: list[np.ndarray] = []
    failures = 0
    while len(points) < n:
        p = rng.uniform(0, 1, size=2) * (ny, nx) - 0.5
        if all(np.hypot(*(p - q)) >= radius for q in points):
            points.append(p)
        else:
            failures += 1
            if failures % 30 == 0:
                radius *= 0.9
    return np.array(points)


def _thickness_ramp(rng, coverage: np.ndarray, ratio: float):
    """A linear thickness ramp (×``ratio``) across the crystal's region, mean 1."""
    ny, nx = coverage.shape
    yy, xx = np.indices((ny, nx), dtype=float)
    angle = rng.uniform(0, 2 * math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    inside = coverage > 0.5
    lo, hi = (along[inside].min(), along[inside].max()) if inside.any() else (0.0, 1.0)
    t = np.clip((along - lo) / max(hi - lo, 1e-12), 0, 1)
    ramp = (1 + (ratio - 1) * t) * 2 / (1 + ratio)
    return ramp, {"crystal": 1, "ratio": ratio, "direction_deg": math.degrees(angle)}


def _labels(crystal_weights: np.ndarray, threshold: float, first: int):
    """Labels of the distinct sets of crystals present (weight > threshold × its maximum)."""
    peak = crystal_weights.max(axis=(0, 1))
    present = crystal_weights > threshold * np.where(peak > 0, peak, np.inf)
    ny, nx, n = present.shape
    codes = present.reshape(-1, n)
    unique = np.unique(codes, axis=0)
    sets = sorted(
        (tuple(int(j) + first for j in np.flatnonzero(row)) for row in unique if row.any()),
        key=lambda s: (len(s), s),
    )
    label_sets = {label: members for label, members in enumerate(sets, start=1)}
    lookup = {members: label for label, members in label_sets.items()}
    labels = np.array(
        [lookup.get(tuple(int(j) + first for j in np.flatnonzero(row)), 0) for row in codes],
        dtype=int,
    ).reshape(ny, nx)
    return labels, label_sets


# -- counts and the signal -------------------------------------------------------------------
def _counts(weights, sources_flat, rows, seed_sequence, dtype, shape):
    """Poisson counts of scan rows ``rows`` (range); row y draws from its own seed."""
    out = np.empty((len(rows), weights.shape[1]) + shape, dtype=dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    for i, y in enumerate(rows):
        rng = np.random.default_rng(_child(seed_sequence, 3, y))
        expected = np.maximum(weights[y] @ sources_flat, 0.0)
        counts = rng.poisson(expected)
        if info is not None:
            counts = np.clip(counts, max(info.min, 0), min(info.max, np.iinfo(np.int64).max))
        out[i] = counts.reshape((-1,) + shape)
    return out


def _axis(name: str, size: int, scale: float, offset: float, units: str, navigate: bool):
    return {
        "name": name,
        "size": size,
        "scale": scale,
        "offset": offset,
        "units": units,
        "navigate": navigate,
    }


def _make_signal(
    weights, sources, seed_sequence, *, dtype, lazy, chunks, scale, probe_step, spot_sigma, params
):
    """The calibrated signal of Poisson counts (lazy: one delayed task per row chunk)."""
    import dask
    import dask.array as da
    import hyperspy.api as hs

    import hyperspy_nmfdecide.signals  # noqa: F401  (registers the signal type)

    ny, nx = weights.shape[:2]
    size = sources.shape[-1]
    shape = sources.shape[1:]
    n_sources = len(sources)
    sources_flat = sources.reshape(n_sources, -1)
    if lazy:
        if chunks is None:
            row_bytes = nx * size * size * dtype.itemsize
            chunks = max(1, min(ny, (32 * 2**20) // row_bytes))
        blocks = []
        for y0 in range(0, ny, chunks):
            rows = range(y0, min(ny, y0 + chunks))
            part = dask.delayed(_counts, pure=True)(
                weights, sources_flat, rows, seed_sequence, dtype, shape
            )
            blocks.append(da.from_delayed(part, (len(rows), nx) + shape, dtype=dtype))
        data = da.concatenate(blocks, axis=0)
    else:
        data = _counts(weights, sources_flat, range(ny), seed_sequence, dtype, shape)

    offset = -(size / 2) * scale  # k = 0 at pixel size / 2, the detector centre
    k_units = r"$\AA^{-1}$"  # pyxem's spelling of Å^-1
    axes = [
        _axis("y", ny, probe_step, 0.0, "nm", navigate=True),
        _axis("x", nx, probe_step, 0.0, "nm", navigate=True),
        _axis("ky", size, scale, offset, k_units, navigate=False),
        _axis("kx", size, scale, offset, k_units, navigate=False),
    ]
    signal = hs.signals.Signal2D(data, axes=axes)
    if lazy:
        signal = signal.as_lazy()
    signal.set_signal_type("nmf_decide")
    n_crystals = params["n_crystals"]
    signal.metadata.General.title = (
        f"Simulated 4D-STEM scan: {n_crystals} crystal{'s' * (n_crystals > 1)}, "
        f"{params['layout']} layout, {params['dose']:g} e- per pattern"
    )
    signal.metadata.Signal.quantity = "Intensity (counts)"
    wavelength = _wavelength()
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", BEAM_ENERGY)
    signal.metadata.set_item("Acquisition_instrument.TEM.wavelength", wavelength)
    # Convergence semi-angle of a disc of radius 2 sigma, mrad.
    signal.metadata.set_item(
        "Acquisition_instrument.TEM.convergence_angle", 2 * spot_sigma * scale * wavelength * 1e3
    )
    signal.metadata.set_item("Simulation.true_k", n_sources)
    signal.metadata.set_item("Simulation.parameters", json.dumps(params))
    return signal
