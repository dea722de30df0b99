"""Prepare a 4D-STEM scan for NMF, and record how it was prepared.

Cao et al. find that preprocessing decides how stable and how accurate the clustering of a
scan is.  :func:`prepare_for_nmf` runs the usual chain in one call, returns a new signal and
keeps a list of what it did in the new signal's ``metadata`` (read back with
:func:`preprocessing_record`), so that a report can say how the data were prepared.

Every step is optional; those asked for run in this fixed order:

1. ``bad_pixels``: hot and dead detector pixels replaced by the mean of their neighbours
   (pyxem ``find_hot_pixels``, ``find_dead_pixels``, ``correct_bad_pixels``).
2. ``center``: the direct beam moved to the detector centre (pyxem
   ``get_direct_beam_position``, ``center_direct_beam``).
3. ``background``: background subtraction (scikit-image ``restoration.rolling_ball`` or
   pyxem ``subtract_diffraction_background``), clipped at 0.
4. ``binning``: the diffraction plane summed in ``binning`` × ``binning`` blocks (HyperSpy
   ``rebin``), which keeps Poisson statistics and multiplies the signal axes' scale.
5. ``blur``: a Gaussian blur of each pattern (scikit-image ``filters.gaussian``).
6. ``scaling``: ``sqrt`` or ``log1p`` of the intensities, for dynamic range.
7. ``beam_mask``: no change to the data: a boolean disc around the beam found in the prepared
   data, kept in ``metadata`` for ``nmf_sweep(signal_mask=...)``.

Bad pixels come before centring: they are fixed on the detector, and after a sub-pixel shift
a hot pixel is smeared over four pixels at a different place in every pattern (and can pull
the blur-maximum beam finder towards it), so neither pyxem finder would see it any more.

Metadata layout of the returned signal::

    NMFDecide.preprocessing.steps        list of dicts {"step": name, **parameters}
    NMFDecide.preprocessing.signal_mask  (n_ky, n_kx) bool, True = excluded (beam_mask only)

>>> from hyperspy_nmfdecide.data import simulated_scan
>>> from hyperspy_nmfdecide.prepare import prepare_for_nmf, preprocessing_record
>>> s = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
>>> prepared = prepare_for_nmf(s, center=True, binning=2, scaling="sqrt")
>>> [step["step"] for step in preprocessing_record(prepared)]
['center', 'binning', 'scaling']
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import numbers
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ._utils import positive_number, require_2d_patterns, resolve_progressbar, to_jsonable
from .beam import DirectBeam, find_direct_beam
from .results.base import METADATA_PREPROCESSING, STORED_RESULTS, drop_results

if TYPE_CHECKING:
    from pyxem.signals import Diffraction2D

_logger = logging.getLogger(__name__)

__all__ = [
    "BACKGROUND_METHODS",
    "CENTER_METHODS",
    "METADATA_PREPROCESSING",
    "SCALINGS",
    "direct_beam",
    "direct_beam_mask",
    "drop_stale_results",
    "prepare_for_nmf",
    "preprocessing_record",
]

# Where the record (``.steps``) and the beam mask (``.signal_mask``) are kept in metadata.
_STEPS = METADATA_PREPROCESSING + ".steps"
_MASK = METADATA_PREPROCESSING + ".signal_mask"

#: Beam finders of pyxem's ``get_direct_beam_position`` accepted by ``center``.
CENTER_METHODS = ("blur", "interpolate", "center_of_mass", "cross_correlate")
#: Background methods: scikit-image's rolling ball, then pyxem's by their pyxem names.
BACKGROUND_METHODS = ("rolling_ball", "difference of gaussians", "median kernel", "radial median")
#: Intensity scalings and the function each applies.
SCALINGS = {"sqrt": "sqrt", "log": "log1p"}

_CENTER_OPTIONS = ("method", "max_shift", "on_failure", "subpixel", "align_kwargs")
_CENTER_RESERVED = ("lazy_output", "show_progressbar", "inplace", "shifts", "return_shifts")
_BAD_PIXEL_OPTIONS = ("hot", "dead", "threshold_multiplier", "dead_pixel_value", "mask")
_ROLLING_BALL_OPTIONS = ("radius", "kernel", "nansafe", "workers")
_ROLLING_BALL_RADIUS = 10.0


def prepare_for_nmf(
    signal: Diffraction2D,
    *,
    center: bool | dict | None = False,
    bad_pixels: bool | dict | None = False,
    background: str | None = None,
    background_kwargs: dict | None = None,
    binning: int | None = None,
    blur_sigma: float | None = None,
    scaling: str | None = None,
    beam_mask_radius: float | None = None,
    show_progressbar: bool | None = None,
) -> Diffraction2D:
    """Prepare a 4D-STEM scan for NMF in one call; return a new, recorded signal.

    The steps asked for run in the order of the parameters below (bad pixels, centring,
    background, binning, blur, scaling, beam mask).  The input signal is never modified
    (data, metadata, axes).  A lazy signal gives a lazy signal: only small results are
    computed (the beam shifts, bad-pixel counts and the mean pattern for the mask, each one
    pass over the data); an eager signal gives an eager one (one copy of the data is made,
    and the steps work on it).  Integer data are converted to float32 first.

    Every step and its parameters, with measured values (the mean beam shift, the number of
    bad pixels...), is appended to ``metadata.NMFDecide.preprocessing.steps`` of the result,
    so calling this twice appends.  Results stored by ``nmf_sweep``, ``decide_k`` and
    ``phase_maps`` on the input are left out of the result: they describe other data.

    Parameters
    ----------
    signal : pyxem.signals.Diffraction2D
        Usually a (Lazy)NMFDecideDiffraction2D; the result has the same class.
    center : bool or dict
        Move the direct beam to the detector centre (pixel ``size / 2``).  ``True`` uses
        pyxem's ``"blur"`` finder with ``sigma=2``; a dict gives ``method`` (one of
        :data:`CENTER_METHODS`), the finder's keyword arguments (``sigma``,
        ``half_square_width``, ``signal_slice``, ...; ``"interpolate"`` defaults to
        ``sigma=2, upsample_factor=10, kind="linear"``), ``subpixel`` and ``align_kwargs`` of
        ``center_direct_beam``, and two of ours: ``max_shift`` (pixels, default a quarter of
        the smaller pattern side) and ``on_failure``.  The beam is *not found* in a pattern
        when its shift is NaN or exceeds ``max_shift`` (all-zero, vacuum-free amorphous or
        saturated patterns); ``on_failure="raise"`` (default) then raises, ``"median"``
        gives those patterns the median shift of the others and records how many.
        ``"blur"`` finds the brightest pixel of the blurred pattern, so its shifts are whole
        pixels (the beam ends within half a pixel of the centre).
    bad_pixels : bool or dict
        Replace hot and dead pixels by the mean of their 8 neighbours.  A dict may give
        ``hot``, ``dead`` (bools, both True by default), ``threshold_multiplier`` (pyxem's
        hot-pixel threshold: a pixel this many counts above the median of its neighbours,
        default 500), ``dead_pixel_value`` (default 0; a pixel is dead when its mean over
        the scan equals it) and ``mask`` (bool, pixels never corrected).  At low dose a
        pixel that counted nothing in the whole scan is "dead" too; its neighbours are
        near 0, so is its new value.
    background : str, optional
        One of :data:`BACKGROUND_METHODS`.  ``"rolling_ball"``: scikit-image's rolling ball
        per pattern (as in ePattern), keyword ``radius`` in pixels (default 10; the ball
        rolls in intensity units too, pass ``kernel`` for an ellipsoid).  The others are
        pyxem's methods with their keywords (``min_sigma``/``max_sigma``; ``footprint``;
        ``center_x``/``center_y``, default the detector centre).  pyxem's ``"h-dome"`` is
        left out: it rescales every pattern to a maximum of 1 and quantises it to 8 bits,
        which removes the intensity differences between probes that NMF loadings measure.
        The result is clipped at 0 (NMF needs non-negative data).
    background_kwargs : dict, optional
        Keyword arguments of the background method.
    binning : int, optional
        Sum the diffraction plane in ``binning`` × ``binning`` blocks (counts are summed, so
        Poisson statistics are kept); must divide the pattern size.  The signal axes' scale
        is multiplied by ``binning`` and the offset moved to the new pixel centres.
    blur_sigma : float, optional
        Standard deviation of a Gaussian blur of each pattern, in pixels of the pattern at
        that step (after binning), > 0.
    scaling : {None, "sqrt", "log"}
        ``"sqrt"`` or ``"log"`` (``log1p``) of the intensities; negative values (possible
        only if the input had some) are set to 0 first.
    beam_mask_radius : float, optional
        Radius, in pixels of the prepared pattern, of a disc around the direct beam found in
        the prepared data (``direct_beam_mask``: pyxem's blur finder on the mean pattern).
        The boolean mask (True = excluded) is stored at
        ``metadata.NMFDecide.preprocessing.signal_mask`` for ``nmf_sweep(signal_mask=...)``.
        Must be less than half the smaller side of the prepared pattern.  A mask stored by an
        earlier call is dropped when this call centres or bins the data.
    show_progressbar : bool or None
        None follows ``hs.preferences.General.show_progressbar``.

    Returns
    -------
    NMFDecideDiffraction2D or LazyNMFDecideDiffraction2D
        A new signal of the input's class, with the record in its metadata.

    Raises
    ------
    TypeError, ValueError
        For an invalid argument, naming it; ValueError when the beam cannot be found
        (``center``) or ``binning`` does not divide the pattern.

    Notes
    -----
    Non-negative input stays non-negative through every step (the centring interpolation
    is linear and fills the uncovered border with 0).  Negative input values are kept
    except where background subtraction or scaling clip them; ``nmf_sweep`` reports any
    that remain (``negative_values``).

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> from hyperspy_nmfdecide.prepare import prepare_for_nmf, preprocessing_record
    >>> s = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
    >>> prepared = prepare_for_nmf(
    ...     s, center=True, background="rolling_ball", background_kwargs={"radius": 5},
    ...     binning=2, beam_mask_radius=2,
    ... )
    >>> prepared.axes_manager.signal_shape, s.axes_manager.signal_shape
    ((16, 16), (32, 32))
    >>> prepared.metadata.NMFDecide.preprocessing.signal_mask.shape
    (16, 16)
    >>> [step["step"] for step in preprocessing_record(prepared)]
    ['center', 'background', 'binning', 'beam_mask']
    >>> preprocessing_record(prepared)[2]["factor"]
    2
    """
    sig_shape = _check_signal(signal)
    center_opts = _center_options(center)
    bad_opts = _bad_pixel_options(bad_pixels, sig_shape)
    background_opts = _background_options(background, background_kwargs, sig_shape)
    binning = _binning(binning, sig_shape)
    blur_sigma = positive_number(blur_sigma, "blur_sigma", allow_none=True)
    if scaling is not None and not isinstance(scaling, str):
        raise TypeError(f"scaling must be a str or None, got {scaling!r}")
    if scaling is not None and scaling not in SCALINGS:
        raise ValueError(f"scaling must be None or one of {tuple(SCALINGS)}, got {scaling!r}")
    final_shape = tuple(n // (binning or 1) for n in sig_shape)
    beam_mask_radius = positive_number(beam_mask_radius, "beam_mask_radius", allow_none=True)
    if beam_mask_radius is not None and not beam_mask_radius < min(final_shape) / 2:
        raise ValueError(
            f"beam_mask_radius={beam_mask_radius:g} px is too large for the prepared pattern "
            f"{final_shape} (ky, kx): it must be less than half the smaller side, "
            f"{min(final_shape) / 2:g} px"
        )
    show = resolve_progressbar(show_progressbar)

    steps = preprocessing_record(signal)
    out = signal.deepcopy()
    drop_stale_results(out)
    if (center_opts is not None or binning) and out.metadata.has_item(_MASK):
        _logger.warning(
            "prepare_for_nmf: the stored beam mask no longer fits the centred/binned data "
            "and was dropped; pass beam_mask_radius to make a new one"
        )
        drop_results(out, (_MASK,))
    if not np.issubdtype(out.data.dtype, np.floating):
        steps.append({"step": "dtype", "from": str(out.data.dtype), "to": "float32"})
        out.change_dtype("float32")

    if bad_opts is not None:
        steps.append(_correct_bad_pixels(out, bad_opts, show))
    if center_opts is not None:
        steps.append(_center(out, center_opts, show))
    if background_opts is not None:
        steps.append(_subtract_background(out, background_opts, show))
    if binning:
        out = out.rebin(scale=(1,) * out.axes_manager.navigation_dimension + (binning, binning))
        steps.append(
            {
                "step": "binning",
                "factor": binning,
                "pattern_shape": list(final_shape),
                "signal_scale": [float(ax.scale) for ax in out.axes_manager.signal_axes],
            }
        )
    if blur_sigma is not None:
        out.map(_blur_frame, sigma=blur_sigma, inplace=True, **_map_kwargs(out, show))
        steps.append({"step": "blur", "sigma_px": blur_sigma, "mode": "nearest"})
    if scaling is not None:
        out.map(_scale_frame, ufunc=SCALINGS[scaling], inplace=True, **_map_kwargs(out, show))
        steps.append(
            {
                "step": "scaling",
                "scaling": scaling,
                "function": SCALINGS[scaling],
                "clipped_at": 0.0,
            }
        )
    if beam_mask_radius is not None:
        steps.append(_beam_mask(out, beam_mask_radius))

    out.metadata.set_item(_STEPS, _jsonable(steps))
    _logger.debug("prepare_for_nmf: %s", [step["step"] for step in steps])
    return out


def preprocessing_record(signal) -> list[dict[str, Any]]:
    """The preprocessing steps recorded by :func:`prepare_for_nmf`, in applied order.

    Parameters
    ----------
    signal : hyperspy.signal.BaseSignal
        Any signal (also one saved and loaded again).

    Returns
    -------
    list of dict
        ``{"step": name, **parameters}`` per step, plain JSON values (a copy: changing it
        does not change the signal); an empty list when nothing is recorded.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> from hyperspy_nmfdecide.prepare import prepare_for_nmf, preprocessing_record
    >>> s = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
    >>> preprocessing_record(s)
    []
    >>> preprocessing_record(prepare_for_nmf(s, blur_sigma=1.0))
    [{'step': 'blur', 'sigma_px': 1.0, 'mode': 'nearest'}]
    """
    metadata = getattr(signal, "metadata", None)
    if metadata is None or not metadata.has_item(_STEPS):
        return []
    steps = _jsonable(list(metadata.get_item(_STEPS)))
    # "step" first: stored files (hspy) may give the keys back in another order.
    return [{"step": step["step"], **step} for step in steps]


# -- steps (each works on the private copy ``out`` in place and returns its record) ----------
def _correct_bad_pixels(out, opts: dict, show: bool) -> dict:
    sig_shape = _sig_shape(out)
    record = {"step": "bad_pixels", **{k: v for k, v in opts.items() if k != "mask"}}
    record["mask_pixels"] = 0 if opts["mask"] is None else int(opts["mask"].sum())
    bad = None
    n_dead = n_hot = 0
    if opts["dead"]:
        dead = out.find_dead_pixels(dead_pixel_value=opts["dead_pixel_value"], mask=opts["mask"])
        if dead._lazy:
            dead.compute(show_progressbar=show)
        n_dead = int(np.count_nonzero(dead.data))
        bad = dead
    if opts["hot"]:
        hot = out.find_hot_pixels(
            threshold_multiplier=opts["threshold_multiplier"],
            mask=opts["mask"],
            inplace=False,
            output_dtype=bool,
            output_signal_size=sig_shape,
            show_progressbar=show,
        )
        n_hot = hot.data.sum()
        n_hot = int(n_hot.compute() if hasattr(n_hot, "compute") else n_hot)
        bad = hot if bad is None else hot | bad
    if n_dead or n_hot:
        # The dead pixels alone are the same in every pattern: pass them as a plain array.
        array = bad.data if bad.axes_manager.navigation_dimension == 0 else bad
        out.correct_bad_pixels(array, inplace=True, **_map_kwargs(out, show))
    record.update(n_dead_pixels=n_dead, n_hot_pixels=n_hot, correction="mean of 8 neighbours")
    _logger.info("bad pixels: %d dead, %d hot (pixel-pattern pairs)", n_dead, n_hot)
    return record


def _center(out, opts: dict, show: bool) -> dict:
    opts = dict(opts)
    method = opts.pop("method")
    on_failure = opts.pop("on_failure")
    subpixel = opts.pop("subpixel")
    align_kwargs = opts.pop("align_kwargs")
    sig_shape = _sig_shape(out)
    max_shift = opts.pop("max_shift")
    if max_shift is None:
        max_shift = min(sig_shape) / 4
    finder_kwargs = dict(opts)
    if method != "center_of_mass":  # pyxem passes its own show_progressbar there
        finder_kwargs["show_progressbar"] = show
    with warnings.catch_warnings():
        # center_of_mass divides by a pattern's total: all-zero patterns give NaN with a
        # RuntimeWarning; NaN shifts are caught just below and reported as an error.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        shifts = out.get_direct_beam_position(method=method, lazy_output=False, **finder_kwargs)
    values = np.array(shifts.data, dtype=float)  # (..., 2): x, y shifts in pixels
    flat = values.reshape(-1, 2)
    lost = ~np.all(np.isfinite(flat), axis=1) | np.any(np.abs(flat) > max_shift, axis=1)
    n_lost = int(lost.sum())
    if n_lost:
        nav_shape = values.shape[:-1]
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(lost)), nav_shape))
        message = (
            f"center: the direct beam was not found in {n_lost} of {len(flat)} patterns "
            f"(shift NaN or larger than max_shift={max_shift:g} px; first at probe {first}, "
            f"shift {flat[int(np.argmax(lost))].tolist()}): empty, all-zero or amorphous "
            "patterns?"
        )
        if on_failure == "raise" or n_lost == len(flat):
            raise ValueError(
                message + " Pass center={'on_failure': 'median'} to give them the median "
                "shift of the others, a larger 'max_shift', or another 'method'."
            )
        flat[lost] = np.median(flat[~lost], axis=0)
        _logger.warning("%s They get the median shift of the others.", message)
    shifts.data = flat.reshape(values.shape).astype(shifts.data.dtype)
    with _progressbar_preference(show):
        # center_direct_beam does not pass show_progressbar on to its map call.
        out.center_direct_beam(
            shifts=shifts, subpixel=subpixel, align_kwargs=align_kwargs, inplace=True
        )
    record = {"step": "center", "method": method, **opts}
    record.update(
        subpixel=subpixel,
        align_kwargs=align_kwargs,
        max_shift_px=float(max_shift),
        on_failure=on_failure,
        mean_shift_px=flat.mean(axis=0).tolist(),
        max_abs_shift_px=float(np.abs(flat).max()),
        n_fallback=n_lost,
    )
    _logger.info("centred: mean shift (x, y) %s px", record["mean_shift_px"])
    return record


def _subtract_background(out, opts: dict, show: bool) -> dict:
    method, kwargs = opts["method"], opts["kwargs"]
    kwargs = dict(kwargs)
    if method == "rolling_ball":
        out.map(_rolling_ball_frame, inplace=True, **kwargs, **_map_kwargs(out, show))
    else:
        if method == "radial median":
            # pyxem's default centre is pixel (128, 128): use this detector's centre.
            sig_shape = _sig_shape(out)
            kwargs.setdefault("center_x", sig_shape[1] / 2)
            kwargs.setdefault("center_y", sig_shape[0] / 2)
        out.subtract_diffraction_background(
            method, inplace=True, **kwargs, **_map_kwargs(out, show)
        )
        out.map(_clip_frame, inplace=True, **_map_kwargs(out, show))
    defaults = _defaults(_background_functions()[method])
    return {"step": "background", "method": method, **defaults, **kwargs, "clipped_at": 0.0}


def _beam_mask(out, radius: float) -> dict:
    mask = np.asarray(direct_beam_mask(out, radius), dtype=bool)
    if mask.all():
        raise ValueError(f"beam_mask_radius={radius:g} px masks the whole pattern")
    yy, xx = np.nonzero(mask)
    out.metadata.set_item(_MASK, mask)
    return {
        "step": "beam_mask",
        "radius_px": radius,
        # Centroid of the disc: the beam position unless the disc is cut by an edge.
        "beam_position_px": [float(xx.mean()), float(yy.mean())] if len(xx) else None,
        "n_masked_pixels": int(mask.sum()),
        "stored_at": _MASK,
    }


# -- per-pattern functions for signal.map (module level, so that they pickle) --------------
def _rolling_ball_frame(frame: np.ndarray, radius: float, **kwargs) -> np.ndarray:
    from skimage.restoration import rolling_ball

    background = rolling_ball(frame, radius=radius, **kwargs)
    return np.maximum(frame - background, 0).astype(frame.dtype, copy=False)


def _clip_frame(frame: np.ndarray) -> np.ndarray:
    return np.maximum(frame, 0)


def _blur_frame(frame: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import gaussian

    return gaussian(frame, sigma=sigma, preserve_range=True).astype(frame.dtype, copy=False)


def _scale_frame(frame: np.ndarray, ufunc: str) -> np.ndarray:
    return getattr(np, ufunc)(np.maximum(frame, 0))


# -- argument checks -------------------------------------------------------------------------
def _check_signal(signal: Diffraction2D) -> tuple[int, int]:
    from pyxem.signals import Diffraction2D

    if not isinstance(signal, Diffraction2D):
        raise TypeError(
            "signal must be a pyxem Diffraction2D such as NMFDecideDiffraction2D "
            f"(s.set_signal_type('nmf_decide')), got {type(signal).__name__}"
        )
    if signal.axes_manager.signal_dimension != 2:
        raise ValueError(
            "signal must have 2-D patterns, got signal dimension "
            f"{signal.axes_manager.signal_dimension}"
        )
    return _sig_shape(signal)


def _center_options(center) -> dict | None:
    if center is None or center is False:
        return None
    if center is True:
        opts = {}
    elif isinstance(center, dict):
        opts = dict(center)
    else:
        raise TypeError(f"center must be a bool or a dict of keyword arguments, got {center!r}")
    method = opts.setdefault("method", "blur")
    if method not in CENTER_METHODS:
        raise ValueError(f"center: method must be one of {CENTER_METHODS}, got {method!r}")
    if method in ("blur", "interpolate"):
        opts.setdefault("sigma", 2)
    if method == "interpolate":  # required by pyxem's finder, no defaults there
        opts.setdefault("upsample_factor", 10)
        opts.setdefault("kind", "linear")
    reserved = sorted(set(opts) & set(_CENTER_RESERVED))
    if reserved:
        raise TypeError(f"center: {reserved} are set by prepare_for_nmf, not by the caller")
    valid = _finder_keywords(method)
    unknown = sorted(set(opts) - set(_CENTER_OPTIONS) - valid) if valid is not None else []
    if unknown:
        raise TypeError(
            f"center: {unknown} not accepted by method {method!r}; valid: "
            f"{sorted(valid | set(_CENTER_OPTIONS))}"
        )
    opts["max_shift"] = positive_number(
        opts.get("max_shift"), "center['max_shift']", allow_none=True
    )
    opts.setdefault("on_failure", "raise")
    if opts["on_failure"] not in ("raise", "median"):
        raise ValueError(
            f"center: on_failure must be 'raise' or 'median', got {opts['on_failure']!r}"
        )
    opts["subpixel"] = bool(opts.get("subpixel", True))
    align_kwargs = opts.get("align_kwargs")
    if align_kwargs is not None and not isinstance(align_kwargs, dict):
        raise TypeError(f"center: align_kwargs must be a dict, got {align_kwargs!r}")
    # A dict of our own: pyxem writes the interpolation order it uses into it.
    opts["align_kwargs"] = dict(align_kwargs or {})
    return opts


def _finder_keywords(method: str) -> set[str] | None:
    """Keywords of pyxem's beam finder for ``method`` and of ``get_direct_beam_position``;
    None when the finder takes ``**kwargs`` (pyxem then checks them)."""
    from pyxem.utils import diffraction

    finder = {
        "blur": diffraction.find_beam_center_blur,
        "interpolate": diffraction.find_beam_center_interpolate,
        "center_of_mass": diffraction.find_center_of_mass,
        "cross_correlate": diffraction.find_beam_offset_cross_correlation,
    }[method]
    params = list(inspect.signature(finder).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params} | {"signal_slice", "half_square_width"}


def _bad_pixel_options(bad_pixels, sig_shape: tuple[int, int]) -> dict | None:
    if bad_pixels is None or bad_pixels is False:
        return None
    if bad_pixels is True:
        given = {}
    elif isinstance(bad_pixels, dict):
        given = dict(bad_pixels)
    else:
        raise TypeError(f"bad_pixels must be a bool or a dict, got {bad_pixels!r}")
    unknown = sorted(set(given) - set(_BAD_PIXEL_OPTIONS))
    if unknown:
        raise TypeError(f"bad_pixels: unknown keys {unknown}; valid: {_BAD_PIXEL_OPTIONS}")
    opts = {
        "hot": bool(given.get("hot", True)),
        "dead": bool(given.get("dead", True)),
        "threshold_multiplier": positive_number(
            given.get("threshold_multiplier", 500),
            "bad_pixels['threshold_multiplier']",
            allow_none=True,
        ),
        "dead_pixel_value": given.get("dead_pixel_value", 0),
        "mask": given.get("mask"),
    }
    if not isinstance(opts["dead_pixel_value"], numbers.Real):
        raise TypeError(
            f"bad_pixels: dead_pixel_value must be a number, got {opts['dead_pixel_value']!r}"
        )
    if not (opts["hot"] or opts["dead"]):
        raise ValueError("bad_pixels: hot and dead are both False: nothing to correct")
    if opts["mask"] is not None:
        mask = np.asarray(opts["mask"])
        if mask.dtype != bool or mask.shape != sig_shape:
            raise ValueError(
                f"bad_pixels: mask must be a bool array of the pattern shape {sig_shape}, "
                f"got {mask.dtype} {mask.shape}"
            )
        opts["mask"] = mask
    return opts


def _background_functions() -> dict:
    """The per-pattern function of each background method (pyxem's private helpers, only to
    check keyword names and fill in their defaults for the record)."""
    from pyxem.utils import _background_subtraction as bs

    return {
        "rolling_ball": _rolling_ball_frame,
        "difference of gaussians": bs._subtract_dog,
        "median kernel": bs._subtract_median,
        "radial median": bs._subtract_radial_median,
    }


def _background_options(background, background_kwargs, sig_shape) -> dict | None:
    if background_kwargs is not None and not isinstance(background_kwargs, dict):
        raise TypeError(f"background_kwargs must be a dict, got {background_kwargs!r}")
    if background is None:
        if background_kwargs:
            raise ValueError("background_kwargs given without a background method")
        return None
    if not isinstance(background, str):
        raise TypeError(f"background must be a str or None, got {background!r}")
    if background not in BACKGROUND_METHODS:
        raise ValueError(
            f"background must be one of {BACKGROUND_METHODS}, got {background!r} (pyxem's "
            "'h-dome' is left out: it rescales every pattern to a maximum of 1 and quantises "
            "it to 8 bits)"
        )
    kwargs = dict(background_kwargs or {})
    if background == "rolling_ball":
        valid = _ROLLING_BALL_OPTIONS
        kwargs["radius"] = positive_number(
            kwargs.get("radius", _ROLLING_BALL_RADIUS),
            "background_kwargs['radius']",
            allow_none=True,
        )
    else:
        valid = tuple(_defaults(_background_functions()[background]))
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"background_kwargs: {unknown} not accepted by {background!r}; valid: {valid}"
        )
    return {"method": background, "kwargs": kwargs}


def _binning(binning, sig_shape: tuple[int, int]) -> int | None:
    if binning is None:
        return None
    if isinstance(binning, bool) or not isinstance(binning, numbers.Integral):
        raise TypeError(f"binning must be an int, got {binning!r}")
    binning = int(binning)
    if binning < 1:
        raise ValueError(f"binning must be >= 1, got {binning}")
    if any(n % binning for n in sig_shape):
        raise ValueError(
            f"binning={binning} does not divide the pattern shape {sig_shape} (ky, kx)"
        )
    return binning if binning > 1 else None


# -- helpers ---------------------------------------------------------------------------------
def _sig_shape(signal) -> tuple[int, int]:
    """The pattern shape in array order (ky, kx)."""
    return tuple(int(n) for n in signal.axes_manager.signal_shape[::-1])


def _map_kwargs(out, show: bool) -> dict:
    """Keep the dtype and shape, so that lazy map needs no trial run on the data."""
    return {
        "show_progressbar": show,
        "output_dtype": out.data.dtype,
        "output_signal_size": _sig_shape(out),
    }


def _defaults(function) -> dict:
    """Keyword defaults of a per-pattern function (its first parameter is the pattern)."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return {
        p.name: p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty
    }


