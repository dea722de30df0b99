"""What each component of a factorisation is: the background, a phase, or an effect of a phase.

Real scans are not sums of fixed patterns.  Spot intensities swing with thickness (dynamical
diffraction), so one crystal becomes a pattern plus corrections; where two crystals overlap,
the lower one sees a beam the upper one has depleted and each spot of one acts as a source for
the other (double diffraction), so the overlap holds spots neither has alone.  NMF spends
components on these effects once every phase has one, and a decision that counts every
component above the noise counts them as phases.  They are recognised from where they live and
what they hold (:func:`component_roles`):

* a **variant** of component i: where i is, with its spots at i's spot positions — the same
  crystal at another thickness, or a degenerate split of one phase;
* an **interaction** of components i and m: present (almost) only where both are, and not a
  variant — spots that exist only in their overlap.

Everything else is a **phase**, or the **background** (present everywhere, diffuse; found by
:func:`hyperspy_nmfdecide.phases.find_background`).  Genuine phases pass: a small crystal lying
on a larger one sits inside its region but has spots of its own.  No HyperSpy import here.

Examples
--------
>>> import numpy as np
>>> from hyperspy_nmfdecide.components import component_roles
>>> spots = np.zeros((3, 16, 16))
>>> spots[0, 4, 4] = spots[0, 12, 12] = 1.0          # crystal A
>>> spots[1, 4, 12] = spots[1, 12, 4] = 1.0          # crystal B
>>> spots[2, 4, 4] = 1.0                              # A's spot, at another thickness
>>> masks = np.zeros((3, 6, 6), dtype=bool)
>>> masks[0, :, :4] = masks[1, :, 3:] = True
>>> masks[2, :3, :2] = True                          # only where A is
>>> [r["role"] for r in component_roles(spots.reshape(3, -1), masks, (16, 16))]
['phase', 'phase', 'variant']
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .similarity import cosine_similarity

_logger = logging.getLogger(__name__)

__all__ = [
    "BEYOND",
    "COINCIDENT",
    "CONTAINED",
    "MIN_SPOT_FRACTION",
    "SHARED_REGION",
    "SIMILAR_BACKGROUND",
    "SIMILAR_SPOTS",
    "component_roles",
    "spot_fraction",
    "spot_similarity",
]

#: Share of a component's probes that must lie where two or more other phases are present for
#: it to be an interaction of them.
CONTAINED = 0.8
#: Two components are one phase when their masks share at least this fraction of the smaller
#: one (a thickness band of a crystal lies inside it; neighbouring grains meet on a line:
#: measured 0.6-1.0 against 0-0.37) ...
SHARED_REGION = 0.5
#: ... and their spot positions are similar (:func:`spot_similarity`) at least this much (above
#: every pair of different crystals measured; a variant below it may still join its phase
#: through another variant).
SIMILAR_SPOTS = 0.5
#: Components whose masks coincide (each holds this share of the larger one) are one phase
#: whatever their spots: NMF split one region in several components, which no map tells apart.
COINCIDENT = 0.85
#: An interaction's parents each have at least this share of their region outside it.
BEYOND = 0.3
#: Percentile of a factor's spot excess taken as its noise level.
_NOISE_PERCENTILE = 90
#: Cosine similarity to the background above which a diffuse component is a variant of it.
SIMILAR_BACKGROUND = 0.8
#: A factor has spots when at least this share of its intensity stands above its smooth level
#: (a crystal's pattern: 0.3-0.9; a halo or amorphous rings with noise: below 0.1).
MIN_SPOT_FRACTION = 0.15
#: Width (pixels) of the smooth level removed to leave the spots (a spot spans a few pixels;
#: halos and rings vary over tens).
_SMOOTH_SIGMA = 3.0


def spot_excess(factors: np.ndarray, pattern_shape: tuple[int, int]) -> np.ndarray:
    """(k, H, W) each factor minus its smooth level (Gaussian of :data:`_SMOOTH_SIGMA`), ≥ 0."""
    patterns = np.asarray(factors, dtype=np.float64).reshape((-1, *pattern_shape))
    smooth = ndimage.gaussian_filter(patterns, (0, _SMOOTH_SIGMA, _SMOOTH_SIGMA), mode="nearest")
    return np.clip(patterns - smooth, 0, None)


def spot_similarity(factors: np.ndarray, pattern_shape: tuple[int, int]) -> np.ndarray:
    """(k, k) cosine similarity of the factors' spot positions.

    Each factor's :func:`spot_excess`, less its 90th percentile (the level of its noise: spots
    hold a few per cent of the pixels), is compressed to ``log(1 + excess / (2 % of its
    height))``, so that a spot counts by where it is more than by how bright it is: the
    variants of a crystal whose reflections swing with thickness hold the same positions at
    different intensities, different crystals different positions.  Measured on simulated
    scans for component pairs whose masks share half the smaller one: the same crystal
    0.38-0.84 (5 % below 0.46), different crystals 0.06-0.46.  A factor with less than
    :data:`MIN_SPOT_FRACTION` of its intensity in spots is similar to nothing (0).

    Examples
    --------
    >>> f = np.zeros((3, 8, 8))
    >>> f[0, 2, 2], f[0, 5, 5] = 1.0, 0.2
    >>> f[1, 2, 2], f[1, 5, 5] = 0.2, 1.0          # the same spots, other intensities
    >>> f[2, 2, 5] = f[2, 5, 2] = 1.0               # other spots
    >>> np.round(spot_similarity(f.reshape(3, -1), (8, 8)), 2)[0].tolist()
    [1.0, 0.88, 0.0]
    """
    excess = spot_excess(factors, pattern_shape)
    k = excess.shape[0]
    flat = excess.reshape(k, -1)
    # Above the level of the factor's noise (spots hold a few per cent of the pixels).
    floor = np.percentile(flat, _NOISE_PERCENTILE, axis=1, keepdims=True)
    height = flat.max(axis=1, keepdims=True) - floor
    lifted = np.clip(flat - floor, 0, None)
    presence = np.log1p(np.divide(lifted, 0.02 * height, out=np.zeros_like(flat), where=height > 0))
    similarity = cosine_similarity(presence, presence)
    spotted = spot_fraction(factors, pattern_shape, excess) >= MIN_SPOT_FRACTION
    similarity[~spotted, :] = 0.0
    similarity[:, ~spotted] = 0.0
    return similarity


def above_floor(factors: np.ndarray) -> np.ndarray:
    """(k, n_pixel) each factor less its floor: the 5th percentile of its non-zero pixels.

    (No floor when most pixels are zero.)

    A detector's dark offset is a flat pattern that NMF spreads over its components; below
    its floor a factor holds nothing that tells components apart (masked pixels, exactly
    zero, are left out of the percentile).

    Examples
    --------
    >>> above_floor(np.array([[0.0, 5.0, 5.0, 9.0]])).tolist()
    [[0.0, 0.0, 0.0, 4.0]]
    >>> above_floor(np.array([[0.0, 0.0, 0.0, 9.0]])).tolist()
    [[0.0, 0.0, 0.0, 9.0]]
    """
    factors = np.asarray(factors, dtype=np.float64)
    # A factor mostly zero (sparse spots, nothing else) has no floor to remove.
    floors = np.array(
        [np.percentile(row[row > 0], 5) if np.mean(row > 0) > 0.5 else 0.0 for row in factors]
    )
    return np.clip(factors - floors[:, None], 0, None)


def spot_fraction(
    factors: np.ndarray, pattern_shape: tuple[int, int], excess: np.ndarray | None = None
) -> np.ndarray:
    """(k,) share of each factor's intensity above its floor held in spots.

    Examples
    --------
    >>> f = np.ones((1, 16, 16))
    >>> f[0, 8, 8] = 300.0
    >>> round(float(spot_fraction(f.reshape(1, -1), (16, 16))[0]), 2)
    0.98
    """
    excess = spot_excess(factors, pattern_shape) if excess is None else excess
    totals = above_floor(factors).reshape(excess.shape[0], -1).sum(axis=1)
    held = excess.reshape(excess.shape[0], -1).sum(axis=1)
    return np.divide(held, totals, out=np.zeros_like(held), where=totals > 0)


def component_roles(
    factors: np.ndarray,
    masks: np.ndarray,
    pattern_shape: tuple[int, int],
    *,
    background_index: int | None = None,
) -> list[dict]:
    """The role of every component: ``background``, ``phase``, ``variant`` or ``interaction``.

    1. **Variants.**  Components are grouped (union-find) wherever their masks share at
       least :data:`SHARED_REGION` of the smaller one and their spot positions are alike
       (:func:`spot_similarity` ≥ :data:`SIMILAR_SPOTS`): the bands of a crystal whose spot
       intensities change with thickness, a phase split in two; or wherever their masks
       coincide (:data:`COINCIDENT`), whatever their spots.  A diffuse component (less
       than :data:`MIN_SPOT_FRACTION` in spots) whose factor has a cosine similarity of at
       least :data:`SIMILAR_BACKGROUND` with the background's joins the background.  In each
       group the strongest component (the lowest index: the sweep orders them by integrated
       loading) is the phase (or the background, when the background is in the group) and
       the others its variants.
    2. **Interactions.**  A group whose region (the union of its masks) lies at least
       :data:`CONTAINED` where two or more other phase groups' regions overlap — groups that
       reach beyond it (:data:`BEYOND`) — is an interaction of phases (its parents: the two
       present on most of its probes).
    3. Everything else is a phase.

    Parameters
    ----------
    factors : numpy.ndarray
        (k, n_pixel) factors (masked pixels zero).
    masks : numpy.ndarray
        (k, ny, nx) bool component masks (:func:`hyperspy_nmfdecide.phases.component_masks`).
    pattern_shape : tuple of int
        (H, W) of a factor.
    background_index : int or None
        The background component.

    Returns
    -------
    list of dict
        One per component: ``component``, ``role``, ``parents`` (the phase a variant belongs
        to; the two phases of an interaction; empty otherwise), ``contained`` (share of an
        interaction's probes inside its parents' overlap), ``similarity`` (a variant's spot
        similarity to its phase).
    """
    factors = np.asarray(factors)
    masks = np.asarray(masks, dtype=bool)
    k = factors.shape[0]
    spots = spot_similarity(factors, pattern_shape)
    similar = cosine_similarity(above_floor(factors), above_floor(factors))
    diffuse = spot_fraction(factors, pattern_shape) < MIN_SPOT_FRACTION
    flat = masks.reshape(k, -1).astype(np.float64)
    sizes = flat.sum(axis=1)
    together = np.divide(
        flat @ flat.T,
        np.minimum(sizes[:, None], sizes[None, :]),
        out=np.zeros((k, k)),
        where=np.minimum(sizes[:, None], sizes[None, :]) > 0,
    )
    group = list(range(k))

    def root(j: int) -> int:
        while group[j] != j:
            group[j] = group[group[j]]
            j = group[j]
        return j

    for j in range(k):
        for i in range(j):
            if background_index in (i, j):
                # The background has no spots to share: its variants (a film's thickness, a
                # moving beam's halo and rings) are diffuse and look like it.
                other = j if i == background_index else i
                linked = diffuse[other] and similar[i, j] >= SIMILAR_BACKGROUND
            else:
                linked = (together[i, j] >= SHARED_REGION and spots[i, j] >= SIMILAR_SPOTS) or (
                    min(flat[i] @ flat[j], sizes[i], sizes[j])
                    >= COINCIDENT * max(sizes[i], sizes[j])
                )
            if linked:
                a, b = sorted((root(i), root(j)))
                group[b] = a
    members: dict[int, list[int]] = {}
    for j in range(k):
        members.setdefault(root(j), []).append(j)
    heads = {}
    for parts in members.values():
        head = background_index if background_index in parts else parts[0]
        heads[tuple(parts)] = head
    regions = {head: masks[list(parts)].any(axis=0) for parts, head in heads.items()}

    roles = [
        {"component": j, "role": "phase", "parents": [], "contained": None, "similarity": None}
        for j in range(k)
    ]
    phase_heads = [h for h in regions if h != background_index]
    for parts, head in heads.items():
        region = regions[head]
        others = [h for h in phase_heads if h != head]
        contained, parents = 0.0, []
        # The phases an interaction comes from reach beyond it: where they overlap is a part of
        # each of their regions, not all of it.
        others = [h for h in others if np.mean(region[regions[h]]) <= 1 - BEYOND]
        if region.any() and head != background_index and len(others) >= 2:
            present = np.stack([regions[h][region] for h in others])  # (others, its probes)
            contained = float(np.mean(present.sum(axis=0) >= 2))
            parents = sorted(np.asarray(others)[np.argsort(-present.sum(axis=1))[:2]].tolist())
        for j in parts:
            row = roles[j]
            if contained >= CONTAINED:
                row |= {"role": "interaction", "parents": parents, "contained": contained}
            elif j == head:
                row["role"] = "background" if j == background_index else "phase"
            else:
                row |= {"role": "variant", "parents": [head], "similarity": float(spots[j, head])}
    dependent = [(r["component"], r["role"], r["parents"]) for r in roles if r["parents"]]
    if dependent:
        _logger.info("components that are not phases: %s", dependent)
    return roles
