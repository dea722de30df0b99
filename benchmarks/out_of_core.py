"""Out-of-core NMF sweep: a scan larger than RAM, written to disk as zarr, swept in bounded memory.

By default a seeded simulated scan of 512×512 probes × 192×192 pixels (3 crystals and the
background, 1000 e⁻ per pattern) is 36.0 GiB as float32: 1.5 times the 24 GiB of RAM of the
machine it was written for.  This script

1. writes it to a zarr store at ``--path``, chunk by chunk, from the lazy
   :func:`hyperspy_nmfdecide.data.simulated_scan` (the noise of every scan row has its own
   seed, so no chunk needs another; dask's threaded scheduler, 2 threads), or reuses a
   complete store of the same shape and dtype left there by an earlier ``--keep`` run.
   The chunks hold whole scan rows (``--chunk-rows``; by default the most rows that keep a
   chunk within 128 MiB of float32: 1 row = 72 MiB at the default size) and are compressed
   with zarr's default compressor (zarr 2: Blosc lz4, level 5, byte shuffle; ``--no-compression``
   stores raw float32, 38.7 GB at the default size).  The store's size on disk is printed;
2. opens it again with ``dask.array.from_zarr``, reshapes it to the (probes, pixels) matrix
   (a blockwise reshape: a chunk of whole scan rows is a block of whole matrix rows) and runs
   :func:`hyperspy_nmfdecide.nmf.run_sweep` on it (``--k``, ``--restarts``, ``--max-iter``),
   which streams the matrix one navigation block at a time (the next block is read while the
   current one is computed on) under dask's threaded scheduler with 2 workers;
3. measures the sweep's wall time, the passes it reports through ``on_pass`` and the passes
   over the data it really makes (every block read is counted: passes = reads / blocks;
   ``on_pass`` reports 9 at once after the truncated SVD, for its 8 passes and the statistics
   pass, and none for the final exact-MSE pass per k), the time per pass, the best MSE per k,
   and the process's resident memory: sampled with psutil every 0.2 s during the sweep (the
   peak, and the RSS just before), next to ``ru_maxrss`` (the lifetime peak, generation
   included; when it grows during the sweep its final value is the sweep's exact peak).

It prints PASS when the sampled peak RSS of the sweep stayed under ``--memory-budget-gib``
(default 4 GiB), FAIL otherwise, with exit code 1.  The scan's float32 size is printed with
its ratio to this machine's total memory: only a ratio above 1 makes the run a proof.

Figures measured with it are in README.md ("Scans larger than one machine").  The compressed
store of the default scan is small enough to sit in the page cache: the run then shows that the
sweep's memory is bounded, not disk throughput; ``--no-compression`` makes every pass read the
disk.  ``--compute-threads 1`` helps on a machine shared with other busy processes.

The same sweep through HyperSpy: ``LazyNMFDecideDiffraction2D(da.from_zarr(path))``
(or ``hs.signals.Signal2D(...).as_lazy()`` with ``set_signal_type("nmf_decide")``), then
``.nmf_sweep(k_range=[2, 3], n_restarts=2, show_progressbar=False, random_state=0)``; it
builds the same blockwise matrix and calls ``run_sweep``.  This script calls ``run_sweep``
directly, with fewer layers between the measurement and the streaming.

Run:  python benchmarks/out_of_core.py [--quick] [--nav N --pattern P] [--keep] [--json FILE]
      (needs zarr: ``pip install zarr``; --quick: 64×64 × 64² in a temporary directory)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil

GIB = 2**30
MIB = 2**20
#: Largest default chunk, bytes of float32.
MAX_CHUNK_BYTES = 128 * MIB
N_CRYSTALS = 3
DOSE = 1000.0
SEED = 0
WORKERS = 2
#: Attribute this script writes to a store once every chunk is in it.
MARKER = "nmfdecide_out_of_core"


class Monitor:
    """Resident memory of this process, sampled every ``interval`` s in a background thread
    while in the block, and the CPU time this process and all the others used meanwhile."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.process = psutil.Process()

    def __enter__(self) -> Monitor:
        self.before = self.process.memory_info().rss
        self.peak, self.samples = self.before, 0
        self._cpu = (_busy_seconds(), _own_seconds(self.process), time.perf_counter())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)
        self.samples += 1

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        busy, own, start = self._cpu
        wall = time.perf_counter() - start
        self.own_cpus = (_own_seconds(self.process) - own) / wall
        self.other_cpus = max(0.0, (_busy_seconds() - busy) / wall - self.own_cpus)

    def cpu_text(self) -> str:
        text = (
            f"CPUs in use: this process {self.own_cpus:.2f}, other processes "
            f"{self.other_cpus:.2f}, of {os.cpu_count()}"
        )
        return text + ("  [shared machine: times inflated]" if self.other_cpus > 0.25 else "")


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all CPUs), since boot."""
    t = psutil.cpu_times()
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(getattr(t, name, 0.0) for name in fields)


def _own_seconds(process) -> float:
    t = process.cpu_times()
    return t.user + t.system


def ru_maxrss() -> int:
    """Lifetime peak resident memory of this process, bytes."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(root, name))
            total += getattr(stat, "st_blocks", 0) * 512 or stat.st_size
    return total


