"""The ``nmfdecide`` command: NMF sweeps of 4D-STEM scans from the shell, with an HTML report.

``nmfdecide demo`` runs on a simulated scan whose answer is known; ``nmfdecide analyze FILE``
runs on any 4D-STEM file HyperSpy reads.  Both run the sweep, decide the number of components
(``decide_k``) and draw the phase maps at that k (``phase_maps``), then write ``index.html``, its
figures and a ``summary.json`` into the output directory; ``analyze`` also saves the sweep
(``sweep.npz``, read back with ``NMFSweep.load``).  The preprocessing options (``--center``,
``--binning``, ``--beam-mask``, ...) run ``prepare_for_nmf`` first; everything after works on
the prepared scan, and the report lists the steps.

This module holds the argument parser and the calls to the public API; the report's sections
are in :mod:`hyperspy_nmfdecide.report`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

_logger = logging.getLogger(__name__)

__all__ = ["CommandError", "PROG", "build_parser", "main"]

PROG = "nmfdecide"

#: Simulated scans of ``nmfdecide demo --size``: (scan shape, pattern size in pixels).
DEMO_SIZES = {
    "tiny": ((12, 12), 32),
    "small": ((32, 32), 64),
    "full": ((64, 64), 64),
}
#: Brackets the true k of every demo scan (3 crystals + background: k = 4); deciding k needs at
#: least 3 values of k.
DEMO_K = "2:8"
DEMO_RESTARTS = 20
ANALYZE_K = "2:15"
ANALYZE_RESTARTS = 20


class CommandError(Exception):
    """A problem the user can fix; shown as one line, exit status 2."""


# -- argument types ------------------------------------------------------------------------------
def _parse_k(text: str) -> list[int]:
    """Numbers of components from ``a:b`` (inclusive), ``a,b,c`` or a mix such as ``2:4,8``.

    Parameters
    ----------
    text : str
        The value given to ``--k``.

    Returns
    -------
    list of int
        Sorted, without repeats.

    Raises
    ------
    argparse.ArgumentTypeError
        For anything else (argparse reports it as an error of ``--k``).

    Examples
    --------
    >>> _parse_k("2:15")[:3], _parse_k("2:15")[-1]
    ([2, 3, 4], 15)
    >>> _parse_k("5,2,3")
    [2, 3, 5]
    >>> _parse_k("1:3,8")
    [1, 2, 3, 8]
    >>> _parse_k("3:2")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '3:2' is not a valid k range: the start 3 is above the end 2
    """
    values: set[int] = set()
    if not text.strip():
        raise argparse.ArgumentTypeError("empty k: give a range such as 2:15 or a list 2,3,5")
    for item in text.split(","):
        item = item.strip()
        try:
            if ":" in item:
                start_text, end_text = item.split(":")
                start, end = int(start_text), int(end_text)
            else:
                start = end = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a valid k: use a range such as 2:15 (inclusive) "
                "or a list such as 2,3,5"
            ) from None
        if start > end:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a valid k range: the start {start} is above the end {end}"
            )
        if start < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a valid k: the number of components must be at least 1"
            )
        values.update(range(start, end + 1))
    return sorted(values)


def _int_at_least(minimum: int):
    """An argparse type: a whole number ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _threshold(text: str) -> str | float:
    """``--threshold``: "otsu", "otsu-level" or a fraction in (0, 1).

    Examples
    --------
    >>> _threshold("otsu"), _threshold("Otsu-Level"), _threshold("0.25")
    ('otsu', 'otsu-level', 0.25)
    >>> _threshold("1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '1.5' is not a threshold: use otsu, otsu-level or a number in (0, 1)
    """
    name = text.strip().lower()
    if name in ("otsu", "otsu-level"):
        return name
    try:
        value = float(name)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a threshold: use otsu, otsu-level or a number in (0, 1)"
        )
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    """A finite number above 0, by the library's rule (``_utils.positive_number``)."""
    from ._utils import positive_number

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        return positive_number(value, "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}") from None


class _LibraryChoices(Sequence):
    """The choices of an option, read from the library when first needed.

    Importing the library's modules (NumPy, SciPy, HyperSpy, pyxem) takes seconds: too long
    for every ``nmfdecide --help`` or argument error, so the names are looked up only when
    argparse checks a value or prints the option's help.

    Parameters
    ----------
    module : str
        A module of the package, relative to it (``"prepare"``, ``"nmf.sweep"``).
    name : str
        A constant of that module (a tuple, or a dict whose keys are the names).
    """

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def _values(self) -> tuple[str, ...]:
        from importlib import import_module

        values = getattr(import_module(f".{self.module}", __package__), self.name)
        return tuple(_cli_name(value) for value in values)

    def __getitem__(self, index: int) -> str:
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())


def _cli_name(name: str) -> str:
    """The command-line spelling of a name of the library: hyphens for spaces.

    Examples
    --------
    >>> _cli_name("difference of gaussians"), _cli_name("rolling_ball")
    ('difference-of-gaussians', 'rolling_ball')
    """
    return name.replace(" ", "-")


