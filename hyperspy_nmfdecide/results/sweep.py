"""The multi-restart NMF sweep of one signal, as a result: arrays, axes, getters, persistence."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import numpy as np

from .._utils import optional_array
from ..nmf.sweep import SweepArrays
from .base import METADATA_SWEEP, CalibratedResult, component_axis

__all__ = ["NMFSweep"]


@dataclass
class NMFSweep(CalibratedResult):
    """The multi-restart NMF sweep of one signal (Uesugi et al. 2021).

    Attributes
    ----------
    k_values : numpy.ndarray
        The numbers of components fitted, ascending.
    loss : numpy.ndarray
        (n_k, n_restarts) final MSE of every random-start run.
    n_iter, converged : numpy.ndarray
        (n_k, n_restarts) passes used and whether ``tol`` was reached before ``max_iter``.
    nndsvd_loss, nndsvd_n_iter, nndsvd_converged : numpy.ndarray
        (n_k,) the same for the deterministic NNDSVD-started run.
    pca_loss : numpy.ndarray
        (n_k,) MSE of the rank-k truncated SVD: the lower bound of any rank-k fit.
    best_run : numpy.ndarray
        (n_k,) restart index of the minimum-MSE run kept per k; -1 when it is the NNDSVD run.
    axes : list of dict
        The source signal's axes (array order), for calibrated results.
    navigation_mask, signal_mask : numpy.ndarray or None
        Full-size boolean masks used (True = excluded), in array order.
    params : dict
        solver, mode, max_iter, tol, n_restarts, random_state entropy and more.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0).signal
    >>> sweep = s.nmf_sweep(range(1, 4), n_restarts=3, random_state=0, show_progressbar=False)
    >>> sweep.get_factors(2).axes_manager.signal_shape
    (32, 32)
    >>> bool(np.all(np.diff(sweep.best_loss) <= 0))
    True
    """

    metadata_path = METADATA_SWEEP
    made_by = "nmf_sweep"

    arrays: SweepArrays
    axes: list[dict]
    navigation_mask: np.ndarray | None = None
    signal_mask: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    source_metadata: dict = field(default_factory=dict)

    # -- the numbers -------------------------------------------------------------------------
    @property
    def k_values(self) -> np.ndarray:
        return self.arrays.k_values

    @property
    def loss(self) -> np.ndarray:
        return self.arrays.loss

    @property
    def best_loss(self) -> np.ndarray:
        """(n_k,) minimum MSE per k over the random starts and the NNDSVD start."""
        return self.arrays.best_loss

    @property
    def mean_loss(self) -> np.ndarray:
        """(n_k,) mean MSE of the random starts per k."""
        return self.arrays.loss.mean(axis=1)

    @property
    def n_iter(self) -> np.ndarray:
        return self.arrays.n_iter

    @property
    def converged(self) -> np.ndarray:
        return self.arrays.converged

    @property
    def pca_loss(self) -> np.ndarray:
        return self.arrays.pca_loss

    @property
    def nndsvd_loss(self) -> np.ndarray:
        return self.arrays.nndsvd_loss

    @property
    def best_run(self) -> np.ndarray:
        return self.arrays.best_run

    @property
    def lazy(self) -> bool:
        return bool(self.params.get("lazy", False))

    def loss_history(self, k: int) -> np.ndarray:
        """MSE after every pass of the best run at ``k``."""
        return self.arrays.loss_history[self._index(k)]

    def best_factorisation(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(factors (k, n_pixel), loadings (n_probe, k)) of the best run at k, as arrays.

        Raises ValueError naming the available k when ``k`` was not swept.
        """
        self._index(k)
        return self.arrays.factors[int(k)], self.arrays.loadings[int(k)]

    def matrix_options(self) -> dict:
        """How the sweep saw the data matrix: ``row_mask``, ``col_mask``, ``negative_values``.

        The steps that read the data again (``decide_k``, ``phase_maps``) pass these on, so
        they see the matrix the sweep fitted.
        """
        return {
            "row_mask": None if self.navigation_mask is None else self.navigation_mask.ravel(),
            "col_mask": None if self.signal_mask is None else self.signal_mask.ravel(),
            "negative_values": self.params.get("negative_values", "raise"),
        }

    def _index(self, k: int) -> int:
        matches = np.flatnonzero(self.k_values == k)
        if not matches.size:
            raise ValueError(f"k={k} is not in the sweep; available k: {self.k_values.tolist()}")
        return int(matches[0])

    # -- calibrated signals ------------------------------------------------------------------
    def get_factors(self, k: int):
        """The k component patterns of the best run, as a calibrated diffraction signal.

        Each pattern sums to one (masked and dark pixels are zero); components are ordered by
        integrated loading, descending.
        """
        factors, _ = self.best_factorisation(k)
        data = factors.reshape((k,) + self.pattern_shape)
        title = f"NMF factors (k={k}) of {self.source_title}"
        return self._pattern_signal(data, title, component_axis(k))

    def get_loadings(self, k: int):
        """The k loading maps of the best run, in counts, over the calibrated scan.

        Probes excluded by the navigation mask are zero.
        """
        _, loadings = self.best_factorisation(k)
        data = np.moveaxis(loadings, -1, 0).reshape((k,) + self.scan_shape)
        title = f"NMF loadings (k={k}) of {self.source_title}"
        return self._scan_signal(data, title, component_axis(k))

    def get_model(self, k: int):
        """The reconstruction ``loadings @ factors`` at k, lazy when the source was lazy."""
        import hyperspy.api as hs

        factors, loadings = self.best_factorisation(k)
        shape = self.data_shape
        if self.lazy:
            import dask.array as da

            rows = self.params.get("chunk_rows") or max(1, 2**24 // factors.shape[1])
            data = (da.from_array(loadings, chunks=(rows, k)) @ factors).reshape(shape)
        else:
            data = (loadings @ factors).reshape(shape)
        signal = hs.signals.Signal2D(
            data, axes=[dict(a) for a in self.axes], metadata=self._metadata()
        )
        signal.set_signal_type("nmf_decide")
        if self.lazy:
            signal = signal.as_lazy() if not signal._lazy else signal
        signal.metadata.General.title = f"NMF model (k={k}) of {self.source_title}"
        return signal

    # -- HyperSpy decomposition --------------------------------------------------------------
    def write_learning_results(self, signal, k: int) -> None:
        """Store the best run at ``k`` as ``signal.learning_results`` (replacing any there).

        Afterwards HyperSpy's ``plot_decomposition_results()``,
        ``get_decomposition_model()`` and friends work on ``signal``.
        """
        if signal.data.shape != self.data_shape:
            raise ValueError(
                f"signal has shape {signal.data.shape}, but the sweep was run on {self.data_shape}"
            )
        factors, loadings = self.best_factorisation(k)
        target = signal.learning_results
        target.factors = factors.T.astype(np.float64)
        target.loadings = loadings.astype(np.float64)
        target.explained_variance = None
        target.decomposition_algorithm = f"nmf_sweep ({self.params.get('solver')})"
        target.output_dimension = k
        target.poissonian_noise_normalized = False
        target.unfolded = False
        target.mean = None
        target.centre = None
        target.navigation_mask = self.navigation_mask
        target.signal_mask = self.signal_mask

    # -- plotting ----------------------------------------------------------------------------
    def plot(self, ax=None):
        """Every run's MSE per k as a frequency map with min, mean and PCA lines.

        Uesugi et al. (2021) Fig. 4a and Fig. 5 in one figure.  Returns the Figure.
        """
        from ..plot import plot_sweep

        return plot_sweep(self, ax=ax)

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A nested dict of arrays, strings and numbers (fit for HyperSpy metadata)."""
        a = self.arrays
        ks = [int(k) for k in a.k_values]
        out = {
            "format": "hyperspy_nmfdecide.NMFSweep/1",
            "params_json": json.dumps(self.params),
            **self._calibration_json(),
            "entropy": str(a.entropy),
            "factors": np.concatenate([a.factors[k] for k in ks], axis=0),
            "runner_up": np.concatenate([a.runner_up[k] for k in ks], axis=0),
            "loadings": np.concatenate([a.loadings[k] for k in ks], axis=1),
            "history": np.concatenate(a.loss_history),
            "history_lengths": np.array([len(h) for h in a.loss_history]),
        }
        for f in fields(SweepArrays):
            if f.name not in ("factors", "loadings", "loss_history", "entropy", "runner_up"):
                out[f.name] = np.asarray(getattr(a, f.name))
        for name in ("navigation_mask", "signal_mask"):
            if getattr(self, name) is not None:
                out[name] = np.asarray(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> NMFSweep:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if d.get("format") != "hyperspy_nmfdecide.NMFSweep/1":
            raise ValueError(f"not a stored NMF sweep (format {d.get('format')!r})")
        ks = [int(k) for k in np.asarray(d["k_values"])]
        offsets = np.concatenate([[0], np.cumsum(ks)])
        cuts = np.concatenate([[0], np.cumsum(np.asarray(d["history_lengths"]))])
        arrays = SweepArrays(
            k_values=np.asarray(d["k_values"]),
            loss=np.asarray(d["loss"]),
            n_iter=np.asarray(d["n_iter"]),
            converged=np.asarray(d["converged"]),
            nndsvd_loss=np.asarray(d["nndsvd_loss"]),
            nndsvd_n_iter=np.asarray(d["nndsvd_n_iter"]),
            nndsvd_converged=np.asarray(d["nndsvd_converged"]),
            pca_loss=np.asarray(d["pca_loss"]),
            best_run=np.asarray(d["best_run"]),
            loss_history=[np.asarray(d["history"])[cuts[i] : cuts[i + 1]] for i in range(len(ks))],
            factors={
                k: np.asarray(d["factors"])[offsets[i] : offsets[i + 1]] for i, k in enumerate(ks)
            },
            loadings={
                k: np.asarray(d["loadings"])[:, offsets[i] : offsets[i + 1]]
                for i, k in enumerate(ks)
            },
            entropy=int(d["entropy"]),
            runner_up={
                k: np.asarray(d["runner_up"])[offsets[i] : offsets[i + 1]] for i, k in enumerate(ks)
            },
        )
        return cls(
            arrays=arrays,
            axes=json.loads(str(d["axes_json"])),
            navigation_mask=optional_array(d.get("navigation_mask")),
            signal_mask=optional_array(d.get("signal_mask")),
            params=json.loads(str(d["params_json"])),
            source_metadata=json.loads(str(d["source_metadata_json"])),
        )

    def summary(self) -> dict:
        """JSON-ready per-k figures (for reports)."""
        return {
            "k": self.k_values.tolist(),
            "best_mse": self.best_loss.tolist(),
            "mean_mse": self.mean_loss.tolist(),
            "pca_mse": self.pca_loss.tolist(),
            "nndsvd_mse": self.nndsvd_loss.tolist(),
            "best_run": self.best_run.tolist(),
            "converged_fraction": self.converged.mean(axis=1).tolist(),
            "params": self.params,
        }
