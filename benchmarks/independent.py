"""An independent ground-truth suite: 4D-STEM scans from pyxem's own simulators.

Our accuracy suite (``benchmarks/accuracy.py``, "own") draws every scan from our simulator,
:mod:`hyperspy_nmfdecide.data`.  The scans here come from generators we did not write, so that
the defaults of ``nmf_sweep`` → ``decide_k`` → ``phase_maps`` are also measured on data whose
conventions (beam, offset, noise, spot shapes, layouts) were chosen by someone else.  Nothing
here imports :mod:`hyperspy_nmfdecide.data`.

Generators
----------
``crystal_stem`` (:func:`crystal_stem_scan`)
    ``pyxem.data.dummy_data.CrystalSTEMSimulation``: ``num_crystals`` nanocrystals of one phase
    (pyxem's ``si_phase``, ``fe_fcc_phase``, ``fe_bcc_phase`` or an hcp Mg phase built here),
    each an irregular blob of probes (they overlap) at a random zone-axis orientation and
    in-plane angle, its kinematic spots drawn as flat discs of ``radius`` pixels.  The direct
    beam is a spot of every crystal pattern (listed twice by diffsims, each time stronger than
    any reflection: it holds 72-99 % of a pattern's counts in the suite): vacuum probes have
    no beam, overlaps two.  ``make_4d_stem`` draws
    Poisson counts, multiplies them by ``electron_gain`` and adds uniform noise in
    ``[0, noise_level)`` to every pixel.  Its ``num_electrons`` is per pixel *at unit
    intensity*; here it is set from ``dose``, the mean expected electrons of a single-crystal
    pattern (averaged over the crystals of the scan): ``num_electrons = dose / mean_i sum(P_i)``
    with ``P_i`` the rendered pattern of crystal i at ``num_electrons = 1``.
    Ground truth: ``sim.real_space_vectors[i]`` are the (row, column) probes of crystal i
    (``make_4d_stem`` fills ``arr[row, column]``), and ``P_i`` is rendered from
    ``sim.coordinates[i]`` with the ``add_disk`` call of ``make_4d_stem``; every generated scan
    is checked: a pixel whose expected value is 0 holds the uniform noise alone.
``simulated_overlap`` (:func:`crystal_stem_scan` with ``pyxem_function=True``)
    pyxem's dataset function ``pyxem.data.simulated_overlap`` as it is (Fe fcc, crystal size 10
    probes, gain 1, its own calibration), seeded; its ground truth comes from a second
    ``CrystalSTEMSimulation`` built from the same seed (the same random draws), checked as above.
``grains`` (:func:`grain_scan`)
    pyxem's ``si_grains`` (random orientations), ``si_grains_simple`` (the [001], [011], [111]
    and [112] zones) and ``fe_multi_phase_grains`` (``num_grains`` bcc and ``num_grains`` fcc
    grains at random orientations): noise-free float patterns (Gaussian spots, beam included)
    on a grain map grown from seeded random points.  Made realistic here: optionally binned
    ``binning`` × ``binning`` (``si_grains`` renders Si at 0.01 Å⁻¹ per pixel, so 64² patterns
    are 128² binned 2 × 2), each pattern scaled to ``dose`` expected electrons, Poisson counts
    drawn (``numpy.random.default_rng(seed)``), times ``gain``.  Ground truth: their seeded
    layout code is re-run to get the grain map, and every grain's probes are checked to hold
    one identical pattern (a grain whose seed point was taken by a later grain is absent).

Each generator seeds the global ``numpy.random`` and ``random`` modules (pyxem's simulators draw
from them) with ``seed`` and leaves them seeded.

Ground-truth convention
-----------------------
A scan is the noise-free model ``weights @ sources`` plus noise.  ``sources`` holds every
distinct pattern, normalised to sum 1; ``weights`` the expected signal of each source at each
probe, in data units (electrons × gain).  The uniform noise of ``make_4d_stem`` has mean
``noise_level / 2`` at every pixel of every probe: it is a flat *offset* source (index 0,
``background_index``) with the same weight everywhere, and vacuum probes hold it alone.

``true_k`` is the rank of the noise-free model: the number of non-negative sources an NMF needs
to reproduce it.  It counts every distinct crystal or grain pattern, plus one for the offset
when the scan has one **and** its map is not a sum of crystal maps, which holds in every
``crystal_stem`` scan: vacuum probes hold the offset without any crystal, so no crystal
component can carry it and an NMF without a flat component cannot fit vacuum (nor the offset
under a crystal, which would otherwise be counted twice at overlaps).  Why count it at all: it
is part of the data as the generator defines it (mean ``noise_level / 2`` on every pixel, 0.05
to 0.25 electrons per pixel here, 200-1000 electrons per pattern), as a detector's dark offset
is.  The direct beam is *not* a source of its own: in these generators it comes with each
crystal pattern, so its map is a sum of crystal maps, and a component holding the beam alone is
not needed (it would be, as in our own simulator, if the beam were also in vacuum or lost
intensity to the crystals).  The grain scans have no offset and one grain per probe:
``true_k`` = the grains present (an offset there would be absorbed into every grain pattern,
its map being the sum of theirs).  ``true_k`` is computed as the rank of ``weights`` after
checking that the sources are linearly independent.

``labels`` numbers the distinct sets of crystals present (0 = none); ``presence_threshold`` is
0.5 because every weight is 0 or a constant.  ``beam_mask`` marks the direct beam's pixels (a
disc of ``params["beam_radius"]`` pixels: the disc radius + 1 for flat discs, 3 σ for Gaussian
spots) at its true position, for scoring patterns with the beam left out and for the
quickstart configuration's hand-set mask.

The suite
---------
:data:`SUITE`, 13 scans of 1-10 s each (``python benchmarks/independent.py`` prints this table).
e⁻/cryst.: expected electrons of one crystal's pattern (the range over its crystals; overlaps
hold the sum, vacuum none); offset: the uniform offset's mean, electrons per pattern; non-beam:
share of a crystal's counts outside ``beam_mask`` (range over its crystals); num_e:
``make_4d_stem``'s ``num_electrons`` (electrons per pixel at unit intensity).

==  ================================  ====  ====  =========  ====  ====  ======  ===========  ======
 #  generator, crystals or grains     scan  det.  e⁻/cryst.  gain  k     offset  non-beam %   num_e
==  ================================  ====  ====  =========  ====  ====  ======  ===========  ======
 0  crystal_stem si, 2                32²   64²   1684-2316  1     3     205     1.4-28.3     0.0152
 1  crystal_stem fe_fcc, 3            32²   64²   498-501    1     3     0       8.1-8.6      0.0111
 2  crystal_stem fe_bcc, 4            40²   64²   4892-5186  8     5     1024    3.5-8.9      0.4600
 3  crystal_stem mg_hcp, 5            40²   64²   946-1088   0.3   5     0       2.5-15.2     0.1700
 4  crystal_stem si, 6                48²   64²   4921-5196  1     7     205     1.4-6.6      0.0445
 5  crystal_stem fe_fcc, 3 (r 5)      32²   128²  1999-2003  1     4     819     8.4-8.6      0.0162
 6  simulated_overlap fe_fcc, 3       48²   64²   993-1010   1     4     205     8.2-9.7      0.0080
 7  si_grains, 4 (binned 2 × 2)       32²   64²   50         1     4     0       12.4-28.8
 8  si_grains, 6 (binned)             40²   64²   500        8     6     0       15.3-28.3
 9  si_grains, 2 (binned)             48²   64²   100        1     2     0       14.4-21.5
10  si_grains_simple, 4               32²   128²  200        0.3   4     0       29.5-49.4
11  fe_multi_phase_grains, 2 + 2      32²   64²   1000       1     4     0       2.6-33.2
12  fe_multi_phase_grains, 3 + 3      32²   64²   2000       8     6     0       1.1-25.0
==  ================================  ====  ====  =========  ====  ====  ======  ===========  ======

k: ``true_k``; r 5: spot discs of radius 5 (else 3).  Overlap (≥ 2 crystals) covers 5-16 % of
the ``crystal_stem`` scans and vacuum 74-84 %.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "QUICK",
    "SUITE",
    "IndependentScan",
    "crystal_stem_scan",
    "describe",
    "grain_scan",
    "make_scan",
    "print_suite",
]

#: Phases of ``crystal_stem`` scans: pyxem's own, and an hcp phase built here.
PHASES = ("si", "fe_fcc", "fe_bcc", "mg_hcp")
#: pyxem's grain generators, by function name: (Gaussian σ of their spots in pixels, Å⁻¹ per
#: pixel, whether the pattern is flipped up-down after rendering).
GRAIN_GENERATORS = {
    "si_grains": (5.0, 0.01, True),
    "si_grains_simple": (5.0, 0.01, True),
    "fe_multi_phase_grains": (3.0, 0.02, False),
}
#: A crystal is present where its weight exceeds this fraction of its maximum.
PRESENCE_THRESHOLD = 0.5


@dataclass(repr=False)
class IndependentScan:
    """A scan from a pyxem generator and its ground truth (cf. ``data.SimulatedScan``).

    Attributes
    ----------
    signal : NMFDecideDiffraction2D
        The scan, float32, signal type ``"nmf_decide"``; signal axes ``ky``, ``kx`` in Å⁻¹ with
        k = 0 at the true direct beam; navigation axes ``y``, ``x`` (probe units, ``px``).
    sources : numpy.ndarray
        (n_sources, H, W) noise-free pattern of each source, summing to 1.
    weights : numpy.ndarray
        (ny, nx, n_sources) expected signal of each source at each probe (electrons × gain).
    labels : numpy.ndarray
        (ny, nx) int, 0 where no crystal is present, else a key of ``label_sets``.
    label_sets : dict of int to tuple of int
        Label -> indices (into ``sources``) of the crystal sources present.
    source_names : list of str
        ``"offset"`` (when present) then one name per crystal or grain.
    background_index : int or None
        Index of the offset source, present at every probe, or None.
    true_k : int
        Rank of the noise-free model (see the module docstring).
    dose : float
        Mean expected electrons of a single-crystal (or grain) pattern.
    beam_mask : numpy.ndarray
        (H, W) bool, the direct beam's pixels.
    params : dict
        Generator name and arguments, seed, ``presence_threshold``, ``beam_radius``, the
        calibration and derived figures (JSON-serialisable).
    """

    signal: object
    sources: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    label_sets: dict[int, tuple[int, ...]]
    source_names: list[str]
    background_index: int | None
    true_k: int
    dose: float
    beam_mask: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def overlap(self) -> np.ndarray:
        """(ny, nx) bool: two or more crystals present."""
        table = np.zeros(int(self.labels.max(initial=0)) + 1, dtype=bool)
        for label, members in self.label_sets.items():
            table[label] = len(members) >= 2
        return table[self.labels]

    def noise_free(self) -> np.ndarray:
        """(ny, nx, H, W) expected signal, ``weights @ sources``."""
        n, h, w = self.sources.shape
        flat = self.weights @ self.sources.reshape(n, h * w)
        return flat.reshape(self.weights.shape[:-1] + (h, w))


# -- crystal_stem ----------------------------------------------------------------------------


def _phase(name: str):
    """The orix phase called ``name`` (one of :data:`PHASES`)."""
    from pyxem.data import fe_bcc_phase, fe_fcc_phase, si_phase

    if name == "mg_hcp":
        from diffpy.structure import Atom, Lattice, Structure
        from orix.crystal_map import Phase

        lattice = Lattice(3.209, 3.209, 5.211, 90, 90, 120)
        atoms = [
            Atom("Mg", xyz, lattice=lattice) for xyz in ((1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.75))
        ]
        return Phase(name="Mg", space_group=194, structure=Structure(atoms, lattice))
    makers = {"si": si_phase, "fe_fcc": fe_fcc_phase, "fe_bcc": fe_bcc_phase}
    if name not in makers:
        raise ValueError(f"phase must be one of {PHASES}, got {name!r}")
    return makers[name]()


def _render_crystal(coordinates, size: int, k_range: float, radius: float) -> np.ndarray:
    """One crystal's pattern at one electron per pixel and unit intensity, as ``make_4d_stem``."""
    from pyxem.data.dummy_data.make_overlapping_nanocrystals import add_disk

    scale = (size / 2) / k_range
    image = np.zeros((size, size))
    for v in coordinates:
        image = add_disk(image, center=v[:2] * scale + size / 2, radius=radius, intensity=v[2])
    return image