def _background_method(text: str) -> str:
    """``--background``: a method of ``prepare.BACKGROUND_METHODS``, spaces written as
    hyphens (``median-kernel``); hyphen, underscore and space are interchangeable, case is
    ignored.  Anything else is returned unchanged, for argparse to reject as a choice.

    Examples
    --------
    >>> _background_method("Median_Kernel"), _background_method("rolling-ball")
    ('median-kernel', 'rolling_ball')
    """

    def key(name: str) -> str:
        return re.sub(r"[-_\s]+", "-", name.strip().lower())

    for name in _LibraryChoices("prepare", "BACKGROUND_METHODS"):
        if key(name) == key(text):
            return name
    return text


# -- the parser ----------------------------------------------------------------------------------
def _add_sweep_options(
    parser: argparse.ArgumentParser, *, k: str, restarts: int, out: str, also: str = ""
) -> None:
    """The options of both commands after the preprocessing: sweep, decision, output."""
    group = parser.add_argument_group("NMF sweep")
    _add_fit_options(group, k=k, restarts=restarts)
    _add_iteration_options(group)
    _add_data_options(group)
    _add_decide_options(parser)
    _add_output_options(parser, out=out, also=also)


def _add_fit_options(group, *, k: str, restarts: int) -> None:
    """What the sweep fits: the numbers of components, the restarts and the solver."""
    group.add_argument(
        "--k",
        type=_parse_k,
        default=_parse_k(k),
        metavar="K",
        help="numbers of components (diffraction 'phases') to try: a range such as 2:15 "
        f"(both ends included) or a list such as 2,3,5 (default {k})",
    )
    group.add_argument(
        "--restarts",
        type=_positive_int,
        default=restarts,
        metavar="N",
        help="random starting guesses per number of components; the best fit is kept "
        f"(Uesugi et al. use 20; default {restarts})",
    )
    group.add_argument(
        "--solver",
        choices=_LibraryChoices("nmf.sweep", "SOLVERS"),
        default="hals",
        help="NMF update rule: hals (fastest to a good fit, default), als (alternating least "
        "squares, as Uesugi et al.), mu (Lee-Seung multiplicative updates, as Cao et al.)",
    )


def _add_iteration_options(group) -> None:
    """How the fits run: where their progress is kept, iteration mode, stopping, seed."""
    group.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="store the sweep's progress in DIR as it runs; the same command run again after "
        "an interruption resumes there and gives exactly the uninterrupted result",
    )
    group.add_argument(
        "--mode",
        choices=_LibraryChoices("nmf.sweep", "MODES"),
        default="exact",
        help="exact: every iteration on the full data (default); fast: iterate on a "
        "compressed copy of the data, then evaluate every fit exactly and refine the best "
        "(much faster on large scans, MSE within about 0.5%%)",
    )
    group.add_argument(
        "--max-iter",
        type=_positive_int,
        default=200,
        metavar="N",
        help="maximum iterations (passes over the data) per fit (default 200)",
    )
    group.add_argument(
        "--tol",
        type=_non_negative_float,
        default=1e-4,
        metavar="T",
        help="a fit stops when its MSE improves by less than this fraction in one "
        "iteration (default 1e-4)",
    )
    group.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        metavar="S",
        help="random seed: the same seed gives exactly the same result (default 0)",
    )


def _add_data_options(group) -> None:
    """Where the data are read from and the work done: memory, disk or a cluster."""
    group.add_argument(
        "--lazy",
        action="store_true",
        help="work on the data chunk by chunk from disk instead of loading it into memory "
        "(for scans larger than the memory)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the sweep on the dask.distributed cluster whose scheduler is at ADDRESS "
        "(e.g. tcp://10.0.0.5:8786); implies --lazy; needs the 'distributed' package",
    )


def _add_decide_options(parser: argparse.ArgumentParser) -> None:
    decide = parser.add_argument_group("number of components and phase maps")
    decide.add_argument(
        "--method",
        choices=_LibraryChoices("decide", "METHODS"),
        default="noise",
        help="how k is decided after the sweep (needs a few values of --k): "
        "noise (default): the components of the Poisson-scaled data above the edge of pure "
        "noise; elbow: the elbow of the minimum-MSE curve; iqa: where SSIM between raw and "
        "reconstructed patterns stops rising (Cao et al.)",
    )
    decide.add_argument(
        "--threshold",
        type=_threshold,
        default="otsu",
        metavar="T",
        help="how each loading map becomes the mask of its component for the phase maps: "
        "otsu (default: Otsu's classes with a presence level), otsu-level (Otsu's level as "
        "it is) or a fraction in (0, 1) of each map's maximum",
    )
    decide.add_argument(
        "--no-phases",
        action="store_true",
        help="decide k but skip the phase maps",
    )


