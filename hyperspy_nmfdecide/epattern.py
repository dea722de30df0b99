"""ePattern numerics: Bragg spots registered per pattern, a latent spot table, reconstruction.

ePattern (Folastre et al., Sci. Rep. 14, 12385, 2024; Cao et al. SI, algorithm SI_6) rebuilds
clean diffraction patterns from registered Bragg peaks.  Per pattern:

1. **Detection.**  The pattern is blurred with a small Gaussian (a matched filter for spots
   about a pixel wide); its excess over the local mean is divided by the pattern's own
   local Poisson noise level, and the local maxima whose excess (their prominence above the
   local background) reaches ``prominence`` noise standard deviations are spots.  The local
   mean follows the direct beam's halo and the amorphous rings but leaves the spots out, so
   a spot on a ring is measured against the ring, noise along the ring is not a spot, and a
   bright spot does not hide its faint neighbours.
2. **Refinement.**  Sub-pixel position by the intensity-weighted centre of mass of the
   background-subtracted pattern in a 7 × 7 window; radius = 2 × the spot's standard
   deviation (its second moment in that window), clipped to [1, ``max_radius``]; intensity =
   the mean background-subtracted grey value of the pixels whose centres lie inside that
   radius.  The background is a flat rolling ball (grey opening) of the blurred pattern.
3. **Latent table and reconstruction.**  A :class:`SpotTable` (probe, x, y, radius,
   intensity); :func:`reconstruct` draws every spot as a flat disc of its radius whose value
   is its intensity, so the relative intensities are kept and the background, the diffuse
   halo and the amorphous rings are gone.  :func:`to_sparse` gives the same as a sparse
   matrix.

The direct beam is a spot like any other and is registered unless ``exclude`` masks it.
This module uses numpy, scipy and scikit-image only (no HyperSpy, no pyxem); a dask array is
registered chunk by chunk and never loaded whole.

Examples
--------
>>> from hyperspy_nmfdecide.data import simulated_scan
>>> from hyperspy_nmfdecide.epattern import reconstruct, register_spots
>>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0)
>>> table = register_spots(scan.signal.data)
>>> table.nav_shape, table.signal_shape, int(table.spots_per_pattern.min()) >= 1
((4, 4), (32, 32), True)
>>> reconstruct(table).shape
(4, 4, 32, 32)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage, sparse
from skimage.feature import peak_local_max

from ._utils import is_dask, positive_number

_logger = logging.getLogger(__name__)

__all__ = ["SpotTable", "reconstruct", "register_spots", "to_sparse"]

#: Standard deviation of the Gaussian blur applied before peak finding, pixels: about that of
#: a spot (a matched filter), small enough that spots 4 px apart stay two peaks.
BLUR_SIGMA = 1.0
#: Standard deviation of the Gaussian giving the local mean (spots clipped) behind the
#: Poisson noise level, pixels: narrow enough to follow the halo and the amorphous rings.
NOISE_SCALE = 3.0
#: Counts added to the local mean over the blur's effective area (4π σ²) before the noise
#: level is taken: Poisson tails at < 1 count per pixel are heavier than Gaussian ones.
NOISE_FLOOR_COUNTS = 2.0
#: Pixels more than this many noise σ above the rolling-ball background are cut to it before
#: the local mean is taken (spots must not raise the background of their neighbours).
CLIP_SIGMAS = 3.0
#: Side of the flat rolling ball (grey opening) estimating the background, pixels.
BACKGROUND_SIZE = 13
#: Half width of the centre-of-mass and second-moment window, pixels (a 7 × 7 window).
COM_HALF_WIDTH = 3
#: Spot radius in units of the spot's standard deviation (a disc holding 86 % of a Gaussian).
RADIUS_PER_SIGMA = 2.0
#: Smallest radius given to a spot, pixels: its disc always holds the pixel under its centre.
MIN_RADIUS = 1.0
#: Values of the five columns stored per spot (probe, x, y, radius, intensity).
VALUES_PER_SPOT = 5

_BLOCK_PIXELS = 2**21  # patterns are processed in stacks of about this many pixels
_SPOTS_PER_BATCH = 2**16  # spots drawn at once by to_sparse


@dataclass(frozen=True, eq=False)
class SpotTable:
    """The latent table of registered spots: one row per spot, arrays read-only.

    Attributes
    ----------
    probe : numpy.ndarray
        int64, flat probe index in C order of ``nav_shape``.
    x, y : numpy.ndarray
        float64 sub-pixel position in pixels: ``x`` the column, ``y`` the row; pixel ``i``
        covers ``i ± 0.5``.
    radius : numpy.ndarray
        float64 spot radius, pixels (> 0).
    intensity : numpy.ndarray
        float64 mean background-subtracted grey value inside the radius, in the data's units
        (≥ 0).
    nav_shape : tuple of int
        Navigation shape of the scan.
    signal_shape : tuple of int
        (H, W) of the patterns.
    params : dict
        The registration parameters (JSON-serialisable).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_nmfdecide.epattern import SpotTable
    >>> table = SpotTable(probe=[0, 0, 3], x=[5.2, 9.0, 4.1], y=[6.0, 2.5, 4.0],
    ...                   radius=[2.0, 1.5, 2.5], intensity=[10.0, 4.0, 7.5],
    ...                   nav_shape=(2, 2), signal_shape=(16, 16))
    >>> len(table), table.n_spots, table.spots_per_pattern.tolist()
    (3, 3, [[2, 0], [0, 1]])
    >>> table.compression_ratio  # 4 probes x 256 pixels / (3 spots x 5 values)
    68.26666666666667
    """

    probe: np.ndarray
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    intensity: np.ndarray
    nav_shape: tuple[int, ...]
    signal_shape: tuple[int, int]
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        nav_shape = _shape(self.nav_shape, "nav_shape")
        signal_shape = _shape(self.signal_shape, "signal_shape")
        if len(signal_shape) != 2:
            raise ValueError(f"signal_shape must be (H, W), got {self.signal_shape!r}")
        columns = {
            "probe": np.array(self.probe, dtype=np.int64),
            "x": np.array(self.x, dtype=np.float64),
            "y": np.array(self.y, dtype=np.float64),
            "radius": np.array(self.radius, dtype=np.float64),
            "intensity": np.array(self.intensity, dtype=np.float64),
        }
        _check_columns(columns, math.prod(nav_shape))
        for name, column in columns.items():
            column.flags.writeable = False
            object.__setattr__(self, name, column)
        object.__setattr__(self, "nav_shape", nav_shape)
        object.__setattr__(self, "signal_shape", signal_shape)
        object.__setattr__(self, "params", dict(self.params))

    @property
    def n_spots(self) -> int:
        """Number of registered spots (rows of the table)."""
        return int(self.probe.size)

    @property
    def n_probe(self) -> int:
        """Number of probe positions (patterns) of the scan."""
        return math.prod(self.nav_shape)

    @property
    def spots_per_pattern(self) -> np.ndarray:
        """int64 array of ``nav_shape``: the number of spots registered in each pattern."""
        return np.bincount(self.probe, minlength=self.n_probe).reshape(self.nav_shape)

    @property
    def compression_ratio(self) -> float:
        """Dense values over stored values: ``n_probe × H × W / (n_spots × 5)``.

        The dense scan holds one value per pixel of every pattern; the table holds five per
        spot (probe, x, y, radius, intensity).  Both are counted in values, not bytes, so the
        ratio does not depend on the dtypes.  ``inf`` for a table without spots.
        """
        dense = self.n_probe * math.prod(self.signal_shape)
        stored = self.n_spots * VALUES_PER_SPOT
        return dense / stored if stored else math.inf

    def to_dict(self) -> dict[str, Any]:
        """The table as a dict of numpy arrays and JSON-able scalars, for :meth:`from_dict`.

        Returns
        -------
        dict
            ``probe``, ``x``, ``y``, ``radius``, ``intensity`` (writeable copies of the
            columns), ``nav_shape`` and ``signal_shape`` (lists of int) and ``params``.

        Examples
        --------
        >>> from hyperspy_nmfdecide.epattern import SpotTable
        >>> table = SpotTable(probe=[1], x=[3.5], y=[2.0], radius=[1.5], intensity=[4.0],
        ...                   nav_shape=(2,), signal_shape=(8, 8))
        >>> d = table.to_dict()
        >>> sorted(d), d["nav_shape"]
        (['intensity', 'nav_shape', 'params', 'probe', 'radius', 'signal_shape', 'x', 'y'], [2])
        >>> SpotTable.from_dict(d).x.tolist()
        [3.5]
        """
        return {
            "probe": self.probe.copy(),
            "x": self.x.copy(),
            "y": self.y.copy(),
            "radius": self.radius.copy(),
            "intensity": self.intensity.copy(),
            "nav_shape": list(self.nav_shape),
            "signal_shape": list(self.signal_shape),
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpotTable:
        """Rebuild a table from :meth:`to_dict` (arrays may have become lists, e.g. via JSON).

        Parameters
        ----------
        d : dict
            As returned by :meth:`to_dict`.

        Returns
        -------
        SpotTable

        Examples
        --------
        >>> from hyperspy_nmfdecide.epattern import SpotTable
        >>> d = {"probe": [0], "x": [1.0], "y": [2.0], "radius": [1.0], "intensity": [3.0],
        ...      "nav_shape": [1], "signal_shape": [4, 4], "params": {}}
        >>> SpotTable.from_dict(d).n_spots
        1
        """
        return cls(
            probe=d["probe"],
            x=d["x"],
            y=d["y"],
            radius=d["radius"],
            intensity=d["intensity"],
            nav_shape=tuple(d["nav_shape"]),
            signal_shape=tuple(d["signal_shape"]),
            params=dict(d.get("params", {})),
        )

    def __len__(self) -> int:
        return self.n_spots

    def __repr__(self) -> str:
        h, w = self.signal_shape
        return (
            f"<SpotTable: {self.n_spots} spots in {self.n_probe} patterns "
            f"{self.nav_shape} of {h}×{w} px, compression ×{self.compression_ratio:.4g}>"
        )


def register_spots(
    data: ArrayLike,
    *,
    prominence: float = 4.0,
    min_distance: int = 2,
    max_radius: float = 4.0,
    exclude: ArrayLike | None = None,
    show_progress: Callable[[int, int], object] | None = None,
) -> SpotTable:
    """Register the Bragg spots of every pattern of a scan (ePattern registration).

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        (\\*nav_shape, H, W) non-negative counts (electrons).  The noise level of a
        pattern is taken as Poisson (variance = local mean), so data in other units, e.g.
        detector ADU, should first be divided by the gain (ADU per electron) for
        ``prominence`` to be in noise units.  A dask array is computed one chunk of whole
        patterns at a time.
    prominence : float
        Smallest rise of a registered spot above the local background of its pattern (halo
        and rings included), in units of the pattern's local noise standard deviation after
        the blur.  Higher: fewer false spots, fewer faint spots.
    min_distance : int
        Smallest separation of two registered spots, pixels: a peak is kept only if it is
        the highest of the (2 min_distance + 1)² square around it.
    max_radius : float
        Largest radius given to a spot, pixels; at most half the smaller pattern side.
    exclude : array_like of bool, optional
        (H, W) mask of pixels where no spot is registered (a spot is dropped when its peak
        pixel is excluded).  Default: none; the direct beam is registered like any spot.
    show_progress : callable, optional
        Called as ``show_progress(n_done, n_probe)`` after each stack of patterns.

    Returns
    -------
    SpotTable
        Sorted by probe, then by significance (strongest spot of a pattern first).  An
        all-zero pattern has no spot.

    Raises
    ------
    ValueError
        For an invalid argument, for data that are not at least 3-D, hold a negative, NaN or
        infinite value, or are all zero; the message names the argument.
    TypeError
        If ``show_progress`` is not callable.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> from hyperspy_nmfdecide.epattern import register_spots
    >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0)
    >>> table = register_spots(scan.signal.data)
    >>> first = table.probe == 0
    >>> beam = np.argmax(table.intensity[first])  # the direct beam, at 16 + (1.5, -2.0)
    >>> bool(abs(table.x[first][beam] - 17.5) < 0.5 and abs(table.y[first][beam] - 14) < 0.5)
    True
    >>> lazy = register_spots(scan.signal.as_lazy().data.rechunk((2, 2, 32, 32)))
    >>> bool(np.array_equal(lazy.x, table.x))
    True
    """
    shape = tuple(int(n) for n in np.shape(data))
    if len(shape) < 3:
        raise ValueError(
            f"data must have at least 3 dimensions (*navigation, H, W), got shape {shape}"
        )
    nav_shape, signal_shape = shape[:-2], shape[-2:]
    if 0 in shape:
        raise ValueError(f"data must not be empty, got shape {shape}")
    settings = _check_settings(prominence, min_distance, max_radius, signal_shape)
    excluded = _check_exclude(exclude, signal_shape)
    if show_progress is not None and not callable(show_progress):
        raise TypeError(f"show_progress must be None or a callable, got {show_progress!r}")

    n_probe = math.prod(nav_shape)
    found, done, any_signal = [], 0, False
    for probes, patterns in _blocks(data, nav_shape, signal_shape):
        any_signal |= bool(patterns.any())
        local = _register_stack(patterns, excluded, **settings)
        local["probe"] = probes[local.pop("index")]
        found.append(local)
        done += len(probes)
        if show_progress is not None:
            show_progress(done, n_probe)
    if not any_signal:
        raise ValueError("data are all zero: there is no spot to register")

    columns = {name: np.concatenate([part[name] for part in found]) for name in found[0]}
    order = np.lexsort((-columns.pop("significance"), columns["probe"]))
    params = {**settings, "n_excluded": int(excluded.sum()), **_FIXED_PARAMS}
    table = SpotTable(
        **{name: column[order] for name, column in columns.items()},
        nav_shape=nav_shape,
        signal_shape=signal_shape,
        params=params,
    )
    _logger.info("Registered %r", table)
    return table


def to_sparse(table: SpotTable) -> sparse.csr_matrix:
    """The reconstruction of :func:`reconstruct` as a sparse (n_probe, H × W) float32 matrix.

    Each spot contributes its ``intensity`` to every pixel of its pattern whose centre lies
    within ``radius`` of the spot (its footprint, cut at the detector edge); overlapping
    spots add up.  Row ``p`` is pattern ``p`` in C order of ``nav_shape``, column
    ``row × W + column`` its pixel.

    Parameters
    ----------
    table : SpotTable

    Returns
    -------
    scipy.sparse.csr_matrix
        float32, entries only on the footprints of the spots.

    Examples
    --------
    >>> from hyperspy_nmfdecide.epattern import SpotTable, to_sparse
    >>> table = SpotTable(probe=[1], x=[3.0], y=[2.0], radius=[1.0], intensity=[5.0],
    ...                   nav_shape=(2,), signal_shape=(6, 6))
    >>> m = to_sparse(table)
    >>> m.shape, m.dtype, m.nnz, float(m.sum())
    ((2, 36), dtype('float32'), 5, 25.0)
    """
    if not isinstance(table, SpotTable):
        raise TypeError(f"table must be a SpotTable, got {type(table).__name__}")
    h, w = table.signal_shape
    rows, cols, values = [], [], []
    for start in range(0, table.n_spots, _SPOTS_PER_BATCH):
        batch = slice(start, start + _SPOTS_PER_BATCH)
        spot, pixel = _footprints(
            table.x[batch], table.y[batch], table.radius[batch], table.signal_shape
        )
        rows.append(table.probe[batch][spot])
        cols.append(pixel)
        values.append(table.intensity[batch][spot].astype(np.float32))
    if not rows:
        return sparse.csr_matrix((table.n_probe, h * w), dtype=np.float32)
    matrix = sparse.coo_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(table.n_probe, h * w),
        dtype=np.float32,
    )
    return matrix.tocsr()  # duplicates (overlapping spots) are summed


def reconstruct(table: SpotTable, *, dtype: Any = np.float32) -> np.ndarray:
    """Draw the registered spots: clean patterns of shape (\\*nav_shape, H, W).

    Each spot is a flat disc, the pixels whose centres lie within its ``radius``, of value
    ``intensity``: the mean inside the radius of a lone spot equals its registered intensity,
    so relative intensities are kept.  Overlapping spots add up.  Equal to
    ``to_sparse(table).toarray()`` reshaped.

    Parameters
    ----------
    table : SpotTable
    dtype : numpy dtype
        Output dtype (the values are computed in float32).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> from hyperspy_nmfdecide.epattern import SpotTable, reconstruct
    >>> table = SpotTable(probe=[0, 0], x=[2.0, 6.0], y=[2.0, 5.0], radius=[1.0, 1.5],
    ...                   intensity=[4.0, 2.0], nav_shape=(1,), signal_shape=(8, 8))
    >>> image = reconstruct(table)[0]
    >>> float(image[2, 2]), float(image[5, 6]), float(image[0, 0])
    (4.0, 2.0, 0.0)
    """
    dense = to_sparse(table).toarray()
    return dense.reshape(table.nav_shape + table.signal_shape).astype(dtype, copy=False)


# -- registration of a stack of patterns -------------------------------------------------------
_FIXED_PARAMS = {
    "blur_sigma": BLUR_SIGMA,
    "noise_scale": NOISE_SCALE,
    "noise_floor_counts": NOISE_FLOOR_COUNTS,
    "clip_sigmas": CLIP_SIGMAS,
    "background_size": BACKGROUND_SIZE,
    "com_half_width": COM_HALF_WIDTH,
    "radius_per_sigma": RADIUS_PER_SIGMA,
    "min_radius": MIN_RADIUS,
}


def _register_stack(
    patterns: np.ndarray,
    excluded: np.ndarray,
    *,
    prominence: float,
    min_distance: int,
    max_radius: float,
) -> dict[str, np.ndarray]:
    """Spots of a (n, H, W) float64 stack; ``index`` is the pattern's index in the stack."""
    blurred = _blur(patterns, _gaussian_kernel(BLUR_SIGMA))
    background = _background(blurred)
    significance = _significance(patterns, blurred, background)
    peaks = _peaks(significance, prominence, min_distance)
    peaks = peaks[~excluded[peaks[:, 1], peaks[:, 2]]]
    residual = patterns - background
    x, y, sigma = _centre_and_width(residual, peaks)
    radius = np.clip(RADIUS_PER_SIGMA * sigma, MIN_RADIUS, max_radius)
    intensity = _mean_inside(residual, peaks[:, 0], x, y, radius)
    keep = intensity > 0
    return {
        "index": peaks[keep, 0],
        "significance": significance[tuple(peaks[keep].T)],
        "x": x[keep],
        "y": y[keep],
        "radius": radius[keep],
        "intensity": intensity[keep],
    }


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian weights over ±4 σ (scipy's truncation)."""
    half = int(4 * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    return weights / weights.sum()


def _blur(stack: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable filter of each pattern by ``kernel``; zero outside the detector."""
    out = ndimage.correlate1d(stack, kernel, axis=-1, mode="constant")
    return ndimage.correlate1d(out, kernel, axis=-2, mode="constant")


def _significance(patterns: np.ndarray, blurred: np.ndarray, background: np.ndarray):
    """Excess of the blurred patterns over their local mean, in Poisson noise units.

    Why Poisson and not a robust global estimate such as the MAD of a high-pass: at a few
    hundred electrons per pattern most pixels hold 0 counts and the MAD is 0, and the noise
    is strongly heteroscedastic (the direct beam holds ~10³ times the counts per pixel of the
    periphery), so one level per pattern would flood the beam and halo with false peaks or
    miss the faint outer spots.  Poisson variance equals the mean.  The local mean is a
    Gaussian of ``NOISE_SCALE`` px of the pattern with its spots cut off (one κσ clipping
    pass above the rolling-ball ``background``, as in astronomical source extraction): it
    follows the halo and the amorphous rings, but a bright spot does not raise the mean of
    its faint neighbours.  ``NOISE_FLOOR_COUNTS`` over the blur's area are added so that one
    or two stray counts in an empty periphery are not significant.  The variance of a
    blurred pixel is that mean filtered by the squared blur weights (exact for independent
    pixels, also at the detector edge, where the blur sees zeros).
    """
    kernel = _gaussian_kernel(BLUR_SIGMA)
    floor = NOISE_FLOOR_COUNTS / (4 * math.pi * BLUR_SIGMA**2)
    clipped = np.minimum(patterns, background + CLIP_SIGMAS * np.sqrt(background + floor))
    local_mean = ndimage.gaussian_filter(clipped, (0, NOISE_SCALE, NOISE_SCALE))
    noise = np.sqrt(_blur(local_mean + floor, kernel**2))
    return (blurred - _blur(local_mean, kernel)) / noise


def _peaks(significance: np.ndarray, prominence: float, min_distance: int) -> np.ndarray:
    """Local maxima rising ``prominence`` above the local mean: (n, 3) pattern, row, column.

    scikit-image's ``peak_local_max``; its (2 min_distance + 1)² window spans one pattern.
    """
    window = 2 * min_distance + 1
    return peak_local_max(
        significance,
        footprint=np.ones((1, window, window), dtype=bool),
        threshold_abs=prominence,
        exclude_border=False,
    )


def _background(blurred: np.ndarray) -> np.ndarray:
    """Flat rolling ball: grey opening of the blurred patterns, smoothed by a box."""
    size = (1, BACKGROUND_SIZE, BACKGROUND_SIZE)
    return ndimage.uniform_filter(ndimage.grey_opening(blurred, size=size), size=size)


def _centre_and_width(residual: np.ndarray, peaks: np.ndarray):
    """Centre of mass (x, y) and standard deviation of each spot in its window.

    Weights are the positive background-subtracted values of a (2 h + 1)² window around the
    peak pixel (zero outside the detector).  Written here: scikit-image's ``centroid`` and
    ``moments`` take one image at a time, this treats all the spots at once.
    """
    half = COM_HALF_WIDTH
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    padded = np.pad(np.clip(residual, 0, None), ((0, 0), (half, half), (half, half)))
    rows = peaks[:, 1, None, None] + np.arange(2 * half + 1)[None, :, None]
    cols = peaks[:, 2, None, None] + np.arange(2 * half + 1)[None, None, :]
    weights = padded[peaks[:, 0, None, None], rows, cols]
    total = weights.sum(axis=(1, 2))
    total = np.where(total > 0, total, 1.0)  # no positive weight: stay on the peak pixel
    dy = (weights * offsets[None, :, None]).sum(axis=(1, 2)) / total
    dx = (weights * offsets[None, None, :]).sum(axis=(1, 2)) / total
    square = (offsets[None, :, None] - dy[:, None, None]) ** 2 + (
        offsets[None, None, :] - dx[:, None, None]
    ) ** 2
    sigma = np.sqrt((weights * square).sum(axis=(1, 2)) / (2 * total))
    return peaks[:, 2] + dx, peaks[:, 1] + dy, sigma


def _mean_inside(residual, index, x, y, radius) -> np.ndarray:
    """Mean of each spot's pattern over the pixels whose centres lie within its radius."""
    h, w = residual.shape[1:]
    spot, pixel = _footprints(x, y, radius, (h, w))
    values = residual.reshape(len(residual), h * w)[index[spot], pixel]
    sums = np.bincount(spot, weights=values, minlength=len(x))
    counts = np.bincount(spot, minlength=len(x))
    return sums / np.maximum(counts, 1)


def _footprints(x, y, radius, signal_shape) -> tuple[np.ndarray, np.ndarray]:
    """(spot index, flat pixel index) of every on-detector pixel centred within a radius."""
    h, w = signal_shape
    if len(x) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    half = int(math.ceil(float(np.max(radius))))
    offsets = np.arange(-half, half + 1)
    rows = np.rint(y).astype(np.int64)[:, None, None] + offsets[None, :, None]
    cols = np.rint(x).astype(np.int64)[:, None, None] + offsets[None, None, :]
    inside = (rows - y[:, None, None]) ** 2 + (cols - x[:, None, None]) ** 2 <= (
        radius[:, None, None] ** 2
    )
    inside &= (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    spot = np.broadcast_to(np.arange(len(x))[:, None, None], inside.shape)[inside]
    return spot, (rows * w + cols)[inside]


# -- input ------------------------------------------------------------------------------------
def _blocks(data, nav_shape, signal_shape) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(flat probe indices, (n, H, W) float64 patterns) stacks, a dask chunk at a time."""
    stack = max(1, _BLOCK_PIXELS // math.prod(signal_shape))
    for probes, patterns in _chunks(data, nav_shape, signal_shape):
        for start in range(0, len(probes), stack):
            part = np.asarray(patterns[start : start + stack], dtype=np.float64)
            _check_values(part)
            yield probes[start : start + stack], part


def _chunks(data, nav_shape, signal_shape):
    """Whole-pattern chunks of ``data`` with their flat probe indices (numpy: one chunk)."""
    if not is_dask(data):
        yield np.arange(math.prod(nav_shape)), np.reshape(data, (-1,) + signal_shape)
        return
    data = data.rechunk({-2: -1, -1: -1})
    starts = [np.cumsum((0,) + chunks) for chunks in data.chunks[:-2]]
    for index in np.ndindex(*data.numblocks[:-2]):
        block = np.asarray(data.blocks[index].compute())
        grid = np.indices(block.shape[:-2]).reshape(len(nav_shape), -1)
        position = tuple(axis + start[i] for axis, start, i in zip(grid, starts, index))
        yield np.ravel_multi_index(position, nav_shape), block.reshape((-1,) + signal_shape)


def _check_values(patterns: np.ndarray) -> None:
    if not np.isfinite(patterns).all():
        raise ValueError("data must be finite: found NaN or infinite values")
    if (patterns < 0).any():
        raise ValueError(
            f"data must be non-negative (counts): found values down to {patterns.min():g}"
        )


def _check_settings(prominence, min_distance, max_radius, signal_shape) -> dict[str, Any]:
    prominence = positive_number(prominence, "prominence")
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, np.integer)):
        raise ValueError(f"min_distance must be an integer ≥ 1, got {min_distance!r}")
    if min_distance < 1:
        raise ValueError(f"min_distance must be an integer ≥ 1, got {min_distance!r}")
    max_radius = positive_number(max_radius, "max_radius")
    limit = min(signal_shape) / 2
    if max_radius > limit:
        raise ValueError(
            f"max_radius must be at most half the smaller pattern side ({limit:g} px for "
            f"patterns of {signal_shape[0]}×{signal_shape[1]}), got {max_radius:g}"
        )
    if max_radius < MIN_RADIUS:
        raise ValueError(f"max_radius must be ≥ {MIN_RADIUS:g} px, got {max_radius:g}")
    return {
        "prominence": prominence,
        "min_distance": int(min_distance),
        "max_radius": max_radius,
    }


def _check_exclude(exclude, signal_shape) -> np.ndarray:
    if exclude is None:
        return np.zeros(signal_shape, dtype=bool)
    mask = np.asarray(exclude)
    if mask.dtype != bool or mask.shape != tuple(signal_shape):
        raise ValueError(
            f"exclude must be a boolean array of the pattern shape {tuple(signal_shape)}, "
            f"got {mask.dtype} of shape {mask.shape}"
        )
    return mask


def _shape(value, name: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a tuple of positive integers, got {value!r}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"{name} must be a tuple of positive integers, got {value!r}")
    return shape


def _check_columns(columns: dict[str, np.ndarray], n_probe: int) -> None:
    lengths = {name: column.shape for name, column in columns.items()}
    if any(column.ndim != 1 for column in columns.values()) or len(set(lengths.values())) > 1:
        raise ValueError(f"probe, x, y, radius and intensity must be 1-D of one length: {lengths}")
    probe = columns["probe"]
    if probe.size and (probe.min() < 0 or probe.max() >= n_probe):
        raise ValueError(f"probe must lie in [0, {n_probe}) for the navigation shape")
    for name in ("x", "y", "radius", "intensity"):
        if not np.isfinite(columns[name]).all():
            raise ValueError(f"{name} must be finite")
    if (columns["radius"] <= 0).any():
        raise ValueError("radius must be positive")
    if (columns["intensity"] < 0).any():
        raise ValueError("intensity must be non-negative")