def crystal_stem_scan(
    *,
    phase: str = "si",
    num_crystals: int = 3,
    crystal_size: int = 6,
    real_space_pixels: int = 32,
    recip_space_pixels: int = 64,
    dose: float = 1000.0,
    gain: float = 1.0,
    noise: float = 0.1,
    radius: int = 3,
    seed: int = 0,
    pyxem_function: bool = False,
    rotations=None,
) -> IndependentScan:
    """A scan of overlapping nanocrystals from pyxem's ``CrystalSTEMSimulation``.

    Parameters
    ----------
    phase : str
        One of :data:`PHASES`.
    num_crystals : int
        Number of crystals.
    crystal_size : int
        Blob radius in probes (≤ 10, and ``real_space_pixels > 2 (crystal_size + 5)``: pyxem
        draws the centres in that margin; a larger blob would wrap around the scan edge).
    real_space_pixels : int
        Scan side, probes.
    recip_space_pixels : int
        Pattern side, pixels (k = ±1 Å⁻¹ at the edges).
    dose : float
        Mean expected electrons of a single-crystal pattern (sets ``num_electrons``).
    gain : float
        ``electron_gain``: every electron counts ``gain``.
    noise : float
        ``noise_level`` in electrons: the uniform noise is in ``[0, noise × gain)``; 0 for none.
    radius : int
        Disc radius of the spots, pixels.
    seed : int
        Seeds ``numpy.random`` and ``random``.
    pyxem_function : bool
        Generate the data with ``pyxem.data.simulated_overlap`` itself, which fixes
        ``phase="fe_fcc"``, ``crystal_size=10`` and ``gain=1``.
    rotations : orix.quaternion.Rotation, optional
        The orientations the crystals are drawn from (default pyxem's: a 1° grid of cubic
        beam directions, about 1100, whose simulation takes a few seconds).

    Returns
    -------
    IndependentScan
    """
    from pyxem.data.dummy_data import CrystalSTEMSimulation

    if pyxem_function and (
        (phase, crystal_size, gain) != ("fe_fcc", 10, 1) or rotations is not None
    ):
        raise ValueError(
            "simulated_overlap is fixed to phase 'fe_fcc', crystal_size 10, gain 1, pyxem's "
            "rotations"
        )
    if not (crystal_size <= 10 and real_space_pixels > 2 * (crystal_size + 5)):
        raise ValueError(
            f"crystal_size {crystal_size} does not fit a scan of {real_space_pixels} probes"
        )
    size, k_range, noise_level = recip_space_pixels, 1.0, noise * gain
    np.random.seed(seed)
    random.seed(seed)
    sim = CrystalSTEMSimulation(
        _phase(phase),
        num_crystals=num_crystals,
        k_range=k_range,
        crystal_size=crystal_size,
        real_space_pixels=real_space_pixels,
        recip_space_pixels=size,
        rotations=rotations,
    )
    patterns = np.array([_render_crystal(c, size, k_range, radius) for c in sim.coordinates])
    num_electrons = dose / float(patterns.sum(axis=(1, 2)).mean())
    if pyxem_function:
        from pyxem.data import simulated_overlap

        np.random.seed(seed)  # the same draws again, now inside pyxem's dataset function
        random.seed(seed)
        data = simulated_overlap(
            real_space_pixels=real_space_pixels,
            num_crystals=num_crystals,
            noise_level=noise_level,
            num_electrons=num_electrons,
            radius=radius,
            recip_space_pixels=size,
            k_range=k_range,
        ).data
    else:
        data = sim.make_4d_stem(
            num_electrons=num_electrons, electron_gain=gain, noise_level=noise_level, radius=radius
        )
    presence = np.zeros((real_space_pixels, real_space_pixels, num_crystals), dtype=bool)
    for i, probes in enumerate(sim.real_space_vectors):
        presence[probes[:, 0], probes[:, 1], i] = True

    totals = patterns.sum(axis=(1, 2))
    crystal_weights = presence * (num_electrons * gain * totals)
    sources = patterns / totals[:, None, None]
    names = [f"crystal {i + 1} ({phase})" for i in range(num_crystals)]
    if noise_level > 0:
        offset = np.full((1, size, size), 1.0 / size**2)
        sources = np.concatenate([offset, sources])
        weights = np.concatenate(
            [np.full(presence.shape[:2] + (1,), noise_level / 2 * size**2), crystal_weights],
            axis=-1,
        )
        names, background_index = ["offset"] + names, 0
    else:
        weights, background_index = crystal_weights, None
    first = 0 if background_index is None else 1
    _check_alignment(data, presence, patterns, noise_level)

    beam_radius = radius + 1.0
    beam = _disc(size, (size / 2, size / 2), beam_radius)
    params = {
        "generator": "simulated_overlap" if pyxem_function else "crystal_stem",
        "layout": "overlapping",
        "pyxem": "pyxem.data.simulated_overlap"
        if pyxem_function
        else "pyxem.data.dummy_data.CrystalSTEMSimulation",
        "phase": phase,
        "num_crystals": num_crystals,
        "crystal_size": crystal_size,
        "real_space_pixels": real_space_pixels,
        "recip_space_pixels": size,
        "k_range": k_range,
        "dose": dose,
        "gain": gain,
        "noise": noise,
        "noise_level": noise_level,
        "radius": radius,
        "seed": seed,
        "num_electrons": num_electrons,
        "beam_radius": beam_radius,
        "rotation_indices": sim.random_rotations.tolist(),
        "inplane_angles": sim.random_inplane.tolist(),
        "centres": sim.centers.tolist(),
    }
    return _finish(
        data, sources, weights, first, names, background_index, beam, params, k_scale=1 / (size / 2)
    )


