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

Optional physics (all off by default; see :func:`simulated_scan`) breaks that additive model
the way real scans do, while ``weights`` and ``sources`` keep describing the intended additive
model and :meth:`SimulatedScan.noise_free` gives the true expected counts:

* **beam depletion** and **absorption**: the electrons in the crystal spots leave the direct
  beam (so the beam is no longer a fixed part of the background source), and inelastic
  scattering leaves only a fraction exp(-mu t) of everything.
* **descan**: the whole pattern drifts across the scan (re-rendered at sub-pixel shifts).
* **dynamical-like intensities**: each reflection oscillates with thickness (Pendellösung), so
  a crystal is no longer one pattern times a map.
* **shared reflections**: two phases at the same orientation whose spots coincide.
* **overlap physics**: where crystals overlap each weakens the other's spots and double
  diffraction adds spots at g1 + g2.
* **detector model**: point-spread function, gain, dark offset and readout noise.

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
from typing import TYPE_CHECKING, NamedTuple

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
        Å⁻¹ with 0 at the detector centre); detector units with a ``detector`` model.
    sources : numpy.ndarray
        (n_sources, H, W) noise-free source patterns, each non-negative and summing to 1.
        With the non-additive options of :func:`simulated_scan` these stay the intended
        additive model (the kinematic crystal patterns, the undepleted background).
    weights : numpy.ndarray
        (ny, nx, n_sources) expected counts contributed by each source at each probe (the
        additive model: with non-additive options the counts are drawn around
        :meth:`noise_free`, not around ``weights @ sources``).
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
        Number of independent non-negative sources of the noise-free additive model: the
        phases a user should find.  Beam depletion, descan, thickness non-linearity and
        double-diffraction spots do not add to it.
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
        beam is the spot of the background source.  Not part of ``params``.  With the
        non-additive options these stay the spots of the additive model: positions without
        descan, kinematic shares (``dynamical`` changes them probe by probe), the undepleted
        beam, and no double-diffraction spots.
    physics : object or None
        Private description of the non-additive physics (None when the scan is additive),
        used by :meth:`noise_free` and :meth:`beam_positions`.

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
    physics: _Physics | None = None

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

    def noise_free(self, detector: bool = False) -> np.ndarray:
        """(ny, nx, H, W) float64 expected counts the data were drawn around.

        ``weights @ sources`` for an additive scan; with the non-additive options of
        :func:`simulated_scan` the true expected counts, computed probe by probe with all the
        physics (beam depletion, descan, dynamical intensities, overlap physics, absorption).

        Parameters
        ----------
        detector : bool
            Return the expected detector output instead of electrons: the expected counts
            blurred by the point-spread function, times the gain, plus the dark offset (the
            units of ``signal.data``).  The same as False without a detector model.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0)
        >>> expected = scan.noise_free()
        >>> expected.shape, round(float(expected.sum(axis=(2, 3)).mean()))
        ((4, 4, 32, 32), 1000)
        """
        n, h, w = self.sources.shape
        if self.physics is None:
            flat = self.weights @ self.sources.reshape(n, h * w)
        else:
            flat = np.stack([self.physics.expected(y) for y in range(self.weights.shape[0])])
        expected = flat.reshape(self.weights.shape[:-1] + (h, w))
        settings = self.params.get("detector")
        if detector and settings is not None:
            expected = _detector_mean(expected, settings)
        return expected

    def beam_positions(self) -> np.ndarray:
        """(ny, nx, 2) position (x, y) of the transmitted beam at each probe, pixels.

        The detector centre plus ``beam_offset`` everywhere, unless ``descan`` moves it.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, descan=2.0)
        >>> xy = scan.beam_positions().reshape(-1, 2)
        >>> round(float(np.hypot(*np.ptp(xy, axis=0))), 6)
        2.0
        """
        size = self.sources.shape[-1]
        centre = size / 2 + np.asarray(self.params["beam_offset"], dtype=float)
        positions = np.broadcast_to(centre, self.weights.shape[:-1] + (2,)).copy()
        if self.physics is not None and self.physics.shifts is not None:
            positions += self.physics.shifts
        return positions

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
    beam_depletion: bool | float = False,
    absorption: float = 0.0,
    detector: dict | None = None,
    descan: float = 0.0,
    dynamical: float = 0.0,
    shared_reflections: bool | tuple[str, str] = False,
    overlap_physics: float = 0.0,
) -> SimulatedScan:
    """Simulate a seeded 4D-STEM scan of a few crystals, with its ground truth.

    Each source pattern is simulated once (crystals with diffsims, see the module docstring),
    the weights are laid out over the scan, and the counts are Poisson draws around
    ``weights @ sources``.  The noise of scan row ``y`` comes from its own seed, so eager and
    lazy scans are bit-identical and a lazy scan is computed chunk by chunk.

    The options from ``beam_depletion`` on add physics that the additive model lacks; they are
    all off by default (and then change nothing).  With any of them but ``detector`` and
    ``shared_reflections``, the expected counts are computed probe by probe from the spots
    (see :meth:`SimulatedScan.noise_free`); ``weights`` and ``sources`` stay the intended
    additive model and ``true_k`` the number of phases.

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
        Mean expected electrons per pattern (> 0).  With ``beam_depletion`` the crystals'
        counts come out of the beam, and the weights are scaled so that the mean counts per
        pattern stay the dose (before saturation, ``absorption``, ``dynamical`` and
        ``overlap_physics`` change them a little): at full depletion it is the incident
        dose.
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
        A ``detector`` model giving non-integer values needs a float dtype.
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
    beam_depletion : bool or float
        Strength in [0, 1] (True is 1) of the depletion of the direct beam: the electrons
        the crystals scatter into their spots leave the beam, so the beam carries its
        incident electrons minus those, and is no longer a fixed part of the background
        source.  At full strength the counts per pattern are conserved (up to
        ``absorption``) and the rank stays ``true_k``, but no non-negative factorisation of
        that rank has the true sources: an exact one mixes them (crystal patterns carrying
        the diffuse scattering, a background whose map has holes where the crystals are).
        The crystal
        weights are kinematic scattered fractions x (crystal counts over incident beam
        counts), valid while x is small: the scattered fraction saturates as
        x / (1 + x⁴)^(1/4) (within 1.5 % of x up to 0.5, below 1 always), so that the beam
        never goes negative where crystals are thick or overlap.  Needs ``direct_beam``.
    absorption : float
        Absorption exponent per unit crystal thickness (≥ 0): inelastic scattering takes
        electrons out of the detector, so everything at a probe (beam, spots, diffuse
        scattering) is multiplied by exp(-absorption × t), t the summed thickness of the
        crystals there (coverage × local thickness factor, about 1 per crystal).
    detector : dict or None
        Detector model applied to each pattern after the Poisson draw: a Gaussian
        point-spread function of ``"psf_sigma"`` pixels (charge spreads into neighbouring
        pixels; reflected at the detector edges, so counts are kept), a ``"gain"`` (detector
        units per electron), a dark ``"offset"`` and Gaussian ``"readout_noise"`` (standard
        deviation in detector units, the amplifier noise).  Missing keys default to 0,
        except ``"gain"`` to 1.  The readout noise comes from the row seeds too.
    descan : float
        Drift of the whole pattern (beam, spots and diffuse scattering) across the scan,
        pixels (≥ 0), from imperfect descan of the scan coils: the shift grows linearly
        from -descan/2 to +descan/2 along a seeded scan direction, in a seeded direction on
        the detector.  Every probe's pattern is rendered at its sub-pixel shift (discs
        integrated over the pixels, nothing interpolated), so spots keep their counts.
    dynamical : float
        Strength in [0, 1) of dynamical-like (Pendellösung) intensities: multiple scattering
        makes each reflection g oscillate with the local thickness factor t (the
        ``thickness_variation`` and the gradient ramp), I_g ∝ t (1 + dynamical
        sin(2π t / ξ_g + φ_g)), with a seeded phase φ_g and an extinction length
        ξ_g ∝ 1 / |F_g| (0.5 for the strongest reflection, in units of the nominal
        thickness, times a seeded 0.8-1.25).  A crystal is then no longer one pattern times
        a map, though still one phase.
    shared_reflections : bool or tuple of str
        Make crystals 1 and 2 two different phases at the same orientation whose reflections
        largely coincide, with different relative intensities (different structure
        factors), as a hard case to tell apart.  True is ``("Mg", "ZnO")`` (hcp and
        wurtzite, a 3.209 and 3.250 Å, c within 0.1 %; cosine similarity of the two
        patterns 0.87-0.98 depending on the zone axis); ``("Al", "Au")`` (fcc, 4.05 and
        4.08 Å: only the scattering factors and Debye-Waller factors differ) is nearly
        indistinguishable (0.96-0.996).  The distinctness rule between crystal patterns is
        bypassed for the pair; ``params["shared_reflections"]`` records their similarity.
        ``crystals`` then names crystal 3 on.  Needs ``n_crystals`` ≥ 2.
    overlap_physics : float
        Strength in [0, 1] of the interaction of overlapping crystals, to second order in
        their scattered fractions f1, f2: the crystal underneath sees a beam depleted by
        the one above, and the diffracted beams of the one above are diffracted again by
        the one underneath, so each crystal's spots are multiplied by
        (1 - overlap_physics × the other's f); double diffraction adds spots at g1 + g2
        (every pair of the two crystals' strongest reflections) holding
        overlap_physics × f1 × f2 of the incident beam.  To this order nothing depends on
        which crystal is on top, and nothing changes where a crystal is alone.

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
    Descan, dynamical intensities and overlap physics raise the rank of the noise-free data
    above ``true_k`` without adding phases; full beam depletion keeps the rank but leaves no
    non-negative factorisation of rank ``true_k`` with the true sources; absorption only
    scales each probe.

    Pixel ``pattern_size / 2`` is k = 0 (the origin pyxem's ``get_direct_beam_position``
    measures shifts from); the direct beam is at ``pattern_size / 2 + beam_offset``
    (:meth:`SimulatedScan.beam_positions`, which includes the descan).

    Random streams are separate, so that turning on an option changes nothing else: the
    layout, thickness and weights are the same with or without ``beam_depletion``,
    ``absorption``, ``descan``, ``dynamical``, ``overlap_physics`` and ``detector``, and the
    Poisson draws too as long as the expected counts are unchanged (``detector`` alone).
    ``shared_reflections`` changes the crystals.

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

    A scan that is not additive: the direct beam loses what the crystals scatter (so every
    pattern of a uniform background holds the dose), the crystals' reflections oscillate
    with thickness and the detector doubles the counts.

    >>> real = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=1,
    ...                       beam_depletion=True, dynamical=0.5, detector={"gain": 2.0})
    >>> totals = real.noise_free().sum(axis=(2, 3))
    >>> bool(np.allclose(totals, real.dose)), real.true_k
    (True, 4)
    >>> bool(np.allclose(real.noise_free(detector=True), 2 * real.noise_free()))
    True
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
    offset, room = _check_beam_offset(beam_offset, size, spot_sigma)
    out_dtype = _check_dtype(dtype)
    if chunks is not None:
        chunks = _check_int(chunks, "chunks", 1)
    names = None if crystals is None else _check_crystals(crystals)
    options = _check_options(
        beam_depletion=beam_depletion,
        absorption=absorption,
        detector=detector,
        descan=descan,
        dynamical=dynamical,
        shared_reflections=shared_reflections,
        overlap_physics=overlap_physics,
        n_crystals=n_crystals,
        direct_beam=direct_beam,
        dtype=out_dtype,
        room=room,
    )

    seed_sequence, seed_record = _seed_sequence(random_state)
    # Independent streams, spelled out (not spawned) so that they never depend on state:
    # (0,) crystals, (1,) layout, (2,) thickness and background fields, (3, y) noise of row y,
    # (4,) descan directions, (5,) dynamical extinction lengths and phases.
    ss_crystals, ss_layout, ss_fields = (_child(seed_sequence, i) for i in range(3))

    scale = k_max / (size / 2)  # Å^-1 per pixel
    centre = (size / 2 + offset[0], size / 2 + offset[1])  # beam (x, y), pixel index units

    # -- sources ---------------------------------------------------------------------------
    rng = np.random.default_rng(ss_crystals)
    if names is None:
        names = [CRYSTALS[i] for i in rng.permutation(len(CRYSTALS))]
    patterns, crystal_info, crystal_spots, reflections = _crystal_sources(
        names, n_crystals, rng, options.shared, crystals is None, size, scale, centre, spot_sigma
    )

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

    parts, fractions = _background_parts(direct_beam, background, size, centre, scale, spot_sigma)
    sources, weights, bg_range, total = _with_background(
        parts, background, rng, np.stack(patterns), crystal_weights
    )
    source_names = ["background"] * bool(parts) + [info["name"] for info in crystal_info]
    background_index = 0 if parts else None
    first_crystal = 0 if background_index is None else 1
    totals = weights.sum(axis=-1)
    if options.depletion:  # the crystals' counts come out of the beam
        totals = totals - options.depletion * weights[..., first_crystal:].sum(axis=-1)
    factor = dose / totals.mean()
    weights = weights * factor
    true_spots = {first_crystal + j: spots for j, spots in enumerate(crystal_spots)}
    if direct_beam:
        true_spots[0] = np.array([[*centre, parts[0].sum() / total]])

    labels, label_sets = _labels(weights[..., first_crystal:], presence_threshold, first_crystal)

    physics, physics_info = None, {}
    if options.non_additive:
        # Incident electrons per probe: the background source's weight over its sum.
        incident = weights[..., 0] / total if parts else np.full((ny, nx), factor)
        physics, physics_info = _build_physics(
            options,
            seed_sequence,
            weights=weights,
            sources=sources,
            incident=incident,
            fractions=fractions,
            coverage=coverage,
            thickness=thickness,
            reflections=reflections,
            centre=centre,
            scale=scale,
            sigma=spot_sigma,
        )

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
        **_options_params(options, crystal_info, physics_info),
    }
    params = _jsonable(params)

    model = _Additive(weights, sources.reshape(len(sources), -1)) if physics is None else physics
    signal = _make_signal(
        model,
        sources,
        seed_sequence,
        dtype=out_dtype,
        detector=options.detector,
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
        physics=physics,
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


def _check_beam_offset(beam_offset, size: int, sigma: float) -> tuple[tuple[float, float], float]:
    """(x, y) beam offset, and the pixels the beam may still move keeping 3 sigma inside."""
    try:
        offset = tuple(float(v) for v in beam_offset)
    except TypeError:
        raise ValueError(f"beam_offset must be two numbers (x, y), got {beam_offset!r}") from None
    margin = size / 2 - 3 * sigma
    if len(offset) != 2 or not all(np.isfinite(offset)) or max(map(abs, offset)) > margin:
        raise ValueError(
            f"beam_offset must be two numbers (x, y) within ±{margin:g} pixels of the detector "
            f"centre (pattern_size {size}, spot_sigma {sigma:g}), got {beam_offset!r}"
        )
    return offset, margin - max(map(abs, offset))


def _check_dtype(dtype) -> np.dtype:
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a float or integer dtype, got {dtype!r}") from None
    if out_dtype.kind not in "fiu":
        raise ValueError(f"dtype must be a float or integer dtype, got {out_dtype}")
    return out_dtype


def _check_crystals(crystals) -> list[str]:
    names = [crystals] if isinstance(crystals, str) else list(crystals)
    unknown = [c for c in names if c not in _CRYSTAL_DATA]
    if not names or unknown:
        raise ValueError(f"crystals must be names from {CRYSTALS}, got {crystals!r}")
    return names


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


# -- the physics options ---------------------------------------------------------------------
#: Pairs of phases whose reflections largely coincide at one orientation (first: the default).
_SHARED_PAIRS = (("Mg", "ZnO"), ("Al", "Au"))
_DETECTOR_DEFAULTS = {"gain": 1.0, "offset": 0.0, "readout_noise": 0.0, "psf_sigma": 0.0}


@dataclass(frozen=True)
class _Options:
    """The checked physics options of :func:`simulated_scan` (all zero or None: additive)."""

    depletion: float = 0.0
    absorption: float = 0.0
    detector: dict | None = None
    descan: float = 0.0
    dynamical: float = 0.0
    shared: tuple[str, str] | None = None
    overlap: float = 0.0

    @property
    def non_additive(self) -> bool:
        """Whether the expected counts differ from ``weights @ sources``."""
        return any((self.depletion, self.absorption, self.descan, self.dynamical, self.overlap))


def _check_options(
    *,
    beam_depletion,
    absorption,
    detector,
    descan,
    dynamical,
    shared_reflections,
    overlap_physics,
    n_crystals: int,
    direct_beam: bool,
    dtype: np.dtype,
    room: float,
) -> _Options:
    """Check the physics options; ``room``: pixels the beam may move before nearing an edge."""
    depletion = _check_fraction(beam_depletion, "beam_depletion")
    if depletion and not direct_beam:
        raise ValueError("beam_depletion needs direct_beam=True: there is no beam to deplete")
    descan = _check_non_negative(descan, "descan")
    if descan / 2 > room:
        raise ValueError(
            f"descan must keep the beam 3 spot_sigma from the detector edge: at most "
            f"{2 * room:g} pixels with this beam_offset, got {descan!r}"
        )
    return _Options(
        depletion=depletion,
        absorption=_check_non_negative(absorption, "absorption"),
        detector=_check_detector(detector, dtype),
        descan=descan,
        dynamical=_check_fraction(dynamical, "dynamical", below_one=True),
        shared=_check_shared(shared_reflections, n_crystals),
        overlap=_check_fraction(overlap_physics, "overlap_physics"),
    )


def _check_non_negative(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number ≥ 0, got {value!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number ≥ 0, got {value!r}")
    return value


def _check_fraction(value, name: str, below_one: bool = False) -> float:
    """A strength in [0, 1] (or [0, 1) with ``below_one``); True is 1 and False is 0."""
    interval = "[0, 1)" if below_one else "[0, 1]"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}") from None
    if not (0 <= number < 1 if below_one else 0 <= number <= 1):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return number


def _check_shared(shared, n_crystals: int) -> tuple[str, str] | None:
    """The (crystal 1, crystal 2) phase pair of ``shared_reflections``, or None."""
    if shared is None or shared is False:
        return None
    pair = _SHARED_PAIRS[0] if shared is True else shared
    allowed = _SHARED_PAIRS + tuple(p[::-1] for p in _SHARED_PAIRS)
    try:
        pair = tuple(pair)
    except TypeError:
        pair = None
    if isinstance(shared, str) or pair not in allowed:
        raise ValueError(
            f"shared_reflections must be True, False or one of the pairs {_SHARED_PAIRS} "
            f"(either order), got {shared!r}"
        )
    if n_crystals < 2:
        raise ValueError(f"shared_reflections needs n_crystals ≥ 2, got {n_crystals}")
    return pair


def _check_detector(detector, dtype: np.dtype) -> dict | None:
    """The detector settings with every key (None: no detector model)."""
    if detector is None:
        return None
    if not isinstance(detector, dict):
        raise ValueError(f"detector must be a dict or None, got {detector!r}")
    unknown = sorted(set(detector) - set(_DETECTOR_DEFAULTS), key=str)
    if unknown:
        raise ValueError(
            f"detector has unknown keys {unknown}; known: {sorted(_DETECTOR_DEFAULTS)}"
        )
    settings = _DETECTOR_DEFAULTS | detector
    settings["gain"] = _check_positive(settings["gain"], "detector gain")
    for key in ("readout_noise", "psf_sigma"):
        settings[key] = _check_non_negative(settings[key], f"detector {key}")
    try:
        settings["offset"] = float(settings["offset"])
    except (TypeError, ValueError):
        settings["offset"] = math.nan
    if not np.isfinite(settings["offset"]):
        raise ValueError(f"detector offset must be a finite number, got {detector['offset']!r}")
    integral = (
        settings["readout_noise"] == 0
        and settings["psf_sigma"] == 0
        and settings["gain"].is_integer()
        and settings["offset"].is_integer()
    )
    if dtype.kind in "iu" and not integral:
        raise ValueError(
            f"dtype must be a float dtype for a detector model whose output is not whole "
            f"numbers (readout noise, a point-spread function or a fractional gain or offset), "
            f"got {dtype}"
        )
    return settings


def _options_params(options: _Options, crystal_info: list[dict], details: dict) -> dict:
    """The ``params`` entries of the physics options (with what was drawn for them)."""
    shared = None
    if options.shared is not None:
        shared = {
            "pair": list(options.shared),
            "crystals": [1, 2],
            "cosine_similarity": crystal_info[1]["max_similarity"],
        }
    return {
        "beam_depletion": options.depletion,
        "beam_saturation": details.get("saturation"),
        "absorption": options.absorption,
        "detector": options.detector,
        "descan": options.descan,
        "descan_directions": details.get("descan"),
        "dynamical": options.dynamical,
        "extinction_lengths": details.get("extinction"),
        "shared_reflections": shared,
        "overlap_physics": options.overlap,
        "double_diffraction": details.get("double_diffraction"),
    }


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


def _crystal_sources(
    names: list[str],
    n_crystals: int,
    rng: np.random.Generator,
    shared: tuple[str, str] | None,
    default_names: bool,
    size: int,
    scale: float,
    centre: tuple[float, float],
    sigma: float,
):
    """The crystal sources: patterns, descriptions, spot tables and reflections, in order.

    With ``shared`` (a pair of phase names), crystals 1 and 2 are that pair at one orientation
    and ``names`` (cycled; without the pair's phases when they are the seeded default) name
    the others.  Each reflection list is (xy, amplitude): disc centres in pixels and disc
    amplitudes that render the normalised pattern.
    """
    first = 0
    if shared is not None:
        names = [n for n in names if not (default_names and n in shared)]
        first = 2
    patterns, infos, spot_tables, reflections = [], [], [], []
    for j in range(n_crystals):
        if shared is not None and j == 1:
            result = _twin_source(shared[1], infos[0], patterns[0], size, scale, centre, sigma)
        else:
            name = shared[0] if shared is not None and j == 0 else names[(j - first) % len(names)]
            result = _crystal_source(name, rng, patterns, size, scale, centre, sigma)
        pattern, info, spots, found = result
        patterns.append(pattern)
        infos.append({"name": f"crystal {j + 1}", **info})
        spot_tables.append(spots)
        reflections.append(found)
    return patterns, infos, spot_tables, reflections


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


def _crystal_source(name, rng, previous, size, scale, centre, sigma):
    """One crystal's normalised spot pattern: the most distinct of a few random orientations.

    Returns the pattern, its description, its (n, 3) on-detector spots (x, y and the fraction
    of the pattern's counts in each) and its reflections (xy, disc amplitude).
    """
    phase = _phase(name)
    kind, _, cell, _, _ = _CRYSTAL_DATA[name]
    zones = _ZONES["hexagonal" if cell[5] == 120.0 else "cubic"]
    best = None
    for attempt in range(25):
        zone = zones[rng.integers(len(zones))]
        tilt = math.radians(_MAX_TILT) * math.sqrt(rng.uniform())
        tilt_azimuth, in_plane = rng.uniform(0, 2 * math.pi, size=2)
        matrix = _rotation_matrix(phase, zone, tilt, tilt_azimuth, in_plane)
        xy, intensity = _reflections(name, matrix, size, scale, centre, sigma)
        n_spots = _count_spots(xy, intensity, size)
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
                (xy, intensity / total),
            )
        if score[0]:
            break
    if best is None:
        raise ValueError(
            f"no reflection of {name} falls on the detector: k_max ({scale * size / 2:g} Å^-1 "
            "at the detector edge) is too small"
        )
    _logger.debug("%s at [%s]: %d spots", name, best[2]["zone_axis"], best[2]["n_spots"])
    return best[1], best[2], best[3], best[4]


def _twin_source(
    name: str,
    partner: dict,
    partner_pattern: np.ndarray,
    size: int,
    scale: float,
    centre: tuple[float, float],
    sigma: float,
):
    """Crystal ``name`` at the orientation of ``partner`` (its description), for shared spots.

    The two phases have nearly the same lattice, so their reflections largely coincide; the
    rule keeping crystal patterns distinct is not applied.  Returns what
    :func:`_crystal_source` does; ``max_similarity`` is the cosine similarity to the partner.
    """
    matrix = np.asarray(partner["rotation_matrix"], dtype=float)
    xy, intensity = _reflections(name, matrix, size, scale, centre, sigma)
    n_spots = _count_spots(xy, intensity, size)
    if n_spots == 0:
        raise ValueError(
            f"no reflection of {name} falls on the detector: k_max ({scale * size / 2:g} Å^-1 "
            "at the detector edge) is too small"
        )
    pattern = _render_spots(xy, intensity, size, sigma)
    total = pattern.sum()
    pattern /= total
    norms = np.linalg.norm(pattern) * np.linalg.norm(partner_pattern)
    similarity = float(pattern.ravel() @ partner_pattern.ravel()) / norms
    kind, space_group, cell, _, _ = _CRYSTAL_DATA[name]
    info = {
        "phase": name,
        "structure": kind,
        "space_group": space_group,
        "lattice": list(cell),
        **{k: partner[k] for k in ("zone_axis", "tilt_deg", "tilt_azimuth_deg", "in_plane_deg")},
        "rotation_matrix": matrix,
        "n_spots": n_spots,
        "max_similarity": similarity,
        "shares_reflections_with": partner["name"],
    }
    spots = _spot_table(xy, intensity, size, sigma, total)
    return pattern, info, spots, (xy, intensity / total)


def _on_detector(xy: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Share of each Gaussian disc centred at ``xy`` (n, 2) that falls on the detector."""
    inside = special.ndtr((size - 0.5 - xy) / sigma) - special.ndtr((-0.5 - xy) / sigma)
    return inside[:, 0] * inside[:, 1]


def _spot_table(xy, intensity, size: int, sigma: float, total: float) -> np.ndarray:
    """(n, 3) x, y and share of ``total`` of the spots with ≥ 1 % of their disc on the detector."""
    on_detector = _on_detector(xy, size, sigma)
    keep = on_detector >= _MIN_VISIBLE
    return np.column_stack([xy[keep], intensity[keep] * on_detector[keep] / total])


def _background_parts(
    direct_beam: bool, background: str, size: int, centre, scale: float, sigma: float
) -> tuple[list[np.ndarray], dict[str, float]]:
    """The parts of the background source and the share of the incident electrons in each.

    Returns the list of part images (each a share times a unit image) and a dict naming the
    shares (``"beam"``, ``"halo"``, ``"rings"``, for the parts present).
    """
    parts, fractions = [], {}
    if direct_beam:
        parts.append(_BEAM_FRACTION * _render_spots(np.array([centre]), np.ones(1), size, sigma))
        fractions["beam"] = _BEAM_FRACTION
    if background != "none":
        parts.append(_HALO_FRACTION * _halo(size, centre, scale))
        parts.append(_RING_FRACTION * _rings(size, centre, scale))
        fractions.update(halo=_HALO_FRACTION, rings=_RING_FRACTION)
    if direct_beam and background == "none":
        parts[0] /= _BEAM_FRACTION  # no diffuse scattering: the beam carries it all
        fractions["beam"] = 1.0
    return parts, fractions


def _with_background(
    parts: list[np.ndarray],
    background: str,
    rng: np.random.Generator,
    patterns: np.ndarray,
    crystal_weights: np.ndarray,
):
    """Sources and weights with the background source first (if it has parts), unscaled.

    Returns the sources, the weights, the background weight's (min, max) or None, and the sum
    of the background parts (the background weight is the incident intensity times it).
    """
    if not parts:
        return patterns, crystal_weights, None, 1.0
    ny, nx = crystal_weights.shape[:2]
    bg_pattern = np.sum(parts, axis=0)
    total = bg_pattern.sum()
    if background == "varying":
        bg_weight = 1 + 0.3 * _smooth_field(rng, ny, nx, gradient=True)
    else:
        bg_weight = np.ones((ny, nx))
    bg_range = [float(bg_weight.min()), float(bg_weight.max())]
    sources = np.concatenate([(bg_pattern / total)[np.newaxis], patterns])
    weights = np.concatenate([(bg_weight * total)[..., np.newaxis], crystal_weights], axis=-1)
    return sources, weights, bg_range, total


def _halo_shape(k: np.ndarray) -> np.ndarray:
    """Unnormalised diffuse halo at scattering vectors ``k`` (Å^-1) from the beam."""
    return (1 + (k / _HALO_WIDTH) ** 2) ** -1.5


def _rings_shape(k: np.ndarray) -> np.ndarray:
    """Unnormalised amorphous rings at scattering vectors ``k`` (Å^-1) from the beam."""
    return sum(w * np.exp(-0.5 * ((k - k0) / s) ** 2) for k0, s, w in _RINGS)


def _halo(size: int, centre, scale: float) -> np.ndarray:
    """Diffuse scattering decaying from the beam, normalised to sum 1 on the detector."""
    k = _radius(size, centre) * scale
    halo = _halo_shape(k)
    return halo / halo.sum()


def _rings(size: int, centre, scale: float) -> np.ndarray:
    """Amorphous support-film rings, normalised to sum 1 on the detector."""
    k = _radius(size, centre) * scale
    rings = _rings_shape(k)
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


# -- non-additive physics --------------------------------------------------------------------
_XI_STRONGEST = 0.5  # extinction length of the strongest reflection, nominal thickness units
_XI_MAX = 20.0  # longest extinction length (the weakest reflections barely oscillate)
_DD_SPOTS = 30  # strongest reflections of each crystal combined in double diffraction
_DD_MIN_SHARE = 0.01  # ... with at least this share of the crystal's strongest one


def _saturated(x: np.ndarray) -> np.ndarray:
    """Scattered fraction for a kinematic fraction ``x`` ≥ 0: x / (1 + x⁴)^(1/4).

    Within 1.5 % of ``x`` up to 0.5, always below 1: the electrons a crystal scatters cannot
    outnumber the beam, however large its kinematic weight.
    """
    return x / (1 + x**4) ** 0.25


def _descan_shifts(
    rng: np.random.Generator, ny: int, nx: int, descan: float
) -> tuple[np.ndarray, dict]:
    """(ny, nx, 2) pattern shifts (x, y) in pixels and the two directions drawn.

    The shift grows linearly from -descan/2 to +descan/2 along a random scan direction, in a
    random direction on the detector (imperfect descan: the beam moves with the probe).
    """
    scan_angle, shift_angle = rng.uniform(0, 2 * math.pi, size=2)
    yy, xx = np.indices((ny, nx), dtype=float)
    along = xx * math.cos(scan_angle) + yy * math.sin(scan_angle)
    span = along.max() - along.min()
    ramp = (along - along.min()) / span - 0.5 if span > 1e-9 else np.zeros_like(along)
    direction = np.array([math.cos(shift_angle), math.sin(shift_angle)])
    info = {
        "scan_direction_deg": math.degrees(scan_angle),
        "shift_direction_deg": math.degrees(shift_angle),
    }
    return descan * ramp[..., np.newaxis] * direction, info


def _extinction(rng: np.random.Generator, amplitudes: list[np.ndarray]):
    """Extinction lengths ξ_g and phases φ_g of every crystal's reflections, and a summary.

    ξ_g ∝ 1 / |F_g| ∝ 1 / sqrt(I_g): 0.5 (nominal thickness units) for the strongest
    reflection, times a random 0.8-1.25, at most 20.
    """
    lengths, phases = [], []
    for amplitude in amplitudes:
        jitter = rng.uniform(0.8, 1.25, size=len(amplitude))
        relative = np.sqrt(amplitude.max() / np.maximum(amplitude, 1e-300))
        lengths.append(np.minimum(_XI_STRONGEST * relative * jitter, _XI_MAX))
        phases.append(rng.uniform(0, 2 * math.pi, size=len(amplitude)))
    info = {"strongest": _XI_STRONGEST, "jitter": [0.8, 1.25], "max": _XI_MAX}
    return tuple(lengths), tuple(phases), info


class _Pair(NamedTuple):
    """The double-diffraction spots g1 + g2 of crystals ``i`` and ``k``."""

    i: int
    k: int
    gi: np.ndarray  # indices of the strongest reflections of crystal i
    gk: np.ndarray  # ... and of crystal k
    a: np.ndarray  # (m,) index into gi of each combined spot
    b: np.ndarray  # (m,) index into gk of each combined spot
    xy: np.ndarray  # (m, 2) position of each combined spot, pixels
    image: np.ndarray | None  # their pattern (sum 1 of amplitudes), when it is fixed


def _double_diffraction_pairs(
    spot_xy: list[np.ndarray],
    spot_share: tuple[np.ndarray, ...],
    centre: tuple[float, float],
    size: int,
    sigma: float,
    reach: float,
    fixed: bool,
) -> tuple[_Pair, ...]:
    """Double-diffraction spots g1 + g2 of every pair of crystals (see :class:`_Pair`).

    Combines the strongest reflections of each crystal (at most ``_DD_SPOTS``, with at least
    ``_DD_MIN_SHARE`` of the strongest one) and keeps the combined spots within reach of the
    detector (``reach``: the largest descan shift).  With ``fixed`` (no dynamical intensities
    and no descan) their pattern is the same at every probe and is rendered once.
    """
    strongest = []
    for share in spot_share:
        order = np.argsort(share)[::-1][:_DD_SPOTS]
        strongest.append(order[share[order] >= _DD_MIN_SHARE * share.max()])
    pairs = []
    lo, hi = -0.5 - 4 * sigma - reach, size - 0.5 + 4 * sigma + reach
    for i in range(len(spot_xy)):
        for k in range(i + 1, len(spot_xy)):
            gi, gk = strongest[i], strongest[k]
            xy = spot_xy[i][gi][:, np.newaxis] + spot_xy[k][gk][np.newaxis] - np.asarray(centre)
            a, b = np.indices((len(gi), len(gk)))
            keep = np.all((xy > lo) & (xy < hi), axis=-1)
            pair = _Pair(i, k, gi, gk, a[keep], b[keep], xy[keep], None)
            if fixed:
                amplitudes = _double_spots(pair, spot_share, (None,) * len(spot_xy), np.ones(1))
                pair = pair._replace(image=_render_discs(pair.xy, amplitudes, size, sigma)[0])
            pairs.append(pair)
    return tuple(pairs)


def _double_spots(pair: _Pair, spot_share, factors: list, budget: np.ndarray) -> np.ndarray:
    """(P, m) amplitudes of the double-diffraction spots of ``pair``, ``budget`` (P,) in all.

    Each combined spot g1 + g2 gets the product of the two reflections' shares of their
    crystal's counts (times their Pendellösung ``factors``, (P, n) or None per crystal).
    """
    parts = []
    for j, g in ((pair.i, pair.gi), (pair.k, pair.gk)):
        share = spot_share[j][g] * (1.0 if factors[j] is None else factors[j][:, g])
        share = np.broadcast_to(share, (len(budget), len(g)))
        parts.append(share / share.sum(axis=1, keepdims=True))
    return budget[:, np.newaxis] * parts[0][:, pair.a] * parts[1][:, pair.b]


def _render_discs(
    xy: np.ndarray, amplitudes: np.ndarray, size: int, sigma: float, shifts=None
) -> np.ndarray:
    """(P, size, size) sums of Gaussian discs: ``amplitudes`` (P, n) at ``xy`` (n, 2).

    Each disc is integrated over the pixels (as :func:`_render_spots`); ``shifts`` (P, 2)
    moves every disc of probe p by ``shifts[p]`` (sub-pixel, exact).
    """
    edges = np.arange(size + 1) - 0.5
    if shifts is None:
        centres = xy[np.newaxis]  # (1, n, 2)
    else:
        centres = xy[np.newaxis] + shifts[:, np.newaxis]  # (P, n, 2)
    profile = np.diff(special.ndtr((edges - centres[..., np.newaxis]) / sigma), axis=-1)
    gx, gy = profile[..., 0, :], profile[..., 1, :]  # (1 or P, n, size)
    return (gy * amplitudes[..., np.newaxis]).transpose(0, 2, 1) @ gx


@dataclass(frozen=True, eq=False)
class _Physics:
    """The expected counts of a non-additive scan, computed row by row from the spots.

    Amplitudes are electrons; a disc puts its amplitude times its share inside the detector
    on it.  The crystals' counts are those of the additive model (``weights``), i.e. their
    kinematic patterns normalised on the detector.
    """

    weights: np.ndarray  # (ny, nx, n_sources) additive weights
    crystal_images: np.ndarray  # (n_crystals, H, W) kinematic crystal patterns (sources)
    spot_xy: tuple  # per crystal (n, 2) disc centres, pixels, without descan
    spot_amplitude: tuple  # per crystal (n,) disc amplitudes per count of the crystal
    spot_share: tuple  # per crystal (n,) share of the crystal's counts on the detector
    incident: np.ndarray  # (ny, nx) incident electrons (on the detector, additive model)
    beam_share: float  # share of the incident electrons in the unscattered beam
    background: tuple  # (kind, share of the incident, unit image, normaliser) per part
    thickness: np.ndarray  # (ny, nx, n_crystals) local thickness factor t
    path: np.ndarray  # (ny, nx) summed crystal thickness (coverage × t)
    centre: tuple[float, float]
    size: int
    sigma: float
    scale: float
    depletion: float
    absorption: float
    dynamical: float
    overlap: float
    shifts: np.ndarray | None  # (ny, nx, 2) descan
    extinction: tuple | None  # per crystal (n,) ξ_g
    phases: tuple | None  # per crystal (n,) φ_g
    pairs: tuple[_Pair, ...]  # double diffraction

    def expected(self, y: int) -> np.ndarray:
        """(nx, H × W) expected counts of the probes of scan row ``y``."""
        n_crystals = len(self.spot_xy)
        counts = self.weights[y][:, self.weights.shape[-1] - n_crystals :]  # (nx, n)
        factors = [self._pendellosung(y, j) for j in range(n_crystals)]
        scattered = np.column_stack(
            [
                counts[:, j] if f is None else counts[:, j] * (f @ self.spot_share[j])
                for j, f in enumerate(factors)
            ]
        )
        beam = self.incident[y] * self.beam_share
        kept, double = self._interactions(scattered / beam[:, np.newaxis], beam)
        total = (scattered * kept).sum(axis=1) + sum(b for *_, b in double)
        crystal_scale, beam_loss = self._depletion(total, beam)
        attenuation = np.exp(-self.absorption * self.path[y])
        scale = crystal_scale * attenuation
        shifts = None if self.shifts is None else self.shifts[y]
        out, xy, amplitudes = self._background(y, (beam - beam_loss) * attenuation, shifts)
        for j, f in enumerate(factors):
            weight = counts[:, j] * kept[:, j] * scale
            if f is None and shifts is None:  # the kinematic pattern, as it is
                out += weight[:, np.newaxis, np.newaxis] * self.crystal_images[j]
            else:
                xy.append(self.spot_xy[j])
                spot = self.spot_amplitude[j] * (1.0 if f is None else f)
                amplitudes.append(weight[:, np.newaxis] * spot)
        if xy:
            amplitudes = np.concatenate(amplitudes, axis=1)
            out += _render_discs(np.concatenate(xy), amplitudes, self.size, self.sigma, shifts)
        for pair, budget in double:
            self._add_double(out, pair, factors, budget * scale, shifts)
        return np.maximum(out.reshape(len(out), -1), 0.0)

    def _add_double(self, out, pair: _Pair, factors, budget: np.ndarray, shifts) -> None:
        """Add the double-diffraction spots of ``pair`` (``budget`` (nx,) in all) to ``out``."""
        if pair.image is not None:
            out += budget[:, np.newaxis, np.newaxis] * pair.image
            return
        probes = np.flatnonzero(budget > 0)  # render only where both crystals are
        factors = [None if f is None else f[probes] for f in factors]
        amplitudes = _double_spots(pair, self.spot_share, factors, budget[probes])
        moved = None if shifts is None else shifts[probes]
        out[probes] += _render_discs(pair.xy, amplitudes, self.size, self.sigma, moved)

    def _pendellosung(self, y: int, j: int) -> np.ndarray | None:
        """(nx, n) relative intensity of each reflection of crystal ``j`` (None: kinematic)."""
        if not self.dynamical:
            return None
        t = self.thickness[y, :, j, np.newaxis]
        angle = 2 * np.pi * t / self.extinction[j] + self.phases[j]
        return 1 + self.dynamical * np.sin(angle)

    def _interactions(self, fraction: np.ndarray, beam: np.ndarray):
        """Overlap physics: the share each crystal keeps and the double-diffraction budgets.

        ``fraction`` (nx, n): each crystal's kinematic scattered fraction of the beam.  Each
        crystal keeps (1 - overlap × f) for every other crystal f (its incident beam, or its
        diffracted beams, pass the other), and overlap × f_i × f_k of the beam goes into the
        double-diffraction spots of the pair (i, k).
        """
        kept = np.ones_like(fraction)
        if not self.overlap:
            return kept, []
        f = _saturated(fraction)
        loss = 1 - self.overlap * f
        for j in range(fraction.shape[1]):
            kept[:, j] = np.prod(np.delete(loss, j, axis=1), axis=1)
        double = []
        for pair in self.pairs:
            budget = self.overlap * f[:, pair.i] * f[:, pair.k] * beam
            if np.any(budget > 0):
                double.append((pair, budget))
        return kept, double

    def _depletion(self, scattered: np.ndarray, beam: np.ndarray):
        """Factor on the crystals' counts and electrons taken from the beam (beam depletion).

        The beam loses what the crystals scatter, saturated (:func:`_saturated`) so that it
        never goes negative; the crystals' counts are scaled to match, which conserves the
        counts at full strength.
        """
        if not self.depletion:
            return np.ones_like(beam), np.zeros_like(beam)
        x = scattered / beam
        h = _saturated(x)
        ratio = np.divide(h, x, out=np.ones_like(x), where=x > 0)
        return 1 - self.depletion + self.depletion * ratio, self.depletion * h * beam

    def _background(self, y: int, beam: np.ndarray, shifts):
        """Beam and diffuse scattering of row ``y``: (nx, H, W) image, beam disc to render.

        ``beam`` (nx,): the electrons in the beam.  Returns the image of the diffuse
        scattering (and of the beam when it does not move) and lists of disc positions and
        (nx, 1) amplitudes holding the beam when ``shifts`` (nx, 2) moves it.
        """
        attenuation = np.exp(-self.absorption * self.path[y])
        out = np.zeros((self.weights.shape[1], self.size, self.size))
        xy, amplitudes = [], []
        for kind, share, image, norm in self.background:
            if kind == "beam":
                if shifts is not None:
                    xy.append(np.array([self.centre]))
                    amplitudes.append(beam[:, np.newaxis])
                    continue
                weight = beam
            else:
                weight = self.incident[y] * share * attenuation
            if shifts is not None:  # the diffuse scattering moves with the beam
                yy, xx = np.indices((self.size, self.size), dtype=float)
                cx = self.centre[0] + shifts[:, 0, np.newaxis, np.newaxis]
                cy = self.centre[1] + shifts[:, 1, np.newaxis, np.newaxis]
                k = np.hypot(xx - cx, yy - cy) * self.scale
                image = (_halo_shape(k) if kind == "halo" else _rings_shape(k)) / norm
            out += weight[:, np.newaxis, np.newaxis] * image
        return out, xy, amplitudes


def _build_physics(
    options: _Options,
    seed_sequence: np.random.SeedSequence,
    *,
    weights: np.ndarray,
    sources: np.ndarray,
    incident: np.ndarray,
    fractions: dict[str, float],
    coverage: np.ndarray,
    thickness: np.ndarray,
    reflections: list[tuple[np.ndarray, np.ndarray]],
    centre: tuple[float, float],
    scale: float,
    sigma: float,
) -> tuple[_Physics, dict]:
    """The :class:`_Physics` of a scan and what was drawn for it (for ``params``).

    Random streams: (4,) descan directions, (5,) extinction lengths and phases.
    """
    ny, nx, n_sources = weights.shape
    size = sources.shape[-1]
    n_crystals = len(reflections)
    details: dict = {}
    shifts = extinction = phases = None
    if options.descan:
        rng = np.random.default_rng(_child(seed_sequence, 4))
        shifts, details["descan"] = _descan_shifts(rng, ny, nx, options.descan)
    if options.dynamical:
        rng = np.random.default_rng(_child(seed_sequence, 5))
        extinction, phases, details["extinction"] = _extinction(rng, [a for _, a in reflections])
    spot_share = tuple(a * _on_detector(xy, size, sigma) for xy, a in reflections)
    beam_share = fractions.get("beam", _BEAM_FRACTION if "halo" in fractions else 1.0)
    if options.depletion:
        kinematic = weights[..., n_sources - n_crystals :].sum(axis=-1) / (incident * beam_share)
        details["saturation"] = {"max_kinematic_fraction": float(kinematic.max())}
    pairs = ()
    if options.overlap:
        xy = [xy for xy, _ in reflections]
        fixed = not (options.dynamical or options.descan)
        pairs = _double_diffraction_pairs(
            xy, spot_share, centre, size, sigma, options.descan, fixed
        )
        details["double_diffraction"] = {
            "crystal_pairs": [[p.i + 1, p.k + 1] for p in pairs],
            "spots": [len(p.xy) for p in pairs],
        }
    background = []
    for kind, share in fractions.items():
        if kind == "beam":
            image, norm = _render_spots(np.array([centre]), np.ones(1), size, sigma), 1.0
        else:
            raw = (_halo_shape if kind == "halo" else _rings_shape)(_radius(size, centre) * scale)
            image, norm = raw / raw.sum(), raw.sum()
        background.append((kind, share, image, norm))
    physics = _Physics(
        weights=weights,
        crystal_images=sources[n_sources - n_crystals :],
        spot_xy=tuple(xy for xy, _ in reflections),
        spot_amplitude=tuple(a for _, a in reflections),
        spot_share=spot_share,
        incident=incident,
        beam_share=beam_share,
        background=tuple(background),
        thickness=thickness,
        path=(coverage * thickness).sum(axis=-1),
        centre=tuple(centre),
        size=size,
        sigma=sigma,
        scale=scale,
        depletion=options.depletion,
        absorption=options.absorption,
        dynamical=options.dynamical,
        overlap=options.overlap,
        shifts=shifts,
        extinction=extinction,
        phases=phases,
        pairs=pairs,
    )
    return physics, details


# -- counts and the signal -------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Additive:
    """The additive model: the expected counts of a row are ``weights @ sources``."""

    weights: np.ndarray  # (ny, nx, n_sources)
    sources_flat: np.ndarray  # (n_sources, H × W)

    def expected(self, y: int) -> np.ndarray:
        """(nx, H × W) expected counts of the probes of scan row ``y``."""
        return np.maximum(self.weights[y] @ self.sources_flat, 0.0)


def _counts(
    model: _Additive | _Physics,
    rows: range,
    seed_sequence: np.random.SeedSequence,
    dtype: np.dtype,
    shape: tuple[int, int],
    detector: dict | None = None,
) -> np.ndarray:
    """Counts of scan rows ``rows`` (range); row y draws from its own seed.

    Poisson draws around ``model.expected(y)``, then the ``detector`` model (if any) with the
    same row generator.
    """
    out = np.empty((len(rows), model.weights.shape[1]) + shape, dtype=dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    for i, y in enumerate(rows):
        rng = np.random.default_rng(_child(seed_sequence, 3, y))
        counts = rng.poisson(model.expected(y)).reshape((-1,) + shape)
        if detector is not None:
            counts = _detector_response(counts, rng, detector)
        if info is not None:
            counts = np.clip(counts, max(info.min, 0), min(info.max, np.iinfo(np.int64).max))
        out[i] = counts
    return out


def _detector_response(counts: np.ndarray, rng: np.random.Generator, detector: dict) -> np.ndarray:
    """Detector output of (n, H, W) electron counts: PSF blur, gain, offset, readout noise."""
    signal = counts.astype(np.float64)
    if detector["psf_sigma"]:
        sigma = (0.0, detector["psf_sigma"], detector["psf_sigma"])
        signal = ndimage.gaussian_filter(signal, sigma=sigma, mode="reflect")
    signal = signal * detector["gain"] + detector["offset"]
    if detector["readout_noise"]:
        signal += rng.normal(0.0, detector["readout_noise"], size=signal.shape)
    return signal


def _detector_mean(expected: np.ndarray, detector: dict) -> np.ndarray:
    """Expected detector output of expected counts (..., H, W): PSF blur, gain, offset."""
    if detector["psf_sigma"]:
        sigma = (0.0,) * (expected.ndim - 2) + (detector["psf_sigma"],) * 2
        expected = ndimage.gaussian_filter(expected, sigma=sigma, mode="reflect")
    return expected * detector["gain"] + detector["offset"]


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
    model,
    sources,
    seed_sequence,
    *,
    dtype,
    detector,
    lazy,
    chunks,
    scale,
    probe_step,
    spot_sigma,
    params,
):
    """The calibrated signal of the counts of ``model`` (lazy: one delayed task per row chunk)."""
    import dask
    import dask.array as da
    import hyperspy.api as hs

    import hyperspy_nmfdecide.signals  # noqa: F401  (registers the signal type)

    ny, nx = model.weights.shape[:2]
    size = sources.shape[-1]
    shape = sources.shape[1:]
    n_sources = len(sources)
    if lazy:
        if chunks is None:
            row_bytes = nx * size * size * dtype.itemsize
            chunks = max(1, min(ny, (32 * 2**20) // row_bytes))
        blocks = []
        for y0 in range(0, ny, chunks):
            rows = range(y0, min(ny, y0 + chunks))
            part = dask.delayed(_counts, pure=True)(
                model, rows, seed_sequence, dtype, shape, detector
            )
            blocks.append(da.from_delayed(part, (len(rows), nx) + shape, dtype=dtype))
        data = da.concatenate(blocks, axis=0)
    else:
        data = _counts(model, range(ny), seed_sequence, dtype, shape, detector)

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
    units = "counts" if detector is None else "detector units"
    signal.metadata.Signal.quantity = f"Intensity ({units})"
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
