"""The noise of a scan, measured from the data: between neighbouring probes, per binned pixel.

The decision's noise edge (:mod:`hyperspy_nmfdecide.decide`) compares the singular values of
the data with those of pure noise at the data's own level.  That noise must be measured, not
assumed: a detector's counts carry a gain, a dark offset and readout noise; simulations,
binned, blurred or interpolated data are not unit-gain Poisson counts.  Two neighbouring
probes hold nearly the same expected pattern and independent noise, so half the squared
difference of their patterns is the noise variance of each pixel, whatever the detector
(Poisson, gain, offset, readout, point-spread blur within a bin):

* **per binned pixel** j, ``v_j`` = mean over probe pairs of ``(x_a − x_b)² / 2`` (pairs whose
  difference holds structure — a crystal edge between them — are left out by a robust cut);
* **with the intensity**, the mean–variance relation ``variance = gain × mean + c × n_pixels``
  (c: the variance per detector pixel at zero signal; ``c = readout² − gain × offset``), fitted
  on the pairs binned by the mean of a *third* probe nearby, so the noise of the pair's own
  mean does not bias the slope (Poisson counts: gain 1, c 0).

:class:`NoiseModel` holds both; :class:`BinnedView` is the binned data scaled to unit noise
per pixel, or its noise twin: random signs times the square root of each entry's variance,
``gain × x + c`` rescaled so that every pixel's mean variance is the measured ``v_j``.  No
HyperSpy import happens here.

Examples
--------
>>> import numpy as np
>>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
>>> from hyperspy_nmfdecide.noise import BinnedView, estimate_noise
>>> rng = np.random.default_rng(0)
>>> expected = np.tile(rng.gamma(2.0, 2.0, 64), (400, 1))     # 400 probes, 8 × 8 pixels
>>> data = 5.0 * rng.poisson(expected) + 100.0                 # gain 5, dark offset 100
>>> model = estimate_noise(BinnedView(DenseOperator(data), (8, 8), 1))
>>> round(model.gain), round(model.offset, -1)
(5, 100.0)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from .nmf.chunks import DTYPE, InProcessChunks, MatrixStats

_logger = logging.getLogger(__name__)

__all__ = ["BinnedView", "NoiseModel", "estimate_noise"]

#: Groups of four probes whose two noise contrasts differ by more than this many standard
#: deviations of noise hold structure (an edge between them), not noise, and are left out.
STRUCTURE_CUT = 5.0
#: Intensity bins of the mean–variance fit, and the fewest entries a bin needs.
N_INTENSITY_BINS = 32
MIN_BIN_ENTRIES = 30
#: Largest sample of probe pairs kept for the estimate, and its memory budget (bytes per array).
MAX_PAIRS = 16384
PAIR_BUDGET = 32 * 2**20
#: Fewest probes the noise is measured on (two groups of four, one the other's reference).
MIN_PROBES = 8
#: Below this noise energy relative to the data's, the data are called noise-free.
NOISE_FREE = 1e-9
#: A pixel's measured variance replaces the mean–variance relation's value once it departs
#: from it by several of its own standard errors (see :func:`estimate_noise`).
SHRINK_SIGMAS = 3.0


@dataclass
class NoiseModel:
    """The noise of the binned data, measured between neighbouring probes.

    Attributes
    ----------
    column_variance : numpy.ndarray
        (n_bins,) noise variance of each binned pixel: the mean–variance relation at the
        pixel's mean intensity, or the variance measured on that pixel where the two differ by
        more than the measurement's own uncertainty (shrunk towards the relation by it).
    mean_pattern : numpy.ndarray
        (n_bins,) mean binned pattern over the kept probes.
    gain : float
        Slope of the mean–variance relation of the binned pixels (1 for counts).
    zero_variance : float
        Variance per detector pixel at zero signal: ``readout² − gain × offset`` (0 for counts;
        negative with a dark offset, positive with readout noise alone).
    pixels_per_bin : numpy.ndarray
        (n_bins,) detector pixels summed in each bin (masked pixels not counted).
    binning : int
        Side of the square bins.
    n_pairs, n_pairs_kept : int
        Probe pairs sampled, and those left after the cut of pairs holding structure.
    misfit : float
        Root-mean-square of the fit's residuals in units of their statistical error (about 1
        when variance is linear in the mean, as for counts with gain, offset and readout).
    intensity, variance, fitted : numpy.ndarray
        The mean–variance points (per intensity bin) and the fitted line there.
    noise_fraction : float
        Noise energy over the data's energy (0: noise-free data).
    """

    column_variance: np.ndarray
    mean_pattern: np.ndarray
    gain: float
    zero_variance: float
    pixels_per_bin: np.ndarray
    binning: int
    n_pairs: int
    n_pairs_kept: int
    misfit: float
    intensity: np.ndarray
    variance: np.ndarray
    fitted: np.ndarray
    noise_fraction: float

    @property
    def measured(self) -> bool:
        """Whether the noise was measured (False: too few probes; counts were assumed)."""
        return self.n_pairs > 0

    @property
    def noise_free(self) -> bool:
        """No noise between neighbouring probes (a simulation without noise)."""
        return self.noise_fraction < NOISE_FREE

    def modelled_variance(self) -> np.ndarray:
        """(n_bins,) the mean–variance relation at each binned pixel's mean intensity, ≥ 0."""
        return self.variance_at(self.mean_pattern)

    def variance_at(self, intensity: np.ndarray) -> np.ndarray:
        """The mean–variance relation at binned intensities (the last axis runs over bins).

        Below the dimmest intensity the relation was fitted on, it falls linearly to zero
        from its value there (the counts of a dim pixel are their own variance) instead of
        following a fitted intercept the data do not reach; never below zero.

        Examples
        --------
        >>> m = NoiseModel(np.ones(2), np.ones(2), 2.0, -1.0, np.ones(2), 1, 8, 8, 1.0,
        ...                np.array([1.0, 4.0]), np.array([1.0, 7.0]), np.array([1.0, 7.0]), 1.0)
        >>> m.variance_at(np.array([[0.5, 3.0]])).tolist()
        [[0.5, 5.0]]
        """
        intensity = np.asarray(intensity, dtype=np.float64)
        linear = self.gain * intensity + self.zero_variance * self.pixels_per_bin
        if self.intensity.size:
            lowest = float(self.intensity.min())
            at_lowest = self.gain * lowest + self.zero_variance * self.pixels_per_bin
            dim = intensity < lowest
            scaled = np.maximum(at_lowest, 0.0) * intensity / max(lowest, 1e-300)
            linear = np.where(dim, scaled, linear)
        return np.maximum(linear, 0.0)

    @property
    def offset(self) -> float:
        """Dark offset per detector pixel implied when there is no readout noise, ≥ 0."""
        return max(0.0, -self.zero_variance / self.gain) if self.gain > 0 else 0.0

    @property
    def readout_noise(self) -> float:
        """Readout noise per detector pixel implied when there is no dark offset, ≥ 0."""
        return math.sqrt(max(self.zero_variance, 0.0))

    def describe(self) -> str:
        """One phrase: the mean–variance relation measured.

        Examples
        --------
        >>> m = NoiseModel(np.ones(4), np.ones(4), 2.0, -200.0, np.ones(4), 1, 10, 10, 1.0,
        ...                np.ones(2), np.ones(2), np.ones(2), 0.1)
        >>> m.describe()
        'noise variance = 2 × intensity − 200 per pixel (gain 2, as from a dark offset of 100)'
        """
        if self.noise_free:
            return "no noise between neighbouring probes (noise-free data)"
        c = self.zero_variance
        text = f"noise variance = {self.gain:.3g} × intensity"
        text += f" {'+' if c >= 0 else '−'} {abs(c):.3g} per pixel (gain {self.gain:.3g}"
        scale = max(abs(self.gain) * float(np.median(self.intensity)), 1e-300)
        if abs(c) * float(np.median(self.pixels_per_bin)) < 1e-3 * scale:
            return text + ", no offset)"
        if c < 0:
            return text + f", as from a dark offset of {self.offset:.3g})"
        return text + f", as from readout noise of {self.readout_noise:.3g})"

    def rescaled(self, factor: float) -> NoiseModel:
        """The same noise for the data multiplied by ``factor`` (intensities ×f, variances ×f²).

        Examples
        --------
        >>> model = NoiseModel(np.ones(2), np.ones(2), 1.0, 0.0, np.ones(2), 1, 8, 8, 1.0,
        ...                    np.ones(1), np.ones(1), np.ones(1), 0.1)
        >>> model.rescaled(4.0).gain, model.rescaled(4.0).column_variance.tolist()
        (4.0, [16.0, 16.0])
        """
        f = float(factor)
        return replace(
            self,
            column_variance=self.column_variance * f**2,
            mean_pattern=self.mean_pattern * f,
            gain=self.gain * f,
            zero_variance=self.zero_variance * f**2,
            intensity=self.intensity * f,
            variance=self.variance * f**2,
            fitted=self.fitted * f**2,
        )

    def to_dict(self) -> dict:
        """JSON-ready summary (arrays of the fit as lists)."""
        return {
            "gain": float(self.gain),
            "zero_variance": float(self.zero_variance),
            "offset": float(self.offset),
            "readout_noise": float(self.readout_noise),
            "binning": int(self.binning),
            "n_pairs": int(self.n_pairs),
            "n_pairs_kept": int(self.n_pairs_kept),
            "misfit": float(self.misfit),
            "noise_fraction": float(self.noise_fraction),
            "intensity": [float(v) for v in self.intensity],
            "variance": [float(v) for v in self.variance],
            "fitted": [float(v) for v in self.fitted],
        }