def _check_alignment(data, presence, patterns, noise_level: float) -> None:
    """Raise unless every pixel where no crystal is expected holds the uniform noise alone."""
    flat = patterns.reshape(len(patterns), -1)
    for row in range(data.shape[0]):
        empty = (presence[row].astype(float) @ flat).reshape(data[row].shape) == 0
        values = data[row][empty]
        if np.any(values >= noise_level) if noise_level > 0 else np.any(values != 0):
            raise AssertionError(f"ground truth does not line up with the data in scan row {row}")


# -- grains ----------------------------------------------------------------------------------


def _grain_map(seed: int, size: int, n_grains: int) -> np.ndarray:
    """pyxem's seeded grain layout (``si_grains_from_orientations``), re-run: 1..n, 0 = none."""
    import skimage

    rng = np.random.default_rng(seed)
    x = rng.integers(0, size, size=n_grains)
    y = rng.integers(0, size, size=n_grains)
    navigator = np.zeros((size, size))
    for i in range(n_grains):
        navigator[x[i], y[i]] = i + 1
    return skimage.segmentation.expand_labels(navigator, distance=size).astype(int)


def grain_scan(
    generator: str = "si_grains",
    *,
    num_grains: int = 4,
    size: int = 32,
    recip_pixels: int = 128,
    binning: int = 1,
    dose: float = 1000.0,
    gain: float = 1.0,
    seed: int = 0,
) -> IndependentScan:
    """A grain scan from pyxem's ``si_grains``, ``si_grains_simple`` or ``fe_multi_phase_grains``.

    Parameters
    ----------
    generator : str
        A key of :data:`GRAIN_GENERATORS`.
    num_grains : int
        Grains (``si_grains``), grains per phase (``fe_multi_phase_grains``: 2 × as many);
        ignored by ``si_grains_simple`` (4 grains).
    size : int
        Scan side, probes.
    recip_pixels : int
        Pattern side as rendered by pyxem, pixels.
    binning : int
        Detector binning applied before the counts are drawn (a divisor of ``recip_pixels``).
    dose : float
        Expected electrons per pattern.
    gain : float
        Every electron counts ``gain``.
    seed : int
        Seeds ``numpy.random`` (orientations), pyxem's layout and the Poisson draws.

    Returns
    -------
    IndependentScan
    """
    import pyxem.data

    if generator not in GRAIN_GENERATORS:
        raise ValueError(f"generator must be one of {tuple(GRAIN_GENERATORS)}, got {generator!r}")
    if recip_pixels % binning:
        raise ValueError(f"binning {binning} does not divide recip_pixels {recip_pixels}")
    sigma, k_scale, flipped = GRAIN_GENERATORS[generator]
    function = getattr(pyxem.data, generator)
    np.random.seed(seed)
    random.seed(seed)
    kwargs = {"seed": seed, "size": size, "recip_pixels": recip_pixels}
    if generator == "si_grains_simple":
        n_grains = 4
    else:
        kwargs["num_grains"] = num_grains
        n_grains = num_grains * (2 if generator == "fe_multi_phase_grains" else 1)
    clean = function(**kwargs).data
    grain_map = _grain_map(seed, size, n_grains)
    if np.any(grain_map == 0):
        raise ValueError(f"seed {seed}: pyxem's layout leaves probes without a grain")
    if binning > 1:
        b, side = binning, recip_pixels // binning
        clean = clean.reshape(size, size, side, b, side, b).sum(axis=(3, 5))
    present = [g for g in range(1, n_grains + 1) if np.any(grain_map == g)]
    patterns = []
    for g in present:
        block = clean[grain_map == g]
        if not np.all(block == block[0]):
            raise AssertionError(f"grain {g} of the re-run layout holds more than one pattern")
        patterns.append(block[0])
    patterns = np.array(patterns)
    sources = patterns / patterns.sum(axis=(1, 2), keepdims=True)
    labels = np.zeros((size, size), dtype=int)
    for j, g in enumerate(present):
        labels[grain_map == g] = j + 1
    weights = np.zeros((size, size, len(present)))
    for j in range(len(present)):
        weights[..., j] = (labels == j + 1) * dose * gain
    rng = np.random.default_rng(seed)
    data = rng.poisson(np.einsum("yxn,nhw->yxhw", weights / gain, sources)) * float(gain)

    if generator == "fe_multi_phase_grains":
        names = [f"grain {g} ({'bcc' if g <= num_grains else 'fcc'})" for g in present]
    else:
        names = [f"grain {g} (Si)" for g in present]
    # diffsims puts the beam at pixel (R // 2, R // 2) (row, column); si_* then flip up-down.
    row = recip_pixels - 1 - recip_pixels // 2 if flipped else recip_pixels // 2
    beam_rc = ((row + 0.5) / binning - 0.5, (recip_pixels // 2 + 0.5) / binning - 0.5)
    beam_radius = 3 * sigma / binning
    side = recip_pixels // binning
    params = {
        "generator": generator,
        "layout": "grains",
        "pyxem": f"pyxem.data.{generator}",
        "num_grains": num_grains,
        "grains_present": len(present),
        "size": size,
        "recip_pixels": recip_pixels,
        "binning": binning,
        "dose": dose,
        "gain": gain,
        "seed": seed,
        "spot_sigma": sigma / binning,
        "beam_radius": beam_radius,
        "beam_position": list(beam_rc),
    }
    return _finish(
        data,
        sources,
        weights,
        0,
        names,
        None,
        _disc(side, beam_rc, beam_radius),
        params,
        k_scale=k_scale * binning,
        beam_rc=beam_rc,
    )


# -- shared ----------------------------------------------------------------------------------


def _disc(size: int, centre_rc, radius: float) -> np.ndarray:
    """(size, size) bool disc of ``radius`` pixels around ``centre_rc`` (row, column)."""
    yy, xx = np.indices((size, size))
    return (yy - centre_rc[0]) ** 2 + (xx - centre_rc[1]) ** 2 <= radius**2


def _finish(
    data,
    sources,
    weights,
    first_crystal,
    names,
    background_index,
    beam_mask,
    params,
    *,
    k_scale,
    beam_rc=None,
) -> IndependentScan:
    """Labels, true k, the calibrated signal and the scan object."""
    import hyperspy.api as hs

    import hyperspy_nmfdecide.signals  # noqa: F401  (registers the signal type)

    ny, nx, n = weights.shape
    size = sources.shape[-1]
    if np.linalg.matrix_rank(sources.reshape(n, -1)) < n:
        raise ValueError("two sources are linearly dependent (identical crystal patterns?)")
    present = weights[..., first_crystal:] > PRESENCE_THRESHOLD * weights[..., first_crystal:].max(
        axis=(0, 1)
    )
    keys = [
        tuple(int(j) + first_crystal for j in np.flatnonzero(p))
        for p in present.reshape(-1, n - first_crystal)
    ]
    sets = sorted({key for key in keys if key}, key=lambda key: (len(key), key))
    label_of = {key: i + 1 for i, key in enumerate(sets)}
    labels = np.array([label_of.get(key, 0) for key in keys], dtype=int).reshape(ny, nx)
    true_k = int(np.linalg.matrix_rank(weights.reshape(-1, n)))

    if beam_rc is None:
        beam_rc = (size / 2, size / 2)
    axes = [
        {"name": "y", "size": ny, "scale": 1.0, "offset": 0.0, "units": "px", "navigate": True},
        {"name": "x", "size": nx, "scale": 1.0, "offset": 0.0, "units": "px", "navigate": True},
    ] + [
        {
            "name": name,
            "size": size,
            "scale": k_scale,
            "offset": -centre * k_scale,
            "units": r"$\AA^{-1}$",
            "navigate": False,
        }
        for name, centre in (("ky", beam_rc[0]), ("kx", beam_rc[1]))
    ]
    signal = hs.signals.Signal2D(np.asarray(data, dtype=np.float32), axes=axes)
    signal.set_signal_type("nmf_decide")
    signal.metadata.General.title = f"{params['pyxem']} (seed {params['seed']})"
    counts = weights[..., first_crystal:].sum(axis=(0, 1))
    outside = [float(sources[j][~beam_mask].sum()) for j in range(first_crystal, n)]
    single = float(np.mean(counts / np.maximum(present.sum(axis=(0, 1)), 1)))
    params = params | {
        "presence_threshold": PRESENCE_THRESHOLD,
        "true_k": true_k,
        "k_scale": k_scale,
        "non_beam_fraction": outside,
        "mean_signal_per_probe": float(weights.sum(axis=-1).mean()),
        "single_crystal_signal": single,
    }
    params = json.loads(json.dumps(params))
    signal.metadata.set_item("Simulation.parameters", json.dumps(params))
    return IndependentScan(
        signal=signal,
        sources=sources,
        weights=weights,
        labels=labels,
        label_sets={label: key for key, label in label_of.items()},
        source_names=names,
        background_index=background_index,
        true_k=true_k,
        dose=float(params["dose"]),
        beam_mask=beam_mask,
        params=params,
    )


def _stem(phase, n, nav, size, dose, gain, noise, seed, *, crystal_size=6, radius=3):
    """One ``crystal_stem`` entry of :data:`SUITE`."""
    return {
        "generator": "crystal_stem",
        "phase": phase,
        "num_crystals": n,
        "real_space_pixels": nav,
        "recip_space_pixels": size,
        "dose": dose,
        "gain": gain,
        "noise": noise,
        "seed": seed,
        "crystal_size": crystal_size,
        "radius": radius,
    }


def _grains(function, n, nav, size, dose, gain, seed, *, binning=1):
    """One grain entry of :data:`SUITE` (``size``: pattern side after ``binning``)."""
    return {
        "generator": function,
        "num_grains": n,
        "size": nav,
        "recip_pixels": size * binning,
        "binning": binning,
        "dose": dose,
        "gain": gain,
        "seed": seed,
    }


#: The suite: the argument of :func:`make_scan` for each scan.  ``dose``: expected electrons of
#: a one-crystal pattern; ``noise``: the uniform offset's upper bound in electrons (0: none);
#: ``n``: crystals, or grains (per phase for ``fe_multi_phase_grains``; ``si_grains_simple``
#: always has 4).
# fmt: off
SUITE: list[dict] = [
    #      phase      n  nav  size  dose  gain  noise  seed
    _stem("si",       2,  32,  64,  2000,  1.0,  0.1,   1),
    _stem("fe_fcc",   3,  32,  64,   500,  1.0,  0.0,   2),
    _stem("fe_bcc",   4,  40,  64,  5000,  8.0,  0.5,   3, crystal_size=7),
    _stem("mg_hcp",   5,  40,  64,  1000,  0.3,  0.0,   4, crystal_size=7),
    _stem("si",       6,  48,  64,  5000,  1.0,  0.1,   5, crystal_size=8),
    _stem("fe_fcc",   3,  32, 128,  2000,  1.0,  0.1,   6, radius=5),
    _stem("fe_fcc",   3,  48,  64,  1000,  1.0,  0.1,   7, crystal_size=10, radius=5)
    | {"generator": "simulated_overlap"},
    #        function                  n  nav  size  dose  gain  seed
    _grains("si_grains",               4,  32,  64,    50,  1.0,   8, binning=2),
    _grains("si_grains",               6,  40,  64,   500,  8.0,   9, binning=2),
    _grains("si_grains",               2,  48,  64,   100,  1.0,  14, binning=2),
    _grains("si_grains_simple",        4,  32, 128,   200,  0.3,  10),
    _grains("fe_multi_phase_grains",   2,  32,  64,  1000,  1.0,  11),
    _grains("fe_multi_phase_grains",   3,  32,  64,  2000,  8.0,  13),
]
# fmt: on
#: Indices into :data:`SUITE` of ``--quick`` runs.
QUICK = [0, 1, 7, 11]


_GENERATORS = {
    "crystal_stem": crystal_stem_scan,
    "simulated_overlap": lambda **kw: crystal_stem_scan(pyxem_function=True, **kw),
} | {name: functools.partial(grain_scan, name) for name in GRAIN_GENERATORS}


def make_scan(spec: dict) -> IndependentScan:
    """The scan of one entry of :data:`SUITE`.

    Parameters
    ----------
    spec : dict
        ``generator`` (``"crystal_stem"``, ``"simulated_overlap"`` or a key of
        :data:`GRAIN_GENERATORS`) and the keyword arguments of its function.

    Returns
    -------
    IndependentScan
    """
    spec = dict(spec)
    return _GENERATORS[spec.pop("generator")](**spec)


def describe(scan: IndependentScan) -> str:
    """A one-line description of a scan of the suite.

    Parameters
    ----------
    scan : IndependentScan

    Returns
    -------
    str
    """
    p = scan.params
    nav = "x".join(map(str, scan.labels.shape))
    side = scan.sources.shape[-1]
    if p["layout"] == "grains":
        what = f"{p['generator']} {p['grains_present']} grains"
    else:
        what = f"{p['generator']} {p['phase']} {p['num_crystals']} cryst"
        what += f" off {p['noise']:g}" if p["noise"] else " no-off"
    return f"{what} {nav} {side}² {p['dose']:g}e g{p['gain']:g}"


def print_suite() -> None:
    """Print every scan of :data:`SUITE` with its truth and what it takes to see it."""
    import time

    print(
        f"{'#':>2s} {'scan':56s} {'true k':>6s} {'e-/crystal':>11s} {'offset':>6s} "
        f"{'overlap':>7s} {'vacuum':>6s} {'non-beam':>15s} {'num_e':>7s} {'s':>4s}"
    )
    for i, spec in enumerate(SUITE):
        start = time.perf_counter()
        scan = make_scan(spec)
        p = scan.params
        first = 0 if scan.background_index is None else 1
        crystal = scan.weights[..., first:].max(axis=(0, 1)) / p["gain"]  # electrons per pattern
        offset = scan.weights[0, 0, 0] / p["gain"] if first else 0.0
        outside = p["non_beam_fraction"]
        print(
            f"{i:>2d} {describe(scan):56s} {scan.true_k:>6d} "
            f"{crystal.min():>5.0f}-{crystal.max():<5.0f} {offset:>6.0f} "
            f"{scan.overlap.mean():>7.1%} {np.mean(scan.labels == 0):>6.1%} "
            f"{min(outside):>6.1%}-{max(outside):<6.1%} "
            f"{p.get('num_electrons', float('nan')):>7.4f} {time.perf_counter() - start:>4.1f}",
            flush=True,
        )


if __name__ == "__main__":
    print_suite()
