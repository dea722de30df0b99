"""Deciding the number of components from a sweep, in two levels (Cao et al., SI "Global plan").

* **Level 1** — the elbow of the minimum-MSE-vs-k curve (:func:`elbow_k`).
* **Level 2** — where extra components start fitting noise:

  - the *noise edge* (:func:`noise_spectrum`, the default decision): the noise of every
    binned pixel is measured between neighbouring probes, with its mean–variance relation
    (:mod:`hyperspy_nmfdecide.noise`: a detector's gain, dark offset and readout noise are
    measured, not assumed), each pixel is divided by its noise standard deviation, and the
    singular values are compared with the largest singular value of a noise twin (random signs
    times each entry's noise: the variance of every entry, no structure).  The energy of the
    two spectra beyond the top components checks the measurement.  A component counts when its
    squared singular value clears the edge by a margin of four standard deviations of the
    Tracy-Widom fluctuation of the largest noise eigenvalue
    (:attr:`NoiseSpectrum.default_margin`).  Non-negative sources with independent maps are
    linearly independent, so this rank is the number of NMF components a fit needs; of the
    components of that fit, variants of a phase (thickness, dynamical intensities) and
    interactions of two (spots only where they overlap) are then not counted
    (:mod:`hyperspy_nmfdecide.components`).  When the edge cannot be trusted (noise-free data,
    a measurement that does not match the data's noise floor) the decision falls back on the
    stability of the factorisations (:func:`stable_k`).
  - image-quality metrics (:mod:`hyperspy_nmfdecide.iqa`) between raw and reconstructed
    patterns, and between the reconstructions at k and k + 1, on a seeded sample of probes
    (:func:`iqa_evidence`); ``method="iqa"`` decides from them alone (the smallest k after
    which SSIM between raw and reconstructed stops rising), as Cao et al. read them;
  - the residual's NSD against the measured noise level (about 1 once the residual is noise);
  - restart agreement: the share of random restarts that reach the minimum MSE, and how alike
    the components of the two best runs are once matched.

No HyperSpy import happens here (DESIGN §1); X is read through the sweep's chunk operator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import iqa
from .nmf.operators import DenseOperator
from .nmf.svd import truncated_svd
from .nmf.sweep import SweepArrays
from .noise import BinnedView, NoiseModel, estimate_noise
from .phases import count_phases
from .similarity import cosine_similarity

_logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "MIN_K_VALUES",
    "Decision",
    "KRangeWarning",
    "NoiseSpectrum",
    "Verdict",
    "choose_k",
    "component_agreement",
    "elbow_k",
    "evaluate",
    "iqa_evidence",
    "noise_spectrum",
    "restart_agreement",
    "stable_k",
]

#: Methods of :func:`choose_k`.
METHODS = ("noise", "elbow", "iqa")

#: Fewest values of k a decision reads: an elbow needs two ends and a point between them.
MIN_K_VALUES = 3


class KRangeWarning(UserWarning):
    """The swept k range does not bracket the decision: sweep again over the suggested range."""


#: Smallest margin a component must clear the noise edge by, whatever the scan size (Tracy-Widom
#: fluctuations shrink with size; the noise model is never exact).
MIN_MARGIN = 1.03

#: Standard deviations of the noise edge's fluctuation a component must clear.
EDGE_SIGMAS = 4.0

#: The noise edge is measured on patterns binned to about this many pixels a side (see
#: :class:`~hyperspy_nmfdecide.noise.BinnedView`); on the accuracy suite 64-pixel patterns
#: binned 4 × 4 found components at 50 electrons per pattern that 2 × 2 binning left in the
#: noise.
BINNED_SIDE = 16

#: Extra singular values computed beyond the largest k swept (they measure the noise tail).
TAIL_RANK = 20

#: The noise edge is trusted while the data's tail energy over the twin's lies in this range.
#: Within it the edge is scaled by that ratio (the measured noise over- or under-estimated by
#: structure between neighbouring probes: e.g. ×0.4 on a scan whose probes are unrelated).
NOISE_SCALE_RANGE = (0.25, 4.0)

#: Components of the fit that must be variants or interactions before they are not counted.
#: One alone is as often the fit splitting a faint phase instead of separating another faint
#: source (on pyxem's simulations of crystals of one phase, 2 of 13 scans lost a true source
#: so); several are a systematic effect the noise edge counted (multislice and dynamical
#: scans: 3-6 at the noise edge's k).
MIN_DEPENDENT = 2

#: Matched cosine similarity of the two best runs' components above which they agree
#: (:func:`stable_k`, the fallback when the noise edge cannot be trusted).
STABLE_AGREEMENT = 0.9

#: ``method="iqa"``: SSIM(raw, model) has stopped rising once a step adds less than this share
#: of its whole rise over the swept k.
IQA_FLAT = 0.02

#: A restart "reaches the minimum" when its MSE is within this relative distance of the best.
AGREEMENT_RTOL = 1e-3

#: IQA metrics computed between raw and reconstructed patterns.
FIDELITY_METRICS = ("psnr", "ssim", "gmsd", "mdsi")


# -- level 1 --------------------------------------------------------------------------------------
def elbow_k(k_values: Sequence[int], loss: Sequence[float]) -> int:
    """The elbow of a loss-vs-k curve: the point farthest from the chord of its log.

    The rule of HyperSpy's ``estimate_elbow_position`` (Satopää et al. 2011, "Kneedle") on k
    values that need not start at 1; written here so that the numerics do not import HyperSpy
    (``tests/test_decide.py`` checks that both agree).

    Parameters
    ----------
    k_values : sequence of int
        Ascending, evenly spaced numbers of components (at least 3).
    loss : sequence of float
        Positive loss at each k (the sweep's ``best_loss``).

    Returns
    -------
    int
        The k at the elbow.

    Examples
    --------
    >>> elbow_k([1, 2, 3, 4, 5, 6], [100.0, 30.0, 10.0, 9.0, 8.5, 8.2])
    3
    """
    k = np.asarray(k_values, dtype=float)
    if k.size < MIN_K_VALUES:
        raise ValueError(f"an elbow needs at least {MIN_K_VALUES} values of k, got {k.size}")
    y = np.log(np.clip(np.asarray(loss, dtype=float), 1e-300, None))
    distance = np.abs((k[-1] - k[0]) * (y[0] - y) - (k[0] - k) * (y[-1] - y[0]))
    return int(k_values[int(np.argmax(distance))])


# -- level 2: the noise edge ----------------------------------------------------------------------
@dataclass
class NoiseSpectrum:
    """Singular values of the noise-scaled data against the edge of pure noise.

    Attributes
    ----------
    squared_singular_values : numpy.ndarray
        (rank,) largest squared singular values of the scaled data, descending.
    noise_edge : float
        Largest squared singular value of the noise twin (the data's own noise, no
        structure), same scaling.
    noise_scale : float
        Energy of the data beyond the computed singular values over that of the twin: about 1
        when the measured noise describes the data's noise floor; the edge is scaled by it.
    shape : tuple of int
        (rows, binned pixels) of the scaled matrix: sets the Tracy-Widom margin.
    binning : int
        Side of the square bins the patterns were summed in.
    noise : NoiseModel or None
        The noise measured between neighbouring probes (None for a spectrum built by hand).
    """

    squared_singular_values: np.ndarray
    noise_edge: float
    noise_scale: float
    shape: tuple[int, int]
    binning: int = 1
    noise: NoiseModel | None = None

    @property
    def ratio(self) -> np.ndarray:
        """(rank,) each component's squared singular value over the noise edge."""
        return self.squared_singular_values / (self.noise_scale * self.noise_edge)

    @property
    def default_margin(self) -> float:
        """``1 +`` :data:`EDGE_SIGMAS` standard deviations of the ratio of a noise component.

        The largest eigenvalue of an n × p noise matrix fluctuates around the edge with the
        Tracy-Widom law, relative standard deviation ``1.27 (n^-1/2 + p^-1/2)^(1/3) /
        (n^1/2 + p^1/2)`` (Johnstone 2001); the data and its noise twin each fluctuate, hence
        the factor sqrt(2).  At least :data:`MIN_MARGIN`.

        Examples
        --------
        >>> round(NoiseSpectrum(np.ones(3), 1.0, 1.0, (1024, 256)).default_margin, 3)
        1.068
        """
        n, p = (float(v) for v in self.shape)
        relative = 1.27 * (n**-0.5 + p**-0.5) ** (1 / 3) / (n**0.5 + p**0.5)
        return float(max(MIN_MARGIN, 1 + EDGE_SIGMAS * np.sqrt(2) * relative))

    def n_components(self, margin: float | None = None) -> int:
        """How many components clear the noise edge by ``margin`` (default: the default)."""
        above = self.ratio > (self.default_margin if margin is None else margin)
        return int(np.argmin(above)) if not above.all() else int(above.size)

    def problem(self) -> str | None:
        """Why this noise edge cannot be trusted, or None.

        The edge is trusted when the noise could be measured (at least
        :data:`~hyperspy_nmfdecide.noise.MIN_PROBES` probes), the data hold noise (not a
        noise-free simulation) and the noise measured between neighbouring probes matches the
        energy left in the data beyond
        its top components to within a factor :data:`NOISE_SCALE_RANGE` (neighbouring probes
        that differ by more than noise — a scan step coarser than the structure — or noise
        correlated in ways binning does not absorb break that).
        """
        if self.noise is not None and not self.noise.measured:
            return f"{self.shape[0]} probes are too few to measure the noise"
        if self.noise is not None and self.noise.noise_free:
            return "the data hold no noise between neighbouring probes (a noise-free simulation?)"
        low, high = NOISE_SCALE_RANGE
        if not low <= self.noise_scale <= high:
            return (
                f"the noise measured between neighbouring probes is {1 / self.noise_scale:.2g}× "
                "the data's noise floor (outside "
                f"{low:g}-{high:g}): neighbouring probes differ by more than noise"
            )
        return None


def noise_spectrum(
    operator,
    rank: int,
    *,
    pattern_shape: tuple[int, int] | None = None,
    binning: int = 1,
    random_state: int = 0,
) -> NoiseSpectrum:
    """The top ``rank`` squared singular values of the noise-scaled data and the noise edge.

    The noise is measured from the data (:func:`hyperspy_nmfdecide.noise.estimate_noise`:
    neighbouring probes, per binned pixel, with its mean–variance relation), each binned pixel
    is divided by its noise standard deviation, and the singular values are compared with
    those of the noise twin (random signs times each entry's noise).  Counts of any gain, dark
    offsets, readout noise and blur within a bin are all measured, not assumed.

    Parameters
    ----------
    operator
        A :class:`~hyperspy_nmfdecide.nmf.operators.DenseOperator` over the kept data, its
        rows in scan order (neighbouring rows are neighbouring probes).
    rank
        Singular values wanted (the largest k of interest; :data:`TAIL_RANK` more are computed
        to measure the noise tail).
    pattern_shape, binning
        (H, W) of one pattern and the side of the square bins the patterns are summed in
        first; binning preserves the rank of the noise-free data and, since spots span several
        pixels, raises each component above the noise (``binning=1``: none).
    random_state
        Seed of the random test matrices and of the random signs.

    Returns
    -------
    NoiseSpectrum

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> rng = np.random.default_rng(0)
    >>> w = np.repeat(rng.gamma(1.0, 1.0, (100, 3)), 4, axis=0)  # maps even over 4 probes
    >>> h = rng.gamma(0.3, 3.0, (3, 300))
    >>> counts = 7.0 * rng.poisson(w @ h) + 20.0      # gain 7, dark offset 20
    >>> spectrum = noise_spectrum(DenseOperator(counts), 6)
    >>> spectrum.n_components()  # the offset is one more source, present everywhere
    4
    >>> round(spectrum.noise.gain), round(spectrum.noise.offset)
    (7, 20)
    """
    if pattern_shape is None:
        pattern_shape, binning = (1, operator.full_shape[1]), 1
    view = BinnedView(operator, pattern_shape, binning)
    model = estimate_noise(view)
    scaled = view.scaled_to(model.column_variance)
    n, p = scaled.shape
    width = min(rank + TAIL_RANK, n, p)
    svd = truncated_svd(scaled, width, oversample=10, random_state=random_state)
    twin = scaled.twin(model, entropy=random_state)
    twin_svd = truncated_svd(twin, width, oversample=10, random_state=random_state + 1)
    squared = svd.s.astype(np.float64) ** 2
    noise_squared = twin_svd.s.astype(np.float64) ** 2
    # Beyond the top ``width`` directions both hold noise only: the ratio of their energies
    # checks (and corrects) the measured noise level.
    tail = scaled.squared_norm() - float(squared.sum())
    noise_tail = twin.squared_norm() - float(noise_squared.sum())
    scale = tail / noise_tail if width < min(n, p) and noise_tail > 0 and tail > 0 else 1.0
    return NoiseSpectrum(
        squared[:rank], float(noise_squared[0]), float(scale), (n, p), binning, model
    )


# -- level 2: image quality -----------------------------------------------------------------------
def iqa_evidence(
    raw: np.ndarray,
    models: Mapping[int, np.ndarray],
    *,
    pixel_mask: np.ndarray | None = None,
    noise: tuple[float, float] = (1.0, 0.0),
) -> dict[str, np.ndarray]:
    """IQA of every reconstruction against the raw patterns, and of neighbouring k.

    Parameters
    ----------
    raw : numpy.ndarray
        (m, H, W) raw patterns of a sample of probes.
    models : mapping of int to numpy.ndarray
        Per k, the (m, H, W) reconstructions of the same probes.
    pixel_mask : numpy.ndarray, optional
        (H, W) bool, True = excluded: set to zero in every image before comparison.
    noise : tuple of float
        ``(gain, c)``: a pixel of expected intensity m has the noise variance
        ``gain × m + c`` (:class:`~hyperspy_nmfdecide.noise.NoiseModel`; (1, 0) for counts).

    Returns
    -------
    dict of str to numpy.ndarray
        Per k (ascending): the mean over the sample of ``psnr``, ``ssim``, ``gmsd``, ``mdsi``
        (raw vs model; ``data_range`` = the sample's maximum raw count), ``next_ssim`` and
        ``next_psnr`` (model at k vs model at the next k; NaN for the last), and
        ``residual_nsd_ratio`` (NSD of raw − model over the noise level
        ``sqrt(gain × mean(model) + c)`` of the pattern; about 1 once the residual is noise).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.zeros((8, 16, 16))
    >>> truth[:, 6:10, 6:10] = 50.0
    >>> raw = rng.poisson(truth + 1.0).astype(float)
    >>> table = iqa_evidence(raw, {1: np.ones_like(raw), 2: truth + 1.0})
    >>> bool(table["ssim"][1] > table["ssim"][0]), round(float(table["residual_nsd_ratio"][1]))
    (True, 1)
    """
    ks = sorted(models)
    raw = np.array(raw, dtype=np.float64)
    keep = None if pixel_mask is None else ~np.asarray(pixel_mask, dtype=bool)
    if keep is not None:
        # np.where, not a product: a NaN in an excluded pixel is no concern of the metrics.
        raw = np.where(keep, raw, 0.0)
    if not np.isfinite(raw).all():
        raise ValueError("raw patterns contain NaN or infinite values")
    data_range = float(raw.max())
    if not data_range > 0:
        raise ValueError("the sampled raw patterns are all zero: nothing to compare")
    out = {name: np.full(len(ks), np.nan) for name in FIDELITY_METRICS}
    out |= {name: np.full(len(ks), np.nan) for name in ("next_ssim", "next_psnr")}
    out["residual_nsd_ratio"] = np.full(len(ks), np.nan)
    previous = None
    for i, k in enumerate(ks):
        model = np.array(models[k], dtype=np.float64)
        if model.shape != raw.shape:
            raise ValueError(f"model at k={k} has shape {model.shape}, raw {raw.shape}")
        if keep is not None:
            model = model * keep
        for name in FIDELITY_METRICS:
            out[name][i] = float(np.mean(iqa.batch(name, raw, model, data_range=data_range)))
        gain, zero = noise
        level = np.sqrt(np.maximum(gain * model.mean(axis=(1, 2)) + zero, np.finfo(float).tiny))
        nsd = iqa.batch("nsd", model, raw, data_range=data_range)  # std of raw − model
        out["residual_nsd_ratio"][i] = float(np.mean(nsd / level))
        if previous is not None:
            out["next_ssim"][i - 1] = float(
                np.mean(iqa.batch("ssim", previous, model, data_range=data_range))
            )
            out["next_psnr"][i - 1] = float(
                np.mean(iqa.batch("psnr", previous, model, data_range=data_range))
            )
        previous = model
    return out


def restart_agreement(loss: np.ndarray, best_loss: np.ndarray) -> np.ndarray:
    """(n_k,) share of restarts whose MSE is within :data:`AGREEMENT_RTOL` of the best."""
    loss = np.asarray(loss, dtype=float)
    best = np.asarray(best_loss, dtype=float)[:, None]
    return np.mean(loss <= best * (1 + AGREEMENT_RTOL), axis=1)


def component_agreement(factors: np.ndarray, other: np.ndarray) -> float:
    """Mean cosine similarity of two runs' factors after matching them one to one.

    Near 1 while every component is a source the restarts all find; lower once components
    fit noise, which each restart fits differently.

    Examples
    --------
    >>> f = np.eye(3)
    >>> component_agreement(f, f[[2, 0, 1]]), round(component_agreement(f, np.ones((3, 3))), 3)
    (1.0, 0.577)
    """
    similarity = cosine_similarity(factors, other)
    rows, cols = linear_sum_assignment(-similarity)
    return float(similarity[rows, cols].mean())


# -- the decision ---------------------------------------------------------------------------------
@dataclass
class Verdict:
    """What :func:`choose_k` concludes: the k, the level-1 elbow, and why.

    ``fallback`` names the rule used when the method's own could not be trusted
    (``"stability"`` or ``"iqa"``), else None.
    """

    k: int
    elbow_k: int
    method: str
    reason: str
    suggested_range: tuple[int, int] | None = None
    fallback: str | None = None


@dataclass
class Decision(Verdict):
    """Everything :func:`evaluate` found: the verdict and the evidence it rests on.

    Attributes
    ----------
    k, elbow_k, method, reason, suggested_range, fallback
        The :class:`Verdict`.
    k_values : numpy.ndarray
        The sweep's k values.
    columns : dict of str to numpy.ndarray
        Every piece of evidence per k (see :func:`evaluate`).
    spectrum : NoiseSpectrum or None
        The data's singular values against the noise edge, with the measured noise.
    params : dict
        ``n_sample``, ``margin``, ``binning``, ``random_state`` as used.
    """

    k_values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    spectrum: NoiseSpectrum | None = None
    params: dict = field(default_factory=dict)


def choose_k(
    k_values: Sequence[int],
    best_loss: Sequence[float],
    *,
    method: str = "noise",
    spectrum: NoiseSpectrum | None = None,
    fidelity: Mapping[str, np.ndarray] | None = None,
    margin: float | None = None,
    roles: Mapping[int, list[dict]] | None = None,
) -> Verdict:
    """Pick k from the evidence.

    Parameters
    ----------
    k_values, best_loss
        The sweep's k values (at least 3, ascending) and minimum MSE per k.
    method : {"noise", "elbow", "iqa"}
        ``"noise"``: the number of components above the noise edge (needs ``spectrum``).
        When the edge cannot be trusted (:meth:`NoiseSpectrum.problem`), the decision falls
        back on the stability of the factorisations (:func:`stable_k`, needs ``fidelity``)
        and ``reason`` says so.
        ``"elbow"``: level 1 alone.  ``"iqa"``: the smallest k after which SSIM between raw
        and reconstructed rises by less than :data:`IQA_FLAT` of its whole rise (needs
        ``fidelity`` from :func:`iqa_evidence`).
    spectrum : NoiseSpectrum, optional
        From :func:`noise_spectrum`.
    fidelity : mapping, optional
        Per-k evidence: :func:`iqa_evidence` and ``component_agreement``.
    margin
        Factor by which a component must clear the noise edge (default:
        :attr:`NoiseSpectrum.default_margin`).
    roles : mapping of int to list of dict, optional
        Per k, the role of each component of the fit
        (:func:`~hyperspy_nmfdecide.components.component_roles`).  With ``"noise"``, the
        components of the fit at the k the noise edge (or the fallback) gives that are
        variants of a phase or interactions of two are not counted when there are at least
        :data:`MIN_DEPENDENT` of them: the decision is the number of phases (and background)
        among them.

    Returns
    -------
    Verdict
        ``suggested_range`` is set when the sweep does not bracket the answer.

    Examples
    --------
    >>> spectrum = NoiseSpectrum(np.array([90.0, 12.0, 3.0, 1.02, 1.0]), 1.0, 1.0, (900, 400))
    >>> d = choose_k([2, 3, 4, 5, 6], [5.0, 2.0, 1.1, 1.05, 1.0], spectrum=spectrum)
    >>> d.k, d.elbow_k
    (3, 4)
    """
    verdict = _choose_k(
        k_values,
        best_loss,
        method=method,
        spectrum=spectrum,
        fidelity=fidelity,
        margin=margin,
        roles=roles,
    )
    return _swept(verdict, [int(k) for k in k_values])


def _swept(verdict: Verdict, ks: list[int]) -> Verdict:
    """The verdict at a k the sweep holds: the nearest swept k when it is not, and why.

    A k that was never swept has no factorisation to map; the nearest swept k (the smaller on
    a tie) is used, ``suggested_range`` asks for a sweep that holds the answer, and the reason
    says so.
    """
    if verdict.k in ks:
        return verdict
    nearest = min(ks, key=lambda k: (abs(k - verdict.k), k))
    low, high = max(1, verdict.k - 2), verdict.k + 2
    reason = (
        f"k = {nearest}: the nearest swept k to {verdict.k}, which the sweep (k = "
        f"{', '.join(map(str, ks))}) does not hold — sweep k = {low}..{high} to map it. "
        f"{verdict.reason}"
    )
    return Verdict(nearest, verdict.elbow_k, verdict.method, reason, (low, high), verdict.fallback)


def _choose_k(
    k_values: Sequence[int],
    best_loss: Sequence[float],
    *,
    method: str = "noise",
    spectrum: NoiseSpectrum | None = None,
    fidelity: Mapping[str, np.ndarray] | None = None,
    margin: float | None = None,
    roles: Mapping[int, list[dict]] | None = None,
) -> Verdict:
    """:func:`choose_k` before its answer is snapped to a swept k."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    ks = [int(k) for k in k_values]
    if len(ks) < MIN_K_VALUES:
        raise ValueError(
            f"deciding k needs a sweep over at least {MIN_K_VALUES} values of k, got {ks}: "
            "run nmf_sweep over a range such as range(1, 10)"
        )
    best = np.asarray(best_loss, dtype=float)
    if not np.isfinite(best).all():
        raise ValueError("the sweep's best loss contains NaN or infinite values")
    elbow = elbow_k(ks, best)
    if method == "elbow":
        return Verdict(
            elbow, elbow, method, f"k = {elbow}: the elbow of the minimum-MSE curve (level 1)."
        )
    if method == "iqa":
        return _decide_iqa(ks, elbow, fidelity)
    if spectrum is None:
        raise ValueError("method='noise' needs the noise spectrum")
    margin = spectrum.default_margin if margin is None else margin
    wanted = spectrum.n_components(margin)
    edge_text = _edge_reason(spectrum, wanted, margin)
    problem = spectrum.problem()
    if problem is not None and fidelity is not None:
        stable = stable_k(ks, fidelity)
        if stable is not None:
            reason = (
                f"k = {stable}: the largest k at which the two best factorisations agree "
                f"(matched components' cosine ≥ {STABLE_AGREEMENT:g}) — used because {problem} "
                f"({edge_text}); the level-1 elbow is at k = {elbow}."
            )
            decision = Verdict(stable, elbow, method, reason, fallback="stability")
        else:
            decision = _decide_iqa(ks, elbow, fidelity)
            decision.reason = decision.reason[:-1] + f" — used because {problem} ({edge_text})."
            decision.method, decision.fallback = method, "iqa"
        return _phases_only(decision, roles, ks, fidelity)
    k = int(np.clip(wanted, ks[0], ks[-1]))
    reason = f"k = {k}: {edge_text}; the level-1 elbow is at k = {elbow}."
    if spectrum.noise is not None:
        reason += f" Noise measured between neighbouring probes: {spectrum.noise.describe()}"
        if abs(np.log(spectrum.noise_scale)) > np.log(1.2):
            reason += f", scaled ×{spectrum.noise_scale:.2g} to the data's noise floor"
        reason += "."
    decision = _phases_only(Verdict(k, elbow, method, reason), roles, ks, fidelity)
    # A sweep that stops below the count is too short unless the fit at its top already holds
    # fewer phases than components (the rest are variants and interactions).
    if (wanted > ks[-1] and decision.k == ks[-1]) or (wanted < ks[0] and ks[0] > 1):
        low, high = max(1, min(ks[0], wanted - 2)), max(ks[-1], wanted + 2)
        decision.suggested_range = (low, high)
        decision.reason += (
            f" The sweep (k = {ks[0]}..{ks[-1]}) does not bracket {wanted}: sweep "
            f"k = {low}..{high}."
        )
    return decision


def _phases_only(
    decision: Verdict,
    roles: Mapping[int, list[dict]] | None,
    ks: list[int],
    evidence: Mapping[str, np.ndarray] | None,
) -> Verdict:
    """The decision less the components of its fit that are variants or interactions.

    The count is the ``phases`` column of ``evidence``
    (:func:`~hyperspy_nmfdecide.phases.count_phases`: phases, the background, and a background
    the fit spread over the phases).  It replaces the decision only when at least
    :data:`MIN_DEPENDENT` components of the fit are variants or interactions.
    """
    rows = (roles or {}).get(decision.k)
    dependent = [r for r in rows or [] if r["role"] in ("variant", "interaction")]
    if len(dependent) < MIN_DEPENDENT or evidence is None or "phases" not in evidence:
        return decision
    count = int(np.asarray(evidence["phases"])[ks.index(decision.k)])
    if count >= decision.k:
        return decision
    words = [
        f"{r['component']} a variant of {r['parents'][0]}"
        if r["role"] == "variant"
        else f"{r['component']} an interaction of {r['parents'][0]} and {r['parents'][1]}"
        for r in dependent
    ]
    k = max(count, ks[0])
    reason = (
        f"k = {k}: at k = {decision.k} component{'s' * (len(words) > 1)} {', '.join(words)} "
        "(the same phase at another thickness, or spots that exist only where two phases "
        f"overlap), so it holds {count} phases with the background"
        + (f" (the sweep starts at k = {ks[0]})" if k > count else "")
        + f". {decision.reason}"
    )
    return Verdict(
        k, decision.elbow_k, decision.method, reason, decision.suggested_range, decision.fallback
    )


def _edge_reason(spectrum: NoiseSpectrum, wanted: int, margin: float) -> str:
    """How many components clear the noise edge, in words."""
    ratio = spectrum.ratio
    if wanted == 0:
        return (
            f"no component rises above the noise edge (the largest at {ratio[0]:.2f}×; "
            f"margin {margin:.3g}×)"
        )
    verb = "rises" if wanted == 1 else "rise"
    text = (
        f"{wanted} component{'s' * (wanted > 1)} of the noise-scaled data {verb} above the "
        f"noise edge (the {_ordinal(wanted)} at {ratio[wanted - 1]:.2f}× the edge"
    )
    if wanted < ratio.size:
        text += f", the next at {ratio[wanted]:.2f}×, noise"
    return text + f"; margin {margin:.3g}×)"


def stable_k(k_values: Sequence[int], evidence: Mapping[str, np.ndarray]) -> int | None:
    """The largest k up to which the two best factorisations agree, or None without evidence.

    While every component is a source, restarts find the same components (matched cosine
    near 1); once components fit noise, or split a source in ways the data do not pin down,
    each restart does it differently.  The answer is the last k of the first run of k values
    whose ``component_agreement`` is at least :data:`STABLE_AGREEMENT`.

    Examples
    --------
    >>> stable_k([2, 3, 4, 5], {"component_agreement": np.array([1.0, 0.99, 0.97, 0.62])})
    4
    """
    agreement = np.asarray(evidence.get("component_agreement", []), dtype=float)
    if agreement.size != len(k_values) or not np.isfinite(agreement).any():
        return None
    below = np.flatnonzero(~(agreement >= STABLE_AGREEMENT))
    if not below.size:
        return int(k_values[-1])
    return int(k_values[max(int(below[0]) - 1, 0)])


def _decide_iqa(ks: list[int], elbow: int, fidelity) -> Verdict:
    if fidelity is None:
        raise ValueError("method='iqa' needs the IQA evidence")
    ssim = np.asarray(fidelity["ssim"], dtype=float)
    if not np.isfinite(ssim).all():
        raise ValueError("the SSIM evidence contains NaN: cannot decide from IQA")
    rise = float(ssim.max() - ssim[0])
    steps = np.diff(ssim)
    flat = np.flatnonzero(steps < IQA_FLAT * rise) if rise > 0 else np.array([0])
    index = int(flat[0]) if flat.size else len(ks) - 1
    k = ks[index]
    reason = (
        f"k = {k}: SSIM between raw and reconstructed patterns rises by less than "
        f"{IQA_FLAT:.0%} of its whole rise from k = {k} on; the level-1 elbow is at k = {elbow}."
    )
    return Verdict(k, elbow, "iqa", reason)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# -- everything at once, for the signal method ----------------------------------------------------
def evaluate(
    sweep: SweepArrays,
    data,
    *,
    pattern_shape: tuple[int, int],
    scan_shape: tuple[int, int] | None = None,
    row_mask: np.ndarray | None = None,
    col_mask: np.ndarray | None = None,
    negative_values: str = "raise",
    chunk_rows: int | None = None,
    method: str = "noise",
    n_sample: int = 128,
    margin: float | None = None,
    binning: int | None = None,
    random_state: int = 0,
    progress: Callable[[], None] | None = None,
) -> Decision:
    """Gather the evidence of every level for a sweep and decide.

    Parameters
    ----------
    sweep
        The sweep's arrays (:class:`~hyperspy_nmfdecide.nmf.sweep.SweepArrays`): k values,
        the MSE of every restart, and per k the kept fit in full space, (k, n_pixel) factors
        and (n_probe, k) loadings, and the second-best run's factors.
    data
        The (n_probe, n_pixel) numpy or dask matrix the sweep was fitted to.
    pattern_shape
        (H, W) of one pattern.
    scan_shape
        (ny, nx) of the scan (both ≥ 2): the fits at every k are then read for the components
        that are not phases (:func:`~hyperspy_nmfdecide.phases.count_phases`, the ``phases``
        column), which :func:`choose_k` does not count.
    row_mask, col_mask, negative_values, chunk_rows
        As the sweep used them.
    method, margin
        See :func:`choose_k`.
    n_sample
        Probes (seeded sample) on which the IQA metrics are computed.
    binning
        Bin side for the noise spectrum (default: patterns binned to about
        :data:`BINNED_SIDE` pixels a side).
    random_state
        Seed of the sample and of the noise spectrum (an int, so the decision is reproducible).
    progress
        Called with no argument after each step: the noise spectrum, the IQA metrics, then
        each k (``len(k_values) + 2`` calls in all).

    Returns
    -------
    Decision
        The verdict of :func:`choose_k` with its evidence: ``columns`` holds per k
        ``best_mse``, ``mean_mse``, ``restart_agreement``, ``component_agreement`` (best vs
        second-best run, NaN without a second run), ``noise_ratio`` (the k-th component's
        squared singular value over the noise edge), ``noise_gain``, ``noise_offset``,
        :func:`iqa_evidence` and (with ``scan_shape``) ``phases``; ``spectrum`` the
        :class:`NoiseSpectrum`.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> from hyperspy_nmfdecide.nmf.sweep import run_sweep
    >>> s = simulated_scan(nav_shape=(12, 12), pattern_size=32, n_crystals=2, random_state=0).signal
    >>> x = s.data.reshape(144, 1024)
    >>> arrays = run_sweep(x, [1, 2, 3, 4], 3, random_state=0)
    >>> decision = evaluate(arrays, x, pattern_shape=(32, 32), scan_shape=(12, 12))
    >>> decision.k in (1, 2, 3, 4), sorted(decision.columns)[:2]
    (True, ['best_mse', 'component_agreement'])
    """
    ks = _check_evaluate_arguments(sweep, method, n_sample, margin, random_state)
    tick = progress or (lambda: None)
    # Normalised as the sweep's operators are (by a power of two, only outside the ordinary
    # range of intensities): at ×1e30 the float32 squares of the spectrum overflow.  The
    # spectrum is a ratio to the noise edge; the noise model is brought back to data units.
    operator = DenseOperator(
        data,
        row_mask=row_mask,
        col_mask=col_mask,
        negative_values=negative_values,
        chunk_rows=chunk_rows,
        normalise=True,
    )
    rank = min(ks[-1] + 2, *operator.shape)
    if binning is None:
        binning = max(1, min(pattern_shape) // BINNED_SIDE)
    _check_binning(binning, pattern_shape)
    spectrum = noise_spectrum(
        operator, rank, pattern_shape=pattern_shape, binning=binning, random_state=random_state
    )
    if operator.scale != 1:
        spectrum = replace(spectrum, noise=spectrum.noise.rescaled(operator.scale))
    tick()
    kept = np.flatnonzero(operator.row_keep)
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(kept, size=min(n_sample, kept.size), replace=False))
    columns = _evidence_columns(
        sweep, data, sample, spectrum, pattern_shape, col_mask, negative_values
    )
    tick()
    roles = {}
    for k in ks:
        if scan_shape is not None and min(scan_shape) >= 2:
            columns.setdefault("phases", np.zeros(len(ks)))
            count, roles[k] = count_phases(
                sweep.factors[k],
                sweep.loadings[k],
                scan_shape,
                pattern_shape,
                navigation_mask=row_mask,
            )
            columns["phases"][ks.index(k)] = count
        tick()
    verdict = choose_k(
        ks,
        sweep.best_loss,
        method=method,
        spectrum=spectrum,
        fidelity=columns,
        margin=margin,
        roles=roles,
    )
    params = {
        "n_sample": int(n_sample),
        "margin": spectrum.default_margin if margin is None else float(margin),
        "binning": spectrum.binning,
        "random_state": int(random_state),
    }
    return Decision(
        **asdict(verdict),
        k_values=np.asarray(ks),
        columns=columns,
        spectrum=spectrum,
        params=params,
    )


def _check_evaluate_arguments(sweep, method, n_sample, margin, random_state) -> list[int]:
    """The sweep's k values as ints, after checking :func:`evaluate`'s arguments."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if margin is not None and not margin > 1:
        raise ValueError(f"margin must be > 1, got {margin!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"random_state must be an int, got {random_state!r}")
    ks = [int(k) for k in sweep.k_values]
    if len(ks) < MIN_K_VALUES:
        raise ValueError(
            f"deciding k needs a sweep over at least {MIN_K_VALUES} values of k, got {ks}: "
            "run nmf_sweep over a range such as range(1, 10)"
        )
    if not isinstance(n_sample, (int, np.integer)) or n_sample < 1:
        raise ValueError(f"n_sample must be an integer ≥ 1, got {n_sample!r}")
    return ks


def _check_binning(binning, pattern_shape: tuple[int, int]) -> None:
    """A ValueError naming ``binning`` unless it leaves at least 2 × 2 bins of the pattern."""
    largest = min(pattern_shape) // 2
    if isinstance(binning, bool) or not isinstance(binning, (int, np.integer)):
        raise TypeError(f"binning must be an integer, got {binning!r}")
    if not 1 <= binning <= largest:
        raise ValueError(
            f"binning must be between 1 and {largest} for patterns of {pattern_shape[0]} × "
            f"{pattern_shape[1]} pixels (at least 2 × 2 bins), got {binning}"
        )


def _evidence_columns(
    sweep: SweepArrays,
    data,
    sample: np.ndarray,
    spectrum: NoiseSpectrum,
    pattern_shape: tuple[int, int],
    col_mask: np.ndarray | None,
    negative_values: str,
) -> dict[str, np.ndarray]:
    """The per-k evidence other than the phase count (see :func:`evaluate`)."""
    ks = [int(k) for k in sweep.k_values]
    raw = data[sample]
    raw = np.asarray(raw.compute() if hasattr(raw, "compute") else raw, dtype=np.float64)
    if negative_values == "clip":
        raw = np.maximum(raw, 0)
    shape = (sample.size, *pattern_shape)
    models = {
        k: (sweep.loadings[k][sample].astype(np.float64) @ sweep.factors[k]).reshape(shape)
        for k in ks
    }
    pixel_mask = None if col_mask is None else np.asarray(col_mask).reshape(pattern_shape)
    runner_up = sweep.runner_up or None
    columns = {
        "best_mse": np.asarray(sweep.best_loss, dtype=float),
        "mean_mse": np.asarray(sweep.loss, dtype=float).mean(axis=1),
        "restart_agreement": restart_agreement(sweep.loss, sweep.best_loss),
        "component_agreement": np.array(
            [
                component_agreement(sweep.factors[k], runner_up[k]) if runner_up else np.nan
                for k in ks
            ]
        ),
        "noise_ratio": np.array(
            [spectrum.ratio[k - 1] if k <= spectrum.ratio.size else np.nan for k in ks]
        ),
        # The noise measured between neighbouring probes, the same on every row.
        "noise_gain": np.full(len(ks), spectrum.noise.gain),
        "noise_offset": np.full(len(ks), spectrum.noise.offset),
    }
    noise = (spectrum.noise.gain, spectrum.noise.zero_variance)
    columns |= iqa_evidence(raw.reshape(shape), models, pixel_mask=pixel_mask, noise=noise)
    return columns