def _add_output_options(parser: argparse.ArgumentParser, *, out: str, also: str) -> None:
    from .report import MAX_SHOW_K

    out_group = parser.add_argument_group("output")
    out_group.add_argument(
        "--out",
        type=Path,
        default=Path(out),
        metavar="DIR",
        help=f"directory for the report (index.html, figures, summary.json{also}; default {out})",
    )
    out_group.add_argument(
        "--show-k",
        type=_parse_k,
        default=None,
        metavar="K",
        help="numbers of components whose patterns and maps are drawn in the report, "
        f"same syntax as --k (default: every k of the sweep up to {MAX_SHOW_K})",
    )
    out_group.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar, only errors and the result"
    )
    out_group.add_argument(
        "-v", "--verbose", action="store_true", help="log what is being done, step by step"
    )


def _add_prepare_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "preprocessing (before the sweep)",
        "Prepare the scan with prepare_for_nmf before the sweep; the steps given run in this "
        "order: bad pixels, centring, background, binning, blur, scaling, beam mask. The "
        "sweep, the decision and the phase maps then use the prepared scan, and the report "
        "lists every step with its parameters. Default: none (the raw data).",
    )
    _add_correction_options(group)
    _add_reshaping_options(group)


def _add_correction_options(group) -> None:
    """Preprocessing that corrects the patterns: bad pixels, centring, background."""
    group.add_argument(
        "--bad-pixels",
        action="store_true",
        help="replace hot and dead detector pixels by the mean of their 8 neighbours",
    )
    group.add_argument(
        "--center",
        action="store_true",
        help="move the direct beam of every pattern to the detector centre",
    )
    group.add_argument(
        "--center-method",
        type=str.lower,
        choices=_LibraryChoices("prepare", "CENTER_METHODS"),
        default=None,
        metavar="METHOD",
        help="how --center finds the beam (implies --center): %(choices)s (pyxem's beam "
        "finders; default blur)",
    )
    group.add_argument(
        "--background",
        type=_background_method,
        choices=_LibraryChoices("prepare", "BACKGROUND_METHODS"),
        default=None,
        metavar="METHOD",
        help="subtract the background of every pattern, clipped at 0: one of %(choices)s "
        "(rolling_ball: scikit-image's rolling ball, see --background-radius; the others: "
        "pyxem's methods with their default settings)",
    )
    group.add_argument(
        "--background-radius",
        type=_positive_float,
        default=None,
        metavar="R",
        help="radius of the rolling ball in detector pixels (only with --background "
        "rolling_ball; default 10)",
    )


def _add_reshaping_options(group) -> None:
    """Preprocessing that reshapes the patterns or what is fitted of them."""
    group.add_argument(
        "--binning",
        type=_positive_int,
        default=None,
        metavar="N",
        help="sum every pattern in N x N pixel blocks (counts are summed, so Poisson "
        "statistics are kept); N must divide the pattern size",
    )
    group.add_argument(
        "--blur",
        type=_positive_float,
        default=None,
        metavar="SIGMA",
        help="Gaussian blur of every pattern, SIGMA in pixels (after --binning)",
    )
    group.add_argument(
        "--scaling",
        type=str.lower,
        choices=_LibraryChoices("prepare", "SCALINGS"),
        default=None,
        help="square root or log(1 + x) of the intensities, for dynamic range",
    )
    group.add_argument(
        "--beam-mask",
        "--beam-radius",
        dest="beam_mask",
        type=_non_negative_float,
        default=None,
        metavar="R",
        help="leave out of the fit a disc of R pixels of the prepared pattern (after "
        "--binning) around the direct beam found on the mean prepared pattern. Default: the "
        "beam found on the mean pattern, its radius measured from its own profile (nothing "
        "is masked when no beam stands out); 0 keeps every pixel. Crystals take their counts "
        "from the beam, so its map falls where theirs rise and its bright pixels would bend "
        "every component. --beam-radius is the former name of this option",
    )
    group.add_argument(
        "--epattern",
        action="store_true",
        help="last: register the Bragg spots of every pattern (ePattern) and sweep them as a "
        "sparse matrix; decisions and phase maps then read the patterns redrawn from the "
        "spots. Give --beam-mask too: the beam's jitter would take components",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nmfdecide`` command.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> args = build_parser().parse_args(["analyze", "scan.hspy", "--k", "2:4"])
    >>> args.command, args.k, args.restarts
    ('analyze', [2, 3, 4], 20)
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find how many distinct diffraction components (phases, orientations) a "
        "4D-STEM scan holds: non-negative matrix factorisation (NMF) of every diffraction "
        "pattern for a range of component numbers k, many random restarts each, then the "
        "decision of k and phase maps at that k, with an HTML report of the error vs k, the "
        "evidence for k, the component patterns, their maps and the phase maps.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo_command(commands)
    _add_analyze_command(commands)
    return parser


def _add_demo_command(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="run on a simulated scan whose answer is known",
        description="Simulate a 4D-STEM scan of overlapping crystals (seeded, so always the "
        "same), run the NMF sweep on it, decide k, draw the phase maps and write a report that "
        "also shows the true answer (number of crystals, their patterns and where they are) "
        "for comparison.",
    )
    demo.add_argument(
        "--size",
        choices=tuple(DEMO_SIZES),
        default="small",
        help="full: 64x64 probe positions of 64x64-pixel patterns; small (default): 32x32 "
        "positions of 64x64 pixels; tiny: 12x12 positions of 32x32 pixels (seconds, for tests)",
    )
    _add_prepare_options(demo)
    _add_sweep_options(demo, k=DEMO_K, restarts=DEMO_RESTARTS, out="nmfdecide_report")


def _add_analyze_command(commands) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="run on a 4D-STEM file (any format HyperSpy reads)",
        description="Read a 4D-STEM scan (a 2-D scan of 2-D diffraction patterns, any file "
        "format HyperSpy/RosettaSciIO reads: .hspy, .zspy, .blo, .mib, .dm4, ...), run the NMF "
        "sweep, decide k, draw the phase maps, write the report and save the sweep as "
        "sweep.npz next to it.",
    )
    analyze.add_argument("file", type=Path, metavar="FILE", help="the 4D-STEM data file")
    analyze.add_argument(
        "--signal-type",
        default="nmf_decide",
        metavar="TYPE",
        help="HyperSpy signal type to read the file as (default nmf_decide)",
    )
    analyze.add_argument(
        "--signal",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="for a file holding several signals (a TopSpin .app5 holds the scan and its "
        "navigator images): the index of the 4D-STEM scan among them, from 0 (default: the "
        "only one with two scan and two detector dimensions)",
    )
    analyze.add_argument(
        "--navigation-shape",
        type=_positive_int,
        nargs=2,
        default=None,
        metavar=("NY", "NX"),
        help="probe rows and columns of the scan, for formats that do not store it (a Merlin "
        ".mib of a scan without its acquisition header); passed to the reader as HyperSpy's "
        "navigation_shape (NX, NY)",
    )
    analyze.add_argument(
        "--phases",
        type=Path,
        nargs="+",
        default=None,
        metavar="CIF",
        help="CIF files of the candidate phases: index every component at the decided k "
        "(phase and orientation, by template matching) and add an Orientations section and "
        "crystals.h5 (an orix CrystalMap) to the report; needs the beam energy in the file's "
        "metadata and the detector calibrated in reciprocal Ångström with 0 on the beam",
    )
    _add_prepare_options(analyze)
    _add_sweep_options(
        analyze, k=ANALYZE_K, restarts=ANALYZE_RESTARTS, out="nmfdecide_report", also=", sweep.npz"
    )


