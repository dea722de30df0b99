"""Speed and memory of the NMF sweep against scikit-learn, in one process, as printed ratios.

On one seeded simulated scan (default 100×100 probes × 64×64 pixels) this script measures:

1. the float32 GEMM rate of this machine at the sweep's matrix shapes (the ceiling);
2. the full sweep (k = 2..15, 20 restarts, HALS) in ``mode="exact"`` and ``mode="fast"``:
   wall time, achieved GFLOP/s, peak traced memory;
3. a loop of scikit-learn ``NMF(init="random", solver="cd")`` fits with the same iteration budget
   and tolerance (``--sklearn-restarts`` per k, 20 for the full comparison; with fewer, its time
   is extrapolated per k and said so);

and prints the time ratios, the best MSE per k of each, and the BLAS in use.  Timings on a
shared machine are noisy: only ratios measured in the same process are meant to be read.

Run:  python benchmarks/speed.py [--quick] [--sklearn-restarts N]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
import warnings

import numpy as np
from threadpoolctl import threadpool_info


def gemm_rate(n: int, p: int, t: int, repeats: int = 3) -> float:
    """Best float32 GFLOP/s of the sweep's two products at these shapes."""
    rng = np.random.default_rng(0)
    x = rng.random((n, p), dtype=np.float32)
    h = rng.random((t, p), dtype=np.float32)
    w = rng.random((t, n), dtype=np.float32)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        h @ x.T
        w @ x
        best = min(best, time.perf_counter() - start)
    return 4.0 * n * p * t / best / 1e9


def sweep_flops(result, n: int, p: int) -> float:
    """Floating-point work of the two GEMMs of every pass of every run."""
    k = result.k_values[:, None]
    iterations = result.n_iter * k
    nndsvd = result.nndsvd_n_iter * result.k_values
    return 4.0 * n * p * float(iterations.sum() + nndsvd.sum())


def run_ours(x: np.ndarray, k_values, restarts: int, mode: str, max_iter: int, tol: float):
    from hyperspy_nmfdecide.nmf import run_sweep

    tracemalloc.start()
    start = time.perf_counter()
    result = run_sweep(x, k_values, restarts, mode=mode, max_iter=max_iter, tol=tol, random_state=0)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, elapsed, peak


def run_sklearn(x: np.ndarray, k_values, restarts: int, max_iter: int, tol: float):
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    times, best, peak = {}, {}, 0
    for k in k_values:
        elapsed, losses = [], []
        for r in range(restarts):
            model = NMF(
                n_components=k,
                init="random",
                solver="cd",
                max_iter=max_iter,
                tol=tol,
                random_state=1000 * k + r,
            )
            tracemalloc.start()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                w = model.fit_transform(x)
            elapsed.append(time.perf_counter() - start)
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            residual = x - (w @ model.components_).astype(np.float32)
            losses.append(float(np.mean(residual.astype(np.float64) ** 2)))
        times[k] = float(np.mean(elapsed))
        best[k] = min(losses)
    return times, best, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nav", type=int, default=100, help="probes per scan side")
    parser.add_argument("--pattern", type=int, default=64, help="pixels per pattern side")
    parser.add_argument("--k-max", type=int, default=15)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument(
        "--sklearn-restarts",
        type=int,
        default=2,
        help="scikit-learn fits per k (time extrapolated to --restarts)",
    )
    parser.add_argument("--quick", action="store_true", help="small scan, for a smoke test")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.nav, args.pattern, args.k_max, args.restarts, args.sklearn_restarts = 30, 32, 5, 4, 1

    from hyperspy_nmfdecide.data import simulated_scan

    scan = simulated_scan(
        (args.nav, args.nav), args.pattern, 4, layout="overlapping", dose=1000.0, random_state=0
    )
    x = np.ascontiguousarray(scan.signal.data.reshape(args.nav**2, -1), dtype=np.float32)
    n, p = x.shape
    k_values = list(range(2, args.k_max + 1))
    t_total = args.restarts * sum(k_values)
    blas = [
        {key: info.get(key) for key in ("internal_api", "version", "num_threads", "architecture")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    print(f"scan: {n} probes x {p} pixels, float32 X = {x.nbytes / 2**20:.0f} MiB")
    print(f"BLAS: {blas}")
    rate = gemm_rate(n, p, t_total)
    print(f"float32 GEMM rate at the sweep's shapes (T = {t_total}): {rate:.0f} GFLOP/s")

    exact, t_exact, peak_exact = run_ours(
        x, k_values, args.restarts, "exact", args.max_iter, args.tol
    )
    achieved = sweep_flops(exact, n, p) / t_exact / 1e9
    fast, t_fast, peak_fast = run_ours(x, k_values, args.restarts, "fast", args.max_iter, args.tol)
    sk_times, sk_best, sk_peak = run_sklearn(
        x, k_values, args.sklearn_restarts, args.max_iter, args.tol
    )
    t_sklearn = args.restarts * sum(sk_times.values())
    extrapolated = args.sklearn_restarts != args.restarts

    print(
        f"\nexact sweep: {t_exact:.1f} s, {achieved:.0f} GFLOP/s achieved "
        f"= {100 * achieved / rate:.0f} % of the measured GEMM rate"
    )
    print(f"fast sweep:  {t_fast:.1f} s")
    print(
        f"scikit-learn loop ({len(k_values) * args.restarts} fits): {t_sklearn:.1f} s"
        + (f" (extrapolated from {args.sklearn_restarts} fits per k)" if extrapolated else "")
    )
    print(f"ratio scikit-learn / exact: {t_sklearn / t_exact:.1f}x")
    print(f"ratio scikit-learn / fast:  {t_sklearn / t_fast:.1f}x")
    print(
        "\n  k   best MSE exact   best MSE fast  (fast/exact-1)   scikit-learn best  "
        "(exact/sklearn-1)"
    )
    for i, k in enumerate(k_values):
        e, f, s = exact.best_loss[i], fast.best_loss[i], sk_best[k]
        print(
            f"{k:3d}  {e:15.6g}  {f:14.6g}  {100 * (f / e - 1):+13.3f} %  {s:17.6g}  "
            f"{100 * (e / s - 1):+15.3f} %"
        )
    factor_state = 4 * t_total * (n + 3 * p)
    print(
        f"\npeak traced memory, exact sweep: {peak_exact / x.nbytes:.2f} x X "
        f"(X {x.nbytes / 2**20:.0f} MiB, factor state {factor_state / 2**20:.0f} MiB, "
        f"peak {peak_exact / 2**20:.0f} MiB; budget 2 x X + state = "
        f"{(2 * x.nbytes + factor_state) / 2**20:.0f} MiB)"
    )
    print(f"peak traced memory, fast sweep: {peak_fast / 2**20:.0f} MiB")
    print(f"peak traced memory, one scikit-learn fit: {sk_peak / x.nbytes:.2f} x X")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "shape": [n, p],
                    "gemm_gflops": rate,
                    "exact_seconds": t_exact,
                    "exact_gflops": achieved,
                    "fast_seconds": t_fast,
                    "sklearn_seconds": t_sklearn,
                    "sklearn_extrapolated": extrapolated,
                    "best_exact": exact.best_loss.tolist(),
                    "best_fast": fast.best_loss.tolist(),
                    "best_sklearn": [sk_best[k] for k in k_values],
                    "peak_exact_bytes": peak_exact,
                    "peak_fast_bytes": peak_fast,
                    "peak_sklearn_bytes": sk_peak,
                    "blas": blas,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
