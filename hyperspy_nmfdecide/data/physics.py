"""The non-additive physics: expected counts computed probe by probe from the spots.

Beam depletion, absorption, descan, dynamical-like (Pendellösung) intensities and overlap
physics (mutual attenuation and double diffraction) of
:func:`~hyperspy_nmfdecide.data.simulated_scan`; which of them are on is an
:class:`~.options._Options`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .background import _BEAM_FRACTION, _halo_shape, _rings_shape
from .options import _Options
from .render import _on_detector, _radius, _render_discs, _render_spots
from .seeds import _STREAM_DESCAN, _STREAM_DYNAMICAL, _child

__all__ = ["_Physics", "_build_physics"]

_XI_STRONGEST = 0.5  # extinction length of the strongest reflection, nominal thickness units
_XI_MAX = 20.0  # longest extinction length (the weakest reflections barely oscillate)
_DD_SPOTS = 30  # strongest reflections of each crystal combined in double diffraction
_DD_MIN_SHARE = 0.01  # ... with at least this share of the crystal's strongest one


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
    """The :class:`_Physics` of a scan and what was drawn for it (for ``params``)."""
    n_sources = weights.shape[-1]
    size = sources.shape[-1]
    n_crystals = len(reflections)
    shifts, extinction, phases, details = _physics_draws(
        options, seed_sequence, weights.shape[:2], reflections
    )
    spot_share = tuple(a * _on_detector(xy, size, sigma) for xy, a in reflections)
    beam_share = fractions.get("beam", _BEAM_FRACTION if "halo" in fractions else 1.0)
    if options.depletion:
        kinematic = weights[..., n_sources - n_crystals :].sum(axis=-1) / (incident * beam_share)
        details["saturation"] = {"max_kinematic_fraction": float(kinematic.max())}
    pairs = ()
    if options.overlap:
        pairs, details["double_diffraction"] = _overlap_pairs(
            options, reflections, spot_share, centre, size, sigma
        )
    physics = _Physics(
        weights=weights,
        crystal_images=sources[n_sources - n_crystals :],
        spot_xy=tuple(xy for xy, _ in reflections),
        spot_amplitude=tuple(a for _, a in reflections),
        spot_share=spot_share,
        incident=incident,
        beam_share=beam_share,
        background=_background_images(fractions, size, centre, scale, sigma),
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


def _overlap_pairs(
    options: _Options,
    reflections: list[tuple[np.ndarray, np.ndarray]],
    spot_share: tuple[np.ndarray, ...],
    centre: tuple[float, float],
    size: int,
    sigma: float,
) -> tuple[tuple[_Pair, ...], dict]:
    """The double-diffraction pairs of the crystals and their description for ``params``.

    Their pattern is rendered once when it is the same at every probe (no dynamical
    intensities, no descan).
    """
    xy = [xy for xy, _ in reflections]
    fixed = not (options.dynamical or options.descan)
    pairs = _double_diffraction_pairs(xy, spot_share, centre, size, sigma, options.descan, fixed)
    details = {
        "crystal_pairs": [[p.i + 1, p.k + 1] for p in pairs],
        "spots": [len(p.xy) for p in pairs],
    }
    return pairs, details


def _physics_draws(
    options: _Options,
    seed_sequence: np.random.SeedSequence,
    nav_shape: tuple[int, int],
    reflections: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray | None, tuple | None, tuple | None, dict]:
    """The random parts of the physics, each from its own stream, and their description.

    Returns the descan shifts, the extinction lengths and the phases (None when off) and what
    ``params`` records of them.
    """
    details: dict = {}
    shifts = extinction = phases = None
    if options.descan:
        rng = np.random.default_rng(_child(seed_sequence, _STREAM_DESCAN))
        shifts, details["descan"] = _descan_shifts(rng, *nav_shape, options.descan)
    if options.dynamical:
        rng = np.random.default_rng(_child(seed_sequence, _STREAM_DYNAMICAL))
        extinction, phases, details["extinction"] = _extinction(rng, [a for _, a in reflections])
    return shifts, extinction, phases, details


def _background_images(
    fractions: dict[str, float], size: int, centre: tuple[float, float], scale: float, sigma: float
) -> tuple[tuple[str, float, np.ndarray, float], ...]:
    """(kind, share of the incident, unit image, normaliser) of each background part.

    The normaliser is the sum of the unnormalised halo or rings on the detector (1 for the
    beam), so that a shifted part is normalised as the unshifted one.
    """
    background = []
    for kind, share in fractions.items():
        if kind == "beam":
            image, norm = _render_spots(np.array([centre]), np.ones(1), size, sigma), 1.0
        else:
            raw = (_halo_shape if kind == "halo" else _rings_shape)(_radius(size, centre) * scale)
            image, norm = raw / raw.sum(), raw.sum()
        background.append((kind, share, image, norm))
    return tuple(background)


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
