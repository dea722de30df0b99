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

``--pattern 128 --k-values 2 8 15`` compares at 128×128 pixels on a few ranks (the sweeps and
scikit-learn alike), which keeps the run within minutes on 2 cores.

``--lazy`` measures a scan that is never in memory instead (default 256×256 probes × 128²
pixels, 4 GiB of float32): it is written chunk by chunk to a zarr store in a temporary
directory by ``out_of_core.py``'s generator (chunks of whole scan rows within ``--chunk-mib``),
opened with ``dask.array.from_zarr`` and swept in ``mode="fast"`` under dask's threaded
scheduler; the script prints the time, the passes it reports and the peak RSS of this process
during the sweep (sampled every 0.2 s, and ``ru_maxrss`` when the sweep raised it).

Run:  python benchmarks/speed.py [--quick] [--sklearn-restarts N]
      python benchmarks/speed.py --pattern 128 --k-values 2 8 15
      python benchmarks/speed.py --lazy [--nav 256 --pattern 128 --chunk-mib 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

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
    """Mean seconds per fit, best MSE per k and peak traced bytes of scikit-learn fits."""
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


class Progress:
    """``on_pass`` callback: prints passes, time and the peak RSS so far every ``every`` passes.

    A run stopped before its end still leaves its figures up to there.
    """

    def __init__(self, monitor, every: int = 20) -> None:
        self.monitor, self.every, self.count = monitor, every, 0
        self.start = time.perf_counter()

    def __call__(self) -> None:
        self.count += 1
        if self.count % self.every == 0:
            print(
                f"  {self.count} passes, {time.perf_counter() - self.start:.0f} s, peak RSS so "
                f"far {self.monitor.peak / 2**30:.2f} GiB",
                flush=True,
            )


def lazy_sweep(args) -> dict:
    """Write a lazy simulated scan to a temporary zarr store, sweep it in fast mode, measure."""
    import dask
    import dask.array as da
    import zarr
    from out_of_core import MIB, WORKERS, Monitor, generate, ru_maxrss

    from hyperspy_nmfdecide.nmf import run_sweep

    row_bytes = args.nav * args.pattern**2 * 4
    chunk_rows = max(1, min(args.nav, args.chunk_mib * MIB // row_bytes))
    nbytes = args.nav * row_bytes
    print(
        f"lazy scan: {args.nav}x{args.nav} probes x {args.pattern}^2 pixels, float32 "
        f"{nbytes / 2**30:.2f} GiB; chunks of {chunk_rows} scan rows = "
        f"{chunk_rows * row_bytes / MIB:.0f} MiB (budget {args.chunk_mib} MiB)",
        flush=True,
    )
    k_values = sorted(set(args.k_values or range(2, args.k_max + 1)))
    with tempfile.TemporaryDirectory(prefix="nmfdecide_speed_") as directory:
        path = Path(directory) / "scan.zarr"
        written = generate(
            zarr,
            path,
            argparse.Namespace(
                nav=args.nav, pattern=args.pattern, chunk_rows=chunk_rows, no_compression=False
            ),
        )
        scan = da.from_zarr(str(path))
        matrix = scan.reshape(args.nav**2, args.pattern**2)
        with dask.config.set(scheduler="threads", num_workers=WORKERS), Monitor() as rss:
            passes = Progress(rss)
            maxrss_before = ru_maxrss()
            start = time.perf_counter()
            result = run_sweep(
                matrix,
                k_values,
                args.restarts,
                mode="fast",
                max_iter=args.max_iter,
                tol=args.tol,
                random_state=0,
                on_pass=passes,
            )
            seconds = time.perf_counter() - start
    maxrss_after = ru_maxrss()
    peak = max(rss.peak, maxrss_after) if maxrss_after > maxrss_before else rss.peak
    print(
        f"fast sweep, k = {k_values} x {args.restarts} restarts: {seconds:.1f} s "
        f"({seconds / 60:.1f} min), {passes.count} passes reported; peak RSS during the sweep "
        f"{peak / 2**30:.2f} GiB (before it {rss.before / 2**30:.2f} GiB); {rss.cpu_text()}"
    )
    print("  k   best MSE      PCA MSE (bound)")
    for i, k in enumerate(result.k_values):
        print(f"{k:3d}  {result.best_loss[i]:12.6g}  {result.pca_loss[i]:15.6g}")
    return {
        "shape": [args.nav, args.nav, args.pattern, args.pattern],
        "chunk_rows": chunk_rows,
        "chunk_bytes": chunk_rows * row_bytes,
        "write_seconds": written["write_seconds"],
        "fast_seconds": seconds,
        "passes_reported": passes.count,
        "peak_rss_bytes": peak,
        "rss_before_bytes": rss.before,
        "cpus_other": rss.other_cpus,
        "best_fast": result.best_loss.tolist(),
        "pca": result.pca_loss.tolist(),
    }


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
    parser.add_argument(
        "--k-values", type=int, nargs="+", help="ranks to sweep and fit (default: 2..--k-max)"
    )
    parser.add_argument(
        "--lazy",
        action="store_true",
        help="fast sweep of a lazy zarr scan (default 256x256 x 128^2) instead of the comparison",
    )
    parser.add_argument(
        "--chunk-mib", type=int, default=128, help="--lazy: most MiB of float32 per chunk"
    )
    parser.add_argument("--quick", action="store_true", help="small scan, for a smoke test")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    lazy = parser.parse_known_args()[0].lazy
    if lazy:  # new defaults; options given explicitly still win
        parser.set_defaults(nav=256, pattern=128)
    args = parser.parse_args()
    if args.quick:
        args.nav, args.pattern, args.k_max, args.restarts, args.sklearn_restarts = 30, 32, 5, 4, 1
        args.k_values = args.k_values and [k for k in args.k_values if k <= args.k_max]
    if lazy:
        figures = lazy_sweep(args)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(figures, handle, indent=2)
        return

    from hyperspy_nmfdecide.data import simulated_scan

    scan = simulated_scan(
        (args.nav, args.nav), args.pattern, 4, layout="overlapping", dose=1000.0, random_state=0
    )
    x = np.ascontiguousarray(scan.signal.data.reshape(args.nav**2, -1), dtype=np.float32)
    n, p = x.shape
    k_values = sorted(set(args.k_values or range(2, args.k_max + 1)))
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
    # Each figure as soon as it is known: a long run stopped early still leaves them.
    print(
        f"\nexact sweep: {t_exact:.1f} s, {achieved:.0f} GFLOP/s achieved "
        f"= {100 * achieved / rate:.0f} % of the measured GEMM rate; best MSE "
        f"{exact.best_loss.tolist()}",
        flush=True,
    )
    fast, t_fast, peak_fast = run_ours(x, k_values, args.restarts, "fast", args.max_iter, args.tol)
    print(f"fast sweep:  {t_fast:.1f} s; best MSE {fast.best_loss.tolist()}", flush=True)
    sk_times, sk_best, sk_peak = run_sklearn(
        x, k_values, args.sklearn_restarts, args.max_iter, args.tol
    )
    t_sklearn = args.restarts * sum(sk_times.values())
    extrapolated = args.sklearn_restarts != args.restarts

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
                    "k_values": k_values,
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