class BinnedView(InProcessChunks):
    """The kept data with patterns binned ``factor × factor``, as a chunk operator.

    Binning sums spots' counts coherently while the noise adds at random, and leaves the rank
    of the noise-free data unchanged.  ``col_scale`` divides each binned pixel (set by
    :meth:`scaled_to`); a view made by :meth:`twin` yields the noise twin instead of the data.
    What :func:`~hyperspy_nmfdecide.nmf.svd.truncated_svd` reads.

    Parameters
    ----------
    operator
        A :class:`~hyperspy_nmfdecide.nmf.operators.DenseOperator` over the kept data.
    pattern_shape : tuple of int
        (H, W) of one pattern.
    factor : int
        Bin side (1: no binning).
    """

    def __init__(self, operator, pattern_shape: tuple[int, int], factor: int) -> None:
        if not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"binning must be an integer ≥ 1, got {factor!r}")
        self.operator = operator
        self.row_slices = operator.row_slices
        height, width = (side // factor * factor for side in pattern_shape)
        self._geometry = (pattern_shape, int(factor), height, width)
        self.n_bins = (height // factor) * (width // factor)
        self.col_scale = np.ones(self.n_bins, dtype=DTYPE)
        self.stats = MatrixStats(0.0, operator.shape[0], self.n_bins, self.n_bins)
        self._twin: tuple | None = None
        kept = np.zeros((1, int(np.prod(pattern_shape))), dtype=DTYPE)
        kept[:, operator.col_keep] = 1
        self.pixels_per_bin = self._bin(kept)[0].astype(np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        return self.stats.n_rows, self.stats.n_cols

    @property
    def binning(self) -> int:
        return self._geometry[1]

    def _bin(self, full: np.ndarray) -> np.ndarray:
        (rows_px, cols_px), factor, height, width = self._geometry
        patterns = full.reshape(-1, rows_px, cols_px)[:, :height, :width]
        binned = patterns.reshape(-1, height // factor, factor, width // factor, factor)
        return binned.sum(axis=(2, 4)).reshape(full.shape[0], -1)

    def binned_chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, binned chunk)`` without scaling, float32."""
        size = int(np.prod(self._geometry[0]))
        for rows, chunk in self.operator.chunks():
            x = self.operator.dense(chunk)
            full = np.zeros((x.shape[0], size), dtype=DTYPE)
            full[:, self.operator.col_keep] = x
            yield rows, self._bin(full)

    def scaled_to(self, column_variance: np.ndarray) -> BinnedView:
        """This view with each binned pixel divided by its noise standard deviation."""
        self.col_scale = _inverse_sqrt(np.asarray(column_variance, dtype=np.float64)).astype(DTYPE)
        return self

    def twin(self, model: NoiseModel, entropy: int) -> BinnedView:
        """A view of the noise twin: the same scaling, random signs × each entry's noise.

        Entry (i, j) gets the variance ``gain × x_ij + c × n_j`` (clipped at 0: its expected
        value is the relation at the pixel's mean), then shifted (when the measured ``v_j`` is
        larger) or scaled (when smaller) so that its mean over the probes is ``v_j``: the
        intensity dependence from the model, each pixel's level as measured.  The mean of the
        clipped variances takes one pass over the data.  Random signs (fixed per chunk) take
        every structure away.
        """
        zero = model.zero_variance * self.pixels_per_bin
        sums = np.zeros(self.n_bins)
        for _, x in self.binned_chunks():
            sums += np.maximum(model.gain * x + zero, 0.0).sum(axis=0, dtype=np.float64)
        modelled = sums / max(self.shape[0], 1)
        measured = model.column_variance
        shift = np.where(measured >= modelled, measured - modelled, 0.0)
        factor = np.where(measured >= modelled, 1.0, measured / np.where(modelled > 0, modelled, 1))
        twin = BinnedView.__new__(BinnedView)
        twin.__dict__ = dict(self.__dict__)
        twin._twin = (model.gain, zero, shift, factor, entropy)
        return twin

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for index, (rows, x) in enumerate(self.binned_chunks()):
            if self._twin is not None:
                gain, zero, shift, factor, entropy = self._twin
                variance = (np.maximum(gain * x + zero, 0.0) + shift) * factor
                x = (np.sqrt(variance) * _signs(entropy, index, x.shape)).astype(DTYPE)
            yield rows, x * self.col_scale

    def squared_norm(self) -> float:
        return sum(float(np.einsum("ij,ij->", c, c, dtype=np.float64)) for _, c in self.chunks())


def estimate_noise(view: BinnedView) -> NoiseModel:
    """Measure the noise of each binned pixel and its mean–variance relation (one pass).

    Consecutive kept probes (in scan order, within each chunk) are taken four at a time, and
    two contrasts of each four that cancel any expected pattern varying at most quadratically
    along the scan (thickness gradients, a drifting beam) hold their noise; each sample's
    *reference* intensity is the mean of the next four probes.  Up to :data:`MAX_PAIRS`
    groups are taken evenly over the scan.  Groups whose two contrasts differ by more than
    :data:`STRUCTURE_CUT` standard deviations of noise (structure between the probes: a
    crystal edge, a grain boundary) are left out.

    Parameters
    ----------
    view : BinnedView
        The binned data.

    Returns
    -------
    NoiseModel

    Raises
    ------
    ValueError
        When every group of four probes holds structure.
    """
    if view.shape[0] < MIN_PROBES:
        return _unmeasured(view)
    own_mean, linear, quadratic, reference, mean_pattern = _sample_quads(view)
    n_quads = own_mean.shape[0]
    npx = view.pixels_per_bin
    if not (linear.any() or quadratic.any()):
        return _noise_free(view, mean_pattern, 2 * n_quads)
    # Noise gives both contrasts the same expectation in every pixel; structure between the
    # four probes (a crystal edge, a grain boundary, a step in thickness) does not: a step
    # between the middle two leaves the first contrast zero.  The statistic is about
    # N(0, 0.8) for noise of any level, so the cut needs no noise model.
    spread = np.sqrt((linear**2 + quadratic**2).sum(axis=1))
    structure = np.divide(
        (linear - quadratic).sum(axis=1), spread, out=np.zeros(n_quads), where=spread > 0
    )
    keep = np.abs(structure) <= STRUCTURE_CUT
    n_pairs, n_kept = 2 * n_quads, 2 * int(keep.sum())
    if not n_kept:
        raise ValueError("measuring the noise: every group of four probes holds structure")
    # Each kept group gives two samples of its pixels' noise variance.
    own_mean = np.concatenate([own_mean[keep]] * 2)
    reference = np.concatenate([reference[keep]] * 2)
    samples = np.concatenate([linear[keep], quadratic[keep]])
    points = _intensity_bins(own_mean, samples, reference, npx)
    coef, fitted, _ = _fit_line(*points)
    intensity, variance, count, _ = points
    residual = (variance - fitted) / (np.maximum(fitted, _floor(variance)) * np.sqrt(2 / count))
    measured = samples.mean(axis=0)
    uncertainty = samples.std(axis=0) / math.sqrt(n_kept)
    model = NoiseModel(
        np.zeros(0),
        mean_pattern,
        float(coef[0]),
        float(coef[1]),
        npx,
        view.binning,
        n_pairs,
        n_kept,
        0.0,
        intensity,
        variance,
        fitted,
        0.0,
    )  # the relation alone, to evaluate it
    modelled = model.modelled_variance()
    # Trust a pixel's own measurement where it departs from the relation by more than
    # SHRINK_SIGMAS of its uncertainty (positive-part James-Stein shrinkage): the relation is
    # pooled over every pixel and far more precise, the measurement catches what it misses.
    excess = measured - modelled
    weight = np.clip(
        1 - (SHRINK_SIGMAS * uncertainty) ** 2 / np.maximum(excess**2, 1e-300), 0.0, 1.0
    )
    column_variance = modelled + weight * excess
    data_energy = float(np.mean(own_mean**2, axis=0).sum())
    model = NoiseModel(
        column_variance=column_variance,
        mean_pattern=mean_pattern,
        gain=float(coef[0]),
        zero_variance=float(coef[1]),
        pixels_per_bin=npx,
        binning=view.binning,
        n_pairs=int(n_pairs),
        n_pairs_kept=int(n_kept),
        misfit=float(np.sqrt(np.mean(residual**2))) if residual.size else float("nan"),
        intensity=intensity,
        variance=variance,
        fitted=fitted,
        noise_fraction=float(column_variance.sum()) / data_energy if data_energy > 0 else 0.0,
    )
    _logger.info("noise: %s (%d of %d contrasts)", model.describe(), n_kept, n_pairs)
    return model


def _unmeasured(view: BinnedView) -> NoiseModel:
    """Too few probes to measure: counts assumed (variance = mean), ``measured`` False."""
    _logger.info("noise: %d probes are too few to measure the noise", view.shape[0])
    sums = np.zeros(view.n_bins)
    for _, x in view.binned_chunks():
        sums += x.sum(axis=0, dtype=np.float64)
    mean_pattern = sums / max(view.shape[0], 1)
    empty = np.zeros(0)
    return NoiseModel(
        mean_pattern.copy(),
        mean_pattern,
        1.0,
        0.0,
        view.pixels_per_bin,
        view.binning,
        0,
        0,
        float("nan"),
        empty,
        empty,
        empty,
        1.0,
    )


def _noise_free(view: BinnedView, mean_pattern: np.ndarray, n_pairs: int) -> NoiseModel:
    """The model of data whose neighbouring probes differ by nothing at all."""
    _logger.info("noise: neighbouring probes are identical, the data hold no noise")
    empty = np.zeros(0)
    zeros = np.zeros(view.n_bins)
    return NoiseModel(
        zeros,
        mean_pattern,
        0.0,
        0.0,
        view.pixels_per_bin,
        view.binning,
        n_pairs,
        n_pairs,
        float("nan"),
        empty,
        empty,
        empty,
        0.0,
    )


def _sample_quads(view: BinnedView) -> tuple[np.ndarray, ...]:
    """Per sampled group of four probes: mean, both squared contrasts, reference mean; and
    the mean pattern.

    Four consecutive probes give two contrasts that hold noise only wherever the expected
    pattern varies at most quadratically along the scan: ``(x0 − x1 − x2 + x3) / 2`` and
    ``(x0 − 3 x1 + 3 x2 − x3) / √20`` (orthogonal, each with the noise variance of one probe).
    Their intensity is the four probes' mean, their reference the mean of the next four.
    """
    n_probe = view.shape[0]
    cap = max(64, min(MAX_PAIRS, PAIR_BUDGET // (8 * max(view.n_bins, 1))))
    step = max(1, math.ceil((n_probe // 4) / cap))
    parts: list[tuple[np.ndarray, ...]] = []
    quad = 0
    sums = np.zeros(view.n_bins)
    for _, x in view.binned_chunks():
        sums += x.sum(axis=0, dtype=np.float64)
        n = x.shape[0] // 4 * 4
        if n < 8:
            continue
        q = x[:n].reshape(n // 4, 4, -1)
        take = (quad + np.arange(n // 4)) % step == 0
        quad += n // 4
        q = q.astype(np.float64)
        mean = q.mean(axis=1)
        reference = np.concatenate([mean[1:], mean[-2:-1]])
        linear = (q[:, 0] - q[:, 1] - q[:, 2] + q[:, 3]) / 2
        quadratic = (q[:, 0] - 3 * q[:, 1] + 3 * q[:, 2] - q[:, 3]) / math.sqrt(20)
        parts.append((mean[take], linear[take] ** 2, quadratic[take] ** 2, reference[take]))
    if not parts:
        raise ValueError("measuring the noise needs chunks of at least 8 probes")
    return (*(np.concatenate(column) for column in zip(*parts)), sums / n_probe)


def _intensity_bins(own_mean, half_d2, reference, npx):
    """Mean intensity, mean variance, count and mean pixels per bin of the reference intensity.

    Binning by the reference (a different probe pair) instead of the pair's own mean keeps the
    pair's noise out of the choice of bin: binned by its own noisy mean, a region of constant
    intensity would spread into bins with a flat variance and flatten the fitted slope.
    """
    npx = np.broadcast_to(npx, own_mean.shape).ravel()
    own, d2, ref = own_mean.ravel(), half_d2.ravel(), reference.ravel()
    low, high = np.percentile(ref, [0.1, 99.99])
    span = max(high - low, 1e-300)
    # Log-spaced bins above the lowest reference level: leverage from the bright pixels.
    position = np.log(np.clip(ref - low, 0, None) + 1e-3 * span) - math.log(1e-3 * span)
    index = np.clip(
        (position / math.log(1.001 / 1e-3) * N_INTENSITY_BINS).astype(int),
        0,
        N_INTENSITY_BINS - 1,
    )
    count = np.bincount(index, minlength=N_INTENSITY_BINS).astype(np.float64)
    ok = count >= MIN_BIN_ENTRIES
    if ok.sum() < 2:
        ok = count > 0

    def mean_of(values):
        return np.bincount(index, values, minlength=N_INTENSITY_BINS)[ok] / count[ok]

    return mean_of(own), mean_of(d2), count[ok], mean_of(npx)


def _fit_line(intensity, variance, count, npx):
    """``variance = gain × intensity + c × npx``, iteratively weighted by the predicted variance.

    The mean of ``count`` squared contrasts of variance v has the variance ``2 v² / count``,
    hence the weights.  A ``c`` within two of its standard errors of zero is not resolved by
    the data (at very low intensity a few counts decide it, and a spurious negative ``c``
    would leave the dim pixels without noise): it is set to zero and the gain refitted.
    """
    design = np.column_stack([intensity, npx])
    coef = np.zeros(2)
    if not (variance > 0).any():
        return coef, design @ coef, count.copy()
    coef, weights = _weighted_fit(design, variance, count)
    if design.shape[0] > 2:
        residual = variance - design @ coef
        chi2 = float(np.sum(weights * residual**2)) / (design.shape[0] - 2)
        # Columns scaled to unit weighted norm first: intensities of 1e-15 next to pixel
        # counts of 4 would otherwise fall below pinv's relative cut-off.
        norm = _column_norms(design, weights)
        scaled = design / norm
        with np.errstate(all="ignore"):
            information = scaled.T @ (scaled * weights[:, None])
            covariance = np.linalg.pinv(information) / np.outer(norm, norm) * max(chi2, 1.0)
        if abs(coef[1]) < 2 * np.sqrt(max(covariance[1, 1], 0.0)):
            gain, weights = _weighted_fit(design[:, :1], variance, count)
            coef = np.array([gain[0], 0.0])
    return coef, design @ coef, weights


def _weighted_fit(design, variance, count):
    """Least squares of ``variance`` on ``design``, reweighted 5 times by ``count / 2 v²``."""
    weights = count / 2.0
    floor = _floor(variance)
    for _ in range(5):
        root = np.sqrt(weights)
        # Each column scaled to unit weighted norm, so that lstsq's relative cut-off does not
        # drop the intensity column of data in small units (×1e-15: its singular value fell
        # below eps × the pixel-count column's, and the gain came out zero).
        norm = _column_norms(design, weights)
        coef = np.linalg.lstsq(design / norm * root[:, None], variance * root, rcond=None)[0]
        coef = coef / norm
        weights = count / (2.0 * np.maximum(design @ coef, floor) ** 2)
    return coef, weights


def _column_norms(design: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted norm of each column of ``design`` (1 for an all-zero column)."""
    norm = np.sqrt((design**2 * weights[:, None]).sum(axis=0))
    return np.where(norm > 0, norm, 1.0)


def _floor(variance: np.ndarray) -> float:
    """1 % of the median positive variance: the least a fitted variance is weighted by."""
    positive = variance[variance > 0]
    return max(1e-2 * float(np.median(positive)), 1e-150) if positive.size else 1.0


def _inverse_sqrt(values: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values, dtype=np.float64)
    positive = values > 0
    out[positive] = 1 / np.sqrt(values[positive])
    return out


def _signs(entropy: int, index: int, shape: tuple[int, int]) -> np.ndarray:
    """Random ±1 of one chunk, the same in every pass."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
    return (2 * rng.integers(0, 2, size=shape, dtype=np.int8) - 1).astype(DTYPE)