def _jsonable(value):
    """Plain JSON values; large arrays (a rolling-ball kernel, a mask) described, not written."""
    return to_jsonable(value, summarise_above=16)


# -- the direct beam of a scan -----------------------------------------------------------------
def direct_beam(signal: Diffraction2D) -> DirectBeam:
    """The direct beam of the mean pattern: its position and radius, or why none is found.

    The beam is found by pyxem's blur-maximum finder on the mean pattern (one pass over a
    lazy scan) and its radius measured from its own azimuthal profile: where its excess
    over the diffuse scattering around it ends (see
    :func:`hyperspy_nmfdecide.beam.find_direct_beam`).  This is what ``nmf_sweep`` masks by
    default.

    Returns
    -------
    DirectBeam
        ``found``, ``position`` (x, y pixels), ``radius``, ``reason``, ``mask(shape)``.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
    >>> beam = s.direct_beam()
    >>> beam.found, [round(v) for v in beam.position]  # at (16 + 1.5, 16 - 2)
    (True, [18, 14])
    """
    require_2d_patterns(signal, "direct_beam")
    return find_direct_beam(_mean_pattern(signal, "direct_beam"))


def direct_beam_mask(
    signal: Diffraction2D, radius: float | None = None, *, method: str = "blur", **kwargs
) -> np.ndarray:
    """Boolean mask of a disc around the *found* direct beam (True = excluded).

    pyxem's ``get_direct_beam_mask`` centres the disc on the detector centre; here the
    beam is located first on the mean pattern (one pass for lazy data), so the mask
    follows a beam that is off-centre.

    Parameters
    ----------
    radius : float, optional
        Disc radius in pixels.  None: the beam and its radius as :func:`direct_beam`
        measures them (the mask ``nmf_sweep`` uses by default); a ValueError when no beam
        stands out.
    method : str
        With ``radius``: passed to pyxem's ``get_direct_beam_position`` (``"blur"``,
        ``"center_of_mass"``, ...).
    **kwargs
        Passed to ``get_direct_beam_position``; for ``"blur"`` ``sigma`` defaults to 2.

    Returns
    -------
    numpy.ndarray
        (n_ky, n_kx) boolean, for ``nmf_sweep(signal_mask=...)``.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
    >>> s.direct_beam_mask(radius=3).shape
    (32, 32)
    >>> bool(s.direct_beam_mask().sum() > 0)
    True
    """
    sig_shape = signal.data.shape[signal.axes_manager.navigation_dimension :]
    if radius is None:
        beam = direct_beam(signal)
        if not beam.found:
            raise ValueError(f"direct_beam_mask: {beam.reason}; give radius= to mask anyway")
        return beam.mask(sig_shape)
    if not radius > 0:
        raise ValueError(f"radius must be > 0 pixels, got {radius!r}")
    if radius > max(sig_shape):
        raise ValueError(f"radius {radius} is larger than the pattern {sig_shape}")
    from pyxem.signals import ElectronDiffraction2D

    mean = ElectronDiffraction2D(_mean_pattern(signal, "direct_beam_mask")[np.newaxis])
    if method == "blur":
        kwargs.setdefault("sigma", 2)
    shifts = mean.get_direct_beam_position(method=method, show_progressbar=False, **kwargs)
    shift = np.asarray(shifts.data).reshape(-1, 2)[0]
    # pyxem returns the shift that *centres* the beam: the beam sits at centre - shift.
    centre = np.array(sig_shape[::-1], dtype=float) / 2 - shift  # (x, y) in pixels
    yy, xx = np.indices(sig_shape)
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def _mean_pattern(signal: Diffraction2D, method: str) -> np.ndarray:
    """The scan's mean pattern (float64; one pass over lazy data), refused when not finite.

    A NaN anywhere in the data makes the mean NaN at that pixel, and pyxem's beam finders then
    return a corner of the pattern: an error names the problem instead.
    """
    mean = signal.mean(axis=signal.axes_manager.navigation_axes)
    if mean._lazy:
        mean.compute()
    pattern = np.asarray(mean.data, dtype=np.float64)
    bad = int(np.count_nonzero(~np.isfinite(pattern)))
    if bad:
        raise ValueError(
            f"{method}: the data hold NaN or infinite values (at {bad} pixel(s) of the "
            "patterns), so the beam cannot be found on their mean; replace them first (e.g. "
            "s.data[~np.isfinite(s.data)] = 0), or give nmf_sweep a signal_mask of your own"
        )
    return pattern


def drop_stale_results(signal) -> None:
    """Remove the sweep, decision and phase maps of a signal whose data were just changed.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> s = hs.signals.Signal2D(np.zeros((2, 4, 4)))
    >>> s.metadata.set_item("NMFDecide.sweep", {"k_values": [1]})
    >>> drop_stale_results(s)
    >>> s.metadata.has_item("NMFDecide.sweep")
    False
    """
    for path in drop_results(signal, STORED_RESULTS):
        _logger.info("%s describes other data: left out of the prepared signal", path)


@contextlib.contextmanager
def _progressbar_preference(show: bool):
    """Temporarily set HyperSpy's progress-bar preference (for pyxem calls that ignore
    ``show_progressbar``)."""
    from hyperspy.defaults_parser import preferences

    previous = preferences.General.show_progressbar
    preferences.General.show_progressbar = show
    try:
        yield
    finally:
        preferences.General.show_progressbar = previous
