"""Phase maps from an NMF factorisation: thresholds, overlap across k, labels, raw clustering.

The last step of Cao et al.'s plan (DESIGN §5).  Pure numerics on numpy / dask arrays; this
module never imports HyperSpy or pyxem (the result object is :class:`PhaseMaps` in
``phasemaps.py``).

The steps, on the best factorisation at one k (factors ``(k, n_pixel)`` summing to one, loadings
``(n_probe, k)`` in counts):

1. **Background** (:func:`find_background`).  A component present nearly everywhere and without
   an empty region is the background (direct beam, diffuse scattering, support film).  It is
   recognised *before* thresholding: Otsu's method on a smoothly varying background map would
   cut it in two.  It is kept out of the phases.
2. **Component masks** (:func:`component_masks`).  Each other loading map is thresholded (Otsu, or
   a fraction of its robust maximum) and cleaned of specks and pinholes smaller than
   ``min_size`` probes.
3. **Phase labels** (:func:`phase_labels`).  Each probe is labelled by the *set* of components
   whose masks hold there; probes with two or more are overlaps.  Components that are not
   phases (:func:`~hyperspy_nmfdecide.components.component_roles`) do not make labels of their
   own: a variant of a phase (the same crystal at another thickness) counts as its phase, an
   interaction of two (spots only where they overlap) is left out (:func:`phase_masks`).  An
   overlap whose raw mean pattern does not need one of its members loses it
   (:func:`unconfirmed_members`).
4. **Tracking** (:func:`track_components`).  Components of k are matched to those of k - 1 and
   k + 1 by the cosine similarity of their factors (Hungarian assignment), so that a component
   that is stable, splits at k + 1 or merges at k - 1 is seen, and an overlap that also holds
   at the neighbouring k is told apart from one that does not.
5. **Raw clustering** (:func:`phase_means`).  The raw patterns are averaged per phase in one
   chunked pass over the data and compared (:func:`compare_means`) with the reconstruction
   averaged over the same probes, which needs no pass (mean loadings @ factors).

:func:`phase_maps` runs them all and returns a :class:`PhaseArrays`.

Examples
--------
>>> import numpy as np
>>> from hyperspy_nmfdecide import phases
>>> loadings = np.zeros((6, 6, 3))
>>> loadings[..., 0] = 10.0                      # background everywhere
>>> loadings[:, :4, 1] = 5.0                     # component 1 on the left
>>> loadings[:, 2:, 2] = 5.0                     # component 2 on the right
>>> phases.find_background(loadings.reshape(36, 3))
0
>>> masks, _ = phases.component_masks(loadings, background_index=0, min_size=0)
>>> labels, legend, overlap = phases.phase_labels(masks, background_index=0)
>>> legend
{1: (1,), 2: (2,), 3: (1, 2)}
>>> labels[0].tolist(), int(overlap.sum())
([1, 1, 3, 3, 2, 2], 12)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment, nnls
from skimage.filters import apply_hysteresis_threshold, threshold_otsu

from . import iqa
from ._utils import is_dask
from .components import component_roles
from .similarity import cosine_similarity

_logger = logging.getLogger(__name__)

__all__ = [
    "BACKGROUND_CONTRAST",
    "BACKGROUND_COVERAGE",
    "BACKGROUND_PRESENCE",
    "COLOURS",
    "OTSU_PRESENCE",
    "ROBUST_PERCENTILE",
    "SIMILARITY_THRESHOLD",
    "PhaseArrays",
    "compare_means",
    "component_colours",
    "component_masks",
    "cosine_similarity",
    "count_phases",
    "default_min_size",
    "find_background",
    "phase_labels",
    "N_STAGES",
    "label_phases",
    "phase_masks",
    "phase_means",
    "rgb_composite",
    "robust_max",
    "track_components",
    "unconfirmed_members",
]

#: Percentile taken as the maximum of a loading map, robust to a few hot probes.
ROBUST_PERCENTILE = 99.5
#: A component is *present* at a probe where its loading exceeds this fraction of its robust max.
BACKGROUND_PRESENCE = 0.1
#: The background is present on at least this fraction of the kept probes.
BACKGROUND_COVERAGE = 0.8
#: ... and is diffuse: the mean of the lower Otsu class of its map is at least this fraction of
#: the mean of the upper class (a crystal has a region where it is absent, the background not).
BACKGROUND_CONTRAST = 0.2
#: ``threshold="otsu"``: a component is present above this fraction of the way from the mean
#: of Otsu's lower (absent) class to the mean of its upper (present) class, on regions that
#: reach Otsu's level somewhere (hysteresis).
OTSU_PRESENCE = 0.1
_THRESHOLD_METHODS = ("otsu", "otsu-level")
#: Cosine similarity of two factors above which they are the same component at another k.
SIMILARITY_THRESHOLD = 0.9
#: Smallest share of each part in the non-negative fit of a split or merge.
_MIN_SHARE = 0.1
#: A member of an overlap whose non-negative fit to the overlap's raw mean carries less than
#: this share of the strongest member's counts is not present there (:func:`unconfirmed_members`).
CONFIRM_SHARE = 0.1
#: Fraction of an overlap's probes that must also be an overlap of the same components at a
#: neighbouring k for the overlap to *hold* there.
_HOLD_FRACTION = 0.5
#: Probes outside every phase holding at least this share of the median probe's counts are
#: held by a background (:func:`count_phases`).
UNCOVERED_SIGNAL = 0.05
#: Default smallest region, as a fraction of the kept probes (and at least 4 probes).
_MIN_SIZE_FRACTION = 0.002
_MIN_SIZE_FLOOR = 4

#: Stages of :func:`label_phases` (masks and labels, the pass over the data, tracking,
#: comparison): the steps of its progress.
N_STAGES = 4

#: Colours of the non-background components in the RGB composite and the plots, in order
#: (matplotlib's "tab10", written out so that the numerics need no matplotlib).
COLOURS = np.array(
    [
        (0.122, 0.467, 0.706),
        (1.000, 0.498, 0.055),
        (0.173, 0.627, 0.173),
        (0.839, 0.153, 0.157),
        (0.580, 0.404, 0.741),
        (0.549, 0.337, 0.294),
        (0.890, 0.467, 0.761),
        (0.498, 0.498, 0.498),
        (0.737, 0.741, 0.133),
        (0.090, 0.745, 0.812),
    ]
)
_BACKGROUND_COLOUR = (0.3, 0.3, 0.3)


@dataclass
class PhaseArrays:
    """Plain-array result of :func:`phase_maps` (no HyperSpy).

    Attributes
    ----------
    k : int
        Number of components of the factorisation.
    labels : numpy.ndarray
        (ny, nx) int phase label per probe; 0 = no phase (background only, vacuum, or a probe
        excluded by the navigation mask).
    legend : dict of int to tuple of int
        Phase label -> the component indices present.  Singles come first in component order,
        then overlaps by number of probes (descending, ties by component indices).
    overlap : numpy.ndarray
        (ny, nx) bool: two or more non-background component masks hold.
    masks : numpy.ndarray
        (k, ny, nx) bool component masks.  The background's mask (if any) is where it is present
        (above :data:`BACKGROUND_PRESENCE` of its robust max); it is not used for the phases.
    thresholds : numpy.ndarray
        (k,) the loading threshold applied to each map, counts.
    background_index : int or None
        The background component, kept out of the phases.
    background_scores : dict
        ``coverage`` and ``contrast`` per component (lists), as judged by
        :func:`find_background`.
    rgb : numpy.ndarray
        (ny, nx, 3) composite of the non-background loading maps, each scaled by its robust max
        and coloured by ``colours``; values in [0, 1].
    colours : numpy.ndarray
        (k, 3) colour of each component (the background grey).
    phase_sizes : numpy.ndarray
        (n_phases,) probes per phase (labels 1..n_phases).
    mean_loadings : numpy.ndarray
        (n_phases, k) mean loadings per phase.
    raw_means, reconstructed_means : numpy.ndarray
        (n_phases, n_pixel) float64 mean raw and reconstructed pattern per phase.
    comparison : list of dict
        Per phase: label, components, n_probes, ssim, psnr, cosine, data_range
        (see :func:`compare_means`).
    tracking : dict
        See :func:`track_components`.
    min_size : int
        The speck size used.
    roles : list of dict
        Per component, what it is (:func:`~hyperspy_nmfdecide.components.component_roles`):
        ``background``, ``phase``, ``variant`` of a phase (its mask counts as the phase's) or
        ``interaction`` of two phases (left out of the labels).
    params : dict
        threshold, min_size, background and the constants used.
    """

    k: int
    labels: np.ndarray
    legend: dict[int, tuple[int, ...]]
    overlap: np.ndarray
    masks: np.ndarray
    thresholds: np.ndarray
    background_index: int | None
    background_scores: dict
    rgb: np.ndarray
    colours: np.ndarray
    phase_sizes: np.ndarray
    mean_loadings: np.ndarray
    raw_means: np.ndarray
    reconstructed_means: np.ndarray
    comparison: list[dict]
    tracking: dict
    min_size: int
    roles: list[dict] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def n_phases(self) -> int:
        return len(self.legend)


# -- small helpers ---------------------------------------------------------------------------
def robust_max(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The :data:`ROBUST_PERCENTILE` th percentile: a maximum that ignores a few hot probes.

    Examples
    --------
    >>> values = np.r_[np.ones(999), 1000.0]
    >>> float(robust_max(values))
    1.0
    """
    return np.percentile(np.asarray(values, dtype=np.float64), ROBUST_PERCENTILE, axis=axis)


def default_min_size(n_kept: int) -> int:
    """Default speck size: 0.2 % of the kept probes, and at least 4 probes.

    Examples
    --------
    >>> default_min_size(576), default_min_size(256 * 256)
    (4, 132)
    """
    return max(_MIN_SIZE_FLOOR, int(math.ceil(_MIN_SIZE_FRACTION * n_kept)))


def _kept(scan_shape: tuple[int, int], navigation_mask) -> np.ndarray:
    if navigation_mask is None:
        return np.ones(scan_shape, dtype=bool)
    return ~np.asarray(navigation_mask, dtype=bool).reshape(scan_shape)


def _check_threshold(threshold) -> str | float:
    if isinstance(threshold, str):
        if threshold.lower() not in _THRESHOLD_METHODS:
            raise ValueError(
                f"threshold must be one of {_THRESHOLD_METHODS} or a fraction in (0, 1) of each "
                f"map's robust maximum, got {threshold!r}"
            )
        return threshold.lower()
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(
        threshold, (int, float, np.integer, np.floating)
    ):
        raise ValueError(
            f"threshold must be 'otsu' or a fraction in (0, 1), got {type(threshold).__name__} "
            f"{threshold!r}"
        )
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be 'otsu' or a fraction in (0, 1), got {threshold!r}")
    return float(threshold)


def _check_min_size(min_size, n_probe: int, n_kept: int) -> int:
    if min_size is None:
        return default_min_size(n_kept)
    if isinstance(min_size, (bool, np.bool_)) or not isinstance(min_size, (int, np.integer)):
        raise ValueError(f"min_size must be an int number of probes, got {min_size!r}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0 probes, got {min_size}")
    if min_size > n_probe:
        raise ValueError(f"min_size ({min_size}) is larger than the scan ({n_probe} probes)")
    return int(min_size)


def _check_scan_shape(scan_shape) -> tuple[int, int]:
    shape = tuple(int(n) for n in scan_shape)
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(
            f"phase maps need a 2-D scan of at least 2 x 2 probes (connected regions); "
            f"the scan has shape {shape}"
        )
    return shape


def _remove_small(mask: np.ndarray, min_size: int, kept: np.ndarray) -> np.ndarray:
    """Drop connected regions and fill holes of fewer than ``min_size`` probes (4-connected).

    Equivalent to scikit-image's ``remove_small_objects`` and ``remove_small_holes`` with
    ``connectivity=1``, written with :func:`scipy.ndimage.label` because their size argument
    changed meaning across scikit-image versions (``min_size`` became ``max_size`` in 0.26).
    """
    if min_size <= 1:
        return mask & kept
    out = mask & kept
    for target in (True, False):  # specks, then holes among the kept probes
        region = out if target else (~out & kept)
        lab, n = ndimage.label(region)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        small = sizes < min_size
        small[0] = False
        if target:
            out = out & ~small[lab]
        else:
            out = out | small[lab]
    return out


# -- step 1: background ----------------------------------------------------------------------
def _background_scores(loadings: np.ndarray, kept_flat: np.ndarray) -> dict:
    """Coverage and contrast of every loading map (see :func:`find_background`)."""
    values = np.asarray(loadings, dtype=np.float64)[kept_flat]
    peak = robust_max(values, axis=0)
    k = values.shape[1]
    coverage = np.zeros(k)
    contrast = np.zeros(k)
    for j in range(k):
        v = values[:, j]
        if not peak[j] > 0:
            continue
        coverage[j] = float(np.mean(v > BACKGROUND_PRESENCE * peak[j]))
        if np.ptp(v) == 0:
            contrast[j] = 1.0
            continue
        t = threshold_otsu(v)
        low, high = v[v <= t], v[v > t]
        contrast[j] = float(low.mean() / high.mean()) if high.size and high.mean() > 0 else 1.0
    return {
        "coverage": coverage.tolist(),
        "contrast": contrast.tolist(),
        "mean": values.mean(axis=0).tolist() if values.size else [0.0] * k,
    }


def find_background(loadings: np.ndarray, navigation_mask: np.ndarray | None = None) -> int | None:
    """The background component: present nearly everywhere and diffuse, or None.

    A component is a background candidate when its loading exceeds
    :data:`BACKGROUND_PRESENCE` (10 %) of its robust maximum on at least
    :data:`BACKGROUND_COVERAGE` (80 %) of the kept probes (*present nearly everywhere*) and the
    map has no empty region: splitting it with Otsu's method, the lower class's mean loading is
    at least :data:`BACKGROUND_CONTRAST` (20 %) of the upper class's (*diffuse*; a crystal
    covering most of the scan still has its vacuum or other grains near zero).  Of several
    candidates the one with the largest mean loading (the most counts) is returned.

    Parameters
    ----------
    loadings : numpy.ndarray
        (n_probe, k) loadings.
    navigation_mask : numpy.ndarray, optional
        (n_probe,) or any shape of n_probe elements, True = probe excluded.

    Returns
    -------
    int or None

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> background = 100 + rng.normal(0, 5, 400)          # everywhere, a little noise
    >>> crystal = np.where(np.arange(400) < 300, 30.0, 0.0)  # absent on a quarter
    >>> find_background(np.c_[crystal, background])
    1
    >>> find_background(np.c_[crystal]) is None
    True
    """
    loadings = np.asarray(loadings)
    kept = (
        np.ones(loadings.shape[0], dtype=bool)
        if navigation_mask is None
        else ~np.asarray(navigation_mask, dtype=bool).ravel()
    )
    scores = _background_scores(loadings, kept)
    return _pick_background(scores)


def _pick_background(scores: dict) -> int | None:
    coverage = np.asarray(scores["coverage"])
    contrast = np.asarray(scores["contrast"])
    candidates = np.flatnonzero(
        (coverage >= BACKGROUND_COVERAGE) & (contrast >= BACKGROUND_CONTRAST)
    )
    if not candidates.size:
        return None
    mean = np.asarray(scores["mean"])
    best = max(candidates, key=lambda j: (mean[j], -j))
    if candidates.size > 1:
        _logger.info(
            "components %s all look like background; keeping %d", candidates.tolist(), best
        )
    return int(best)


# -- step 2: masks ---------------------------------------------------------------------------
def component_masks(
    loading_maps: np.ndarray,
    *,
    threshold: str | float = "otsu",
    min_size: int | None = None,
    background_index: int | None = None,
    navigation_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Threshold each loading map into a component mask and clean it.

    Parameters
    ----------
    loading_maps : numpy.ndarray
        (ny, nx, k) loadings over the scan.
    threshold : {"otsu", "otsu-level"} or float
        ``"otsu"``: Otsu's method (:func:`skimage.filters.threshold_otsu` of each map over the
        kept probes) splits the map into an *absent* and a *present* class; the component is
        present where its loading exceeds the absent-class mean plus :data:`OTSU_PRESENCE`
        (10 %) of the gap between the two class means, on connected regions that reach Otsu's
        level somewhere (hysteresis, :func:`skimage.filters.apply_hysteresis_threshold`).
        Otsu's level itself sits near the middle of a soft crystal edge, so it shrinks every
        region by about half an edge width and misses thin crystal; the lower presence level
        finds the edges and the thin end of a thickness ramp, the hysteresis keeps noise away
        from the regions out.  ``"otsu-level"``: Otsu's level as it is.  A float f in (0, 1):
        f times the map's robust maximum (its 99.5th percentile over the kept probes, so a few
        hot probes do not set the scale).  A probe is in a mask where the loading is strictly
        above the (presence) threshold.
    min_size : int or None
        Connected regions (4-connected) and holes smaller than this many probes are removed
        and filled, and overlap regions smaller than this keep only their strongest component
        (largest loading relative to its robust maximum).  None: :func:`default_min_size` of
        the kept probes.  0 or 1: no cleaning.
    background_index : int or None
        This map's mask is its presence (above :data:`BACKGROUND_PRESENCE` of its robust
        maximum) instead: Otsu would cut a smooth background in two.
    navigation_mask : numpy.ndarray, optional
        (ny, nx) True = probe excluded: ignored for the thresholds and never in a mask.

    Returns
    -------
    masks : numpy.ndarray
        (k, ny, nx) bool.
    thresholds : numpy.ndarray
        (k,) the presence threshold of each map (for ``"otsu"`` the lower, hysteresis level).

    Raises
    ------
    ValueError
        For a threshold outside (0, 1) or an unknown method, a min_size below 0 or above the
        number of probes, or a scan of a single row or column.

    Examples
    --------
    >>> maps = np.zeros((8, 8, 1))
    >>> maps[2:6, 2:6, 0] = 5.0
    >>> maps[0, 7, 0] = 5.0                      # a one-probe speck
    >>> masks, thresholds = component_masks(maps, min_size=2)
    >>> int(masks.sum()), masks.shape
    (16, (1, 8, 8))
    """
    maps = np.asarray(loading_maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"loading_maps must be (ny, nx, k), got shape {maps.shape}")
    scan_shape = _check_scan_shape(maps.shape[:2])
    threshold = _check_threshold(threshold)
    kept = _kept(scan_shape, navigation_mask)
    n_probe = scan_shape[0] * scan_shape[1]
    min_size = _check_min_size(min_size, n_probe, int(kept.sum()))
    k = maps.shape[2]
    masks = np.zeros((k,) + scan_shape, dtype=bool)
    thresholds = np.zeros(k)
    for j in range(k):
        m = maps[..., j]
        v = m[kept]
        peak = float(robust_max(v)) if v.size else 0.0
        if j == background_index:
            t = BACKGROUND_PRESENCE * peak
            mask = m > t
        elif isinstance(threshold, str):
            if not v.size or np.ptp(v) == 0:
                t = float(v.max(initial=0))
                mask = m > t
            else:
                level = float(threshold_otsu(v))
                t = level
                if threshold == "otsu":
                    absent, present = v[v <= level].mean(), v[v > level].mean()
                    t = min(level, float(absent + OTSU_PRESENCE * (present - absent)))
                    mask = apply_hysteresis_threshold(np.where(kept, m, -np.inf), t, level)
                else:
                    mask = m > t
        else:
            t = threshold * peak
            mask = m > t
        thresholds[j] = t
        masks[j] = _remove_small(mask, min_size, kept)
    _remove_overlap_specks(masks, maps, min_size, background_index, kept)
    return masks, thresholds


def _remove_overlap_specks(
    masks: np.ndarray,
    maps: np.ndarray,
    min_size: int,
    background_index: int | None,
    kept: np.ndarray,
) -> None:
    """Overlap regions smaller than ``min_size`` keep only their strongest component (in place).

    Where two masks meet at a hard boundary (grains), a probe or two may pass both thresholds;
    such a speck of overlap is not an overlap phase.  On each connected overlap region of fewer
    than ``min_size`` probes only the component with the largest loading relative to its
    robust maximum keeps its mask.
    """
    if min_size <= 1:
        return
    used = [j for j in range(masks.shape[0]) if j != background_index]
    if len(used) < 2:
        return
    overlap = masks[used].sum(axis=0) >= 2
    lab, n = ndimage.label(overlap)
    if n == 0:
        return
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    small = (sizes < min_size) & (np.arange(n + 1) > 0)
    specks = small[lab]
    if not specks.any():
        return
    peaks = np.array([robust_max(maps[..., j][kept]) if kept.any() else 0.0 for j in used])
    relative = maps[..., used] / np.where(peaks > 0, peaks, np.inf)
    relative = np.where(np.moveaxis(masks[used], 0, -1), relative, -np.inf)
    strongest = np.argmax(relative, axis=-1)
    for i, j in enumerate(used):
        masks[j][specks & (strongest != i)] = False


# -- step 3: labels --------------------------------------------------------------------------
def phase_labels(
    masks: np.ndarray,
    *,
    background_index: int | None = None,
    navigation_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, tuple[int, ...]], np.ndarray]:
    """One label per probe from the set of components present.

    Parameters
    ----------
    masks : numpy.ndarray
        (k, ny, nx) bool component masks.
    background_index : int or None
        Left out of the sets.
    navigation_mask : numpy.ndarray, optional
        (ny, nx) True = excluded: label 0.

    Returns
    -------
    labels : numpy.ndarray
        (ny, nx) int; 0 = no component (background only, vacuum) or excluded.
    legend : dict of int to tuple of int
        Label -> components.  Numbering is deterministic: single components first in
        component order, then overlaps by number of probes, descending (ties: fewer
        components first, then by component indices).
    overlap : numpy.ndarray
        (ny, nx) bool, two or more components present.

    Examples
    --------
    >>> masks = np.zeros((2, 4, 4), dtype=bool)
    >>> masks[0, :, :3] = masks[1, :, 2:] = True
    >>> labels, legend, overlap = phase_labels(masks)
    >>> legend, labels[0].tolist()
    ({1: (0,), 2: (1,), 3: (0, 1)}, [1, 1, 3, 2])
    """
    masks = np.asarray(masks, dtype=bool)
    k = masks.shape[0]
    scan_shape = masks.shape[1:]
    kept = _kept(scan_shape, navigation_mask)
    used = np.array([j != background_index for j in range(k)], dtype=bool)
    present = masks & used[:, None, None] & kept[None]
    count = present.sum(axis=0)
    flat = present.reshape(k, -1).T
    rows, inverse = np.unique(flat, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    sizes = np.bincount(inverse, minlength=len(rows))
    sets = [tuple(int(j) for j in np.flatnonzero(row)) for row in rows]
    singles = sorted((s for s in sets if len(s) == 1), key=lambda s: s)
    multis = sorted(
        ((s, int(sizes[i])) for i, s in enumerate(sets) if len(s) >= 2),
        key=lambda item: (-item[1], len(item[0]), item[0]),
    )
    order = singles + [s for s, _ in multis]
    legend = {label: members for label, members in enumerate(order, start=1)}
    lookup = {members: label for label, members in legend.items()}
    table = np.array([lookup.get(s, 0) for s in sets], dtype=np.int64)
    labels = table[inverse].reshape(scan_shape)
    return labels, legend, (count >= 2)


def phase_masks(masks: np.ndarray, roles: list[dict]) -> np.ndarray:
    """(k, ny, nx) masks for the labels: each phase's mask grown by its variants' masks.

    A variant (thickness, dynamical intensities) is its phase where it holds; an interaction
    (:mod:`hyperspy_nmfdecide.components`) adds nothing the phases it comes from do not
    already mark: both get an empty mask, so that neither makes a phase or an overlap of its
    own.

    Examples
    --------
    >>> masks = np.zeros((3, 2, 4), dtype=bool)
    >>> masks[0, :, :2] = masks[1, :, 2:] = masks[2, :, 1:3] = True
    >>> roles = [{"role": "phase", "parents": []}, {"role": "phase", "parents": []},
    ...          {"role": "variant", "parents": [0]}]
    >>> phase_masks(masks, roles).sum(axis=(1, 2)).tolist()
    [6, 4, 0]
    """
    out = np.array(masks, dtype=bool, copy=True)
    for j, role in enumerate(roles):
        if role["role"] in ("variant", "interaction"):
            if role["role"] == "variant":
                out[role["parents"][0]] |= masks[j]
            out[j] = False
    return out


def count_phases(
    factors: np.ndarray,
    loadings: np.ndarray,
    scan_shape: tuple[int, int],
    pattern_shape: tuple[int, int],
    *,
    navigation_mask: np.ndarray | None = None,
) -> tuple[int, list[dict]]:
    """How many of a factorisation's components are phases or the background, and their roles.

    The masks and background of :func:`phase_maps`' defaults, then
    :func:`~hyperspy_nmfdecide.components.component_roles`.  A background the fit did not
    give a component of its own still counts when it is there: when at least
    :func:`default_min_size` probes hold none of the phases yet hold counts (at least
    :data:`UNCOVERED_SIGNAL` of the median probe's), something everywhere — vacuum's beam
    and diffuse scattering, a support film, a dark offset — is one more source, which the fit
    spread over the phases' components (at low dose, once the direct beam is masked, NMF
    prefers to split a crystal than to separate a faint background).

    Examples
    --------
    >>> loadings = np.zeros((36, 2))
    >>> loadings[:18, 0] = loadings[18:, 1] = 10.0
    >>> factors = np.eye(2, 16)
    >>> count_phases(factors, loadings, (6, 6), (4, 4))[0]
    2
    """
    k = loadings.shape[1]
    kept = _kept(tuple(scan_shape), navigation_mask)
    background = find_background(loadings, None if navigation_mask is None else ~kept)
    masks, _ = component_masks(
        np.asarray(loadings).reshape(tuple(scan_shape) + (k,)),
        background_index=background,
        navigation_mask=None if navigation_mask is None else ~kept,
    )
    roles = component_roles(factors, masks, pattern_shape, background_index=background)
    count = sum(r["role"] in ("phase", "background") for r in roles)
    if background is None:
        covered = phase_masks(masks, roles).any(axis=0)
        totals = np.asarray(loadings, dtype=np.float64).sum(axis=1).reshape(covered.shape)
        uncovered = kept & ~covered
        level = float(np.median(totals[kept])) if kept.any() else 0.0
        lit = uncovered & (totals >= UNCOVERED_SIGNAL * level)
        if level > 0 and lit.sum() >= default_min_size(int(kept.sum())):
            count += 1
    return count, roles


# -- step 4: tracking ------------------------------------------------------------------------
def _assignment(similarity: np.ndarray) -> dict[int, int]:
    """Row -> column of the one-to-one matching of maximum total similarity."""
    rows, cols = linear_sum_assignment(-similarity)
    return {int(r): int(c) for r, c in zip(rows, cols)}


def _splits(small: np.ndarray, large: np.ndarray, threshold: float) -> dict[int, dict]:
    """Components of ``small`` (k) that split into two components of ``large`` (k + 1).

    Component i splits when (a) its best single match in ``large`` has a similarity below
    ``threshold`` (otherwise it simply carries on), (b) at least two components of ``large``
    are more similar to i than to any other component of ``small``, and (c) the best
    non-negative combination of the two most similar of them matches i with cosine similarity
    >= ``threshold``, each taking at least 10 % of the combination.
    """
    sim = cosine_similarity(small, large)  # (k, k + 1)
    owner = np.argmax(sim, axis=0)
    out = {}
    for i in range(sim.shape[0]):
        if sim[i].max() >= threshold:
            continue
        parts = [int(a) for a in np.flatnonzero(owner == i)]
        if len(parts) < 2:
            continue
        a, b = sorted(parts, key=lambda p: -sim[i, p])[:2]
        basis = np.stack([large[a], large[b]], axis=1).astype(np.float64)
        weights, _ = nnls(basis, np.asarray(small[i], dtype=np.float64))
        total = weights.sum()
        if not total > 0:
            continue
        fit = float(cosine_similarity((basis @ weights)[None], small[i][None])[0, 0])
        shares = weights / total
        if fit >= threshold and shares.min() >= _MIN_SHARE:
            out[i] = {"parts": [a, b], "fit": fit, "shares": shares.tolist()}
    return out


def track_components(
    factors: dict[int, np.ndarray],
    k: int,
    *,
    threshold: float = SIMILARITY_THRESHOLD,
) -> dict:
    """Follow the components of ``k`` to the neighbouring k present in ``factors``.

    Components are matched one-to-one (:func:`scipy.optimize.linear_sum_assignment`) by the
    cosine similarity of their unit-sum factors.  Per component of k:

    * ``stable``: matched with similarity >= ``threshold`` at every neighbour present (None
      when neither k - 1 nor k + 1 is available);
    * ``splits_at_next``: the two components of k + 1 it splits into (see the rule below), or
      None;
    * ``merges_at_prev``: ``{"partner": j, "into": m}`` when it and component j of k are the
      two parts of component m of k - 1, or None.

    A split of component i at k + 1: its best single match there is below ``threshold``, two
    components of k + 1 are each more similar to i than to any other component of k, and the
    best non-negative combination of those two matches i with similarity >= ``threshold``,
    each part carrying >= 10 %.  A merge at k - 1 is the same rule read from k - 1 to k.

    Parameters
    ----------
    factors : dict of int to numpy.ndarray
        k -> (k, n_pixel) factors; must hold ``k``, may hold ``k - 1`` and ``k + 1``.
    k : int
        The k followed.
    threshold : float
        Similarity for a match to count.

    Returns
    -------
    dict
        ``k``, ``threshold``, ``neighbours`` (list of the neighbouring k present),
        ``similarity`` ({"k-1": (k-1, k) list, "k+1": (k, k+1) list} of the ones present),
        ``components`` (a list of one dict per component of k: component, match_prev,
        similarity_prev, match_next, similarity_next, stable, splits_at_next,
        merges_at_prev).  JSON-ready.

    Examples
    --------
    >>> eye = np.eye(4)
    >>> f2 = np.array([eye[0], eye[1] + eye[2]]) / [[1], [2]]   # the second splits at k = 3
    >>> f3 = eye[:3]
    >>> t = track_components({2: f2, 3: f3}, 2)
    >>> t["components"][0]["stable"], t["components"][1]["splits_at_next"]["parts"]
    (True, [1, 2])
    """
    current = np.asarray(factors[k], dtype=np.float64)
    prev = factors.get(k - 1)
    nxt = factors.get(k + 1)
    rows = [
        {
            "component": i,
            "match_prev": None,
            "similarity_prev": None,
            "match_next": None,
            "similarity_next": None,
            "stable": None,
            "splits_at_next": None,
            "merges_at_prev": None,
        }
        for i in range(k)
    ]
    out: dict[str, Any] = {"k": int(k), "threshold": float(threshold), "neighbours": []}
    similarity: dict[str, list] = {}
    if prev is not None and k - 1 >= 1:
        prev = np.asarray(prev, dtype=np.float64)
        out["neighbours"].append(k - 1)
        sim = cosine_similarity(prev, current)  # (k-1, k)
        similarity["k-1"] = sim.tolist()
        for m, i in _assignment(sim).items():
            rows[i]["match_prev"] = m
            rows[i]["similarity_prev"] = float(sim[m, i])
        for m, split in _splits(prev, current, threshold).items():
            a, b = split["parts"]
            rows[a]["merges_at_prev"] = {"partner": b, "into": m, "fit": split["fit"]}
            rows[b]["merges_at_prev"] = {"partner": a, "into": m, "fit": split["fit"]}
    if nxt is not None:
        nxt = np.asarray(nxt, dtype=np.float64)
        out["neighbours"].append(k + 1)
        sim = cosine_similarity(current, nxt)  # (k, k+1)
        similarity["k+1"] = sim.tolist()
        for i, a in _assignment(sim).items():
            rows[i]["match_next"] = a
            rows[i]["similarity_next"] = float(sim[i, a])
        for i, split in _splits(current, nxt, threshold).items():
            rows[i]["splits_at_next"] = split
    for row in rows:
        checked = [
            row[f"similarity_{key}"]
            for key, k_ in (("prev", k - 1), ("next", k + 1))
            if k_ in out["neighbours"]
        ]
        if checked:
            row["stable"] = bool(all(s is not None and s >= threshold for s in checked))
    out["similarity"] = similarity
    out["components"] = rows
    return out


def _images(tracking: dict, key: str) -> dict[int, list[int]]:
    """Component of k -> its component(s) at the neighbour ``key`` ("prev" or "next")."""
    out = {}
    for row in tracking["components"]:
        i = row["component"]
        if key == "next" and row["splits_at_next"] is not None:
            out[i] = list(row["splits_at_next"]["parts"])
        elif key == "prev" and row["merges_at_prev"] is not None:
            out[i] = [row["merges_at_prev"]["into"]]
        elif row[f"match_{key}"] is not None:
            out[i] = [row[f"match_{key}"]]
        else:
            out[i] = []
    return out


def _overlap_holds(
    legend: dict[int, tuple[int, ...]],
    labels: np.ndarray,
    tracking: dict,
    neighbour_masks: dict[str, np.ndarray],
) -> list[dict]:
    """Whether each overlap of k is also an overlap of the same components at k - 1 / k + 1.

    A member is followed to its matched component at the neighbour (both parts when it splits
    at k + 1, the merged component at k - 1).  At the neighbour the overlap holds on the
    probes where every member's image is present; members that map onto the same component
    (they merged) or onto none cannot overlap there.  The overlap *holds* when it does so on at
    least half of its probes.
    """
    rows = []
    for label, members in legend.items():
        if len(members) < 2:
            continue
        region = labels == label
        row: dict[str, Any] = {
            "label": int(label),
            "components": list(members),
            "n_probes": int(region.sum()),
        }
        for key in ("prev", "next"):
            masks = neighbour_masks.get(key)
            if masks is None:
                row[f"fraction_{key}"] = None
                row[f"holds_{key}"] = None
                continue
            images = _images(tracking, key)
            parts = [images[m] for m in members]
            flat = [p for part in parts for p in part]
            if any(not part for part in parts) or len(set(flat)) < len(flat):
                fraction = 0.0
            else:
                together = np.ones(labels.shape, dtype=bool)
                for part in parts:
                    together &= np.any(masks[part], axis=0)
                fraction = float(together[region].mean()) if region.any() else 0.0
            row[f"fraction_{key}"] = fraction
            row[f"holds_{key}"] = bool(fraction >= _HOLD_FRACTION)
        rows.append(row)
    return rows


# -- step 5: raw clustering ------------------------------------------------------------------


def phase_means(
    data,
    labels: np.ndarray,
    n_phases: int,
    *,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean raw pattern of each phase, in one chunked pass over the data.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        (n_probe, n_pixel), any real dtype; never modified, and a dask array is never
        computed whole: the sums are ``onehot.T @ data`` as one dask product (one pass over
        its chunks, each summed in float64).
    labels : numpy.ndarray
        n_probe labels (any shape), 0 = no phase, 1..n_phases.
    n_phases : int
        Number of phases.
    chunk_rows : int or None
        Probes per block for numpy data (None: about 32 MiB of float64 per block); for dask
        data the array is rechunked to this many rows when given, else its chunks are used.

    Returns
    -------
    means : numpy.ndarray
        (n_phases, n_pixel) float64; a phase without probes has zeros.
    counts : numpy.ndarray
        (n_phases,) probes per phase.

    Examples
    --------
    >>> data = np.arange(12).reshape(4, 3)
    >>> means, counts = phase_means(data, np.array([1, 1, 2, 0]), 2, chunk_rows=1)
    >>> means.tolist(), counts.tolist()
    ([[1.5, 2.5, 3.5], [6.0, 7.0, 8.0]], [2, 1])
    """
    labels = np.asarray(labels).ravel()
    n_probe, n_pixel = data.shape
    if labels.size != n_probe:
        raise ValueError(f"labels has {labels.size} probes, data {n_probe}")
    counts = np.bincount(labels, minlength=n_phases + 1)[1 : n_phases + 1]
    sums = np.zeros((n_phases, n_pixel))
    if n_phases == 0:
        return sums, counts
    if is_dask(data):
        import dask.array as da

        if chunk_rows is not None:
            data = data.rechunk((int(chunk_rows), -1))
        onehot = (labels[None, :] == np.arange(1, n_phases + 1)[:, None]).astype(np.float64)
        onehot = da.from_array(onehot, chunks=(n_phases, data.chunks[0]))
        sums = np.asarray((onehot @ data.astype(np.float64)).compute())
    else:
        rows = chunk_rows or max(1, 2**22 // max(n_pixel, 1))
        phases = np.arange(1, n_phases + 1)
        for start in range(0, n_probe, rows):
            lab = labels[start : start + rows]
            if not np.any(lab):
                continue
            block = np.asarray(data[start : start + rows], dtype=np.float64)
            onehot = (lab[:, None] == phases[None, :]).astype(np.float64)
            sums += onehot.T @ block
    means = sums / np.maximum(counts, 1)[:, None]
    return means, counts


def compare_means(
    raw: np.ndarray,
    reconstructed: np.ndarray,
    pattern_shape: tuple[int, int],
    *,
    signal_mask: np.ndarray | None = None,
) -> list[dict]:
    """SSIM, PSNR and cosine similarity of each raw mean pattern against its reconstruction.

    ``data_range`` (for SSIM and PSNR, :mod:`hyperspy_nmfdecide.iqa`) is the maximum of the raw
    mean pattern over the unmasked pixels.  Masked pixels (``signal_mask`` True) are zero in
    the reconstruction (the factors are zero there); for SSIM, which needs a whole image, they
    are set to zero in the raw mean too (equal in both), and PSNR and the cosine similarity are
    computed over the unmasked pixels only.  SSIM is NaN for patterns smaller than 11 x 11
    (its Gaussian window).

    Parameters
    ----------
    raw, reconstructed : numpy.ndarray
        (n_phases, n_pixel) mean patterns.
    pattern_shape : tuple of int
        (ky, kx) with ky * kx = n_pixel.
    signal_mask : numpy.ndarray, optional
        Pattern-shaped or flat, True = pixel excluded.

    Returns
    -------
    list of dict
        One per phase, in order: ``ssim``, ``psnr`` (dB), ``cosine``, ``data_range``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> raw = rng.random((1, 16 * 16))
    >>> rows = compare_means(raw, raw.copy(), (16, 16))
    >>> rows[0]["ssim"], rows[0]["psnr"], round(rows[0]["cosine"], 6)
    (1.0, inf, 1.0)
    """
    raw = np.asarray(raw, dtype=np.float64)
    reconstructed = np.asarray(reconstructed, dtype=np.float64)
    keep = (
        np.ones(raw.shape[1], dtype=bool)
        if signal_mask is None
        else ~np.asarray(signal_mask, dtype=bool).ravel()
    )
    rows = []
    for r, m in zip(raw, reconstructed):
        r_kept, m_kept = r[keep], m[keep]
        data_range = float(r_kept.max(initial=0.0))
        row = {"ssim": math.nan, "psnr": math.nan, "cosine": math.nan, "data_range": data_range}
        if data_range > 0:
            a = np.where(keep, r, 0.0).reshape(pattern_shape)
            b = np.where(keep, m, 0.0).reshape(pattern_shape)
            if min(pattern_shape) >= 11:
                row["ssim"] = iqa.ssim(a, b, data_range=data_range)
            row["psnr"] = iqa.psnr(r_kept[None], m_kept[None], data_range=data_range)
            row["cosine"] = float(cosine_similarity(r_kept[None], m_kept[None])[0, 0])
        rows.append(row)
    return rows


def unconfirmed_members(
    raw_means: np.ndarray,
    legend: dict[int, tuple[int, ...]],
    factors: np.ndarray,
    background_index: int | None,
    signal_mask: np.ndarray | None = None,
) -> dict[int, tuple[int, ...]]:
    """Per overlap phase, the members its raw mean pattern does not need.

    The raw mean of an overlap is fitted, by non-negative least squares over the unmasked
    pixels, with its members' factors and the background's; a member carrying less than
    :data:`CONFIRM_SHARE` of the counts of the strongest member adds nothing the pattern shows
    (its loading leaked over a boundary, or its threshold let noise through), and is not
    present there.

    Returns
    -------
    dict of int to tuple of int
        Overlap label -> the members to drop (labels that keep every member are absent).

    Examples
    --------
    >>> factors = np.eye(3, 6)
    >>> raw = np.array([[0.0, 5.0, 0.02, 0.0, 0.0, 0.0], [0.0, 5.0, 3.0, 0.0, 0.0, 0.0]])
    >>> unconfirmed_members(raw, {1: (1, 2), 2: (1, 2)}, factors, None)
    {1: (2,)}
    """
    factors = np.asarray(factors, dtype=np.float64)
    keep = (
        np.ones(factors.shape[1], dtype=bool)
        if signal_mask is None
        else ~np.asarray(signal_mask, dtype=bool).ravel()
    )
    out = {}
    for label, members in legend.items():
        if len(members) < 2:
            continue
        columns = list(members) + ([background_index] if background_index is not None else [])
        weights, _ = nnls(factors[columns][:, keep].T, np.asarray(raw_means[label - 1])[keep])
        member_weights = weights[: len(members)]
        strongest = member_weights.max()
        weak = tuple(
            m for m, w in zip(members, member_weights) if not w >= CONFIRM_SHARE * strongest
        )
        if weak and len(weak) < len(members):
            out[int(label)] = weak
    return out


def _merged_means(raw_means, old_sizes, old_labels, labels, n_phases):
    """Raw means and sizes of the new labels from those of the old ones (each old label's
    probes all move to one new label)."""
    sums = np.zeros((n_phases, raw_means.shape[1]))
    for old, size in enumerate(old_sizes, start=1):
        where = old_labels == old
        if size and where.any():
            new = int(labels[where].flat[0])
            if new:
                sums[new - 1] += raw_means[old - 1] * size
    sizes = np.bincount(labels.ravel(), minlength=n_phases + 1)[1 : n_phases + 1]
    return sums / np.maximum(sizes, 1)[:, None], sizes


# -- step 6: composite -----------------------------------------------------------------------
def component_colours(k: int, background_index: int | None) -> np.ndarray:
    """(k, 3) colours: :data:`COLOURS` in order for the non-background components, grey for it.

    Examples
    --------
    >>> component_colours(3, 0)[0].tolist()
    [0.3, 0.3, 0.3]
    """
    colours = np.zeros((k, 3))
    n = 0
    for j in range(k):
        if j == background_index:
            colours[j] = _BACKGROUND_COLOUR
        else:
            colours[j] = COLOURS[n % len(COLOURS)]
            n += 1
    return colours


def rgb_composite(
    loading_maps: np.ndarray,
    *,
    background_index: int | None = None,
    navigation_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Additive colour composite of the non-background loading maps.

    Each map is divided by its robust maximum (over the kept probes), clipped to [0, 1] and
    multiplied by its colour; the coloured maps are added and clipped to [0, 1].  Excluded
    probes are black.

    Returns
    -------
    rgb : numpy.ndarray
        (ny, nx, 3) float in [0, 1].
    colours : numpy.ndarray
        (k, 3), see :func:`component_colours`.

    Examples
    --------
    >>> maps = np.zeros((2, 2, 2))
    >>> maps[0, :, 0] = maps[:, 0, 1] = 1.0
    >>> rgb, colours = rgb_composite(maps)
    >>> rgb.shape, bool(np.allclose(rgb[1, 1], 0))
    ((2, 2, 3), True)
    """
    maps = np.asarray(loading_maps, dtype=np.float64)
    k = maps.shape[2]
    kept = _kept(maps.shape[:2], navigation_mask)
    colours = component_colours(k, background_index)
    rgb = np.zeros(maps.shape[:2] + (3,))
    for j in range(k):
        if j == background_index:
            continue
        peak = float(robust_max(maps[..., j][kept])) if kept.any() else 0.0
        if not peak > 0:
            continue
        rgb += np.clip(maps[..., j] / peak, 0, 1)[..., None] * colours[j]
    rgb = np.clip(rgb, 0, 1)
    rgb[~kept] = 0
    return rgb, colours


# -- everything ------------------------------------------------------------------------------
def _check_background(background, k: int):
    if background is None or (isinstance(background, str) and background == "auto"):
        return background
    if isinstance(background, (bool, np.bool_)) or not isinstance(background, (int, np.integer)):
        raise ValueError(
            f"background must be 'auto', a component index or None, got {background!r}"
        )
    if not 0 <= background < k:
        raise ValueError(f"background must be a component index in [0, {k - 1}], got {background}")
    return int(background)


def _check_data(data, n_probe: int, n_pixel: int):
    shape = getattr(data, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(
            f"data must be the 2-D (n_probe, n_pixel) = ({n_probe}, {n_pixel}) matrix, got "
            f"shape {shape}"
        )
    if tuple(shape) != (n_probe, n_pixel):
        raise ValueError(
            f"data has shape {tuple(shape)}, but the factorisation is of ({n_probe}, {n_pixel})"
        )
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"data must be real numbers, got dtype {dtype}")
    if not is_dask(data):
        data = np.asarray(data)
    return data


def label_phases(
    factors: np.ndarray,
    loadings: np.ndarray,
    data,
    scan_shape: tuple[int, int],
    *,
    neighbours: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    navigation_mask: np.ndarray | None = None,
    signal_mask: np.ndarray | None = None,
    pattern_shape: tuple[int, int] | None = None,
    threshold: str | float = "otsu",
    min_size: int | None = None,
    background: int | str | None = "auto",
    chunk_rows: int | None = None,
    progress: Callable[[], None] | None = None,
) -> PhaseArrays:
    """Phase maps of one factorisation (Cao et al.), as plain arrays.

    Parameters
    ----------
    factors : numpy.ndarray
        (k, n_pixel) unit-sum factors.
    loadings : numpy.ndarray
        (n_probe, k) loadings, probes in array order (scan y then x).
    data : numpy.ndarray or dask.array.Array
        (n_probe, n_pixel) the matrix that was factorised; read once, never modified.
    scan_shape : tuple of int
        (ny, nx), both at least 2.
    neighbours : dict, optional
        {k - 1: (factors, loadings), k + 1: (factors, loadings)} of the same sweep (either may
        be missing) for :func:`track_components`.
    navigation_mask, signal_mask : numpy.ndarray, optional
        True = probe / pixel excluded (as in the sweep).
    pattern_shape : tuple of int, optional
        (ky, kx) for SSIM; default the square root of n_pixel.
    threshold, min_size
        See :func:`component_masks`.
    background : "auto", int or None
        ``"auto"``: :func:`find_background`; an int: that component; None: no background.
    chunk_rows : int or None
        See :func:`phase_means`.
    progress : callable, optional
        Called with no argument after each of the :data:`N_STAGES` stages (masks and labels,
        the pass over the data, tracking, comparison).

    Returns
    -------
    PhaseArrays

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
    ...                       random_state=0)
    >>> x = scan.signal.data.reshape(64, 256)
    >>> w = scan.weights.reshape(64, 2)          # the truth as a factorisation
    >>> h = scan.sources.reshape(2, 256)
    >>> result = label_phases(h, w, x, (8, 8), min_size=0)
    >>> result.background_index, result.legend
    (0, {1: (1,)})
    >>> bool(result.comparison[0]["cosine"] > 0.99)
    True
    """
    factors = np.asarray(factors)
    loadings = np.asarray(loadings)
    k = factors.shape[0]
    if loadings.ndim != 2 or loadings.shape[1] != k:
        raise ValueError(f"loadings must be (n_probe, {k}), got shape {loadings.shape}")
    scan_shape = _check_scan_shape(scan_shape)
    n_probe, n_pixel = loadings.shape[0], factors.shape[1]
    if scan_shape[0] * scan_shape[1] != n_probe:
        raise ValueError(f"scan_shape {scan_shape} does not hold {n_probe} probes")
    threshold = _check_threshold(threshold)
    kept = _kept(scan_shape, navigation_mask)
    min_size = _check_min_size(min_size, n_probe, int(kept.sum()))
    background = _check_background(background, k)
    data = _check_data(data, n_probe, n_pixel)
    if pattern_shape is None:
        side = math.isqrt(n_pixel)
        pattern_shape = (side, side) if side * side == n_pixel else (1, n_pixel)
    tick = progress or (lambda: None)
    nav_mask = None if navigation_mask is None else ~kept
    options = {"threshold": threshold, "min_size": min_size, "navigation_mask": nav_mask}

    scores = _background_scores(loadings, kept.ravel())
    bg = _pick_background(scores) if background == "auto" else background
    maps = loadings.reshape(scan_shape + (k,))
    masks, thresholds = component_masks(maps, background_index=bg, **options)
    roles = component_roles(factors, masks, pattern_shape, background_index=bg)
    present = phase_masks(masks, roles)
    tick()
    labels, legend, overlap, raw_means, sizes = _confirmed_labels(
        present, data, factors, bg, nav_mask, signal_mask, chunk_rows
    )
    tick()
    rgb, colours = rgb_composite(maps, background_index=bg, navigation_mask=nav_mask)
    tracking = _tracking(factors, neighbours, bg, legend, labels, scan_shape, options)
    tick()
    mean_loadings, reconstructed, comparison = _comparison(
        raw_means, sizes, labels, legend, factors, loadings, pattern_shape, signal_mask
    )
    tick()
    _logger.debug("phase maps at k=%d: background %s, legend %s", k, bg, legend)
    return PhaseArrays(
        k=int(k),
        labels=labels,
        legend=legend,
        overlap=overlap,
        masks=masks,
        thresholds=thresholds,
        background_index=bg,
        background_scores=scores,
        rgb=rgb,
        colours=colours,
        phase_sizes=sizes.astype(np.int64),
        mean_loadings=mean_loadings,
        raw_means=raw_means,
        reconstructed_means=reconstructed,
        comparison=comparison,
        tracking=tracking,
        min_size=min_size,
        roles=roles,
        params={
            "threshold": threshold,
            "min_size": min_size,
            "background": background,
            "robust_percentile": ROBUST_PERCENTILE,
            "background_presence": BACKGROUND_PRESENCE,
            "background_coverage": BACKGROUND_COVERAGE,
            "background_contrast": BACKGROUND_CONTRAST,
            "similarity_threshold": SIMILARITY_THRESHOLD,
        },
    )


def _confirmed_labels(present, data, factors, bg, nav_mask, signal_mask, chunk_rows) -> tuple:
    """Labels, legend, overlap, raw means and sizes, overlaps confirmed by their raw mean.

    The raw patterns are averaged per phase (one pass over the data); an overlap whose raw mean
    does not need one of its components loses that component (no second pass: its probes join
    a phase, whose sums add).
    """
    labels, legend, overlap = phase_labels(present, background_index=bg, navigation_mask=nav_mask)
    raw_means, sizes = phase_means(data, labels, len(legend), chunk_rows=chunk_rows)
    unneeded = unconfirmed_members(raw_means, legend, factors, bg, signal_mask)
    if unneeded:
        for label, members in unneeded.items():
            present[list(members)] = present[list(members)] & (labels != label)
        old_labels, old_sizes = labels, sizes
        labels, legend, overlap = phase_labels(
            present, background_index=bg, navigation_mask=nav_mask
        )
        raw_means, sizes = _merged_means(raw_means, old_sizes, old_labels, labels, len(legend))
    return labels, legend, overlap, raw_means, sizes


def _tracking(factors, neighbours, bg, legend, labels, scan_shape, options) -> dict:
    """Components followed to k - 1 and k + 1, with the neighbours' masks for the overlaps."""
    k = factors.shape[0]
    neighbours = dict(neighbours or {})
    tracking = track_components(
        {k: factors, **{kk: np.asarray(f) for kk, (f, _) in neighbours.items()}}, k
    )
    neighbour_masks = {}
    for key, kk in (("prev", k - 1), ("next", k + 1)):
        if kk not in neighbours:
            continue
        _, l_n = (np.asarray(a) for a in neighbours[kk])
        bg_n = None if bg is None else tracking["components"][bg][f"match_{key}"]
        neighbour_masks[key], _ = component_masks(
            l_n.reshape(scan_shape + (kk,)), background_index=bg_n, **options
        )
        tracking[f"background_{key}"] = bg_n
    tracking["overlaps"] = _overlap_holds(legend, labels, tracking, neighbour_masks)
    return tracking


def _comparison(raw_means, sizes, labels, legend, factors, loadings, pattern_shape, signal_mask):
    """Mean loadings and reconstruction per phase, and their comparison with the raw means."""
    n_phases = len(legend)
    onehot = labels.ravel()[None, :] == np.arange(1, n_phases + 1)[:, None]
    mean_loadings = (onehot @ loadings.astype(np.float64)) / np.maximum(sizes, 1)[:, None]
    reconstructed = mean_loadings @ factors.astype(np.float64)
    comparison = compare_means(raw_means, reconstructed, pattern_shape, signal_mask=signal_mask)
    for label, row in zip(legend, comparison):
        row.update(
            {
                "label": int(label),
                "components": list(legend[label]),
                "n_probes": int(sizes[label - 1]),
            }
        )
    keys = ("label", "components", "n_probes", "ssim", "psnr", "cosine", "data_range")
    comparison = [{key: row[key] for key in keys} for row in comparison]
    return mean_loadings, reconstructed, comparison