# -- commands ------------------------------------------------------------------------------------
def _sweep_kwargs(args: argparse.Namespace) -> dict:
    return {
        "k_range": args.k,
        "n_restarts": args.restarts,
        "solver": args.solver,
        "mode": args.mode,
        "max_iter": args.max_iter,
        "tol": args.tol,
        "random_state": args.seed,
        "show_progressbar": not args.quiet,
    } | ({"signal_mask": False} if args.beam_mask == 0 else {})


def _run_sweep(signal, args):
    """The sweep (on the registered spots with ``--epattern``), and the signal it models."""
    _logger.info("NMF sweep: k = %s, %d restarts each", args.k, args.restarts)
    start = time.perf_counter()
    extra = {"checkpoint": args.checkpoint}
    if args.epattern:
        table = signal.register_spots(show_progressbar=not args.quiet)
        signal, extra["spots"] = signal.epattern(table), table
    try:
        sweep = signal.nmf_sweep(**_sweep_kwargs(args), **extra)
    except ValueError as error:
        if str(error).startswith("k_range"):  # the library's name of --k
            raise CommandError(f"argument --k: {str(error)[len('k_range ') :]}") from error
        raise
    return signal, sweep, time.perf_counter() - start


def _prepare_kwargs(args: argparse.Namespace, beam_radius: float | None) -> dict:
    """Keyword arguments of ``prepare_for_nmf`` from the preprocessing options (``{}``: none)."""
    kwargs: dict = {}
    if args.bad_pixels:
        kwargs["bad_pixels"] = True
    if args.center or args.center_method:
        kwargs["center"] = {"method": args.center_method} if args.center_method else True
    if args.background:
        from .prepare import BACKGROUND_METHODS

        kwargs["background"] = {_cli_name(m): m for m in BACKGROUND_METHODS}[args.background]
        if args.background_radius is not None:
            kwargs["background_kwargs"] = {"radius": args.background_radius}
    if args.binning and args.binning > 1:
        kwargs["binning"] = args.binning
    if args.blur is not None:
        kwargs["blur_sigma"] = args.blur
    if args.scaling:
        kwargs["scaling"] = args.scaling
    if beam_radius:  # None: the sweep's automatic mask; 0: no mask (see _sweep_kwargs)
        kwargs["beam_mask_radius"] = beam_radius
    return kwargs


