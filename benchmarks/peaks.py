"""Recall, precision and position accuracy of the ePattern spot registration on simulated scans.

Seeded 32×32-probe scans of 64×64-pixel patterns (3 crystals, layouts ``overlapping`` and
``grains``, 3 seeds each) at 100, 500, 1000 and 5000 electrons per pattern are registered
with the defaults of :func:`hyperspy_nmfdecide.epattern.register_spots` and compared with the
true spots of :meth:`hyperspy_nmfdecide.data.SimulatedScan.expected_spots`.

Definitions.

* **True spots**: every spot (crystal reflections and the direct beam) expected to put at
  least 1 electron on the detector at that probe.  Two true spots of one pattern closer than
  the Sparrow limit of Gaussian spots, 2σ (2.4 px for σ = 1.2 px), show no dip between them
  even without noise: they count as one, at their count-weighted position.
* **Detectable**: a true spot centred on the detector whose expected counts ``S`` inside
  ``2σ`` (86 % of them) stand out from the expected counts ``B`` of everything else in that
  disc (background, halo, rings, other spots) by the Rose criterion ``S / √(S + B) ≥ 5``
  (the CCD-equation SNR, the spot's own shot noise included).  Recall is also printed per
  band of expected counts, over all true spots centred on the detector, to show the faint end.
* **Matching**: per pattern, registered and true spots are paired one to one (Hungarian,
  scipy ``linear_sum_assignment``) among pairs closer than ``MATCH_RADIUS`` = 1.5 px.
  Recall = paired detectable / detectable; precision = registered spots paired with any true
  spot / registered spots; position error = distance of the detectable pairs.  ``recall*``
  is the recall when the true spots are merged at the resolution of the registration
  instead, the Sparrow limit of spots blurred by its Gaussian, 2√(σ² + BLUR_SIGMA²) = 3.1 px:
  the gap between the two is the pairs 2.4-3.1 px apart that the blur merges (close
  reflections of two similar crystals where they overlap).
* **Intensity**: for paired detectable spots, registered intensity × disc pixels over the true
  counts expected inside the registered radius (1 = intensities kept, relative and absolute).
* **Compression**: dense values / stored values (``SpotTable.compression_ratio``).

Targets (issue 5): recall ≥ 95 % and median position error ≤ 0.5 px at doses ≥ 500.  The
defaults were tuned on other seeds (1-3) than these.  Also printed: the compression ratio of
32×32-probe scans with 128×128-pixel patterns.

Run:  python benchmarks/peaks.py [--quick]   (about 3 min on 2 cores; --quick: 16×16 probes,
one seed)
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment

from hyperspy_nmfdecide.data import simulated_scan
from hyperspy_nmfdecide.epattern import BLUR_SIGMA, register_spots

DOSES = (100, 500, 1000, 5000)
LAYOUTS = ("overlapping", "grains")
SEEDS = (201, 202, 203)
MATCH_RADIUS = 1.5  # px
SPARROW_SIGMAS = 2.0  # two Gaussians of width σ closer than 2σ show no dip between them
ROSE_K = 5.0
DISC_SIGMAS = 2.0  # the disc of radius 2σ holds 1 - exp(-2) = 86.5 % of a Gaussian spot
COUNT_BANDS = ((10, 20), (20, 50), (50, 200), (200, math.inf))


def merged_truth(scan, merge_distance: float):
    """(probe, x, y, counts) of the true spots, those closer than ``merge_distance`` merged."""
    probe, x, y, counts = scan.expected_spots(min_counts=1.0)
    keep = np.ones(len(probe), dtype=bool)
    x, y, counts = x.copy(), y.copy(), counts.copy()
    for p in np.unique(probe):
        members = np.flatnonzero(probe == p)
        members = members[np.argsort(-counts[members], kind="stable")]
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if keep[a] and keep[b] and math.hypot(x[a] - x[b], y[a] - y[b]) < merge_distance:
                    total = counts[a] + counts[b]
                    x[a] = (x[a] * counts[a] + x[b] * counts[b]) / total
                    y[a] = (y[a] * counts[a] + y[b] * counts[b]) / total
                    counts[a], keep[b] = total, False
    return probe[keep], x[keep], y[keep], counts[keep]


def disc_sums(images: np.ndarray, probe, x, y, radius: np.ndarray | float):
    """Sum and pixel count of images[probe] over pixel centres within radius of (x, y)."""
    n, h, w = images.shape
    radius = np.broadcast_to(np.asarray(radius, dtype=float), x.shape)
    half = int(math.ceil(float(radius.max(initial=0.0))))
    offsets = np.arange(-half, half + 1)
    rows = np.rint(y).astype(int)[:, None, None] + offsets[None, :, None]
    cols = np.rint(x).astype(int)[:, None, None] + offsets[None, None, :]
    inside = (rows - y[:, None, None]) ** 2 + (cols - x[:, None, None]) ** 2 <= (
        radius[:, None, None] ** 2
    )
    inside &= (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    values = images[probe[:, None, None], np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)]
    return (values * inside).sum(axis=(1, 2)), inside.sum(axis=(1, 2))


def match(probe_a, xa, ya, probe_b, xb, yb):
    """One-to-one pairs (index into a, index into b, distance) closer than MATCH_RADIUS."""
    pairs = []
    for p in np.intersect1d(probe_a, probe_b):
        ia, ib = np.flatnonzero(probe_a == p), np.flatnonzero(probe_b == p)
        d = np.hypot(xa[ia, None] - xb[None, ib], ya[ia, None] - yb[None, ib])
        rows, cols = linear_sum_assignment(np.where(d <= MATCH_RADIUS, d, 1e6))
        ok = d[rows, cols] <= MATCH_RADIUS
        pairs.append(np.column_stack([ia[rows[ok]], ib[cols[ok]], d[rows[ok], cols[ok]]]))
    if not pairs:
        return np.empty((0, 3))
    return np.concatenate(pairs)


def detectable_truth(scan, expected: np.ndarray, merge_distance: float):
    """Merged true spots, whether centred on the detector, whether detectable (Rose)."""
    size = expected.shape[-1]
    probe, x, y, counts = merged_truth(scan, merge_distance)
    on = (x > -0.5) & (x < size - 0.5) & (y > -0.5) & (y < size - 0.5)
    signal = (1 - math.exp(-(DISC_SIGMAS**2) / 2)) * counts
    total, _ = disc_sums(expected, probe, x, y, DISC_SIGMAS * scan.params["spot_sigma"])
    background = np.maximum(total - signal, 0.0)
    return probe, x, y, counts, on, on & (signal / np.sqrt(signal + background) >= ROSE_K)


def score(scan, table) -> dict:
    """Recall, precision, errors, intensity ratios of one registered scan."""
    size = scan.sources.shape[-1]
    sigma = scan.params["spot_sigma"]
    expected = scan.noise_free().reshape(-1, size, size)
    truth = detectable_truth(scan, expected, SPARROW_SIGMAS * sigma)
    probe, x, y, counts, on, detectable = truth

    every = match(probe, x, y, table.probe, table.x, table.y)
    d = np.flatnonzero(detectable)
    pairs = match(probe[d], x[d], y[d], table.probe, table.x, table.y)
    truth_i, reg_i = d[pairs[:, 0].astype(int)], pairs[:, 1].astype(int)
    _, pixels = disc_sums(
        expected, table.probe[reg_i], table.x[reg_i], table.y[reg_i], table.radius[reg_i]
    )
    inside = counts[truth_i] * (1 - np.exp(-(table.radius[reg_i] ** 2) / (2 * sigma**2)))
    bands = {}
    for lo, hi in COUNT_BANDS:
        band = np.flatnonzero(on & (counts >= lo) & (counts < hi))
        band_pairs = match(probe[band], x[band], y[band], table.probe, table.x, table.y)
        bands[(lo, hi)] = (len(band_pairs), len(band))
    # The same with the spots that the registration's blur leaves unresolved merged.
    blurred = detectable_truth(scan, expected, SPARROW_SIGMAS * math.hypot(sigma, BLUR_SIGMA))
    r = np.flatnonzero(blurred[5])
    resolved = match(blurred[0][r], blurred[1][r], blurred[2][r], table.probe, table.x, table.y)
    return {
        "detectable": int(detectable.sum()),
        "found": len(pairs),
        "resolvable": len(r),
        "resolved": len(resolved),
        "registered": len(table),
        "true_positive": len(every),
        "errors": pairs[:, 2],
        "intensity_ratio": table.intensity[reg_i] * pixels / inside,
        "bands": bands,
    }


def run_scan(nav, size, layout, dose, seed):
    scan = simulated_scan(nav, size, 3, layout=layout, dose=dose, random_state=seed)
    data = scan.signal.data
    start = time.perf_counter()
    table = register_spots(data)
    elapsed = time.perf_counter() - start
    return scan, table, elapsed / math.prod(nav)


def band_recall(results, band) -> str:
    found = sum(r["bands"][band][0] for r in results)
    total = sum(r["bands"][band][1] for r in results)
    return f"{found / total:5.1%}" if total else "  n/a"


def print_row(label, results, per_pattern):
    detectable = sum(r["detectable"] for r in results)
    found = sum(r["found"] for r in results)
    resolved = sum(r["resolved"] for r in results) / max(sum(r["resolvable"] for r in results), 1)
    registered = sum(r["registered"] for r in results)
    true_positive = sum(r["true_positive"] for r in results)
    errors = np.concatenate([r["errors"] for r in results])
    ratio = np.concatenate([r["intensity_ratio"] for r in results])
    compression = np.mean([r["compression"] for r in results])
    bands = " ".join(band_recall(results, band) for band in COUNT_BANDS)
    print(
        f"{label:<26} {found / max(detectable, 1):7.1%} {resolved:8.1%} "
        f"{detectable / per_pattern:6.1f} "
        f"{true_positive / max(registered, 1):9.1%} {np.median(errors):7.3f} "
        f"{np.median(ratio):6.2f} {compression:8.0f}  {bands}  "
        f"{1e3 * np.mean([r['seconds'] for r in results]):6.2f}"
    )
    return found / max(detectable, 1), float(np.median(errors))


HEADER = (
    f"{'scan':<26} {'recall':>7} {'recall*':>8} {'det/pt':>6} {'precision':>9} {'err px':>7} "
    f"{'I/true':>6} {'compress':>8}  recall by counts "
    + " ".join(f"{lo}-{hi:g}".rjust(5) for lo, hi in COUNT_BANDS)
    + "  ms/pattern"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16×16 probes, one seed")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    nav = (16, 16) if args.quick else (32, 32)
    seeds = SEEDS[:1] if args.quick else SEEDS
    n_probe = math.prod(nav)

    print(
        f"ePattern registration, {nav[0]}×{nav[1]} probes × 64×64 px, 3 crystals; recall of "
        f"detectable spots (S/√(S+B) ≥ {ROSE_K:g}), match radius {MATCH_RADIUS} px; recall*: "
        "pairs unresolved after the blur merged; det/pt: detectable spots per pattern"
    )
    print(HEADER)
    by_dose = {dose: [] for dose in DOSES}
    for dose in DOSES:
        for layout in LAYOUTS:
            for seed in seeds:
                scan, table, seconds = run_scan(nav, 64, layout, dose, seed)
                result = score(scan, table)
                result.update(seconds=seconds, compression=table.compression_ratio)
                by_dose[dose].append(result)
                print_row(f"{layout} s{seed} d{dose}", [result], n_probe)

    print("\nSummary per dose (all layouts and seeds)")
    print(HEADER)
    verdicts = []
    for dose, results in by_dose.items():
        recall, error = print_row(f"dose {dose}", results, n_probe * len(results))
        if dose >= 500:
            verdicts.append(recall >= 0.95 and error <= 0.5)
    print(
        "Targets (recall ≥ 95 %, median error ≤ 0.5 px at doses ≥ 500): "
        + ("met" if all(verdicts) else "NOT met")
    )

    print("\nCompression of 32×32-probe scans of 128×128-pixel patterns (3 crystals)")
    for layout, dose in (("overlapping", 1000), ("overlapping", 5000), ("grains", 5000)):
        scan, table, seconds = run_scan((32, 32), 128, layout, dose, SEEDS[0])
        print(
            f"  {layout:<12} dose {dose:5d}: {table.n_spots / 1024:5.1f} spots per pattern, "
            f"compression ×{table.compression_ratio:.0f}, {1e3 * seconds:.2f} ms/pattern"
        )


if __name__ == "__main__":
    main()
