"""Accuracy of the phase maps against the ground truth of simulated scans.

``score_phase_maps(scan, pm)`` scores a :class:`~hyperspy_nmfdecide.results.PhaseMaps`
against a :class:`~hyperspy_nmfdecide.data.SimulatedScan`, beside a naive baseline computed from
the same factorisation:

* **ARI**: adjusted Rand index of the phase labels against ``scan.labels`` (over the probes not
  excluded by the navigation mask; label names do not matter).
* **overlap F1**: F1 score of the overlap map against ``scan.overlap``.
* **IoU per crystal source**: intersection over union of a component mask with the true
  presence of the source (``scan.weights[..., j]`` above ``presence`` times its maximum, by
  default the scan's own ``presence_threshold``), components matched to sources by the cosine
  similarity of their factors (Hungarian assignment; optionally over the pixels not in
  ``exclude``, e.g. without the direct beam, which dominates every pattern of some scans).
* **cosine per source**: the cosine similarity of each source with its matched component over
  the same pixels (0 for a source left without a component when k is too small).

The naive baseline: label = argmax of the loadings at the same k (nearly always the background,
which carries most counts, hence an ARI near 0; ``naive_scaled_ari`` takes the argmax of the
loadings each divided by its maximum instead); a component is present where
its loading is above half its maximum; overlap = two or more non-background components present
(the background being the component ``pm`` recognised).

Run ``python benchmarks/phase_accuracy.py`` for a demo on three seeded scans (< 2 min).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from hyperspy_nmfdecide.phases import cosine_similarity

_logger = logging.getLogger(__name__)

#: A naive component is present above this fraction of its maximum loading.
NAIVE_PRESENCE = 0.5


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    total = int(predicted.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * float(np.sum(predicted & truth)) / total


def _iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = int(np.sum(predicted | truth))
    return 1.0 if union == 0 else float(np.sum(predicted & truth)) / union


def _pixels(factors: np.ndarray, sources: np.ndarray, exclude) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) factors and (n_sources, n) sources over the pixels not excluded."""
    sources = sources.reshape(len(sources), -1)
    if exclude is None:
        return factors, sources
    keep = ~np.asarray(exclude, dtype=bool).ravel()
    return factors[:, keep], sources[:, keep]


def match_components(
    factors: np.ndarray, sources: np.ndarray, exclude: np.ndarray | None = None
) -> dict[int, int]:
    """Source index -> component index, by factor cosine similarity (Hungarian assignment).

    Parameters
    ----------
    factors : numpy.ndarray
        (k, n_pixel) component patterns.
    sources : numpy.ndarray
        (n_sources, ...) true patterns of n_pixel pixels each.
    exclude : numpy.ndarray, optional
        Boolean over the pixels, True = left out of the cosine similarity (e.g. the beam).

    Returns
    -------
    dict of int to int
        Every source matched to a component (as many as ``min(k, n_sources)``).
    """
    sim = cosine_similarity(*_pixels(factors, sources, exclude))
    rows, cols = linear_sum_assignment(-sim)
    return {int(c): int(r) for r, c in zip(rows, cols)}


def matched_cosines(
    factors: np.ndarray, sources: np.ndarray, exclude: np.ndarray | None = None
) -> np.ndarray:
    """(n_sources,) cosine of each source with its matched component (0 if unmatched).

    Parameters
    ----------
    factors, sources, exclude
        As for :func:`match_components`.

    Returns
    -------
    numpy.ndarray
        Over the pixels not excluded.
    """
    factors, sources = _pixels(factors, sources, exclude)
    sim = cosine_similarity(factors, sources)
    match = match_components(factors, sources)
    return np.array([sim[match[j], j] if j in match else 0.0 for j in range(len(sources))])


def naive_phase_maps(loadings: np.ndarray, scan_shape, background_index) -> dict:
    """Argmax labels, half-maximum masks and overlap from the loadings alone."""
    k = loadings.shape[1]
    labels = np.argmax(loadings, axis=1).reshape(scan_shape)
    peak = loadings.max(axis=0)
    scaled = np.argmax(loadings / np.where(peak > 0, peak, np.inf), axis=1).reshape(scan_shape)
    masks = (loadings > NAIVE_PRESENCE * np.where(peak > 0, peak, np.inf)).T.reshape(
        (k,) + tuple(scan_shape)
    )
    used = [j for j in range(k) if j != background_index]
    overlap = masks[used].sum(axis=0) >= 2
    return {"labels": labels, "scaled_labels": scaled, "masks": masks, "overlap": overlap}