def _prepare(signal, args: argparse.Namespace, *, beam_radius: float | None):
    """Run ``prepare_for_nmf`` when any preprocessing option is given.

    Parameters
    ----------
    signal : NMFDecideDiffraction2D or LazyNMFDecideDiffraction2D
        The scan as read or simulated.
    args : argparse.Namespace
        The parsed options.
    beam_radius : float or None
        Radius of the direct-beam mask in pixels of the prepared pattern (``--beam-mask`` or
        the command's default); None or 0 for no mask.

    Returns
    -------
    tuple
        (the prepared signal, or ``signal`` itself when nothing is asked for; seconds taken,
        or None).

    Raises
    ------
    CommandError
        With the message of ``prepare_for_nmf``'s ValueError (an invalid value, such as a
        ``--binning`` that does not divide the pattern, or a beam that cannot be found).
    """
    kwargs = _prepare_kwargs(args, beam_radius)
    if not kwargs:
        return signal, None
    changed = [opt for opt, name in _NOT_COUNTS.items() if name in kwargs]
    if changed and args.method == "noise":
        print(
            f"{PROG}: warning: --method noise measures the noise between neighbouring probes; "
            f"{', '.join(changed)} smooth or reshape it, so its noise edge may be off: compare "
            "with --method elbow or iqa",
            file=sys.stderr,
        )
    _logger.info("Preprocessing: %s", ", ".join(kwargs))
    start = time.perf_counter()
    try:
        prepared = signal.prepare_for_nmf(**kwargs, show_progressbar=not args.quiet)
    except ValueError as error:
        raise CommandError(f"preprocessing: {error}") from error
    return prepared, time.perf_counter() - start


#: Preprocessing options that change the noise in ways the measurement between neighbouring
#: probes may not follow, by ``prepare_for_nmf`` name.
_NOT_COUNTS = {"--background": "background", "--blur": "blur_sigma", "--scaling": "scaling"}


def _print_table(sweep) -> None:
    print(f"{'k':>4}  {'best MSE':>12}  {'mean MSE':>12}  {'PCA MSE':>12}")
    for i, k in enumerate(sweep.k_values):
        print(
            f"{int(k):>4}  {sweep.best_loss[i]:>12.5g}  {sweep.mean_loss[i]:>12.5g}  "
            f"{sweep.pca_loss[i]:>12.5g}"
        )


def _decide_and_map(report, signal, sweep, args) -> tuple:
    """``decide_k`` and ``phase_maps`` at the decided k, their report sections and timings.

    Returns
    -------
    tuple
        (KDecision or None, PhaseMaps or None): None for what was skipped (fewer than
        :data:`hyperspy_nmfdecide.decide.MIN_K_VALUES` values of k, or ``--no-phases``); a note
        says so in the report.
    """
    # decide_k raises below MIN_K_VALUES; checked here first so that the sweep report is still
    # written, with a note.
    from .decide import MIN_K_VALUES
    from .report import decision_section, phase_section

    timings = report.summary.setdefault("timings", {})
    k_values = [int(k) for k in sweep.k_values]
    if len(k_values) < MIN_K_VALUES:
        note = (
            f"Number of components not decided and no phase maps drawn: deciding k needs a "
            f"sweep over at least {MIN_K_VALUES} values of k, but --k gave {k_values}. Run "
            f"again with a range such as --k {max(1, k_values[0] - 1)}:{k_values[-1] + 2}."
        )
        report.add_section("Number of components", text=note)
        report.summary["skipped"] = {"decision": note, "phase_maps": note}
        print(f"{PROG}: note: {note}", file=sys.stderr)
        return None, None

    _logger.info("Deciding k (method %s)", args.method)
    start = time.perf_counter()
    decision, note = _decide_k(signal, sweep, args)
    timings["decide_k"] = time.perf_counter() - start
    decision_section(report, decision, note=note)
    if args.no_phases:
        report.summary["skipped"] = {"phase_maps": "--no-phases"}
        return decision, None
    _logger.info("Phase maps at k = %d (threshold %s)", decision.k, args.threshold)
    start = time.perf_counter()
    pm = signal.phase_maps(
        decision.k, threshold=args.threshold, sweep=sweep, show_progressbar=not args.quiet
    )
    timings["phase_maps"] = time.perf_counter() - start
    phase_section(report, pm)
    if getattr(args, "phases", None):
        _index_components(report, signal, pm, args.phases)
    return decision, pm


def _index_components(report, signal, pm, phases) -> None:
    """``index_components`` at the phase maps' k and the report's "Orientations" section."""
    from .report import orientation_section

    _logger.info("Indexing the %d components against %d phase(s)", pm.k, len(phases))
    start = time.perf_counter()
    index = signal.index_components([str(p) for p in phases], pm.k)
    report.summary["timings"]["index_components"] = time.perf_counter() - start
    orientation_section(report, index, pm)


def _check_phases(signal, phases) -> None:
    """Before the sweep: the CIFs read, the beam energy and the calibration that indexing needs."""
    from . import orientation as om

    try:
        om.as_phases([str(p) for p in phases])
        om.beam_energy_of(signal.metadata.as_dictionary())
        om.reciprocal_range([a.get_axis_dictionary() for a in signal.axes_manager.signal_axes])
    except (TypeError, ValueError) as error:
        raise CommandError(f"argument --phases: {error}") from error


