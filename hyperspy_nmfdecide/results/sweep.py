"""The multi-restart NMF sweep of one signal, as a result: arrays, axes, getters, persistence."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import numpy as np

from .._utils import optional_array
from ..nmf.fingerprint import Fingerprint
from ..nmf.sweep import SweepArrays
from .base import (
    METADATA_SWEEP,
    CalibratedResult,
    check_finite,
    check_shape,
    check_unit_rows,
    component_axis,
    damaged,
    stored_item,
    stored_json,
)

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
    description = "NMF sweep"

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
        kept_apart = ("factors", "loadings", "loss_history", "entropy", "runner_up", "fingerprint")
        for f in fields(SweepArrays):
            if f.name not in kept_apart:
                out[f.name] = np.asarray(getattr(a, f.name))
        if a.fingerprint is not None:
            out["fingerprint_json"] = json.dumps(dict(a.fingerprint))
        out |= self._mask_entries()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> NMFSweep:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            When ``d`` is not a stored sweep, lacks an entry, or holds arrays that cannot be
            right (shapes that disagree with the k values and the axes, NaN, factors that do
            not sum to one: what a lost chunk of a file reads back as).
        """
        d = dict(d)
        if str(d.get("format")) != "hyperspy_nmfdecide.NMFSweep/1":
            raise ValueError(f"not a stored NMF sweep (format {d.get('format')!r})")
        what = cls.description

        def item(name):
            return np.asarray(stored_item(d, name, what))

        ks = _stored_k_values(item("k_values"))
        offsets = np.concatenate([[0], np.cumsum(ks)]).astype(int)
        lengths = item("history_lengths")
        check_shape(what, "history_lengths", lengths, (len(ks),))
        cuts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
        history, factors, loadings, runner_up = (
            item(name) for name in ("history", "factors", "loadings", "runner_up")
        )
        if history.shape != (cuts[-1],) or factors.ndim != 2 or loadings.ndim != 2:
            raise damaged(what, "its history, factors or loadings do not fit its k values")
        arrays = SweepArrays(
            k_values=item("k_values"),
            **{name: item(name) for name in _PER_RUN + _PER_K},
            loss_history=[history[cuts[i] : cuts[i + 1]] for i in range(len(ks))],
            factors={k: factors[offsets[i] : offsets[i + 1]] for i, k in enumerate(ks)},
            loadings={k: loadings[:, offsets[i] : offsets[i + 1]] for i, k in enumerate(ks)},
            entropy=_stored_entropy(stored_item(d, "entropy", what)),
            runner_up={k: runner_up[offsets[i] : offsets[i + 1]] for i, k in enumerate(ks)},
            fingerprint=(
                Fingerprint(stored_json(d, "fingerprint_json", what))
                if "fingerprint_json" in d
                else None
            ),
        )
        sweep = cls(
            arrays=arrays,
            axes=stored_json(d, "axes_json", what),
            navigation_mask=optional_array(d.get("navigation_mask")),
            signal_mask=optional_array(d.get("signal_mask")),
            params=stored_json(d, "params_json", what),
            source_metadata=stored_json(d, "source_metadata_json", what),
        )
        _check_sweep(sweep)
        return sweep

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


# -- checks of a stored sweep ---------------------------------------------------------------------
#: SweepArrays fields of shape (n_k, n_restarts) and of shape (n_k,).
_PER_RUN = ("loss", "n_iter", "converged")
_PER_K = ("nndsvd_loss", "nndsvd_n_iter", "nndsvd_converged", "pca_loss", "best_run")


def _stored_k_values(k_values: np.ndarray) -> list[int]:
    """The stored k values as ints: whole numbers >= 1, ascending, without repeats."""
    ks = k_values.tolist() if k_values.ndim == 1 else None
    if (
        not ks
        or k_values.dtype.kind not in "iu"
        or min(ks) < 1
        or any(b <= a for a, b in zip(ks, ks[1:], strict=False))
    ):
        raise damaged("NMF sweep", f"its k_values {k_values.tolist()} are not ascending k >= 1")
    return [int(k) for k in ks]


def _stored_entropy(value) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise damaged("NMF sweep", f"its entropy {str(value)!r} is not a whole number") from None


def _check_sweep(sweep: NMFSweep) -> None:
    """Raise ValueError (:func:`~.base.damaged`) unless the sweep's arrays fit together.

    Shapes agree with the k values and the axes, every number is finite, and every factor
    row sums to one (a lost zarr chunk reads back as zeros, silently).
    """
    what, a = "NMF sweep", sweep.arrays
    if not isinstance(sweep.axes, list) or not all(isinstance(x, dict) for x in sweep.axes):
        raise damaged(what, "its axes_json is not a list of axes")
    try:
        n_probe = int(np.prod(sweep.scan_shape, dtype=int))
        n_pixel = int(np.prod(sweep.pattern_shape, dtype=int))
    except (KeyError, TypeError, ValueError):
        raise damaged(what, "its axes_json lacks the axis sizes") from None
    n_k = len(a.k_values)
    for name in _PER_RUN:
        check_shape(what, name, getattr(a, name), (n_k, a.loss.shape[-1] if a.loss.ndim else 0))
    for name in _PER_K:
        check_shape(what, name, getattr(a, name), (n_k,))
    if sweep.navigation_mask is not None:
        check_shape(what, "navigation_mask", sweep.navigation_mask, sweep.scan_shape)
    if sweep.signal_mask is not None:
        check_shape(what, "signal_mask", sweep.signal_mask, sweep.pattern_shape)
    for k in (int(k) for k in a.k_values):
        check_shape(what, f"factors at k = {k}", a.factors[k], (k, n_pixel))
        check_shape(what, f"loadings at k = {k}", a.loadings[k], (n_probe, k))
        check_shape(what, f"runner-up factors at k = {k}", a.runner_up[k], (k, n_pixel))
        check_finite(what, {f"factors at k = {k}": a.factors[k]})
        check_finite(what, {f"loadings at k = {k}": a.loadings[k]})
        if np.any(a.loadings[k] < 0):
            raise damaged(what, f"loadings at k = {k} hold negative values")
        check_unit_rows(what, f"factors at k = {k}", a.factors[k], a.loadings[k])
        check_unit_rows(what, f"runner-up factors at k = {k}", a.runner_up[k])
    check_finite(what, {"best MSE": a.best_loss, "PCA MSE": a.pca_loss})
