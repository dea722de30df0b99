"""HyperSpy signal classes that carry the NMF sweep, decision and phase-map methods.

The classes are thin: each method checks its arguments, calls one numerics function and wraps
the result (DESIGN §1).  No arithmetic on patterns happens here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from pyxem.signals import ElectronDiffraction2D, LazyElectronDiffraction2D

from .nmf.sweep import run_sweep
from .results import METADATA_SWEEP, NMFSweep

_logger = logging.getLogger(__name__)


class NMFDecideDiffraction2D(ElectronDiffraction2D):
    """A 4D-STEM signal with multi-restart NMF sweep methods.

    Everything pyxem's :class:`~pyxem.signals.ElectronDiffraction2D` does still works.  Get one
    with ``s.set_signal_type("nmf_decide")`` or ``hs.load(path, signal_type="nmf_decide")``.
    """

    _signal_type = "nmf_decide"

    def nmf_sweep(
        self,
        k_range: Iterable[int] = range(2, 16),
        n_restarts: int = 20,
        *,
        solver: str = "hals",
        mode: str = "exact",
        max_iter: int = 200,
        tol: float = 1e-4,
        signal_mask=None,
        navigation_mask=None,
        negative_values: str = "raise",
        random_state: int | np.random.Generator | None = None,
        show_progressbar: bool | None = None,
        store: bool = True,
    ) -> NMFSweep:
        """NMF for every k in ``k_range``, ``n_restarts`` random starts each (Uesugi et al. 2021).

        All restarts of all k advance together, one pass over the navigation chunks per
        iteration, so eager and lazy signals take the same path and a lazy scan is never held in
        memory whole.  Per k the minimum-MSE run is kept; the MSE of every run is recorded.  One
        deterministic NNDSVD-started run per k is reported beside the random ones (and kept when
        it wins).

        Parameters
        ----------
        k_range : iterable of int
            Numbers of components to fit.
        n_restarts : int
            Random non-negative starts per k.
        solver : {"hals", "als", "mu"}
            ``"hals"`` (fastest to a low MSE), ``"als"`` (Uesugi's nine steps) or ``"mu"``
            (Lee–Seung multiplicative updates, as in Cao et al.).
        mode : {"exact", "fast"}
            ``"fast"`` iterates on a randomised compression of the data, then evaluates every run
            exactly and polishes the best three per k on the data.  The MSE reported is exact.
        max_iter : int
            Maximum passes over the data per run.
        tol : float
            A run stops when its MSE falls by less than ``tol`` (relative) in one pass.
        signal_mask : numpy.ndarray or hyperspy signal, optional
            Boolean over the diffraction plane, ``True`` = pixel excluded (e.g. the direct beam
            from :meth:`direct_beam_mask`).  Excluded pixels are dropped from the fit and are zero
            in the factors and the model.
        navigation_mask : numpy.ndarray or hyperspy signal, optional
            Boolean over the scan, ``True`` = probe excluded (e.g. vacuum).  Excluded probes are
            dropped from the fit and have zero loadings.
        negative_values : {"raise", "clip"}
            What to do with negative intensities (e.g. after background subtraction).
        random_state : int, numpy.random.Generator or None
            The same value gives identical results.  Run r at k uses
            ``SeedSequence(seed, spawn_key=(k, r))``, so it does not depend on the k range.
        show_progressbar : bool or None
            None follows ``hs.preferences.General.show_progressbar``.
        store : bool
            Keep the sweep in ``metadata`` (it is then saved with the signal and read by
            ``decide_k``); the data are never modified.

        Returns
        -------
        NMFSweep

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> s = simulated_scan(nav_shape=(10, 10), pattern_size=32, random_state=0).signal
        >>> sweep = s.nmf_sweep(range(2, 5), n_restarts=4, random_state=0)
        >>> sweep.loss.shape
        (3, 4)
        >>> sweep.get_loadings(3).axes_manager.signal_shape == s.axes_manager.navigation_shape
        True
        """
        from hyperspy.external.progressbar import progressbar

        sig_shape = self.data.shape[self.axes_manager.navigation_dimension :]
        nav_shape = self.data.shape[: self.axes_manager.navigation_dimension]
        if self.axes_manager.signal_dimension != 2:
            raise ValueError(
                f"nmf_sweep needs 2-D patterns; this signal has signal dimension "
                f"{self.axes_manager.signal_dimension}"
            )
        signal_mask = _as_mask(signal_mask, sig_shape, "signal_mask")
        navigation_mask = _as_mask(navigation_mask, nav_shape, "navigation_mask")
        n_probe = int(np.prod(nav_shape, dtype=int))
        n_pixel = int(np.prod(sig_shape, dtype=int))
        matrix, chunk_rows = self._as_matrix(n_probe, n_pixel)
        if show_progressbar is None:
            from hyperspy.defaults_parser import preferences

            show_progressbar = preferences.General.show_progressbar
        bar = progressbar(
            total=None,
            disable=not show_progressbar,
            unit="pass",
            desc="NMF sweep, passes over the data",
        )
        try:
            arrays = run_sweep(
                matrix,
                list(k_range),
                n_restarts,
                solver=solver,
                mode=mode,
                max_iter=max_iter,
                tol=tol,
                row_mask=None if navigation_mask is None else navigation_mask.ravel(),
                col_mask=None if signal_mask is None else signal_mask.ravel(),
                random_state=random_state,
                negative_values=negative_values,
                chunk_rows=chunk_rows,
                on_pass=bar.update,
            )
        finally:
            bar.close()
        sweep = NMFSweep(
            arrays=arrays,
            axes=list(self.axes_manager.as_dictionary().values()),
            navigation_mask=navigation_mask,
            signal_mask=signal_mask,
            params={
                "solver": solver,
                "mode": mode,
                "max_iter": int(max_iter),
                "tol": float(tol),
                "n_restarts": int(n_restarts),
                "random_state": str(arrays.entropy),
                "negative_values": negative_values,
                "lazy": bool(self._lazy),
                "chunk_rows": chunk_rows,
            },
            source_metadata=self._source_metadata(),
        )
        if store:
            self.metadata.set_item(METADATA_SWEEP, sweep.to_dict())
        return sweep

    def get_nmf_sweep(self) -> NMFSweep:
        """The sweep stored by the last :meth:`nmf_sweep` (also after save and load).

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> s = simulated_scan(nav_shape=(6, 6), pattern_size=32, random_state=0).signal
        >>> _ = s.nmf_sweep(range(1, 3), n_restarts=2, random_state=0)
        >>> s.get_nmf_sweep().k_values.tolist()
        [1, 2]
        """
        if not self.metadata.has_item(METADATA_SWEEP):
            raise RuntimeError("No NMF sweep is stored on this signal: run s.nmf_sweep() first.")
        return NMFSweep.from_dict(self.metadata.get_item(METADATA_SWEEP).as_dictionary())

    def direct_beam_mask(self, radius: float, *, method: str = "blur", **kwargs) -> np.ndarray:
        """Boolean mask of a disc around the *found* direct beam (True = excluded).

        pyxem's ``get_direct_beam_mask`` centres the disc on the detector centre; here the
        beam is located first with pyxem's ``get_direct_beam_position`` (on the mean pattern,
        one pass for lazy data), so the mask follows a beam that is off-centre.

        Parameters
        ----------
        radius : float
            Disc radius in pixels.
        method : str
            Passed to ``get_direct_beam_position`` (``"blur"``, ``"center_of_mass"``, ...).
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
        """
        if not radius > 0:
            raise ValueError(f"radius must be > 0 pixels, got {radius!r}")
        sig_shape = self.data.shape[self.axes_manager.navigation_dimension :]
        if radius > max(sig_shape):
            raise ValueError(f"radius {radius} is larger than the pattern {sig_shape}")
        mean = self.mean(axis=self.axes_manager.navigation_axes)
        if mean._lazy:
            mean.compute()
        mean = NMFDecideDiffraction2D(np.asarray(mean.data)[np.newaxis])
        if method == "blur":
            kwargs.setdefault("sigma", 2)
        shifts = mean.get_direct_beam_position(method=method, show_progressbar=False, **kwargs)
        shift = np.asarray(shifts.data).reshape(-1, 2)[0]
        # pyxem returns the shift that *centres* the beam: the beam sits at centre - shift.
        centre = np.array(sig_shape[::-1], dtype=float) / 2 - shift  # (x, y) in pixels
        yy, xx = np.indices(sig_shape)
        return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2

    # -- helpers -----------------------------------------------------------------------------
    def _as_matrix(self, n_probe: int, n_pixel: int):
        """The data as an (n_probe, n_pixel) view: numpy, or dask in navigation row chunks."""
        if not self._lazy:
            return self.data.reshape(n_probe, n_pixel), None
        data = self.data
        nav_dim = self.axes_manager.navigation_dimension
        # Whole patterns and whole fast-scan rows per chunk, so the reshape stays blockwise;
        # as many rows as keep a chunk near the probes of the user's own chunks.
        probes_per_chunk = int(np.prod([c[0] for c in data.chunks[:nav_dim]], dtype=int))
        probes_per_row = int(np.prod(data.shape[1:nav_dim], dtype=int))
        rows = max(1, probes_per_chunk // probes_per_row) if nav_dim else 1
        chunks = (rows,) + (-1,) * (data.ndim - 1) if nav_dim else (-1,) * data.ndim
        data = data.rechunk(chunks)
        matrix = data.reshape(n_probe, n_pixel)
        return matrix, int(matrix.chunks[0][0])

    def _source_metadata(self) -> dict:
        md = self.metadata.as_dictionary()
        return {
            key: md[key] for key in ("General", "Signal", "Acquisition_instrument") if key in md
        }


class LazyNMFDecideDiffraction2D(LazyElectronDiffraction2D, NMFDecideDiffraction2D):
    """Lazy (dask-backed) twin of :class:`NMFDecideDiffraction2D`."""


def _as_mask(mask, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """A boolean numpy mask in array order from a numpy array or a HyperSpy signal."""
    if mask is None:
        return None
    if hasattr(mask, "axes_manager"):
        data = mask.data
        mask = data.compute() if hasattr(data, "compute") else data
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"{name} must be boolean (True = excluded), got dtype {mask.dtype}")
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape}, expected {tuple(shape)}")
    if mask.all():
        raise ValueError(f"{name} excludes everything: nothing is left to factorise")
    return mask