def _decide_k(signal, sweep, args: argparse.Namespace) -> tuple:
    """``decide_k`` with its :class:`~hyperspy_nmfdecide.decide.KRangeWarning` made a note.

    Returns
    -------
    tuple
        (KDecision, the warning's text or None).  The warning is also printed as one line on
        stderr; other warnings are shown as they would have been.
    """
    from .decide import KRangeWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KRangeWarning)
        decision = signal.decide_k(
            sweep, method=args.method, random_state=args.seed, show_progressbar=not args.quiet
        )
    note = None
    for warning in caught:
        if issubclass(warning.category, KRangeWarning):
            note = str(warning.message)
            print(f"{PROG}: warning: {note}", file=sys.stderr)
        else:  # not ours to handle: shown as it would have been
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return decision, note


def _decide_time(report) -> float:
    """Seconds spent in ``decide_k`` and ``phase_maps`` (timed on their own)."""
    timings = report.summary.get("timings", {})
    return sum(timings.get(name, 0.0) for name in ("decide_k", "phase_maps", "index_components"))


def _print_decision(decision, pm) -> None:
    if decision is None:
        return
    print(f"Decision ({decision.method}): {decision.reason}")
    if pm is not None:
        n_overlaps = sum(len(members) > 1 for members in pm.legend.values())
        background = "none" if pm.background_index is None else f"C{pm.background_index}"
        print(
            f"Phase maps at k = {pm.k}: {pm.n_phases} phases ({n_overlaps} "
            f"overlap{'' if n_overlaps == 1 else 's'}), "
            f"background {background}."
        )


