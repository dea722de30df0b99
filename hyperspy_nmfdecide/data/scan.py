"""Seeded simulated 4D-STEM scans with their ground truth: :func:`simulated_scan`.

The pipeline, one stage a function: check the arguments, draw the crystal sources, lay the
crystals out over the scan, join the background source and scale the weights to the dose,
build the non-additive physics if any option asks for it, record the parameters and draw the
calibrated signal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .._utils import to_jsonable
from .arguments import _Arguments, _check_arguments
from .background import _background_parts, _background_record, _with_background
from .calibration import _calibrated_signal
from .counts import _Additive, _count_data
from .crystals import _MAX_EXCITATION_ERROR, _MAX_TILT, _RELROD_WIDTH, BEAM_ENERGY, CRYSTALS
from .layouts import _STRENGTH_RANGE, _coverage, _thickness
from .options import _options_params
from .physics import _build_physics, _Physics
from .seeds import _STREAM_CRYSTALS, _STREAM_FIELDS, _STREAM_LAYOUT, _child, _seed_sequence
from .sources import _crystal_sources, _CrystalSources
from .truth import SimulatedScan, _labels

if TYPE_CHECKING:
    from ..signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D

_logger = logging.getLogger(__name__)

__all__ = ["simulated_scan"]


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

    Each source pattern is simulated once (crystals with diffsims, see
    :mod:`hyperspy_nmfdecide.data`), the weights are laid out over the scan, and the counts are
    Poisson draws around ``weights @ sources``.  The noise of scan row ``y`` comes from its own
    seed, so eager and lazy scans are bit-identical and a lazy scan is computed chunk by chunk.

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
    # The first statement, so that locals() holds exactly the arguments.
    args = _check_arguments(_Arguments(**locals()))
    seed_sequence, seed_record = _seed_sequence(args.random_state)
    crystals = _draw_crystals(args, seed_sequence)
    # One stream for the strengths and thickness maps and then the background field, in order.
    fields_rng = np.random.default_rng(_child(seed_sequence, _STREAM_FIELDS))
    maps = _crystal_maps(args, seed_sequence, fields_rng)
    model = _sources_and_weights(args, fields_rng, crystals, maps.crystal_weights)
    physics, physics_info = _physics_of(args, seed_sequence, model, maps, crystals.reflections)
    params = _scan_params(args, seed_sequence, seed_record, crystals, maps, model, physics_info)
    signal = _signal_of(args, seed_sequence, model, physics, params)
    _logger.debug("Simulated %s", params)
    first = model.first_crystal
    labels, label_sets = _labels(model.weights[..., first:], args.presence_threshold, first)
    return SimulatedScan(
        signal=signal,
        sources=model.sources,
        weights=model.weights,
        labels=labels,
        label_sets=label_sets,
        source_names=model.source_names,
        background_index=model.background_index,
        true_k=len(model.sources),
        dose=args.dose,
        params=params,
        spots=dict(sorted(model.spots.items())),
        physics=physics,
    )


def _draw_crystals(args: _Arguments, seed_sequence: np.random.SeedSequence) -> _CrystalSources:
    """The crystal sources: the named crystals, or a seeded order of all of them."""
    rng = np.random.default_rng(_child(seed_sequence, _STREAM_CRYSTALS))
    names = args.crystals
    if names is None:
        names = [CRYSTALS[i] for i in rng.permutation(len(CRYSTALS))]
    return _crystal_sources(
        names,
        args.n_crystals,
        rng,
        args.options.shared,
        args.crystals is None,
        args.pattern_size,
        args.scale,
        args.centre,
        args.spot_sigma,
    )


class _Maps(NamedTuple):
    """Where the crystals are and how thick: (ny, nx, n_crystals) maps and their records."""

    coverage: np.ndarray  # share of each probe covered by each crystal, in [0, 1]
    thickness: np.ndarray  # local thickness factor t (about 1)
    strengths: np.ndarray  # (n_crystals,) weight of each crystal relative to the incident beam
    crystal_weights: np.ndarray  # coverage × thickness × strength, before scaling to the dose
    layout_info: dict
    gradient_info: dict | None


def _crystal_maps(
    args: _Arguments, seed_sequence: np.random.SeedSequence, fields_rng: np.random.Generator
) -> _Maps:
    """The crystals' coverage (its own stream), strengths and thickness (``fields_rng``)."""
    ny, nx = args.nav_shape
    rng = np.random.default_rng(_child(seed_sequence, _STREAM_LAYOUT))
    coverage, layout_info = _coverage(rng, args.layout, ny, nx, args.n_crystals, args.edge_width)
    strengths = fields_rng.uniform(*_STRENGTH_RANGE, size=args.n_crystals)
    ramp = args.gradient_ratio if args.layout == "gradient" else None
    thickness, gradient_info = _thickness(fields_rng, coverage, args.thickness_variation, ramp)
    crystal_weights = coverage * thickness * strengths
    return _Maps(coverage, thickness, strengths, crystal_weights, layout_info, gradient_info)


class _Model(NamedTuple):
    """The additive model: sources, weights scaled to the dose, and what they were built of."""

    sources: np.ndarray  # (n_sources, H, W), the background first if there is one
    weights: np.ndarray  # (ny, nx, n_sources) expected counts of each source
    source_names: list[str]
    background_index: int | None
    first_crystal: int  # index of crystal 1 in sources
    fractions: dict[str, float]  # share of the incident electrons in each background part
    background_range: list[float] | None  # (min, max) of the background weight field
    background_total: float  # sum of the background parts (incident weight × it = weight)
    factor: float  # weights over their unscaled values
    spots: dict[int, np.ndarray]  # source index -> true spots (x, y, share)