def score_phase_maps(
    scan, pm, *, presence: float | None = None, exclude: np.ndarray | None = None
) -> dict:
    """ARI, overlap F1 and per-source IoU of ``pm`` and of the naive baseline.

    Parameters
    ----------
    scan : SimulatedScan
        The ground truth (from ``hyperspy_nmfdecide.data.simulated_scan``, or any object with
        its ``sources``, ``weights``, ``labels``, ``label_sets``, ``overlap``,
        ``source_names``, ``background_index`` and ``params``, e.g.
        ``benchmarks/independent.py``'s ``IndependentScan``).
    pm : PhaseMaps
        Phase maps of (a sweep of) ``scan.signal``.
    presence : float, optional
        A source is present where its weight exceeds this fraction of its maximum (default
        ``scan.params["presence_threshold"]``, the rule behind ``scan.labels``).
    exclude : numpy.ndarray, optional
        Boolean over the pattern pixels left out when components are matched to sources and
        in ``cosine`` (e.g. the direct beam).

    Returns
    -------
    dict
        ``ari``, ``overlap_f1``, ``iou`` (source name -> IoU), ``mean_iou``, the same four
        prefixed ``naive_``, ``naive_scaled_ari`` (argmax of the loadings each divided by its
        maximum: the raw argmax is nearly always the background, which carries most counts),
        ``cosine`` (source name -> cosine with its matched component, 0 if unmatched),
        ``median_cosine``, and ``k``, ``n_phases``, ``n_true_labels``,
        ``background_index``, ``background_component`` (the component matched to the
        background source), ``matching`` (source name -> component).
    """
    scan_shape = pm.label_array.shape
    kept = (
        np.ones(scan_shape, dtype=bool)
        if pm.navigation_mask is None
        else ~np.asarray(pm.navigation_mask, dtype=bool).reshape(scan_shape)
    )
    if presence is None:
        presence = float(scan.params.get("presence_threshold", 0.1))
    match = match_components(pm.factors, scan.sources, exclude)
    cosines = matched_cosines(pm.factors, scan.sources, exclude)
    naive = naive_phase_maps(pm.loadings, scan_shape, pm.background_index)
    crystal_sources = [j for j in range(len(scan.sources)) if j != scan.background_index]
    out: dict = {
        "k": pm.k,
        "n_phases": pm.n_phases,
        "n_true_labels": len(scan.label_sets),
        "background_index": pm.background_index,
        "background_component": None
        if scan.background_index is None
        else match.get(scan.background_index),
        "matching": {scan.source_names[j]: match.get(j) for j in range(len(scan.sources))},
        "cosine": dict(zip(scan.source_names, cosines.tolist())),
        "median_cosine": float(np.median(cosines)),
    }
    for prefix, labels, overlap, masks in (
        ("", pm.label_array, pm.overlap_array, pm.mask_array),
        ("naive_", naive["labels"], naive["overlap"], naive["masks"]),
    ):
        iou = {}
        for j in crystal_sources:
            weight = scan.weights[..., j]
            truth = (weight > presence * weight.max()) & kept
            c = match.get(j)
            iou[scan.source_names[j]] = 0.0 if c is None else _iou(masks[c] & kept, truth)
        out[prefix + "ari"] = float(adjusted_rand_score(scan.labels[kept], labels[kept]))
        out[prefix + "overlap_f1"] = _f1(overlap[kept], scan.overlap[kept])
        out[prefix + "iou"] = iou
        out[prefix + "mean_iou"] = float(np.mean(list(iou.values()))) if iou else float("nan")
    out["naive_scaled_ari"] = float(
        adjusted_rand_score(scan.labels[kept], naive["scaled_labels"][kept])
    )
    return out


def _demo() -> None:
    import time

    from hyperspy.defaults_parser import preferences

    from hyperspy_nmfdecide.data import simulated_scan
    from hyperspy_nmfdecide.results import PhaseMaps

    preferences.General.show_progressbar = False
    cases = [
        (2, "overlapping", 0),
        (3, "overlapping", 1),
        (3, "gradient", 12),
    ]
    header = f"{'scan':<28}{'ARI':>12}{'overlap F1':>14}{'mean IoU':>12}   (ours / naive)"
    print(header)
    print("-" * len(header))
    totals = []
    for n_crystals, layout, seed in cases:
        start = time.perf_counter()
        scan = simulated_scan(
            nav_shape=(24, 24),
            pattern_size=32,
            n_crystals=n_crystals,
            layout=layout,
            dose=5000,
            random_state=seed,
        )
        k = scan.true_k
        sweep = scan.signal.nmf_sweep(range(k - 1, k + 2), n_restarts=4, random_state=0)
        data = scan.signal.data.reshape(scan.signal.axes_manager.navigation_size, -1)
        pm = PhaseMaps.from_sweep(sweep, k, data)
        r = score_phase_maps(scan, pm)
        totals.append(r)
        name = f"{n_crystals} crystals, {layout}, seed {seed}"
        print(
            f"{name:<28}{r['ari']:>6.3f}/{r['naive_ari']:.3f}"
            f"{r['overlap_f1']:>8.3f}/{r['naive_overlap_f1']:.3f}"
            f"{r['mean_iou']:>6.3f}/{r['naive_mean_iou']:.3f}"
            f"   ({time.perf_counter() - start:.1f} s)"
        )
        print(
            f"{'':<4}k={k}, phases {r['n_phases']} (truth {r['n_true_labels']}), background "
            f"component {r['background_index']} (matched {r['background_component']}); IoU "
            + ", ".join(
                f"{name}: {v:.2f}/{r['naive_iou'][name]:.2f}" for name, v in r["iou"].items()
            )
        )
    mean = {key: np.mean([t[key] for t in totals]) for key in totals[0] if "ari" in key}
    print(
        "naive ARI with each loading map scaled to its maximum: "
        + ", ".join(f"{t['naive_scaled_ari']:.3f}" for t in totals)
    )
    mean |= {key: np.mean([t[key] for t in totals]) for key in totals[0] if "f1" in key}
    mean |= {key: np.mean([t[key] for t in totals]) for key in totals[0] if "mean_iou" in key}
    print("-" * len(header))
    print(
        f"{'mean':<28}{mean['ari']:>6.3f}/{mean['naive_ari']:.3f}"
        f"{mean['overlap_f1']:>8.3f}/{mean['naive_overlap_f1']:.3f}"
        f"{mean['mean_iou']:>6.3f}/{mean['naive_mean_iou']:.3f}"
    )


if __name__ == "__main__":
    _demo()
