"""Accuracy of ``decide_k`` and ``phase_maps`` on three ground-truth suites, in two configurations.

Suites
------
``own``
    18 seeded scans from :func:`hyperspy_nmfdecide.data.simulated_scan` (:data:`SUITE`): 1-7
    crystals (2-8 sources), overlapping crystals, grains without overlap, smooth thickness
    gradients, uniform and spatially varying backgrounds, 50-5000 electrons per pattern, 64²
    and 128² patterns.
``physics``
    9 seeded scans from the same simulator with the physics the additive model lacks
    (:data:`PHYSICS`): the direct beam depleted by the crystals in all, and a detector's gain,
    dark offset, readout noise and point-spread blur; a beam drifting across the scan
    (descan); spot intensities that swing with thickness (dynamical); overlaps that are not
    sums (the lower crystal sees a depleted beam, double-diffraction spots); two phases
    sharing their reflections.  The true k counts phases as in *own*: these effects are no
    phase.  (Multislice scenes: ``benchmarks/multislice.py``.)
``independent``
    13 seeded scans from pyxem's own simulators (``benchmarks/independent.py``:
    ``CrystalSTEMSimulation``, ``simulated_overlap``, ``si_grains``, ``si_grains_simple``,
    ``fe_multi_phase_grains``): 2-6 crystals or grains, 50-5000 electrons per pattern, detector
    gains 0.3, 1 and 8, with and without a uniform offset, 64² and 128² patterns.  Generators
    we did not write, so conventions we did not choose.

How the suites count k.  *own*: the background source (direct beam, diffuse halo, amorphous
rings) is one source whenever its map is not the sum of the crystal maps: in ``overlapping``
and ``gradient`` scans (vacuum, overlaps, a background of its own) the true k is crystals + 1.
In a ``grains`` scan every probe holds the background and exactly one grain, so the background
map equals the sum of the grain maps up to their ±25 % thickness variation; that difference
lies an order of magnitude below the noise edge at the doses of the suite (≤ 1000 e⁻ for
grains), the component cannot be found by any method, and the suite counts k = crystals.
*independent*: the rank of the noise-free model (``scan.true_k``): every distinct crystal or
grain pattern (each carries its own direct beam), plus one for the uniform offset of
``CrystalSTEMSimulation`` when there is one (vacuum probes hold it alone).

Configurations
--------------
``defaults``
    Exactly what a new user types: ``s.nmf_sweep(range(2, 11), n_restarts=10,
    random_state=0)`` → ``s.decide_k()`` → ``s.phase_maps()``.  No ``signal_mask`` argument, so
    this measures whatever ``nmf_sweep`` does by default.
``quickstart``
    The README quickstart's hand-set beam mask, ``signal_mask=s.direct_beam_mask(radius=r)``,
    passed to the same sweep: ``r = size / 16`` for own scans (as the README), the true beam
    radius for independent scans (``scan.params["beam_radius"]``).

Printed
-------
Per scan and configuration: the true k; the k of ``decide_k`` (``noise``, its default) and of
the ``elbow`` and ``iqa`` methods from the same evidence; the adjusted Rand index of the phase
labels at the decided and at the true k; the overlap F1 at the decided k (only on scans with
overlap); the **component cosine** at the true and at the decided k: components matched to the
true patterns by Hungarian assignment on their cosine similarity, the cosine taken with the
direct beam's pixels excluded (a disc at the true beam: radius ``size / 16`` for own scans,
``scan.beam_mask`` for independent ones), the median over sources (0 for a source left without
a component).  Then per suite × configuration: k exact n/N, k within ±1 n/N, median ARI at the
decided and at the true k, median overlap F1 over the scans with overlap, median component
cosines, runs that failed (an exception: printed, counted as a miss of k, left out of the
medians); and the exact and within-±1 counts of every ``decide_k`` method.

Run:  python benchmarks/accuracy.py [--quick] [--suite {own,physics,independent,all}]
      [--config {defaults,quickstart,both}]
(``--quick``: 6 own, 3 physics and 4 independent scans.  The full run takes about 1 min per scan and
configuration on 2 cores: ~30 min for ``--suite independent --config both``.)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import independent  # noqa: E402
from phase_accuracy import score_phase_maps  # noqa: E402

from hyperspy_nmfdecide.data import simulated_scan  # noqa: E402
from hyperspy_nmfdecide.decide import METHODS, choose_k  # noqa: E402

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
#: Indices into :data:`SUITE` of ``--quick`` runs.
QUICK = [0, 3, 8, 11, 13, 14]

_DETECTOR = {"gain": 4.0, "offset": 50.0, "readout_noise": 2.0, "psf_sigma": 0.6}
_DIM_DETECTOR = {"gain": 0.3, "psf_sigma": 0.5}
#: Our simulator with the physics the additive model lacks (``simulated_scan`` keywords; the
#: direct beam depleted by the crystals in every scan).
PHYSICS = [
    {"n_crystals": 3, "dose": 1000, "random_state": 201},
    {"n_crystals": 3, "dose": 500, "detector": _DETECTOR, "random_state": 202},
    {"n_crystals": 2, "dose": 2000, "dynamical": 0.6, "overlap_physics": 1.0, "random_state": 203},
    {"n_crystals": 2, "layout": "gradient", "dose": 2000, "dynamical": 0.6, "random_state": 204},
    {"n_crystals": 4, "layout": "grains", "dose": 1000, "dynamical": 0.5, "random_state": 205},
    {"n_crystals": 3, "dose": 1000, "descan": 3.0, "random_state": 206},
    {"n_crystals": 3, "dose": 1000, "shared_reflections": True, "random_state": 207},
    {"n_crystals": 4, "dose": 200, "detector": _DIM_DETECTOR, "random_state": 208},
    {
        "n_crystals": 3,
        "pattern_size": 128,
        "dose": 1000,
        "dynamical": 0.4,
        "overlap_physics": 0.7,
        "random_state": 209,
    },
]
PHYSICS_QUICK = [0, 2, 3]
CONFIGS = ("defaults", "quickstart")


def suite_true_k(scan) -> int:
    """The number of components the own suite counts (see the module docstring).

    Parameters
    ----------
    scan : SimulatedScan

    Returns
    -------
    int
    """
    return scan.true_k - 1 if scan.params.get("layout") == "grains" else scan.true_k


def make_scan(spec):
    """The simulated scan of one entry of :data:`SUITE`.

    Parameters
    ----------
    spec : tuple
        ``(nav_shape, pattern_size, n_crystals, layout, background, dose, seed)``.

    Returns
    -------
    SimulatedScan
    """
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


@dataclass
class Case:
    """One scan of a suite with what the benchmark needs to know of its truth.

    Attributes
    ----------
    label : str
        A one-line description.
    scan : SimulatedScan or IndependentScan
        The scan and its ground truth.
    true_k : int
        The k the suite counts.
    beam_mask : numpy.ndarray
        (H, W) bool, the direct beam's pixels at its true position (left out of the cosines).
    beam_radius : float
        The radius of the quickstart configuration's hand-set beam mask, pixels.
    """

    label: str
    scan: object
    true_k: int
    beam_mask: np.ndarray
    beam_radius: float


def own_case(spec) -> Case:
    """The :class:`Case` of an entry of :data:`SUITE`.

    Parameters
    ----------
    spec : tuple
        An entry of :data:`SUITE`.

    Returns
    -------
    Case
        Beam radius ``size / 16`` (the README's), at the true beam position.
    """
    nav, size, n, layout, background, dose, _ = spec
    scan = make_scan(spec)
    x, y = size / 2 + np.asarray(scan.params["beam_offset"], dtype=float)
    radius = size / 16
    yy, xx = np.indices((size, size))
    return Case(
        label=f"{n} cryst {layout} {background} {nav[0]}x{nav[1]} {size}² {dose:g}e",
        scan=scan,
        true_k=suite_true_k(scan),
        beam_mask=(xx - x) ** 2 + (yy - y) ** 2 <= radius**2,
        beam_radius=radius,
    )


def physics_case(spec: dict) -> Case:
    """The :class:`Case` of an entry of :data:`PHYSICS`: a 32 × 32 scan, beam depleted.

    Parameters
    ----------
    spec : dict
        ``simulated_scan`` keywords.

    Returns
    -------
    Case
    """
    options = {"nav_shape": (32, 32), "pattern_size": 64, "beam_depletion": True} | spec
    scan = simulated_scan(**options)
    size = options["pattern_size"]
    x, y = size / 2 + np.asarray(scan.params["beam_offset"], dtype=float)
    radius = size / 16 + options.get("descan", 0.0) / 2
    yy, xx = np.indices((size, size))
    effects = [
        name
        for name in ("detector", "descan", "dynamical", "shared_reflections", "overlap_physics")
        if spec.get(name)
    ]
    return Case(
        label=f"{options['n_crystals']} cryst {options.get('layout', 'overlapping')} "
        f"{size}² {options['dose']:g}e depleted " + " ".join(effects),
        scan=scan,
        true_k=suite_true_k(scan),
        beam_mask=(xx - x) ** 2 + (yy - y) ** 2 <= radius**2,
        beam_radius=radius,
    )


def independent_case(spec: dict) -> Case:
    """The :class:`Case` of an entry of ``independent.SUITE``.

    Parameters
    ----------
    spec : dict
        An entry of ``independent.SUITE``.

    Returns
    -------
    Case
    """
    scan = independent.make_scan(spec)
    return Case(
        label=independent.describe(scan),
        scan=scan,
        true_k=scan.true_k,
        beam_mask=scan.beam_mask,
        beam_radius=scan.params["beam_radius"],
    )


#: Suite name -> (specs, indices of the quick run, spec -> Case).
SUITES: dict[str, tuple[list, list[int], Callable[..., Case]]] = {
    "own": (SUITE, QUICK, own_case),
    "physics": (PHYSICS, PHYSICS_QUICK, physics_case),
    "independent": (independent.SUITE, independent.QUICK, independent_case),
}


def method_ks(s, decision) -> dict[str, int]:
    """The k of every ``decide_k`` method, from the evidence of one decision where possible.

    Parameters
    ----------
    s : NMFDecideDiffraction2D
        The signal holding the sweep.
    decision : KDecision
        ``s.decide_k()``'s.

    Returns
    -------
    dict of str to int
        Method -> k (the decision's own method gives ``decision.k``).
    """
    ks = {}
    for method in METHODS:
        if method == decision.method:
            ks[method] = int(decision.k)
        elif method in ("elbow", "iqa"):  # these read the sweep's columns alone
            ks[method] = choose_k(
                decision.k_values,
                decision.columns["best_mse"],
                method=method,
                fidelity=decision.columns,
            ).k
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ks[method] = int(s.decide_k(method=method, store=False).k)
    return ks


def run_config(case: Case, config: str) -> dict:
    """Sweep, decide and phase-map one scan in one configuration, and score it.

    Parameters
    ----------
    case : Case
        The scan (its signal is copied, never modified).
    config : {"defaults", "quickstart"}
        See the module docstring.

    Returns
    -------
    dict
        ``decided`` (method -> k), ``k`` (``decide_k``'s), ``phases`` (``"decided"`` and
        ``"true"`` -> :func:`score_phase_maps` figures; ``"true"`` None when the true k is not
        swept), ``has_overlap``, ``seconds``.
    """
    s = case.scan.signal.deepcopy()
    start = time.perf_counter()
    if config == "defaults":
        s.nmf_sweep(range(2, 11), n_restarts=10, random_state=0)
    elif config == "quickstart":
        beam = s.direct_beam_mask(radius=case.beam_radius)
        s.nmf_sweep(range(2, 11), n_restarts=10, signal_mask=beam, random_state=0)
    else:
        raise ValueError(f"config must be one of {CONFIGS}, got {config!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a k range that does not bracket is a miss here
        decision = s.decide_k()
    pm = s.phase_maps()
    decided = method_ks(s, decision)
    score = {"decided": score_phase_maps(case.scan, pm, exclude=case.beam_mask), "true": None}
    if case.true_k in decision.k_values:
        pm_true = s.phase_maps(k=case.true_k, store=False)
        score["true"] = score_phase_maps(case.scan, pm_true, exclude=case.beam_mask)
    return {
        "decided": decided,
        "k": int(decision.k),
        "phases": score,
        "has_overlap": bool(case.scan.overlap.any()),
        "seconds": time.perf_counter() - start,
    }


def _figure(value: float | None, width: int = 5, digits: int = 3) -> str:
    return f"{'-':>{width}s}" if value is None or np.isnan(value) else f"{value:{width}.{digits}f}"


ROW_HEADER = (
    f"{'scan':58s} {'config':10s} {'true':>4s} {'k':>3s} "
    + " ".join(f"{m:>5s}" for m in METHODS)
    + "  ARI(k) ARI(true)  F1(k)  cos(true) cos(k)  s"
)


def format_row(case: Case, config: str, row: dict) -> str:
    """One printed line of the per-scan table.

    Parameters
    ----------
    case : Case
    config : str
    row : dict
        From :func:`run_config`, or ``{"error": message}``.

    Returns
    -------
    str
    """
    if "error" in row:
        return f"{case.label:58s} {config:10s} {case.true_k:>4d}  failed: {row['error'][:100]}"
    decided, true = row["phases"]["decided"], row["phases"]["true"]
    f1 = decided["overlap_f1"] if row["has_overlap"] else None
    return (
        f"{case.label:58s} {config:10s} {case.true_k:>4d} {row['k']:>3d} "
        + " ".join(f"{row['decided'][m]:>5d}" for m in METHODS)
        + f"  {_figure(decided['ari'], 6)} {_figure(true and true['ari'], 9)}"
        f"  {_figure(f1)}  {_figure(true and true['median_cosine'], 9)}"
        f" {_figure(decided['median_cosine'], 6)} {row['seconds']:4.0f}"
    )


def summarise(rows: list[dict]) -> dict:
    """Summary figures of one suite in one configuration.

    Parameters
    ----------
    rows : list of dict
        :func:`run_config` results (or ``{"error": message}``), each with ``true_k`` added.

    Returns
    -------
    dict
        ``n``, ``failed`` (runs that raised: misses, left out of the medians), ``exact`` and
        ``within`` (method or ``"decide_k"`` -> count), the medians
        ``ari``, ``ari_true``, ``f1`` (scans with overlap; ``n_overlap`` of them),
        ``cos_true``, ``cos``.
    """

    def median(values) -> float:
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else float("nan")

    n = len(rows)
    rows = [r for r in rows if "error" not in r]
    truth = np.array([r["true_k"] for r in rows], dtype=int)
    found = {m: np.array([r["decided"][m] for r in rows], dtype=int) for m in METHODS}
    found["decide_k"] = np.array([r["k"] for r in rows], dtype=int)
    true_scores = [r["phases"]["true"] for r in rows]
    return {
        "n": n,
        "failed": n - len(rows),
        "exact": {m: int(np.sum(k == truth)) for m, k in found.items()},
        "within": {m: int(np.sum(np.abs(k - truth) <= 1)) for m, k in found.items()},
        "ari": median(r["phases"]["decided"]["ari"] for r in rows),
        "ari_true": median(t and t["ari"] for t in true_scores),
        "f1": median(r["phases"]["decided"]["overlap_f1"] for r in rows if r["has_overlap"]),
        "n_overlap": sum(r["has_overlap"] for r in rows),
        "cos_true": median(t and t["median_cosine"] for t in true_scores),
        "cos": median(r["phases"]["decided"]["median_cosine"] for r in rows),
    }


def print_summary(results: dict[tuple[str, str], list[dict]]) -> None:
    """The per suite × configuration summary table and the per-method k counts.

    Parameters
    ----------
    results : dict
        (suite, config) -> rows, as in :func:`summarise`.
    """
    print()
    print(
        f"{'suite':12s} {'config':10s} {'k exact':>8s} {'k ±1':>7s} {'ARI(k)':>7s} "
        f"{'ARI(true)':>9s} {'F1 (overlap scans)':>19s} {'cos(true)':>9s} {'cos(k)':>7s} "
        f"{'failed':>6s}"
    )
    summaries = {key: summarise(rows) for key, rows in results.items() if rows}
    for (suite, config), s in summaries.items():
        n = s["n"]
        f1 = f"{_figure(s['f1'])} ({s['n_overlap']:d})"
        print(
            f"{suite:12s} {config:10s} {s['exact']['decide_k']:>4d}/{n:<3d} "
            f"{s['within']['decide_k']:>3d}/{n:<3d} {_figure(s['ari'], 7)} "
            f"{_figure(s['ari_true'], 9)} {f1:>19s} {_figure(s['cos_true'], 9)} "
            f"{_figure(s['cos'], 7)} {s['failed']:>6d}"
        )
    print()
    print("k per decide_k method (exact / within ±1):")
    for (suite, config), s in summaries.items():
        n = s["n"]
        print(
            f"  {suite:12s} {config:10s} "
            + "   ".join(f"{m} {s['exact'][m]}/{n} {s['within'][m]}/{n}" for m in METHODS)
        )


def main() -> None:
    """Command line: see the module docstring."""
    from hyperspy.defaults_parser import preferences

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few scans of each suite")
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="all")
    parser.add_argument("--config", choices=(*CONFIGS, "both"), default="both")
    args = parser.parse_args()
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    configs = list(CONFIGS) if args.config == "both" else [args.config]
    preferences.General.show_progressbar = False  # so the calls stay exactly the user's

    results: dict[tuple[str, str], list[dict]] = {(s, c): [] for s in suites for c in configs}
    for suite in suites:
        specs, quick, build = SUITES[suite]
        print(f"\n== {suite} suite ==")
        print(ROW_HEADER, flush=True)
        for spec in [specs[i] for i in quick] if args.quick else specs:
            case = build(spec)
            for config in configs:
                try:
                    row = run_config(case, config)
                except Exception as error:  # a crash is a result too: printed, counted a miss
                    row = {"error": f"{type(error).__name__}: {error}"}
                row["true_k"] = case.true_k
                results[suite, config].append(row)
                print(format_row(case, config, row), flush=True)
    print_summary(results)


if __name__ == "__main__":
    main()
