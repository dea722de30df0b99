"""Image-quality metrics used to judge when extra NMF components start fitting noise.

Pure functions on numpy arrays (Cao et al., SI algorithms 1-5). This module never imports
HyperSpy. Every pairwise metric takes a ``reference`` and a ``distorted`` 2-D image and an explicit,
keyword-only ``data_range`` (the difference between the largest and smallest possible value):
no 8-bit range of 255 is ever assumed.

========  =====================================================  ================  =======
name      function                                               better            perfect
========  =====================================================  ================  =======
``nsd``   population standard deviation (of the residual)        lower             0
``psnr``  peak signal-to-noise ratio (scikit-image)              higher            inf
``ssim``  structural similarity, Wang et al. 2004 (scikit-image) higher            1
``gmsd``  gradient magnitude similarity deviation, Xue 2014      lower             0
``mdsi``  mean deviation similarity index, Nafchi 2016           lower             0
========  =====================================================  ================  =======

PSNR and SSIM are computed by scikit-image and are not re-implemented here. scikit-image provides
neither GMSD nor MDSI, so those two (and the gradient helpers they share) are written by hand in
this module; their defaults follow the conventions of the PyTorch package ``piq`` 0.8 and reproduce
its values to rounding error (see ``tests/test_iqa.py``).

:func:`batch` evaluates any metric over stacks of shape ``(..., H, W)``, numpy or dask.

Examples
--------
>>> import numpy as np
>>> from hyperspy_nmfdecide import iqa
>>> ref = np.zeros((32, 32))
>>> ref[12:20, 12:20] = 1.0
>>> dist = ref + 0.05 * np.random.default_rng(0).standard_normal(ref.shape)
>>> sorted(iqa.METRICS)
['gmsd', 'mdsi', 'nsd', 'psnr', 'ssim']
>>> iqa.HIGHER_IS_BETTER["gmsd"]
False
>>> round(iqa.psnr(ref, dist, data_range=1.0), 2)
26.26
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ._utils import is_dask

_logger = logging.getLogger(__name__)

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "Metric",
    "batch",
    "get_metric",
    "gmsd",
    "gradient_magnitude",
    "mdsi",
    "nsd",
    "psnr",
    "ssim",
]

# Gradient kernels (x direction; the y kernel is the transpose): central differences over two
# pixels averaged over three rows, so both give 2 on a unit ramp. Prewitt /3 is piq's and the GMSD
# paper's choice; Sobel /4 is the seed SI's operator with scikit-image's normalisation
# (``skimage.filters.sobel_v``).
_GRADIENT_KERNELS = {
    "prewitt": np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]) / 3.0,
    "sobel": np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0,
}

# Grey -> RGB -> LHM (Nafchi et al. 2016, eq. 1-2): a grey value v copied into three channels maps
# to L = 0.9999 v, H = -0.01 v, M = -0.09 v (the rows of the LHM matrix do not sum to zero).
_LHM_L = 0.2989 + 0.587 + 0.114
_LHM_H = 0.30 + 0.04 - 0.35
_LHM_M = 0.34 - 0.60 + 0.17

# Number of images processed at once by the vectorised stack implementations (bounds memory).
_STACK_CHUNK = 256


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _check_data_range(data_range: Any) -> float:
    if data_range is None or isinstance(data_range, bool):
        raise TypeError("data_range must be a positive number (the value range of the images)")
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a positive number, got {data_range!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return value


def _as_float(array: ArrayLike, name: str, *, min_ndim: int = 2, exact_ndim: bool = True) -> Any:
    arr = np.asarray(array)
    if exact_ndim and arr.ndim != min_ndim:
        raise ValueError(f"{name} must be a 2-D array, got {arr.ndim} dimension(s) {arr.shape}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got {arr.shape}")
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"{name} is empty, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_pair(reference: ArrayLike, distorted: ArrayLike, *, stack: bool = False) -> tuple:
    ref = _as_float(reference, "reference", exact_ndim=not stack)
    dist = _as_float(distorted, "distorted", exact_ndim=not stack)
    if ref.shape != dist.shape:
        raise ValueError(
            f"reference and distorted must have the same shape, got {ref.shape} and {dist.shape}"
        )
    return ref, dist


def _check_gradient(gradient: str) -> Any:
    try:
        return _GRADIENT_KERNELS[gradient]
    except (KeyError, TypeError):
        raise ValueError(
            f"gradient must be one of {sorted(_GRADIENT_KERNELS)}, got {gradient!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# hand-written helpers for GMSD and MDSI (scikit-image has neither metric)
# --------------------------------------------------------------------------------------------
def _gradient_magnitude(images: Any, kernel: Any) -> Any:
    """Gradient magnitude of every image in a ``(..., H, W)`` stack, zero padding outside."""
    shape = (1,) * (images.ndim - 2) + kernel.shape
    gx = ndimage.correlate(images, kernel.reshape(shape), mode="constant", cval=0.0)
    gy = ndimage.correlate(images, kernel.T.reshape(shape), mode="constant", cval=0.0)
    return np.sqrt(gx * gx + gy * gy)


def _similarity(a: Any, b: Any, constant: float) -> Any:
    return (2.0 * a * b + constant) / (a * a + b * b + constant)


def _block_mean(images: Any, size: int, pad_before: int, pad_after: int) -> Any:
    """Zero-pad the last two axes, then average non-overlapping ``size x size`` blocks.

    Trailing rows/columns that do not fill a block are dropped (``torch.nn.functional.avg_pool2d``
    with ``stride=kernel_size``).
    """
    if pad_before or pad_after:
        pad = [(0, 0)] * (images.ndim - 2) + [(pad_before, pad_after)] * 2
        images = np.pad(images, pad, mode="constant")
    h, w = images.shape[-2] // size, images.shape[-1] // size
    if h == 0 or w == 0:
        raise ValueError(f"images of shape {images.shape[-2:]} are too small to pool by {size}")
    images = images[..., : h * size, : w * size]
    return images.reshape(images.shape[:-2] + (h, size, w, size)).mean(axis=(-3, -1))


def _gmsd_stack(ref: Any, dist: Any, data_range: float, gradient: str, downsample: bool, c: float):
    kernel = _check_gradient(gradient)
    ref = ref / data_range
    dist = dist / data_range
    if downsample:
        pad = max(ref.shape[-2] % 2, ref.shape[-1] % 2)
        ref = _block_mean(ref, 2, 0, pad)
        dist = _block_mean(dist, 2, 0, pad)
    gms = _similarity(_gradient_magnitude(ref, kernel), _gradient_magnitude(dist, kernel), c)
    return gms.std(axis=(-2, -1))


def _complex_power(x: Any, exponent: float) -> Any:
    # Principal branch: a negative real x gives |x|**e * exp(i*pi*e), as piq's pow_for_complex.
    return np.power(x.astype(np.complex128, copy=False), exponent)


def _mdsi_stack(
    ref: Any,
    dist: Any,
    data_range: float,
    gradient: str,
    c1: float,
    c2: float,
    c3: float,
    alpha: float,
    beta: float,
    gamma: float,
    combination: str,
    chromaticity: str,
    q: float,
    o: float,
    rho: float,
) -> Any:
    kernel = _check_gradient(gradient)
    if combination not in ("sum", "mult"):
        raise ValueError(f"combination must be 'sum' or 'mult', got {combination!r}")
    if chromaticity not in ("rgb", "none"):
        raise ValueError(f"chromaticity must be 'rgb' or 'none', got {chromaticity!r}")
    # The constants c1, c2, c3 are defined for images on a 0..255 scale.
    x = dist / data_range * 255.0
    y = ref / data_range * 255.0
    size = max(1, round(min(x.shape[-2:]) / 256))
    if size > 1:
        x = _block_mean(x, size, (size - 1) // 2, size // 2)
        y = _block_mean(y, size, (size - 1) // 2, size // 2)
    if chromaticity == "rgb":
        lx, ly = _LHM_L * x, _LHM_L * y
        k = _LHM_H**2 + _LHM_M**2
        cs = (2.0 * k * x * y + c3) / (k * (x * x + y * y) + c3)
    else:
        lx, ly = x, y
        cs = None
    gx = _gradient_magnitude(lx, kernel)
    gy = _gradient_magnitude(ly, kernel)
    gf = _gradient_magnitude(0.5 * (lx + ly), kernel)
    gs = _similarity(gx, gy, c1) + _similarity(gx, gf, c2) - _similarity(gy, gf, c2)
    if combination == "sum":
        gcs = alpha * gs + (1.0 - alpha) * (1.0 if cs is None else cs)
        gcs_q = _complex_power(gcs, q)
    else:
        gcs = _complex_power(gs, gamma)
        if cs is not None:
            gcs = gcs * _complex_power(cs, beta)
        gcs_q = np.power(gcs, q)
    mct = gcs_q.mean(axis=(-2, -1), keepdims=True)
    deviation = np.abs(gcs_q - mct)
    return (deviation**rho).mean(axis=(-2, -1)) ** (o / rho)


def _nsd_stack(images: Any, mask: Any = None) -> Any:
    if mask is None:
        return images.std(axis=(-2, -1))
    return images[..., ~mask].std(axis=-1)


def _check_mask(mask: ArrayLike | None, shape: tuple) -> Any:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}")
    if m.shape != tuple(shape[-2:]):
        raise ValueError(f"mask must have the image shape {tuple(shape[-2:])}, got {m.shape}")
    if m.all():
        raise ValueError("mask excludes every pixel")
    return m


# --------------------------------------------------------------------------------------------
# public single-image metrics
# --------------------------------------------------------------------------------------------
def gradient_magnitude(image: ArrayLike, *, gradient: str = "prewitt") -> np.ndarray:
    """Gradient magnitude of a 2-D image with Prewitt or Sobel kernels and zero padding.

    Parameters
    ----------
    image : array_like
        2-D image.
    gradient : {"prewitt", "sobel"}
        Prewitt kernels divided by 3 (GMSD/MDSI papers, piq) or Sobel kernels divided by 4 (the
        seed SI's operator, normalised as ``skimage.filters.sobel_v``). Both give 2 on a unit ramp
        (a central difference over two pixels), so the similarity constants mean the same.

    Returns
    -------
    numpy.ndarray
        ``sqrt(Gx**2 + Gy**2)``, same shape as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> ramp = np.tile(np.arange(5.0), (5, 1))
    >>> gradient_magnitude(ramp)[2, 1:4]
    array([2., 2., 2.])
    """
    img = _as_float(image, "image")
    return _gradient_magnitude(img, _check_gradient(gradient))


def nsd(image: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Noise standard deviation: the population standard deviation of an image (SI algorithm 1).

    On its own the NSD of an image is neither good nor bad. Applied to a residual
    (data minus reconstruction) lower is better, down to the noise level; that is how the
    ``"nsd"`` entry of :data:`METRICS` uses it.

    Parameters
    ----------
    image : array_like
        2-D image (for example a residual).
    mask : array_like of bool, optional
        Same shape as ``image``; ``True`` marks pixels to *exclude* (the :mod:`numpy.ma`
        convention, e.g. a direct-beam mask).

    Returns
    -------
    float
        ``sqrt(mean((I - mean(I))**2))`` over the included pixels (divisor N, not N - 1).

    Examples
    --------
    >>> import numpy as np
    >>> nsd(np.array([[0.0, 2.0], [0.0, 2.0]]))
    1.0
    >>> nsd(np.array([[0.0, 2.0], [5.0, 9.0]]), mask=np.array([[False, False], [True, True]]))
    1.0
    """
    img = _as_float(image, "image")
    return float(_nsd_stack(img, _check_mask(mask, img.shape)))


def psnr(reference: ArrayLike, distorted: ArrayLike, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / MSE)`` (higher is better).

    Calls :func:`skimage.metrics.peak_signal_noise_ratio`.

    Parameters
    ----------
    reference, distorted : array_like
        2-D images of the same shape.
    data_range : float
        Value range of the images (max - min possible), e.g. 1 for images scaled to [0, 1].

    Returns
    -------
    float
        PSNR in dB; ``inf`` for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((8, 8))
    >>> round(psnr(ref, ref + 0.1, data_range=1.0), 6)
    20.0
    >>> psnr(ref, ref, data_range=1.0)
    inf
    """
    ref, dist = _check_pair(reference, distorted)
    dr = _check_data_range(data_range)
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(ref, dist, data_range=dr))


def ssim(
    reference: ArrayLike,
    distorted: ArrayLike,
    *,
    data_range: float,
    gaussian_weights: bool = True,
    sigma: float = 1.5,
    use_sample_covariance: bool = False,
) -> float:
    """Structural similarity index (Wang et al. 2004), higher is better, 1 for identical images.

    Calls :func:`skimage.metrics.structural_similarity`; the defaults are Wang et al.'s
    (11 x 11 Gaussian window of sigma 1.5, population covariances, K1 = 0.01, K2 = 0.03).
    Images must be at least 11 x 11 with the Gaussian window (7 x 7 without).

    Parameters
    ----------
    reference, distorted : array_like
        2-D images of the same shape.
    data_range : float
        Value range of the images (max - min possible).
    gaussian_weights : bool
        Gaussian-weighted local statistics (True) or a uniform 7 x 7 window (False).
    sigma : float
        Standard deviation of the Gaussian window.
    use_sample_covariance : bool
        Divide local covariances by N - 1 instead of N.

    Returns
    -------
    float
        Mean SSIM over the image, in [-1, 1].

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.random.default_rng(0).random((16, 16))
    >>> ssim(ref, ref, data_range=1.0)
    1.0
    >>> ssim(ref, 0.5 * ref, data_range=1.0) < 1.0
    True
    """
    ref, dist = _check_pair(reference, distorted)
    dr = _check_data_range(data_range)
    return float(
        structural_similarity(
            ref,
            dist,
            data_range=dr,
            gaussian_weights=gaussian_weights,
            sigma=sigma,
            use_sample_covariance=use_sample_covariance,
        )
    )


def gmsd(
    reference: ArrayLike,
    distorted: ArrayLike,
    *,
    data_range: float,
    gradient: str = "prewitt",
    downsample: bool = True,
    c: float = 170.0 / 255.0**2,
) -> float:
    """Gradient magnitude similarity deviation (Xue et al. 2014), lower is better, 0 if identical.

    Written by hand (scikit-image has no GMSD), with piq 0.8's conventions as defaults: images
    divided by ``data_range``; 2 x 2 average pooling and downsampling (one zero row and column
    added at the bottom/right when a side is odd); Prewitt kernels / 3 with zero padding;
    GMS = (2 g_r g_d + c) / (g_r² + g_d² + c); GMSD = population standard deviation of the GMS map.

    Parameters
    ----------
    reference, distorted : array_like
        2-D images of the same shape.
    data_range : float
        Value range of the images (max - min possible).
    gradient : {"prewitt", "sobel"}
        ``"prewitt"`` (paper, default) or ``"sobel"`` (the operator named in Cao et al.'s SI).
    downsample : bool
        Apply the paper's 2 x 2 average pooling and downsampling first (default True).
    c : float
        Similarity constant in units of ``data_range = 1`` (paper: 170 on a 0..255 scale).

    Returns
    -------
    float
        GMSD, >= 0.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.random((32, 32))
    >>> gmsd(ref, ref, data_range=1.0)
    0.0
    >>> round(gmsd(ref, ref + 0.1 * rng.standard_normal(ref.shape), data_range=1.0), 4)
    0.0891
    """
    ref, dist = _check_pair(reference, distorted)
    dr = _check_data_range(data_range)
    return float(_gmsd_stack(ref, dist, dr, gradient, downsample, c))


def mdsi(
    reference: ArrayLike,
    distorted: ArrayLike,
    *,
    data_range: float,
    gradient: str = "prewitt",
    c1: float = 140.0,
    c2: float = 55.0,
    c3: float = 550.0,
    alpha: float = 0.6,
    combination: str = "sum",
    beta: float = 0.1,
    gamma: float = 0.2,
    q: float = 0.25,
    o: float = 0.25,
    rho: float = 1.0,
    chromaticity: str = "rgb",
) -> float:
    """Mean deviation similarity index (Nafchi et al. 2016) for grey images; lower is better.

    Written by hand (scikit-image has no MDSI), following piq 0.8 (itself a port of the authors'
    MATLAB code): images scaled to 0..255; average pooling and downsampling by
    ``round(min(H, W) / 256)`` (none below 384 pixels); gradient similarity
    GS~ = GS(D, R; c1) + GS(D, F; c2) - GS(R, F; c2) with F = (R + D) / 2; combination with the
    chromaticity similarity CS; deviation pooling
    ``mean(|GCS**q - mean(GCS**q)|**rho) ** (o / rho)`` where powers of negative values are taken
    as complex numbers (principal branch).

    Parameters
    ----------
    reference, distorted : array_like
        2-D grey images of the same shape.
    data_range : float
        Value range of the images (max - min possible).
    gradient : {"prewitt", "sobel"}
        Gradient kernels (Prewitt / 3 as the paper and piq; Sobel / 4 as the seed SI).
    c1, c2, c3 : float
        Stability constants on the 0..255 scale.
    alpha : float
        Weight of GS~ in the ``"sum"`` combination ``alpha GS~ + (1 - alpha) CS``.
    combination : {"sum", "mult"}
        ``"sum"`` (default) or ``"mult"``: ``GS~**gamma * CS**beta`` as a complex product
        (piq instead multiplies real parts and adds imaginary parts; the two differ only where
        GS~ < 0 and CS != 1).
    beta, gamma : float
        Exponents of the ``"mult"`` combination.
    q, o, rho : float
        Deviation-pooling exponents.
    chromaticity : {"rgb", "none"}
        ``"rgb"`` (default): treat the grey image as R = G = B and convert to LHM exactly as the
        reference implementations do. The LHM rows do not sum to zero, so a grey value v gives
        L = 0.9999 v, H = -0.01 v, M = -0.09 v and CS is *not* identically 1 (it falls where the
        intensities differ). ``"none"``: L = v and CS = 1, the purely luminance index; differs from
        the reference values by up to ~2e-3 on the test set.

    Returns
    -------
    float
        MDSI, >= 0; 0 for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.random((32, 32))
    >>> mdsi(ref, ref, data_range=1.0)
    0.0
    >>> round(mdsi(ref, ref + 0.1 * rng.standard_normal(ref.shape), data_range=1.0), 4)
    0.3273
    """
    ref, dist = _check_pair(reference, distorted)
    dr = _check_data_range(data_range)
    return float(
        _mdsi_stack(
            ref,
            dist,
            dr,
            gradient=gradient,
            c1=c1,
            c2=c2,
            c3=c3,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            combination=combination,
            chromaticity=chromaticity,
            q=q,
            o=o,
            rho=rho,
        )
    )


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def _nsd_pair(
    reference: ArrayLike,
    distorted: ArrayLike,
    *,
    data_range: float,
    mask: ArrayLike | None = None,
) -> float:
    """NSD of the residual ``distorted - reference``; ``data_range`` is only validated."""
    ref, dist = _check_pair(reference, distorted)
    _check_data_range(data_range)
    return nsd(dist - ref, mask=mask)


def _nsd_batch(ref: Any, dist: Any, data_range: float, mask: ArrayLike | None = None) -> Any:
    return _nsd_stack(dist - ref, _check_mask(mask, ref.shape))


def _options(name: str, defaults: dict, kw: dict) -> dict:
    unknown = set(kw) - set(defaults)
    if unknown:
        raise TypeError(f"{name} got unexpected keyword argument(s) {sorted(unknown)}")
    return {**defaults, **kw}


def _gmsd_batch(ref: Any, dist: Any, data_range: float, **kw: Any) -> Any:
    defaults = {"gradient": "prewitt", "downsample": True, "c": 170.0 / 255.0**2}
    return _gmsd_stack(ref, dist, data_range, **_options("gmsd", defaults, kw))


def _mdsi_batch(ref: Any, dist: Any, data_range: float, **kw: Any) -> Any:
    defaults = {
        "gradient": "prewitt",
        "c1": 140.0,
        "c2": 55.0,
        "c3": 550.0,
        "alpha": 0.6,
        "beta": 0.1,
        "gamma": 0.2,
        "combination": "sum",
        "chromaticity": "rgb",
        "q": 0.25,
        "o": 0.25,
        "rho": 1.0,
    }
    return _mdsi_stack(ref, dist, data_range, **_options("mdsi", defaults, kw))


@dataclass(frozen=True)
class Metric:
    """A full-reference image-quality metric and the direction in which it improves.

    Attributes
    ----------
    name : str
        Registry key.
    func : callable
        ``func(reference, distorted, *, data_range, **kw) -> float`` on 2-D images.
    higher_is_better : bool
        Whether larger scores mean a closer match.
    perfect : float
        Score of identical images.
    description : str
        One-line description.
    stack_func : callable or None
        Vectorised ``stack_func(ref, dist, data_range, **kw)`` on validated float ``(..., H, W)``
        stacks, used by :func:`batch`; ``None`` means :func:`batch` loops over ``func``.

    Examples
    --------
    >>> m = get_metric("ssim")
    >>> m.higher_is_better, m.perfect
    (True, 1.0)
    >>> m.is_better(0.9, 0.8)
    True
    """

    name: str
    func: Callable[..., float]
    higher_is_better: bool
    perfect: float
    description: str = ""
    stack_func: Callable[..., Any] | None = None

    def is_better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than score ``b`` for this metric.

        Examples
        --------
        >>> get_metric("gmsd").is_better(0.01, 0.02)
        True
        """
        return a > b if self.higher_is_better else a < b


METRICS: dict[str, Metric] = {
    "nsd": Metric(
        "nsd",
        _nsd_pair,
        False,
        0.0,
        "noise standard deviation of the residual distorted - reference",
        _nsd_batch,
    ),
    "psnr": Metric("psnr", psnr, True, math.inf, "peak signal-to-noise ratio (dB)"),
    "ssim": Metric("ssim", ssim, True, 1.0, "structural similarity index"),
    "gmsd": Metric(
        "gmsd", gmsd, False, 0.0, "gradient magnitude similarity deviation", _gmsd_batch
    ),
    "mdsi": Metric("mdsi", mdsi, False, 0.0, "mean deviation similarity index", _mdsi_batch),
}
"""Registry of the metrics by name."""

HIGHER_IS_BETTER: dict[str, bool] = {name: m.higher_is_better for name, m in METRICS.items()}
"""Direction of each metric in :data:`METRICS`."""


def get_metric(name: str) -> Metric:
    """Look up a metric of :data:`METRICS` by name (case-insensitive).

    Parameters
    ----------
    name : str
        One of ``"nsd"``, ``"psnr"``, ``"ssim"``, ``"gmsd"``, ``"mdsi"``.

    Returns
    -------
    Metric

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> get_metric("MDSI").higher_is_better
    False
    """
    key = name.lower() if isinstance(name, str) else name
    try:
        return METRICS[key]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown metric {name!r}; choose from {sorted(METRICS)}") from None


# --------------------------------------------------------------------------------------------
# batched evaluation
# --------------------------------------------------------------------------------------------


def _batch_numpy(metric: Metric | Callable, ref: Any, dist: Any, data_range: float, kw: dict):
    ref, dist = _check_pair(ref, dist, stack=True)
    lead = ref.shape[:-2]
    n = math.prod(lead)
    r = ref.reshape((n,) + ref.shape[-2:])
    d = dist.reshape((n,) + dist.shape[-2:])
    out = np.empty(n, dtype=np.float64)
    stack_func = metric.stack_func if isinstance(metric, Metric) else None
    if stack_func is not None:
        for start in range(0, n, _STACK_CHUNK):
            sl = slice(start, start + _STACK_CHUNK)
            out[sl] = stack_func(r[sl], d[sl], data_range, **kw)
    else:
        func = metric.func if isinstance(metric, Metric) else metric
        for i in range(n):
            out[i] = func(r[i], d[i], data_range=data_range, **kw)
    return out.reshape(lead)


def batch(
    metric: str | Metric | Callable[..., float],
    references: ArrayLike,
    distorted: ArrayLike,
    *,
    data_range: float,
    **kwargs: Any,
) -> Any:
    """Evaluate a metric on every image of two stacks of shape ``(..., H, W)``.

    NSD, GMSD and MDSI are vectorised over the stack (convolutions with a kernel of size 1 along
    the stack axes, ``_STACK_CHUNK`` images at a time); PSNR, SSIM and plain callables loop over
    the images.

    Parameters
    ----------
    metric : str, Metric or callable
        A name of :data:`METRICS`, a :class:`Metric`, or any
        ``f(reference, distorted, *, data_range, **kwargs) -> float`` on 2-D images.
    references, distorted : array_like or dask.array.Array
        Stacks of the same shape ``(..., H, W)``. If either is a dask array the result is a lazy
        dask array computed block by block (the last two axes are rechunked whole); the stacks
        are never loaded at once.
    data_range : float
        Value range of the images (max - min possible).
    **kwargs
        Options of the metric (e.g. ``gradient="sobel"``; ``mask`` for ``"nsd"``).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Scores of shape ``references.shape[:-2]``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> refs = rng.random((2, 3, 16, 16))
    >>> dist = refs + 0.05 * rng.standard_normal(refs.shape)
    >>> scores = batch("gmsd", refs, dist, data_range=1.0)
    >>> scores.shape
    (2, 3)
    >>> bool(np.isclose(scores[1, 2], gmsd(refs[1, 2], dist[1, 2], data_range=1.0)))
    True
    >>> import dask.array as da
    >>> lazy = batch("gmsd", da.from_array(refs, chunks=(1, 2, 16, 16)), dist, data_range=1.0)
    >>> bool(np.allclose(lazy.compute(), scores))
    True
    """
    m = metric if (isinstance(metric, Metric) or callable(metric)) else get_metric(metric)
    dr = _check_data_range(data_range)
    if not (is_dask(references) or is_dask(distorted)):
        return _batch_numpy(m, references, distorted, dr, kwargs)

    import dask.array as da

    ref = da.asarray(references)
    dist = da.asarray(distorted)
    for name, arr in (("references", ref), ("distorted", dist)):
        if arr.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got {arr.shape}")
    if ref.shape != dist.shape:
        raise ValueError(
            f"references and distorted must have the same shape, got {ref.shape} and {dist.shape}"
        )
    nd = ref.ndim
    whole = {nd - 2: -1, nd - 1: -1}
    ref = ref.rechunk(whole)
    dist = dist.rechunk(ref.chunks)  # identical blocks: blockwise would broadcast a single block
    if nd == 2:
        ref, dist = ref[np.newaxis], dist[np.newaxis]
    _logger.debug("batch %s over a dask stack %s in %d block(s)", m, ref.shape, ref.npartitions)

    def _block(r: Any, d: Any) -> Any:
        return _batch_numpy(m, r, d, dr, kwargs)

    out = da.map_blocks(_block, ref, dist, drop_axis=[ref.ndim - 2, ref.ndim - 1], dtype=float)
    return out[0] if nd == 2 else out
