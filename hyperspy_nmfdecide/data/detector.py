"""The detector model: point-spread function, gain, dark offset and readout noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .checks import _check_non_negative, _check_positive

__all__ = ["_check_detector", "_detector_mean", "_detector_response"]

_DETECTOR_DEFAULTS = {"gain": 1.0, "offset": 0.0, "readout_noise": 0.0, "psf_sigma": 0.0}


def _check_detector(detector, dtype: np.dtype) -> dict | None:
    """The detector settings with every key (None: no detector model)."""
    if detector is None:
        return None
    if not isinstance(detector, dict):
        raise ValueError(f"detector must be a dict or None, got {detector!r}")
    unknown = sorted(set(detector) - set(_DETECTOR_DEFAULTS), key=str)
    if unknown:
        raise ValueError(
            f"detector has unknown keys {unknown}; known: {sorted(_DETECTOR_DEFAULTS)}"
        )
    settings = _DETECTOR_DEFAULTS | detector
    settings["gain"] = _check_positive(settings["gain"], "detector gain")
    for key in ("readout_noise", "psf_sigma"):
        settings[key] = _check_non_negative(settings[key], f"detector {key}")
    try:
        settings["offset"] = float(settings["offset"])
    except (TypeError, ValueError):
        settings["offset"] = math.nan
    if not np.isfinite(settings["offset"]):
        raise ValueError(f"detector offset must be a finite number, got {detector['offset']!r}")
    integral = (
        settings["readout_noise"] == 0
        and settings["psf_sigma"] == 0
        and settings["gain"].is_integer()
        and settings["offset"].is_integer()
    )
    if dtype.kind in "iu" and not integral:
        raise ValueError(
            f"dtype must be a float dtype for a detector model whose output is not whole "
            f"numbers (readout noise, a point-spread function or a fractional gain or offset), "
            f"got {dtype}"
        )
    return settings


def _detector_response(counts: np.ndarray, rng: np.random.Generator, detector: dict) -> np.ndarray:
    """Detector output of (n, H, W) electron counts: PSF blur, gain, offset, readout noise."""
    signal = counts.astype(np.float64)
    if detector["psf_sigma"]:
        sigma = (0.0, detector["psf_sigma"], detector["psf_sigma"])
        signal = ndimage.gaussian_filter(signal, sigma=sigma, mode="reflect")
    signal = signal * detector["gain"] + detector["offset"]
    if detector["readout_noise"]:
        signal += rng.normal(0.0, detector["readout_noise"], size=signal.shape)
    return signal


def _detector_mean(expected: np.ndarray, detector: dict) -> np.ndarray:
    """Expected detector output of expected counts (..., H, W): PSF blur, gain, offset."""
    if detector["psf_sigma"]:
        sigma = (0.0,) * (expected.ndim - 2) + (detector["psf_sigma"],) * 2
        expected = ndimage.gaussian_filter(expected, sigma=sigma, mode="reflect")
    return expected * detector["gain"] + detector["offset"]
