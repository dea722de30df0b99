"""Accuracy of ``decide_k`` and ``phase_maps`` on a ground-truth suite of simulated scans.

Every scan comes from :func:`hyperspy_nmfdecide.data.simulated_scan` with a fixed seed: 18
scans with 1-7 crystals (2-8 sources), overlapping crystals, grains without overlap, smooth
thickness gradients, uniform and spatially varying backgrounds, 50-5000 electrons per pattern,
64² and 128² patterns.  Each scan is swept over k = 1..10 (10 restarts, direct beam masked at
its found position, as the README recommends), then decided with every method of ``decide_k``,
then phase-mapped at the true and at the decided k.

How the suite counts the background.  The background source (direct beam, diffuse halo and
amorphous rings of the support) is one source whenever its map is not the sum of the crystal
maps: in ``overlapping`` and ``gradient`` scans (vacuum, overlaps, a background of its own)
the true k is crystals + 1.  In a ``grains`` scan every probe holds the background and exactly
one grain, so the background map equals the sum of the grain maps up to their ±25 % thickness
variation; that difference lies an order of magnitude below the noise edge at the doses of the
suite (≤ 1000 e⁻ for grains), the component cannot be found by any method, and the suite
counts k = crystals.

Printed: per scan the true k and the k of each method, the phase-map figures (adjusted Rand
index, overlap F1, mean IoU) at the true k and at the decided k next to the naive baseline
(argmax of loadings; overlap where two loadings exceed half their maximum), then the
summary: exact and within-±1 rates per method, medians of the phase figures.

Run:  python benchmarks/accuracy.py [--quick]   (about 15 min on 2 cores; --quick: 6 scans)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from phase_accuracy import score_phase_maps  # noqa: E402

from hyperspy_nmfdecide.data import simulated_scan  # noqa: E402
from hyperspy_nmfdecide.decide import METHODS, NoiseSpectrum, decide  # noqa: E402

#: (nav_shape, pattern_size, n_crystals, layout, background, dose, seed)
SUITE = [
    ((32, 32), 64, 1, "overlapping", "uniform", 50, 101),
    ((32, 32), 64, 2, "overlapping", "uniform", 50, 102),
    ((48, 48), 64, 3, "overlapping", "varying", 50, 103),
    ((32, 32), 64, 3, "overlapping", "uniform", 200, 104),
    ((32, 32), 64, 4, "overlapping", "varying", 500, 105),
    ((32, 32), 64, 5, "overlapping", "uniform", 1000, 106),
    ((32, 32), 64, 6, "overlapping", "varying", 2000, 107),
    ((40, 40), 64, 7, "overlapping", "uniform", 5000, 108),
    ((32, 32), 64, 2, "grains", "uniform", 1000, 109),
    ((32, 32), 64, 4, "grains", "varying", 200, 110),
    ((32, 32), 64, 6, "grains", "uniform", 500, 111),
    ((32, 32), 64, 2, "gradient", "uniform", 100, 112),
    ((32, 32), 64, 3, "gradient", "varying", 1000, 113),
    ((40, 40), 64, 5, "gradient", "uniform", 5000, 114),
    ((32, 32), 128, 2, "overlapping", "uniform", 500, 115),
    ((32, 32), 128, 3, "gradient", "varying", 2000, 116),
    ((32, 32), 128, 5, "overlapping", "uniform", 200, 117),
    ((32, 32), 128, 4, "grains", "uniform", 1000, 118),
]
QUICK = [0, 3, 8, 11, 13, 14]
K_RANGE = range(1, 11)
RESTARTS = 10


def suite_true_k(scan) -> int:
    """The number of components the suite counts (see the module docstring)."""
    return scan.true_k - 1 if scan.params.get("layout") == "grains" else scan.true_k


def make_scan(spec):
    """The simulated scan of one entry of :data:`SUITE`."""
    nav_shape, size, n_crystals, layout, background, dose, seed = spec
    return simulated_scan(
        nav_shape=nav_shape,
        pattern_size=size,
        n_crystals=n_crystals,
        layout=layout,
        background=background,
        dose=dose,
        random_state=seed,
    )


def run_scan(spec) -> dict:
    size = spec[1]
    scan = make_scan(spec)
    s = scan.signal
    true_k = suite_true_k(scan)
    start = time.perf_counter()
    beam = s.direct_beam_mask(radius=size / 16)
    quiet = {"show_progressbar": False}
    s.nmf_sweep(K_RANGE, n_restarts=RESTARTS, signal_mask=beam, random_state=0, **quiet)
    sweep_time = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a k range that does not bracket is a miss here
        decision = s.decide_k(**quiet)
    decide_time = time.perf_counter() - start - sweep_time
    # Every method from the same evidence (decide_k computes all of it whatever the method).
    spectrum = NoiseSpectrum(**(decision.spectrum | {"shape": tuple(decision.spectrum["shape"])}))
    decided = {
        method: decide(
            decision.k_values,
            decision.columns["best_mse"],
            method=method,
            spectrum=spectrum,
            fidelity=decision.columns,
        ).k
        for method in METHODS
    }
    phases = {}
    for name, k in (("true", true_k), ("decided", decided["noise"])):
        pm = s.phase_maps(k=k, store=False, **quiet)
        phases[name] = score_phase_maps(scan, pm)
    return {
        "spec": spec,
        "true_k": true_k,
        "decided": decided,
        "phases": phases,
        "times": (sweep_time, decide_time),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 scans only")
    args = parser.parse_args()
    suite = [SUITE[i] for i in QUICK] if args.quick else SUITE
    rows = []
    header = (
        f"{'scan':44s} {'true':>4s} "
        + " ".join(f"{m:>6s}" for m in METHODS)
        + "  ARI(true k) naive  F1 naive  IoU naive | ARI(decided k)  s sweep/decide"
    )
    print(header)
    for spec in suite:
        row = run_scan(spec)
        rows.append(row)
        nav, size, n, layout, background, dose, _ = spec
        label = f"{nav[0]}x{nav[1]} {size}² {n} cryst {layout} {background} {dose:g}e"
        t, d = row["phases"]["true"], row["phases"]["decided"]
        print(
            f"{label:44s} {row['true_k']:>4d} "
            + " ".join(f"{row['decided'][m]:>6d}" for m in METHODS)
            + f"  {t['ari']:10.3f} {t['naive_ari']:5.2f} {t['overlap_f1']:5.2f} "
            f"{t['naive_overlap_f1']:5.2f} {t['mean_iou']:5.2f} {t['naive_mean_iou']:5.2f}"
            f" | {d['ari']:8.3f}  {row['times'][0]:6.1f}/{row['times'][1]:5.1f}",
            flush=True,
        )
    print()
    truth = np.array([r["true_k"] for r in rows])
    for method in METHODS:
        found = np.array([r["decided"][method] for r in rows])
        print(
            f"{method:>6s}: exact {np.mean(found == truth):6.1%}   "
            f"within ±1 {np.mean(np.abs(found - truth) <= 1):6.1%}   "
            f"misses {[(int(t), int(f)) for t, f in zip(truth, found) if t != f]}"
        )
    for where in ("true", "decided"):
        figures = {
            key: np.median([r["phases"][where][key] for r in rows])
            for key in ("ari", "naive_ari", "overlap_f1", "naive_overlap_f1")
        }
        ious = [r["phases"][where]["mean_iou"] for r in rows]
        naive_ious = [r["phases"][where]["naive_mean_iou"] for r in rows]
        print(
            f"phase maps at the {where} k: median ARI {figures['ari']:.3f} "
            f"(naive {figures['naive_ari']:.3f}), median overlap F1 {figures['overlap_f1']:.3f} "
            f"(naive {figures['naive_overlap_f1']:.3f}), mean IoU {np.mean(ious):.3f} "
            f"(naive {np.mean(naive_ious):.3f})"
        )


if __name__ == "__main__":
    main()
