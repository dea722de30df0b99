"""Time per pass and memory of the NMF sweep by scan size, eager against dask.distributed.

A ``LocalCluster`` of two single-threaded worker processes stands in for a real cluster (this
is a 2-core machine).  On seeded simulated scans of growing size (default 32², 64², 96² and
128² probes × 64×64 pixels) and one short sweep (default k = 2..6, 4 restarts, 30 passes,
tol 1e-4) this script measures:

1. the eager sweep (a numpy X in this process, no cluster involved) and the distributed sweep
   (the same X written to a zarr store, read as a dask array of ``--chunks-per-scan`` row
   chunks, with the cluster's client active): wall time per pass over X, passes counted by
   ``on_pass`` (the truncated SVD's passes included, so a pass is an average over stages);
2. whether both give the same best MSE per k (they differ only by float summation order:
   ~1e-4 relative at most is expected, above 1e-3 is flagged);
3. memory: peak traced memory (tracemalloc) of this process during each sweep, and the peak
   RSS of each worker (``VmHWM``, see :func:`peak_rss` for why not ``ru_maxrss``; workers are
   restarted before every distributed sweep and import the package; their peak then, idle,
   is printed too), next to X's float32 size;
4. time per pass per million entries of X, eager and distributed, for each size: constant
   when time per pass grows linearly with the scan; and the least-squares line of s/pass
   against millions of entries, whose intercept is the fixed cost of a pass (what a pass costs
   whatever the scan: on the cluster, the task hops) and whose slope is the cost per million
   entries;
5. interrupt and resume on the largest scan (``--resume-nav``): a checkpointed distributed
   sweep is interrupted (KeyboardInterrupt from ``on_pass``) twice, then run to the end, and
   compared with an uninterrupted checkpointed sweep of the same arguments, array by array.

Timings on a shared machine are noisy; tracemalloc slows Python-heavy code (the client's
communication) more than BLAS, so ``--no-tracemalloc`` times both sweeps untraced.

Run:  python benchmarks/scale.py [--quick] [--sizes 32 64 96 128] [--json PATH]
      (the fixed cost and slope of an earlier run: python benchmarks/scale.py --fit PATH.json)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_info

#: Relative best-MSE difference above which eager and distributed are flagged as disagreeing.
FLAG_RELATIVE = 1e-3


def blas_info() -> list[dict]:
    """The BLAS libraries loaded in this process and their thread counts."""
    return [
        {key: info.get(key) for key in ("internal_api", "version", "num_threads", "architecture")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]


def worker_blas_info() -> list[dict]:
    """:func:`blas_info`, self-contained so that ``client.run`` can ship it to a worker."""
    from threadpoolctl import threadpool_info

    return [
        {key: info.get(key) for key in ("internal_api", "version", "num_threads", "architecture")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]


def peak_rss() -> dict:
    """Peak resident set size of the calling process, in bytes, two ways.

    ``ru_maxrss`` (KiB on Linux) survives ``exec``: a worker that a LocalCluster nanny spawns
    from this process starts with this process's RSS at the time of the spawn as its maximum,
    so it says nothing about the worker.  ``VmHWM`` of ``/proc/self/status`` is the peak of the
    process's own address space, reset by ``exec``; it is the figure read where available.
    """
    import resource

    figures = {"ru_maxrss": 1024 * int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    figures["vmhwm"] = 1024 * int(line.split()[1])
    except OSError:
        pass
    return figures


def worker_peaks(client) -> dict[str, int]:
    """Peak RSS in bytes of each worker (VmHWM, else ru_maxrss), by worker address."""
    return {
        address: figures.get("vmhwm", figures["ru_maxrss"])
        for address, figures in client.run(peak_rss).items()
    }


def leading_burst(times: list[float]) -> int:
    """Passes reported together before the first pass of the fit (the truncated SVD's).

    ``run_sweep`` reports the SVD's passes in one burst once it is done; a fit pass is
    reported when it ends, one pass time after the previous one.
    """
    gaps = np.diff(times)
    if gaps.size == 0:
        return len(times)
    threshold = min(1e-3, 0.05 * float(np.median(gaps)))
    burst = 1
    for gap in gaps:
        if gap >= threshold:
            break
        burst += 1
    return burst


def import_on_worker() -> None:
    """Import the package (HyperSpy with it) so that a worker's idle peak RSS includes it."""
    import hyperspy_nmfdecide.nmf  # noqa: F401


def warm_up(sweep: dict) -> None:
    """One tiny eager sweep: imports and first-call costs out of the first timing."""
    from hyperspy_nmfdecide.nmf import run_sweep

    x = np.random.default_rng(0).random((64, 32), dtype=np.float32)
    run_sweep(x, [1, 2], 1, max_iter=3, tol=sweep["tol"], random_state=0)


class PassCounter:
    """``on_pass`` callback: counts passes; raises KeyboardInterrupt at pass ``stop_after``."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.count = 0
        self.stop_after = stop_after
        self.times: list[float] = []

    def __call__(self) -> None:
        self.count += 1
        self.times.append(time.perf_counter())
        if self.stop_after is not None and self.count >= self.stop_after:
            raise KeyboardInterrupt(f"benchmark interrupt after pass {self.count}")


def scan_matrix(nav: int, pattern: int, n_crystals: int) -> np.ndarray:
    """The (nav², pattern²) float32 matrix of a seeded simulated scan."""
    from hyperspy_nmfdecide.data import simulated_scan

    scan = simulated_scan((nav, nav), pattern, n_crystals, dose=1000.0, random_state=0)
    return np.ascontiguousarray(scan.signal.data.reshape(nav * nav, -1), dtype=np.float32)


def lazy_matrix(x: np.ndarray, chunks_per_scan: int):
    """``x`` written to a zarr store and opened as a dask array of ``chunks_per_scan`` row chunks.

    As a user's scan on shared disk: the workers read their chunks; ``da.from_array`` would
    instead ship the whole array from this process inside the task graph.
    """
    import dask.array as da

    rows = math.ceil(x.shape[0] / chunks_per_scan)
    path = os.path.join(_STORES.name, f"x{x.shape[0]}x{x.shape[1]}-{chunks_per_scan}.zarr")
    if not os.path.exists(path):
        da.from_array(x, chunks=(rows, -1)).to_zarr(path)
    return da.from_zarr(path)


#: Where :func:`lazy_matrix` writes its stores; removed when the script ends.
_STORES = tempfile.TemporaryDirectory(prefix="nmfdecide_scale_")


def timed_sweep(data, sweep: dict, *, trace: bool, **extra):
    """``run_sweep(data, **sweep)``: result, seconds, passes, peak traced bytes (or None)."""
    from hyperspy_nmfdecide.nmf import run_sweep

    counter = PassCounter()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        result = run_sweep(data, on_pass=counter, **sweep, **extra)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if trace else None
    finally:
        if trace:
            tracemalloc.stop()
    return result, elapsed, counter.count, peak


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)))


def compare_results(resumed, reference) -> dict[str, dict]:
    """``np.array_equal`` and max abs difference of every array field of two SweepArrays."""
    fields = {
        "best_loss": (resumed.best_loss, reference.best_loss),
        "loss": (resumed.loss, reference.loss),
        "nndsvd_loss": (resumed.nndsvd_loss, reference.nndsvd_loss),
        "n_iter": (resumed.n_iter, reference.n_iter),
        "nndsvd_n_iter": (resumed.nndsvd_n_iter, reference.nndsvd_n_iter),
        "converged": (resumed.converged, reference.converged),
        "best_run": (resumed.best_run, reference.best_run),
        "pca_loss": (resumed.pca_loss, reference.pca_loss),
    }
    for name in ("factors", "loadings"):
        mine, theirs = getattr(resumed, name), getattr(reference, name)
        keys = sorted(mine)
        if keys == sorted(theirs):
            fields[name] = (
                np.concatenate([np.ravel(mine[k]) for k in keys]),
                np.concatenate([np.ravel(theirs[k]) for k in keys]),
            )
    if len(resumed.loss_history) == len(reference.loss_history) and all(
        a.shape == b.shape for a, b in zip(resumed.loss_history, reference.loss_history)
    ):
        fields["loss_history"] = (
            np.concatenate([np.ravel(a) for a in resumed.loss_history]),
            np.concatenate([np.ravel(b) for b in reference.loss_history]),
        )
    out = {}
    for name, (a, b) in fields.items():
        a, b = np.asarray(a), np.asarray(b)
        same_shape = a.shape == b.shape
        diff = (
            float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
            if same_shape
            else float("nan")
        )
        out[name] = {"identical": bool(np.array_equal(a, b)), "max_abs_diff": diff}
    return out


def measure_size(nav: int, args, client, sweep: dict, trace: bool) -> tuple[dict, np.ndarray]:
    """Eager and distributed sweeps of one scan size; the figures and X."""
    x = scan_matrix(nav, args.pattern, args.crystals)
    n, p = x.shape
    eager, t_eager, passes_eager, peak_eager = timed_sweep(x, sweep, trace=trace)

    client.restart()
    client.run(import_on_worker)
    idle_rss = worker_peaks(client)
    lazy = lazy_matrix(x, args.chunks_per_scan)
    dist, t_dist, passes_dist, peak_dist = timed_sweep(lazy, sweep, trace=trace)
    worker_rss = worker_peaks(client)
    worker_rss_raw = client.run(peak_rss)

    agreement = relative_difference(dist.best_loss, eager.best_loss)
    figures = {
        "nav": nav,
        "n_probe": n,
        "n_pixel": p,
        "x_bytes": int(x.nbytes),
        "chunk_rows": int(lazy.chunks[0][0]),
        "n_chunks": len(lazy.chunks[0]),
        "eager_seconds": t_eager,
        "eager_passes": passes_eager,
        "eager_s_per_pass": t_eager / max(passes_eager, 1),
        "eager_peak_traced_bytes": peak_eager,
        "distributed_seconds": t_dist,
        "distributed_passes": passes_dist,
        "distributed_s_per_pass": t_dist / max(passes_dist, 1),
        "client_peak_traced_bytes": peak_dist,
        "worker_idle_max_rss_bytes": idle_rss,
        "worker_max_rss_bytes": worker_rss,
        "worker_rss_both_measures": worker_rss_raw,
        "best_loss_eager": eager.best_loss.tolist(),
        "best_loss_distributed": dist.best_loss.tolist(),
        "best_loss_max_relative_difference": agreement,
        "distributed_result": dist,
    }
    mib = 2**20
    flag = "  <-- above 1e-3" if agreement > FLAG_RELATIVE else ""
    print(
        f"  {n} x {p}: eager {t_eager:.2f} s / {passes_eager} passes, distributed "
        f"{t_dist:.2f} s / {passes_dist} passes ({figures['n_chunks']} chunks of "
        f"{figures['chunk_rows']} rows); best-loss max rel. diff {agreement:.2e}{flag}; "
        f"worker max RSS idle {[round(v / mib) for v in idle_rss.values()]} MiB",
        flush=True,
    )
    return figures, x


def print_table(rows: list[dict]) -> None:
    mib = 2**20
    print(
        "\n  size (probes x px)   X MiB  passes e/d   eager s/pass   dist s/pass   dist/eager"
        "   client peak MiB (e/d)   worker peak RSS MiB   best-loss rel. diff"
    )
    for row in rows:
        size = f"{row['n_probe']} x {row['n_pixel']}"
        passes = f"{row['eager_passes']}/{row['distributed_passes']}"
        ratio = row["distributed_s_per_pass"] / row["eager_s_per_pass"]
        if row["client_peak_traced_bytes"] is None:
            client = "n/a"
        else:
            client = (
                f"{row['eager_peak_traced_bytes'] / mib:.0f}/"
                f"{row['client_peak_traced_bytes'] / mib:.0f}"
            )
        workers = ", ".join(f"{v / mib:.0f}" for v in row["worker_max_rss_bytes"].values())
        diff = row["best_loss_max_relative_difference"]
        flag = " !" if diff > FLAG_RELATIVE else ""
        print(
            f"  {size:>19}  {row['x_bytes'] / mib:6.1f}  {passes:>10}  "
            f"{row['eager_s_per_pass']:13.4f}  {row['distributed_s_per_pass']:12.4f}  "
            f"{ratio:10.2f}  {client:>22}  {workers:>20}  {diff:19.2e}{flag}"
        )
    print("\n  time per pass per million entries of X (constant = linear in scan size):")
    print("  size (probes x px)   entries (M)   eager s/pass/M   distributed s/pass/M")
    for row in rows:
        entries = row["n_probe"] * row["n_pixel"] / 1e6
        size = f"{row['n_probe']} x {row['n_pixel']}"
        print(
            f"  {size:>19}  {entries:12.2f}  {row['eager_s_per_pass'] / entries:15.5f}  "
            f"{row['distributed_s_per_pass'] / entries:21.5f}"
        )
    eager = [r["eager_s_per_pass"] / (r["n_probe"] * r["n_pixel"] / 1e6) for r in rows]
    dist = [r["distributed_s_per_pass"] / (r["n_probe"] * r["n_pixel"] / 1e6) for r in rows]
    print(
        f"  linearity: s/pass/M largest / smallest scan = eager {eager[-1] / eager[0]:.2f}, "
        f"distributed {dist[-1] / dist[0]:.2f} (1.00 = exactly linear)"
    )


def pass_cost_fit(rows: list[dict], which: str) -> tuple[float, float]:
    """Fixed seconds per pass and seconds per million entries: the line through s/pass by size.

    Examples
    --------
    >>> rows = [{"n_probe": n, "n_pixel": 1000, "eager_s_per_pass": 0.1 + 2e-6 * n} for n in (1, 2)]
    >>> [round(v, 6) for v in pass_cost_fit(rows, "eager")]
    [0.1, 0.002]
    """
    entries = [row["n_probe"] * row["n_pixel"] / 1e6 for row in rows]
    slope, intercept = np.polyfit(entries, [row[f"{which}_s_per_pass"] for row in rows], 1)
    return float(intercept), float(slope)


def print_fit(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Print and return the fixed cost and slope of a pass, eager and distributed."""
    print("\n  s/pass = fixed + slope x entries (least squares over the sizes):")
    fits = {}
    for which in ("eager", "distributed"):
        fixed, slope = pass_cost_fit(rows, which)
        fits[which] = {"fixed_seconds": fixed, "seconds_per_million_entries": slope}
        print(
            f"  {which:>11}: fixed {fixed:.4f} s per pass, slope {1e3 * slope:.3f} ms per M entries"
        )
    return fits


def interrupted_call(lazy, sweep: dict, directory: str, stop_after: int | None) -> dict:
    """One checkpointed call, interrupted at pass ``stop_after`` of the call (None: never)."""
    from hyperspy_nmfdecide.nmf import run_sweep

    counter = PassCounter(stop_after)
    start = time.perf_counter()
    try:
        result = run_sweep(
            lazy, on_pass=counter, checkpoint=directory, checkpoint_interval=0, **sweep
        )
    except KeyboardInterrupt:
        result = None
    return {
        "stop_after": stop_after,
        "passes": counter.count,
        "interrupted": result is None,
        "seconds": time.perf_counter() - start,
        "result": result,
    }


def resume_check(x: np.ndarray, args, client, sweep: dict, plain=None) -> dict:
    """Interrupt a checkpointed distributed sweep twice, finish it, compare with no interrupt."""
    from hyperspy_nmfdecide.nmf import run_sweep

    n, p = x.shape
    print(f"\ninterrupt and resume, distributed, {n} x {p}, checkpoint_interval=0:", flush=True)
    client.restart()
    client.run(import_on_worker)
    lazy = lazy_matrix(x, args.chunks_per_scan)
    with tempfile.TemporaryDirectory(prefix="nmf_scale_ref_") as directory:
        counter = PassCounter()
        start = time.perf_counter()
        reference = run_sweep(
            lazy, on_pass=counter, checkpoint=directory, checkpoint_interval=0, **sweep
        )
        t_reference = time.perf_counter() - start
    total = counter.count
    svd_passes = leading_burst(counter.times)
    print(
        f"  uninterrupted (checkpointed): {total} passes ({svd_passes} reported together "
        f"before the fit's first pass: the SVD), {t_reference:.2f} s",
        flush=True,
    )
    if args.interrupt_at:
        first, second = args.interrupt_at
    else:
        # Each call repeats the SVD before it resumes: interrupt ~40 % of the fit's passes
        # after it, twice, so that both interrupts land inside the fit and a third call remains.
        first = second = svd_passes + max(1, round(0.4 * (total - svd_passes)))
    where = [
        "in the fit" if n > svd_passes else "at or before the SVD's passes" for n in (first, second)
    ]
    print(
        f"  interrupts: call 1 after pass {first} ({where[0]}), call 2 after pass {second} of "
        f"its own ({where[1]}), call 3 to the end",
        flush=True,
    )
    calls = []
    with tempfile.TemporaryDirectory(prefix="nmf_scale_resume_") as directory:
        for stop_after in (first, second, None):
            call = interrupted_call(lazy, sweep, directory, stop_after)
            state = "interrupted" if call["interrupted"] else "finished"
            note = ""
            if stop_after is not None and not call["interrupted"]:
                note = f"  (finished before pass {stop_after}: no interrupt happened)"
            print(
                f"  call {len(calls) + 1}: {state} after {call['passes']} passes, "
                f"{call['seconds']:.2f} s{note}",
                flush=True,
            )
            calls.append(call)
            if not call["interrupted"]:
                break
    resumed = calls[-1]["result"]
    figures = {
        "n_probe": n,
        "n_pixel": p,
        "uninterrupted_passes": total,
        "uninterrupted_seconds": t_reference,
        "svd_passes_reported_together": svd_passes,
        "interrupt_at": [first, second],
        "calls": [{key: c[key] for key in c if key != "result"} for c in calls],
    }
    if resumed is None:
        print("  the last call was interrupted: nothing to compare")
        return figures
    comparison = compare_results(resumed, reference)
    figures["comparison"] = comparison
    print("  resumed vs uninterrupted (checkpointed):   identical   max abs diff")
    for name, entry in comparison.items():
        print(f"    {name:<38} {str(entry['identical']):>9}   {entry['max_abs_diff']:.3g}")
    figures["bit_identical"] = all(entry["identical"] for entry in comparison.values())
    print(f"  bit-identical in every array: {figures['bit_identical']}")
    if plain is not None:
        versus_plain = compare_results(resumed, plain)
        figures["comparison_with_unchecked_run"] = versus_plain
        same = all(entry["identical"] for entry in versus_plain.values())
        worst = max(entry["max_abs_diff"] for entry in versus_plain.values())
        print(
            "  resumed vs the table's distributed run (no checkpoint): "
            f"bit-identical {same}, max abs diff over all arrays {worst:.3g}"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[32, 64, 96, 128], help="probes per scan side"
    )
    parser.add_argument("--pattern", type=int, default=64, help="pixels per pattern side")
    parser.add_argument("--crystals", type=int, default=4, help="crystals in the simulated scan")
    parser.add_argument("--k-min", type=int, default=2)
    parser.add_argument("--k-max", type=int, default=6)
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument(
        "--chunks-per-scan", type=int, default=8, help="row chunks of the dask array (≥ 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument(
        "--resume-nav", type=int, help="scan side of the resume check (default: largest size)"
    )
    parser.add_argument(
        "--interrupt-at",
        type=int,
        nargs=2,
        metavar=("N1", "N2"),
        help="passes of the first and second call after which to interrupt "
        "(default, both: the SVD's passes + 40 %% of the fit's, from an uninterrupted sweep)",
    )
    parser.add_argument("--no-resume", action="store_true", help="skip the resume check")
    parser.add_argument(
        "--no-tracemalloc", action="store_true", help="time untraced (no client memory figures)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny scans, for a smoke test (nav 16..40 x 32 px, k 2..3, 2 restarts, 10 passes)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--fit", metavar="JSON", help="only print the fixed cost and slope of an earlier --json"
    )
    if parser.parse_known_args()[0].quick:  # new defaults; options given explicitly still win
        parser.set_defaults(
            sizes=[16, 24, 32, 40], pattern=32, k_max=3, restarts=2, max_iter=10, chunks_per_scan=4
        )
    args = parser.parse_args()
    if args.fit:
        with open(args.fit) as handle:
            print_fit(json.load(handle)["sizes"])
        return
    if args.chunks_per_scan < 4:
        parser.error("--chunks-per-scan must be at least 4")
    args.sizes = sorted(args.sizes)
    if min(args.sizes) ** 2 < args.chunks_per_scan:
        parser.error("the smallest scan has fewer probes than --chunks-per-scan")
    resume_nav = args.resume_nav or args.sizes[-1]

    from distributed import Client, LocalCluster

    sweep = {
        "k_values": list(range(args.k_min, args.k_max + 1)),
        "n_restarts": args.restarts,
        "max_iter": args.max_iter,
        "tol": args.tol,
        "random_state": 0,
    }
    trace = not args.no_tracemalloc
    warm_up(sweep)
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    try:
        client.run(import_on_worker)  # the BLAS the sweep's tasks will load
        client_blas = blas_info()
        workers_blas = client.run(worker_blas_info)
        print(f"cluster: {args.workers} worker processes x 1 thread (LocalCluster)")
        print(f"BLAS, client: {client_blas}")
        for address, info in workers_blas.items():
            print(f"BLAS, worker {address}: {info}")
        print(
            f"sweep: k = {sweep['k_values'][0]}..{sweep['k_values'][-1]}, "
            f"{args.restarts} restarts, max_iter {args.max_iter}, tol {args.tol:g}; "
            f"{args.chunks_per_scan} row chunks per scan; tracemalloc {'on' if trace else 'off'}",
            flush=True,
        )
        rows, resume_x, resume_plain = [], None, None
        for nav in args.sizes:
            figures, x = measure_size(nav, args, client, sweep, trace)
            if nav == resume_nav:
                resume_x, resume_plain = x, figures["distributed_result"]
            rows.append(figures)
        print_table(rows)
        fits = print_fit(rows) if len(rows) > 1 else None
        resume = None
        if not args.no_resume:
            if resume_x is None:
                resume_x = scan_matrix(resume_nav, args.pattern, args.crystals)
            resume = resume_check(resume_x, args, client, sweep, plain=resume_plain)
    finally:
        client.close()
        cluster.close()

    if args.json:
        for row in rows:
            del row["distributed_result"]
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "sweep": sweep,
                    "pattern": args.pattern,
                    "chunks_per_scan": args.chunks_per_scan,
                    "workers": args.workers,
                    "tracemalloc": trace,
                    "blas_client": client_blas,
                    "blas_workers": workers_blas,
                    "sizes": rows,
                    "pass_cost_fit": fits,
                    "resume": resume,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
