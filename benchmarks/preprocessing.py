"""What preprocessing does to the answer: decide_k and phase maps with and without it.

On scans of the ground-truth suite of ``accuracy.py`` (default: its 6 ``--quick`` scans;
``--full`` for all 18), each scan is swept (k = 1..10, 10 restarts, direct beam masked at its
found position) in four versions:

``raw``
    the counts as simulated;
``centred``
    ``prepare_for_nmf(center=True, beam_mask_radius=...)``;
``rolling ball``
    ``prepare_for_nmf(center=True, background="rolling_ball", radius 8 px, beam_mask_radius=...)``;
``ePattern``
    the registered spots as a sparse matrix, ``nmf_sweep(spots=..., signal_mask=beam)``.

The true k of a version: the suite's count (crystals + background, see ``accuracy.py``) for
raw and centred data; for ePattern the crystals alone (the diffuse background is not a spot and
the beam is masked); the rolling ball removes only part of the background, so both counts are
scored and the better one is reported beside it.  ``decide_k`` is asked with
``method="noise"`` (Poisson counts: raw and centred) and ``method="iqa"`` (all versions).
Phase maps are scored (adjusted Rand index of labels, overlap F1) at the version's true k.

Then, on one spotty 128² scan: the sweep on the sparse spot matrix against the same sweep on
the redrawn dense patterns, in the same process (the speed-up ePattern buys), and the
compression ratio.

Run:  python benchmarks/preprocessing.py [--full]   (about 15 min for the 6 quick scans)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import QUICK, SUITE, make_scan, suite_true_k  # noqa: E402
from phase_accuracy import score_phase_maps  # noqa: E402

from hyperspy_nmfdecide.data import simulated_scan  # noqa: E402

K_RANGE = range(1, 11)
RESTARTS = 10
QUIET = {"show_progressbar": False}
VERSIONS = ("raw", "centred", "rolling ball", "ePattern")


def prepared_versions(s, radius: float):
    """(name, signal to decide and map on, sweep keyword arguments, registration seconds)."""
    beam = s.direct_beam_mask(radius=radius)
    yield "raw", s.deepcopy(), {"signal_mask": beam}, 0.0
    centred = s.prepare_for_nmf(center=True, beam_mask_radius=radius, **QUIET)
    yield "centred", centred, {}, 0.0
    rolled = s.prepare_for_nmf(
        center=True,
        background="rolling_ball",
        background_kwargs={"radius": 8},
        beam_mask_radius=radius,
        **QUIET,
    )
    yield "rolling ball", rolled, {}, 0.0
    start = time.perf_counter()
    table = s.register_spots(**QUIET)
    seconds = time.perf_counter() - start
    # Decided and mapped on the redrawn patterns: the data the spot sweep models.
    yield "ePattern", s.epattern(table), {"spots": table, "signal_mask": beam}, seconds


def decided_k(signal, method: str) -> int | None:
    """decide_k's k, or None where it refuses (e.g. sampled patterns with no spot left)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a k range that does not bracket is a miss here
        try:
            return signal.decide_k(method=method, **QUIET).k
        except ValueError as error:
            print(f"  decide_k({method!r}) refused: {error}")
            return None


def run_scan(spec) -> list[dict]:
    size, n_crystals = spec[1], spec[2]
    scan = make_scan(spec)
    rows = []
    for name, signal, sweep_options, extra_seconds in prepared_versions(scan.signal, size / 16):
        start = time.perf_counter()
        signal.nmf_sweep(K_RANGE, n_restarts=RESTARTS, random_state=0, **sweep_options, **QUIET)
        seconds = time.perf_counter() - start + extra_seconds
        candidates = {
            "raw": [suite_true_k(scan)],
            "centred": [suite_true_k(scan)],
            "rolling ball": sorted({n_crystals, suite_true_k(scan)}),
            "ePattern": [n_crystals],
        }[name]
        scores = {
            k: score_phase_maps(scan, signal.phase_maps(k=k, store=False, **QUIET))
            for k in candidates
        }
        best_k = max(scores, key=lambda k: scores[k]["ari"])
        rows.append(
            {
                "version": name,
                "true_k": candidates,
                "noise": decided_k(signal, "noise") if name in ("raw", "centred") else None,
                "iqa": decided_k(signal, "iqa"),
                "k_scored": best_k,
                "ari": scores[best_k]["ari"],
                "overlap_f1": scores[best_k]["overlap_f1"],
                "seconds": seconds,
            }
        )
    return rows


def sparse_speedup() -> None:
    """The same sweep on the sparse spot matrix and on the redrawn dense patterns."""
    scan = simulated_scan(
        nav_shape=(48, 48), pattern_size=128, n_crystals=4, dose=2000, random_state=7
    )
    s = scan.signal
    start = time.perf_counter()
    table = s.register_spots(**QUIET)
    registration = time.perf_counter() - start
    beam = s.direct_beam_mask(radius=8)
    clean = s.epattern(table)
    options = {"n_restarts": 10, "random_state": 0, "signal_mask": beam, "store": False}
    start = time.perf_counter()
    dense = clean.nmf_sweep(range(2, 9), **options, **QUIET)
    t_dense = time.perf_counter() - start
    start = time.perf_counter()
    sparse = s.nmf_sweep(range(2, 9), spots=table, **options, **QUIET)
    t_sparse = time.perf_counter() - start
    gap = np.max(np.abs(sparse.best_loss / dense.best_loss - 1))
    print(f"\nePattern on a 48×48 × 128² scan, 4 crystals, 2000 e⁻: {table}")
    print(f"  compression ×{table.compression_ratio:.0f}, registration {registration:.1f} s")
    print(f"  sweep k = 2..8, 10 restarts: dense redrawn patterns {t_dense:.1f} s, sparse spots")
    print(
        f"  {t_sparse:.1f} s: ×{t_dense / t_sparse:.1f} faster; best MSE within {100 * gap:.2f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="all 18 scans of the suite")
    args = parser.parse_args()
    specs = SUITE if args.full else [SUITE[i] for i in QUICK]
    table = {name: [] for name in VERSIONS}
    print(f"{'scan':44s} {'version':13s} true k  noise  iqa   k@   ARI  ovl-F1  seconds")
    for spec in specs:
        for row in run_scan(spec):
            table[row["version"]].append(row)
            nav, size, n, layout, background, dose, _ = spec
            label = f"{nav[0]}x{nav[1]} {size}² {n} cr {layout} {background} {dose:g} e"
            noise = "-" if row["noise"] is None else row["noise"]
            print(
                f"{label:44s} {row['version']:13s} {str(row['true_k']):7s} {noise!s:>5} "
                f"{row['iqa']!s:>4} {row['k_scored']:4d} {row['ari']:5.3f} "
                f"{row['overlap_f1']:6.3f} {row['seconds']:8.1f}",
                flush=True,
            )
    print(f"\nsummary over {len(specs)} scans")
    print(f"{'version':13s} noise exact  iqa exact  median ARI  median overlap F1")
    for name, rows in table.items():
        noise = [r["noise"] in r["true_k"] for r in rows if r["noise"] is not None]
        iqa = [r["iqa"] in r["true_k"] for r in rows]  # a refusal counts as a miss
        noise_text = f"{sum(noise)}/{len(noise)}" if noise else "-"
        print(
            f"{name:13s} {noise_text:>11s} {sum(iqa):>5d}/{len(iqa):<3d} "
            f"{np.median([r['ari'] for r in rows]):11.3f} "
            f"{np.nanmedian([r['overlap_f1'] for r in rows]):18.3f}"
        )
    sparse_speedup()


if __name__ == "__main__":
    main()