def _sources_and_weights(
    args: _Arguments,
    fields_rng: np.random.Generator,
    crystals: _CrystalSources,
    crystal_weights: np.ndarray,
) -> _Model:
    """The background source (if any) joined to the crystals, weights scaled to the dose."""
    centre = args.centre
    parts, fractions = _background_parts(
        args.direct_beam, args.background, args.pattern_size, centre, args.scale, args.spot_sigma
    )
    sources, weights, bg_range, total = _with_background(
        parts, args.background, fields_rng, np.stack(crystals.patterns), crystal_weights
    )
    background_index = 0 if parts else None
    first_crystal = 0 if background_index is None else 1
    weights, factor = _scaled_to_dose(weights, args.dose, args.options.depletion, first_crystal)
    spots = {first_crystal + j: table for j, table in enumerate(crystals.spots)}
    if args.direct_beam:
        spots[0] = np.array([[*centre, parts[0].sum() / total]])
    source_names = ["background"] * bool(parts) + [info["name"] for info in crystals.infos]
    return _Model(
        sources=sources,
        weights=weights,
        source_names=source_names,
        background_index=background_index,
        first_crystal=first_crystal,
        fractions=fractions,
        background_range=bg_range,
        background_total=total,
        factor=factor,
        spots=spots,
    )


def _scaled_to_dose(
    weights: np.ndarray, dose: float, depletion: float, first_crystal: int
) -> tuple[np.ndarray, float]:
    """``weights`` scaled so that the mean expected counts per pattern are ``dose``; the factor.

    With beam depletion the crystals' counts come out of the beam, so they do not add to it.
    """
    totals = weights.sum(axis=-1)
    if depletion:
        totals = totals - depletion * weights[..., first_crystal:].sum(axis=-1)
    factor = dose / totals.mean()
    return weights * factor, factor


def _physics_of(
    args: _Arguments,
    seed_sequence: np.random.SeedSequence,
    model: _Model,
    maps: _Maps,
    reflections: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[_Physics | None, dict]:
    """The non-additive physics of the scan and what was drawn for it (None, {}: additive)."""
    if not args.options.non_additive:
        return None, {}
    if model.background_index is None:
        incident = np.full(args.nav_shape, model.factor)
    else:  # the background source's weight over its sum
        incident = model.weights[..., 0] / model.background_total
    return _build_physics(
        args.options,
        seed_sequence,
        weights=model.weights,
        sources=model.sources,
        incident=incident,
        fractions=model.fractions,
        coverage=maps.coverage,
        thickness=maps.thickness,
        reflections=reflections,
        centre=args.centre,
        scale=args.scale,
        sigma=args.spot_sigma,
    )


def _scan_params(
    args: _Arguments,
    seed_sequence: np.random.SeedSequence,
    seed_record: int | str | None,
    crystals: _CrystalSources,
    maps: _Maps,
    model: _Model,
    physics_info: dict,
) -> dict:
    """``SimulatedScan.params``: every generation parameter and what was drawn, as JSON.

    Every value here is finite (the arguments are checked, the draws bounded), so
    :func:`~hyperspy_nmfdecide._utils.to_jsonable` (which writes NaN and infinities as None)
    changes no number.
    """
    gradient = args.layout == "gradient"
    crystal_info = [
        {**info, "strength": float(maps.strengths[j]), "thickness_gradient": gradient and j == 0}
        for j, info in enumerate(crystals.infos)
    ]
    params = {
        "nav_shape": list(args.nav_shape),
        "pattern_size": args.pattern_size,
        "n_crystals": args.n_crystals,
        "layout": args.layout,
        "dose": args.dose,
        "background": args.background,
        "direct_beam": bool(args.direct_beam),
        "beam_offset": list(args.beam_offset),
        "lazy": bool(args.lazy),
        "chunks": args.chunks,
        "dtype": str(args.dtype),
        "random_state": seed_record,
        "seed_entropy": str(seed_sequence.entropy),
        "k_max": args.k_max,
        "reciprocal_scale": args.scale,
        "spot_sigma": args.spot_sigma,
        "probe_step": args.probe_step,
        "beam_energy_kV": BEAM_ENERGY,
        "max_excitation_error": _MAX_EXCITATION_ERROR,
        "relrod_width": _RELROD_WIDTH,
        "max_tilt_deg": _MAX_TILT,
        "background_fractions": _background_record(args.background, args.direct_beam),
        "background_weight_range": model.background_range,
        "thickness_variation": args.thickness_variation,
        "edge_width": args.edge_width,
        "gradient_ratio": args.gradient_ratio if gradient else None,
        "gradient": maps.gradient_info,
        "presence_threshold": args.presence_threshold,
        "layout_details": maps.layout_info,
        "crystals": crystal_info,
        **_options_params(args.options, crystal_info, physics_info),
    }
    return to_jsonable(params)


def _signal_of(
    args: _Arguments,
    seed_sequence: np.random.SeedSequence,
    model: _Model,
    physics: _Physics | None,
    params: dict,
) -> NMFDecideDiffraction2D | LazyNMFDecideDiffraction2D:
    """The calibrated signal of counts drawn around the model (or the physics) of the scan."""
    sources = model.sources
    if physics is None:
        expected = _Additive(model.weights, sources.reshape(len(sources), -1))
    else:
        expected = physics
    detector = args.options.detector
    data = _count_data(
        expected, sources.shape[1:], seed_sequence, args.dtype, detector, args.lazy, args.chunks
    )
    return _calibrated_signal(
        data,
        lazy=args.lazy,
        scale=args.scale,
        probe_step=args.probe_step,
        spot_sigma=args.spot_sigma,
        detector=detector,
        true_k=len(sources),
        params=params,
    )