def default_chunk_rows(ny: int, nx: int, pattern: int) -> int:
    """The most scan rows whose float32 patterns fit in ``MAX_CHUNK_BYTES`` (at least one)."""
    row_bytes = nx * pattern * pattern * 4
    return max(1, min(ny, MAX_CHUNK_BYTES // row_bytes))


def compression_kwargs(zarr, compress: bool) -> dict:
    """``to_zarr`` keywords for zarr's default compressor, or none, in zarr 2 and zarr 3."""
    if compress:
        return {}
    major = int(zarr.__version__.split(".")[0])
    return {"compressor": None} if major < 3 else {"compressors": None}


def describe_compression(array) -> str:
    compressor = getattr(array, "compressor", None)
    if compressor is None and hasattr(array, "compressors"):
        compressors = tuple(array.compressors)
        return ", ".join(map(str, compressors)) if compressors else "none"
    return str(compressor) if compressor is not None else "none"


def is_zarr_array(path: Path) -> bool:
    return (path / ".zarray").is_file() or (path / "zarr.json").is_file()


def reusable(zarr, path: Path, shape: tuple[int, ...]):
    """The zarr array at ``path`` when this script completed it with this shape, else None."""
    if not is_zarr_array(path):
        return None
    try:
        array = zarr.open_array(str(path), mode="r")
    except Exception:  # an unreadable store is rewritten
        return None
    complete = bool(array.attrs.get(MARKER, {}).get("complete", False))
    if tuple(array.shape) == shape and array.dtype == np.float32 and complete:
        return array
    return None


def generate(zarr, path: Path, args) -> dict:
    """Write the lazy simulated scan to ``path`` chunk by chunk; timings and memory."""
    import dask
    import dask.array as da

    from hyperspy_nmfdecide.data import simulated_scan

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HyperSpy/pyxem deprecation chatter
        scan = simulated_scan(
            (args.nav, args.nav),
            args.pattern,
            N_CRYSTALS,
            lazy=True,
            chunks=args.chunk_rows,
            dtype=np.float32,
            dose=DOSE,
            random_state=SEED,
        )
    setup = time.perf_counter() - start
    data = scan.signal.data
    print(
        f"simulated scan set up in {setup:.1f} s ({scan.true_k} sources, weights "
        f"{scan.weights.shape} {scan.weights.dtype} = {scan.weights.nbytes / MIB:.1f} MiB; "
        f"{data.npartitions} lazy chunks of {args.chunk_rows} scan rows)",
        flush=True,
    )
    with dask.config.set(scheduler="threads", num_workers=WORKERS), Monitor() as rss:
        start = time.perf_counter()
        da.to_zarr(
            data, str(path), overwrite=True, **compression_kwargs(zarr, not args.no_compression)
        )
        seconds = time.perf_counter() - start
    array = zarr.open_array(str(path), mode="r+")
    array.attrs[MARKER] = {
        "complete": True,
        "n_crystals": N_CRYSTALS,
        "dose": DOSE,
        "random_state": SEED,
        "true_k": int(scan.true_k),
        "write_seconds": seconds,
    }
    print(
        f"written in {seconds:.1f} s: {data.nbytes / GIB / seconds:.3f} GiB/s of float32, "
        f"{args.nav * args.nav / seconds:.0f} probes/s ({WORKERS} dask threads); peak RSS "
        f"while writing {rss.peak / GIB:.2f} GiB",
        flush=True,
    )
    print(f"  {rss.cpu_text()}")
    return {
        "setup_seconds": setup,
        "write_seconds": seconds,
        "write_peak_rss": rss.peak,
        "write_cpus_own": rss.own_cpus,
        "write_cpus_other": rss.other_cpus,
    }


@contextlib.contextmanager
def compute_threads(n: int | None):
    """BLAS and numba threads of the sweep's products and updates limited to ``n`` (None: as is).

    On a machine shared with other busy processes, OpenBLAS threads that spin at every GEMM's
    barrier lose most of their time slices: one thread then goes faster than two.
    """
    if n is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)


def counted(matrix):
    """``matrix`` with every block read counted (the count is the list's only item)."""
    lock, reads = threading.Lock(), [0]

    def count(block):
        with lock:
            reads[0] += 1
        return block

    meta = np.empty((0, 0), dtype=matrix.dtype)
    return matrix.map_blocks(count, dtype=matrix.dtype, meta=meta), reads


def sweep(path: Path, args) -> dict:
    """``run_sweep`` on the zarr store as a (probes, pixels) dask matrix, measured."""
    import dask
    import dask.array as da

    from hyperspy_nmfdecide.nmf import run_sweep

    scan = da.from_zarr(str(path))
    ny, nx, h, w = scan.shape
    if any(len(c) != 1 for c in scan.chunks[1:]):
        raise SystemExit(f"the store's chunks {scan.chunks} split scan rows or patterns")
    matrix, reads = counted(scan.reshape(ny * nx, h * w))
    n_blocks = matrix.numblocks[0]
    passes = [0]

    def on_pass() -> None:
        passes[0] += 1

    k_values = [int(k) for k in args.k.split(",")]
    with (
        dask.config.set(scheduler="threads", num_workers=WORKERS),
        compute_threads(args.compute_threads),
        Monitor() as rss,
    ):
        maxrss_before = ru_maxrss()
        reads[0] = 0
        start = time.perf_counter()
        result = run_sweep(
            matrix,
            k_values,
            args.restarts,
            max_iter=args.max_iter,
            tol=args.tol,
            random_state=SEED,
            refine_runs=args.refine_runs,
            on_pass=on_pass,
        )
        seconds = time.perf_counter() - start
    maxrss_after = ru_maxrss()
    data_passes = reads[0] / n_blocks
    return {
        "result": result,
        "seconds": seconds,
        "on_pass": passes[0],
        "block_reads": reads[0],
        "n_blocks": n_blocks,
        "data_passes": data_passes,
        "rss_before": rss.before,
        "rss_peak": rss.peak,
        "rss_samples": rss.samples,
        "maxrss_before": maxrss_before,
        "maxrss_after": maxrss_after,
        "cpus_own": rss.own_cpus,
        "cpus_other": rss.other_cpus,
        "cpu_text": rss.cpu_text(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/tmp/nmfdecide_out_of_core.zarr", help="zarr store")
    parser.add_argument("--nav", type=int, default=512, help="probes per scan side")
    parser.add_argument("--pattern", type=int, default=192, help="pixels per pattern side")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="scan rows per chunk (default: the most within 128 MiB of float32, at least 1)",
    )
    parser.add_argument("--k", default="2,3", help="comma-separated ranks to sweep")
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=5)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--refine-runs", type=int, default=1, help="run_sweep's refine_runs")
    parser.add_argument(
        "--compute-threads",
        type=int,
        default=None,
        help="BLAS and numba threads during the sweep (default: the libraries' own)",
    )
    parser.add_argument(
        "--memory-budget-gib",
        type=float,
        default=4.0,
        help="PASS when the sweep's peak RSS stays under this",
    )
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="store raw float32 chunks (every pass then reads the full size from disk)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="64×64 × 64² scan in a temporary directory"
    )
    parser.add_argument("--keep", action="store_true", help="do not delete the zarr store")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    try:
        import zarr
    except ImportError:
        parser.error("zarr is needed: pip install zarr")

    tmpdir = None
    if args.quick:
        args.nav, args.pattern = 64, 64
        args.chunk_rows = args.chunk_rows or 8  # 8 blocks of 8 MiB: streamed, not one block
        tmpdir = Path(tempfile.mkdtemp(prefix="nmfdecide_out_of_core_"))
        path = tmpdir / "scan.zarr"
    else:
        path = Path(args.path)
    args.chunk_rows = args.chunk_rows or default_chunk_rows(args.nav, args.nav, args.pattern)
    shape = (args.nav, args.nav, args.pattern, args.pattern)
    nbytes = 4 * int(np.prod(shape, dtype=np.int64))
    ram = psutil.virtual_memory().total
    if path.exists() and not is_zarr_array(path):
        parser.error(f"{path} exists and is not a zarr array: choose another --path")

    import dask
    from threadpoolctl import threadpool_info

    blas = [
        {key: info.get(key) for key in ("internal_api", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    print(
        f"scan: {args.nav}×{args.nav} probes × {args.pattern}×{args.pattern} pixels, float32 "
        f"{nbytes / GIB:.2f} GiB = {nbytes / ram:.2f} × this machine's memory "
        f"({ram / GIB:.1f} GiB)" + ("" if nbytes > ram else "  [fits in memory: no proof]")
    )
    print(
        f"zarr {zarr.__version__}, dask {dask.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, BLAS {blas}"
    )
    figures: dict = {
        "shape": list(shape),
        "float32_bytes": nbytes,
        "ram_bytes": ram,
        "ratio_to_ram": nbytes / ram,
        "chunk_rows": args.chunk_rows,
        "compute_threads": args.compute_threads,
        "sweep_parameters": {
            "k": args.k,
            "restarts": args.restarts,
            "max_iter": args.max_iter,
            "tol": args.tol,
            "refine_runs": args.refine_runs,
        },
    }
    failed = False
    try:
        existing = reusable(zarr, path, shape)
        if existing is not None:
            print(
                f"reusing the complete store at {path} (chunks {existing.chunks}, "
                f"{describe_compression(existing)})"
            )
            figures["reused"] = True
        else:
            free = shutil.disk_usage(path.parent).free
            print(f"writing {path} ({free / 1e9:.0f} GB free on its disk)", flush=True)
            if args.no_compression and free < 1.05 * nbytes:
                raise SystemExit(f"not enough disk: {nbytes / 1e9:.1f} GB needed")
            figures["reused"] = False
            figures.update(generate(zarr, path, args))
        store = zarr.open_array(str(path), mode="r")
        on_disk = disk_usage(path)
        chunk_bytes = 4 * int(np.prod(store.chunks, dtype=np.int64))
        print(
            f"store: chunks {store.chunks} ({chunk_bytes / MIB:.0f} MiB of float32 each), "
            f"{describe_compression(store)}; on disk {on_disk / GIB:.2f} GiB "
            f"(×{nbytes / on_disk:.1f} compression)",
            flush=True,
        )
        figures.update(
            {"store_chunks": list(store.chunks), "chunk_bytes": chunk_bytes, "disk_bytes": on_disk}
        )
        figures["compressor"] = describe_compression(store)

        print(
            f"\nsweep: k = {args.k}, {args.restarts} restarts, max_iter {args.max_iter}, tol "
            f"{args.tol:g}, refine_runs {args.refine_runs}; dask threads ({WORKERS} workers), "
            f"BLAS/numba threads {args.compute_threads or 'default'}",
            flush=True,
        )
        out = sweep(path, args)
        result = out.pop("result")
        per_pass = out["seconds"] / out["data_passes"]
        print(
            f"sweep time {out['seconds']:.1f} s; passes over the data {out['data_passes']:g} "
            f"({out['block_reads']} block reads / {out['n_blocks']} blocks), "
            f"on_pass called {out['on_pass']} times"
        )
        print(
            f"time per pass {per_pass:.2f} s ({nbytes / GIB / per_pass:.3f} GiB/s of float32); "
            f"per on_pass call {out['seconds'] / max(out['on_pass'], 1):.2f} s"
        )
        print(out.pop("cpu_text"))
        print("  k   best MSE      PCA MSE (bound)  best run  passes of best run")
        for i, k in enumerate(result.k_values):
            best = int(result.best_run[i])
            n_iter = result.nndsvd_n_iter[i] if best < 0 else result.n_iter[i, best]
            print(
                f"{k:3d}  {result.best_loss[i]:12.6g}  {result.pca_loss[i]:15.6g}  "
                f"{'NNDSVD' if best < 0 else best:>8}  {n_iter:18d}"
            )
        budget = args.memory_budget_gib * GIB
        print(
            f"RSS before the sweep {out['rss_before'] / GIB:.2f} GiB, sampled peak during it "
            f"{out['rss_peak'] / GIB:.2f} GiB ({out['rss_samples']} samples, every 0.2 s)"
        )
        grew = out["maxrss_after"] > out["maxrss_before"]
        print(
            f"ru_maxrss (process lifetime, generation included) {out['maxrss_after'] / GIB:.2f} "
            f"GiB: "
            + (
                "it grew during the sweep, so that is the sweep's exact peak"
                if grew
                else "unchanged by the sweep, whose peak is therefore ≤ it"
            )
        )
        # ru_maxrss, when the sweep raised it, is its exact peak: a spike between samples counts.
        peak = max(out["rss_peak"], out["maxrss_after"]) if grew else out["rss_peak"]
        failed = peak >= budget
        print(
            f"{'FAIL' if failed else 'PASS'}: peak RSS {peak / GIB:.2f} GiB "
            f"{'≥' if failed else '<'} budget {args.memory_budget_gib:g} GiB for a "
            f"{nbytes / GIB:.2f} GiB scan ({nbytes / ram:.2f} × RAM)"
        )
        figures.update(out)
        figures.update(
            {
                "seconds_per_pass": per_pass,
                "sweep_peak_rss": peak,
                "k_values": result.k_values.tolist(),
                "best_mse": result.best_loss.tolist(),
                "pca_mse": result.pca_loss.tolist(),
                "memory_budget_bytes": budget,
                "passed": not failed,
            }
        )
    finally:
        if args.keep:
            print(f"kept {path}")
        elif tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        elif is_zarr_array(path):
            shutil.rmtree(path)
            print(f"deleted {path}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