def _demo(args: argparse.Namespace) -> int:
    from .data import simulated_scan
    from .report import Report, sweep_section, truth_section

    nav_shape, pattern_size = DEMO_SIZES[args.size]
    _logger.info("Simulating a %s scan of %s-pixel patterns", nav_shape, pattern_size)
    start = time.perf_counter()
    scan = simulated_scan(
        nav_shape=nav_shape,
        pattern_size=pattern_size,
        n_crystals=3,
        layout="overlapping",
        dose=1000.0,
        lazy=args.lazy,
        random_state=args.seed,
    )
    t_simulate = time.perf_counter() - start
    signal, t_prepare = _prepare(scan.signal, args, beam_radius=args.beam_mask)
    signal, sweep, t_sweep = _run_sweep(signal, args)

    start = time.perf_counter()
    report = Report(args.out, f"nmfdecide demo: NMF sweep of a simulated scan ({args.size})")
    sweep_section(report, signal, sweep, show_k=args.show_k, timings=_timings(t_prepare, t_sweep))
    decision, pm = _decide_and_map(report, signal, sweep, args)
    truth_section(report, scan, decision=decision, pm=pm)
    report.summary["timings"]["simulation"] = t_simulate
    report.summary["command"] = _command_summary(args)
    report.summary["timings"]["report"] = time.perf_counter() - start - _decide_time(report)
    path = report.write()
    _print_table(sweep)
    _print_decision(decision, pm)
    truth = report.summary["ground_truth"]
    line = f"True number of components: {scan.true_k} ({', '.join(scan.source_names)})"
    if decision is not None:
        line += f"; decided k = {decision.k}"
    if pm is not None:
        line += f"; phase-map ARI vs the true labels {truth['phase_map_ari']:.3f}"
    print(line)
    print(f"NMF sweep took {t_sweep:.1f} s. Report: {path.resolve()}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    path: Path = args.file
    start = time.perf_counter()
    signal = _pick_signal(_read(path, args), path, args.signal)
    t_load = time.perf_counter() - start
    am = signal.axes_manager
    if am.navigation_dimension != 2 or am.signal_dimension != 2:
        raise CommandError(
            f"{path} is not a 4D-STEM scan: it has {am.navigation_dimension} scan "
            f"(navigation) dimension(s) {am.navigation_shape} and {am.signal_dimension} "
            f"detector (signal) dimension(s) {am.signal_shape}; nmfdecide needs a 2-D scan of "
            "2-D diffraction patterns"
        )
    if not hasattr(signal, "nmf_sweep"):
        raise CommandError(
            f"argument --signal-type: {path} was read as {type(signal).__name__} (signal type "
            f"{args.signal_type!r}), which has no NMF sweep: use --signal-type nmf_decide "
            "(the default)"
        )
    signal, t_prepare = _prepare(signal, args, beam_radius=args.beam_mask)
    if args.phases:
        _check_phases(signal, args.phases)
    signal, sweep, t_sweep = _run_sweep(signal, args)
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        sweep_path = sweep.save(Path(args.out) / "sweep.npz")  # first: the costly part is kept
    except OSError as error:
        raise CommandError(f"could not save the sweep in {args.out}: {_os_error(error)}") from error
    try:
        return _analyze_report(args, signal, sweep, sweep_path, t_load, t_prepare, t_sweep)
    except OSError as error:
        raise CommandError(
            f"could not write the report in {args.out}: {_os_error(error)}; the sweep is saved "
            f"in {sweep_path} (NMFSweep.load reads it)"
        ) from error


def _analyze_report(args, signal, sweep, sweep_path, t_load, t_prepare, t_sweep) -> int:
    """The decision, the phase maps and the report of ``analyze``, once the sweep is saved."""
    from .report import Report, sweep_section

    path: Path = args.file
    start = time.perf_counter()
    report = Report(args.out, f"NMF sweep of {path.name}")
    sweep_section(report, signal, sweep, show_k=args.show_k, timings=_timings(t_prepare, t_sweep))
    decision, pm = _decide_and_map(report, signal, sweep, args)
    report.summary["timings"]["load"] = t_load
    report.summary["command"] = _command_summary(args)
    report.summary["files"] = {"data": str(path.resolve()), "sweep": sweep_path.name}
    report.summary["timings"]["report"] = time.perf_counter() - start - _decide_time(report)
    html_path = report.write()
    _print_table(sweep)
    _print_decision(decision, pm)
    print(f"NMF sweep took {t_sweep:.1f} s. Sweep saved to {sweep_path.resolve()}")
    print(f"Report: {html_path.resolve()}")
    return 0


def _read(path: Path, args: argparse.Namespace):
    """``hs.load`` of the input file, every reader failure a :class:`CommandError`.

    Returns
    -------
    BaseSignal or list of BaseSignal
        What HyperSpy read (a list for files holding several signals).
    """
    import hyperspy.api as hs

    if not path.exists():
        raise CommandError(f"no such file: {path}")
    if path.is_dir() and path.suffix.lower() not in (".zspy", ".zarr"):
        raise CommandError(f"{path} is a directory: give the data file (FILE)")
    kwargs = {"lazy": args.lazy, "signal_type": args.signal_type}
    if args.navigation_shape:
        ny, nx = args.navigation_shape
        kwargs["navigation_shape"] = (nx, ny)  # HyperSpy's order: x first
    try:
        # hs.load logs a reader's failure as an ERROR besides raising it: the raised error
        # alone, as one line, is what the user sees.
        with _hyperspy_errors_silenced():
            signal = hs.load(path, **kwargs)
    except TypeError as error:
        if "navigation_shape" in str(error):
            raise CommandError(
                f"argument --navigation-shape: the reader of {path.suffix or 'these'} files "
                "takes no navigation shape; it is for formats that store none (Merlin .mib)"
            ) from error
        raise CommandError(f"could not read {path}: {error}") from error
    except Exception as error:  # any reader error: one clean line for the user
        raise CommandError(
            f"could not read {path} ({type(error).__name__}: {error}): give a complete data "
            "file that HyperSpy reads (.hspy, .zspy, .blo, .mib, .app5, .dm4, ...); see "
            "https://hyperspy.org/rosettasciio/supported_formats"
        ) from error
    if args.navigation_shape and not isinstance(signal, list):
        _check_navigation_shape(signal, path, args.navigation_shape)
    return signal


@contextlib.contextmanager
def _hyperspy_errors_silenced():
    """No log record while a file is read (HyperSpy and each reader log their own errors)."""
    # Readers' loggers set their own levels and handlers, so only logging.disable reaches
    # all of them; the previous setting comes back afterwards.
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def _check_navigation_shape(signal, path: Path, shape: list[int]) -> None:
    """Refuse a signal whose scan is not the ``--navigation-shape`` asked for.

    A reader given a shape that does not fit the number of patterns warns and reads another
    shape (fewer patterns): that would sweep part of the scan without saying so.
    """
    ny, nx = shape
    if tuple(signal.axes_manager.navigation_shape) != (nx, ny):
        got = " x ".join(str(n) for n in signal.axes_manager.navigation_shape[::-1]) or "none"
        raise CommandError(
            f"argument --navigation-shape: {ny} x {nx} probes ({ny * nx} patterns) do not fit "
            f"{path}; its reader read a scan of {got} (rows x columns): give rows and columns "
            "whose product is the number of patterns in the file"
        )


def _pick_signal(signal, path: Path, index: int | None):
    """The 4D-STEM scan among what was read: ``--signal N``, or the only 4-D one.

    Raises
    ------
    CommandError
        When ``--signal`` is out of range, or the file holds several signals and not exactly
        one with two scan and two detector dimensions (the message lists them).
    """
    signals = signal if isinstance(signal, list) else [signal]
    listing = "; ".join(
        f"{i}: {type(s).__name__} {s.axes_manager.navigation_shape}|"
        f"{s.axes_manager.signal_shape} {s.metadata.get_item('General.title', '')!r}"
        for i, s in enumerate(signals)
    )
    if index is not None:
        if index >= len(signals):
            raise CommandError(
                f"argument --signal: {index} is out of range; {path} holds {len(signals)} "
                f"signal(s): {listing}"
            )
        return signals[index]
    if len(signals) == 1:
        return signals[0]
    scans = [
        s
        for s in signals
        if s.axes_manager.navigation_dimension == 2 and s.axes_manager.signal_dimension == 2
    ]
    if len(scans) != 1:
        raise CommandError(
            f"{path} holds {len(signals)} signals, {len(scans)} of them 4D-STEM scans (two scan "
            f"and two detector dimensions): choose one with --signal N ({listing})"
        )
    _logger.info("%s holds %d signals; using the 4D-STEM scan", path, len(signals))
    return scans[0]


def _os_error(error: OSError) -> str:
    """An OSError as a short phrase: what failed and on which file.

    Examples
    --------
    >>> _os_error(PermissionError(13, "Permission denied", "/root/x"))
    'Permission denied: /root/x'
    """
    if error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    return str(error) or type(error).__name__


def _timings(t_prepare: float | None, t_sweep: float) -> dict:
    """Wall times for the report: the sweep, and the preprocessing when there was any."""
    return (
        {"sweep": t_sweep} if t_prepare is None else {"preprocessing": t_prepare, "sweep": t_sweep}
    )


def _command_summary(args: argparse.Namespace) -> dict:
    return {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in vars(args).items()
        if key not in ("quiet", "verbose")
    }


def _quiet_library_warnings() -> None:
    """Hide deprecation notices of the libraries underneath: a CLI user cannot act on them."""
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*has moved to `hyperspy\.")
    warnings.filterwarnings("ignore", message=r".*(is|will be) deprecated")


# -- entry point ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _cluster_client(address: str | None):
    """A ``distributed.Client`` connected to ``address`` while the command runs (None: none)."""
    if address is None:
        yield
        return
    try:
        from distributed import Client
    except ImportError as error:
        raise CommandError(
            "--scheduler needs the 'distributed' package: "
            "pip install 'hyperspy_nmfdecide[distributed]'"
        ) from error
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as error:
        raise CommandError(f"could not connect to the scheduler at {address}: {error}") from error
    with client:
        _logger.info("running on the cluster at %s (%s)", address, client)
        yield


def main(argv: list[str] | None = None) -> int:
    """Run the ``nmfdecide`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for a usage or input error (one line on stderr, no
        traceback), 130 when interrupted.  Never raises ``SystemExit``.

    Examples
    --------
    A missing file is a one-line error (on stderr) and exit status 2, not a traceback:

    >>> main(["analyze", "missing.zspy"])
    2

    ``main(["demo", "--size", "tiny", "--out", "report"])`` writes the demo report and
    returns 0 (``tests/test_cli.py`` runs it).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    problem = _usage_problem(args) or _output_problem(args)
    if problem is not None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(name)s: %(levelname)s: %(message)s",
    )
    return _run({"demo": _demo, "analyze": _analyze}[args.command], args)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of options (argparse checks each alone), or None."""
    if args.show_k is not None and not set(args.show_k) <= set(args.k):
        missing = sorted(set(args.show_k) - set(args.k))
        return f"argument --show-k: {missing} not among the fitted --k {args.k}"
    if args.background_radius is not None and args.background != "rolling_ball":
        return (
            "argument --background-radius: only with --background rolling_ball "
            f"(got --background {args.background or 'not given'})"
        )
    return None


def _output_problem(args: argparse.Namespace) -> str | None:
    """Why an output directory (``--out``, ``--checkpoint``) cannot be written, or None.

    Checked before any work: a sweep of minutes must not end in a file it cannot write.
    """
    paths = {"--out": args.out, "--checkpoint": args.checkpoint}
    for option, path in paths.items():
        if path is None:
            continue
        problem = _directory_problem(Path(path))
        if problem is not None:
            return f"argument {option}: {problem}"
    return None


def _directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an output directory (existing, or made with its parents), or None.

    Examples
    --------
    >>> _directory_problem(Path(".")) is None
    True
    """
    if path.exists():
        if not path.is_dir():
            return f"{path} is an existing file, not a directory: give a directory (new or not)"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"the directory {path} is not writable: give a directory you can write to"
        return None
    # The nearest existing ancestor is where the directories would be made.
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{path} cannot be made: {ancestor} is a file, not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return (
            f"{path} cannot be made: {ancestor} is not writable; give a directory you can write to"
        )
    return None


def _run(command, args: argparse.Namespace) -> int:
    """Run a command; errors the user can act on become one line and exit status 2."""
    try:
        with warnings.catch_warnings(), _cluster_client(args.scheduler):
            if not args.verbose:
                _quiet_library_warnings()
            args.lazy = args.lazy or args.scheduler is not None
            return command(args)
    except (CommandError, ValueError, TypeError) as error:
        message = str(error) or type(error).__name__
        if args.verbose:
            traceback.print_exc()
        elif not isinstance(error, CommandError):
            message += " (run with -v for the details)"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:  # a file that could not be read or written: no traceback
        if args.verbose:
            traceback.print_exc()
        print(f"{PROG}: error: {_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
