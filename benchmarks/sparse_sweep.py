"""The sparse (ePattern spot) sweep against the dense sweep of the same patterns, in one process.

On one seeded simulated spot scan (48 × 48 probes × 128 × 128 pixels, 4 crystals, 2000 e⁻ per
pattern) this script registers the Bragg spots (``s.register_spots()``), prints the spot
table's compression ratio, and times ``nmf_sweep`` (its defaults: k = 2..15, HALS, exact mode)

1. on the spot matrix, ``s.nmf_sweep(spots=table)`` (sparse, threaded CSR products);
2. on the redrawn dense patterns, ``s.epattern(table).nmf_sweep()`` (the same matrix, dense);
3. on the spot matrix by the old path (scipy's single-threaded CSR products and every HALS
   update in numba's threads), for the before/after figures;
4. with ``--dense-before``, the dense patterns by the old path too.

and prints the time ratios and the best MSE per k of each.  The scan is 4 crystals at 2000 e⁻,
the scan of the README's ePattern figures: at the default 3 crystals and 1000 e⁻ fewer spots
pass the detection threshold, and the spot matrix says less about a realistic spot scan.
Timings on a shared machine are noisy: only ratios measured in the same process are meant to
be read, and the load (``os.getloadavg``) is printed before and after every sweep.

Run:  python benchmarks/sparse_sweep.py [--quick] [--restarts N] [--dense-before] [--threads N]

(it imports the package of the checkout it is in, which it prints).

``--quick``: 24 × 24 probes × 64 × 64 pixels, k = 2..6, 4 restarts (a check that it runs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator

import numba
import numpy as np


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small scan and k range")
    parser.add_argument(
        "--restarts", type=int, default=20, help="random starts per k, for every sweep (20)"
    )
    parser.add_argument("--k-max", type=int, default=15, help="largest k (15, the default)")
    parser.add_argument("--dense-before", action="store_true", help="time the old dense path")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="numba and BLAS threads of every sweep (default: as configured): 1 gives the ratio "
        "of the work, which a machine loaded by other jobs does not distort",
    )
    return parser.parse_args()


@contextlib.contextmanager
def old_path() -> Iterator[None]:
    """The sweep as it was: scipy's products, re-cut chunks, every HALS update threaded.

    The HALS updates' tiling is not undone: it changes no result, and on one core it gains
    only 10-30 %.
    """
    from hyperspy_nmfdecide.nmf import updates
    from hyperspy_nmfdecide.nmf.operators import SparseOperator

    saved = SparseOperator.h_times_xt, SparseOperator.wt_times_x, updates.PARALLEL_WORK
    SparseOperator.h_times_xt = lambda self, chunk, h: np.ascontiguousarray((chunk @ h.T).T)
    SparseOperator.wt_times_x = lambda self, chunk, wt: np.ascontiguousarray((chunk.T @ wt.T).T)
    updates.PARALLEL_WORK = 0
    try:
        yield
    finally:
        SparseOperator.h_times_xt, SparseOperator.wt_times_x, updates.PARALLEL_WORK = saved


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def timed(label: str, sweep: Callable[[], object]) -> tuple[float, np.ndarray]:
    """Wall time and best MSE per k of one sweep, printed as it ends."""
    before = load()
    start = time.perf_counter()
    result = sweep()
    elapsed = time.perf_counter() - start
    print(f"  {label:<34} {elapsed:8.1f} s   ({before} -> {load()})", flush=True)
    return elapsed, np.asarray(result.best_loss)


def main() -> None:
    args = parse()
    warnings.simplefilter("ignore")  # the sweeps' ConvergenceWarning is not what is measured
    import hyperspy_nmfdecide
    from hyperspy_nmfdecide.data import simulated_scan
    from hyperspy_nmfdecide.epattern import to_sparse

    if args.threads:  # after the imports: scipy loads a BLAS of its own
        from threadpoolctl import threadpool_limits

        numba.set_num_threads(args.threads)
        threadpool_limits(args.threads, user_api="blas")

    nav, size, k_max, restarts = ((24, 24), 64, 6, 4) if args.quick else ((48, 48), 128, 0, 0)
    k_max = k_max or args.k_max
    restarts = restarts or args.restarts
    print(f"package: {hyperspy_nmfdecide.__file__}")
    from threadpoolctl import threadpool_info

    blas = [
        f"{i['internal_api']} {i['num_threads']}"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    print(f"numba {numba.__version__}, {numba.get_num_threads()} threads; BLAS threads: {blas}")
    print(f"{os.cpu_count()} CPUs; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    scan = simulated_scan(
        nav_shape=nav, pattern_size=size, n_crystals=4, dose=2000.0, random_state=0
    )
    s = scan.signal
    start = time.perf_counter()
    table = s.register_spots(show_progressbar=False)
    registration = time.perf_counter() - start
    matrix = to_sparse(table)
    touched = int((matrix.getnnz(axis=0) > 0).sum())
    print(f"scan {nav} × {size}², {table.n_spots} spots, registered in {registration:.1f} s")
    print(f"compression ratio ×{table.compression_ratio:.0f} (dense values / 5 per spot)")
    print(
        f"spot matrix: {matrix.nnz} non-zeros ({matrix.nnz / matrix.shape[0]:.0f} per pattern), "
        f"{touched} of {matrix.shape[1]} pixels touched by a spot"
    )
    redrawn = s.epattern(table)
    # One beam mask for both: found on each signal, the redrawn patterns' beam (a flat disc)
    # gets another mask than the raw one, and the MSEs would differ by that alone.
    beam = s.direct_beam().mask(s.data.shape[-2:])
    options = {
        "signal_mask": False if beam is None else beam,
        "k_range": range(2, k_max + 1),
        "n_restarts": restarts,
        "random_state": 0,
        "store": False,
        "show_progressbar": False,
    }
    note = "" if restarts == 20 else f" (not the default 20: {restarts} for every sweep)"
    print(f"sweeps: k = 2..{k_max}, {restarts} restarts{note}, HALS, mode 'exact'")
    sparse_time, sparse_mse = timed(
        "sparse (spot matrix)", lambda: s.nmf_sweep(spots=table, **options)
    )
    dense_time, dense_mse = timed("dense (redrawn patterns)", lambda: redrawn.nmf_sweep(**options))
    with old_path():
        old_time, old_mse = timed("sparse, old path", lambda: s.nmf_sweep(spots=table, **options))
        if args.dense_before:
            old_dense_time, old_dense_mse = timed(
                "dense, old path", lambda: redrawn.nmf_sweep(**options)
            )
    print(f"dense / sparse time: ×{dense_time / sparse_time:.1f}")
    print(f"sparse before / after: {old_time:.1f} s / {sparse_time:.1f} s", end=" ")
    print(f"= ×{old_time / sparse_time:.1f}")
    print(f"dense / sparse, old sparse path: ×{dense_time / old_time:.1f}")
    if args.dense_before:
        print(
            f"old dense / old sparse: ×{old_dense_time / old_time:.1f}; dense before / after: "
            f"{old_dense_time:.1f} s / {dense_time:.1f} s"
        )
    print("best MSE per k (sparse, dense, relative difference; old sparse path)")
    for k, a, b, c in zip(options["k_range"], sparse_mse, dense_mse, old_mse):
        print(f"  k = {k:2d}: {a:.6g}  {b:.6g}  {(a - b) / b:+.2e}   {c:.6g}")
    worst = float(np.max(np.abs(sparse_mse - dense_mse) / dense_mse))
    print(f"largest relative difference of the best MSE: {worst:.2e} ({worst * 100:.3f} %)")


if __name__ == "__main__":
    main()
