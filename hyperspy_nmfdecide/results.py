"""Result objects: plain arrays plus the axes they need, saved and loaded without loss.

Signals are built on demand with the source signal's calibrations (DESIGN §1), so a result
saved on its own (``NMFSweep.save``) or inside the signal's metadata gives back the same
calibrated factors, loadings and models.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .nmf.sweep import SweepArrays

_logger = logging.getLogger(__name__)

#: Where a sweep is kept in a signal's metadata.
METADATA_SWEEP = "NMFDecide.sweep"


class SavedAsNpz:
    """``save`` / ``load`` as a ``.npz`` file through the result's ``to_dict`` / ``from_dict``."""

    def save(self, path: str | Path) -> Path:
        """Write the result to a ``.npz`` file on its own; :meth:`load` reads it back."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        np.savez_compressed(path, **self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path):
        """Read a result written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as stored:
            return cls.from_dict({key: stored[key] for key in stored.files})


@dataclass
class NMFSweep(SavedAsNpz):
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

    def _best(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(factors (k, n_pixel), loadings (n_probe, k)) of the best run at k."""
        self._index(k)
        return self.arrays.factors[int(k)], self.arrays.loadings[int(k)]

    def _index(self, k: int) -> int:
        matches = np.flatnonzero(self.k_values == k)
        if not matches.size:
            raise ValueError(f"k={k} is not in the sweep; available k: {self.k_values.tolist()}")
        return int(matches[0])

    # -- calibrated signals ------------------------------------------------------------------
    @property
    def _nav_axes(self) -> list[dict]:
        return [dict(a, navigate=True) for a in self.axes if a["navigate"]]

    @property
    def _sig_axes(self) -> list[dict]:
        return [dict(a, navigate=False) for a in self.axes if not a["navigate"]]

    def _component_axis(self, k: int) -> dict:
        return {"name": "Component index", "size": k, "navigate": True}

    def get_factors(self, k: int):
        """The k component patterns of the best run, as a calibrated diffraction signal.

        Each pattern sums to one (masked and dark pixels are zero); components are ordered by
        integrated loading, descending.
        """
        from pyxem.signals import ElectronDiffraction2D

        factors, _ = self._best(k)
        sig_shape = tuple(a["size"] for a in self._sig_axes)
        data = factors.reshape((k,) + sig_shape)
        signal = ElectronDiffraction2D(
            data, axes=[self._component_axis(k)] + self._sig_axes, metadata=self._metadata()
        )
        signal.metadata.General.title = f"NMF factors (k={k}) of {self._title}"
        return signal

    def get_loadings(self, k: int):
        """The k loading maps of the best run, in counts, over the calibrated scan.

        Probes excluded by the navigation mask are zero.
        """
        import hyperspy.api as hs

        _, loadings = self._best(k)
        nav_shape = tuple(a["size"] for a in self._nav_axes)
        data = np.moveaxis(loadings, -1, 0).reshape((k,) + nav_shape)
        sig_axes = [dict(a, navigate=False) for a in self._nav_axes]
        signal = hs.signals.Signal2D(data, axes=[self._component_axis(k)] + sig_axes)
        signal.metadata.General.title = f"NMF loadings (k={k}) of {self._title}"
        return signal

    def get_model(self, k: int):
        """The reconstruction ``loadings @ factors`` at k, lazy when the source was lazy."""
        import hyperspy.api as hs

        factors, loadings = self._best(k)
        shape = tuple(a["size"] for a in self.axes)
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
        signal.metadata.General.title = f"NMF model (k={k}) of {self._title}"
        return signal

    @property
    def _title(self) -> str:
        return self.source_metadata.get("General", {}).get("title", "") or "signal"

    def _metadata(self) -> dict:
        return {k: v for k, v in self.source_metadata.items() if k != "General"}

    # -- HyperSpy decomposition --------------------------------------------------------------
    def write_learning_results(self, signal, k: int) -> None:
        """Store the best run at ``k`` as ``signal.learning_results`` (replacing any there).

        Afterwards HyperSpy's ``plot_decomposition_results()``,
        ``get_decomposition_model()`` and friends work on ``signal``.
        """
        if signal.data.shape != tuple(a["size"] for a in self.axes):
            raise ValueError(
                f"signal has shape {signal.data.shape}, but the sweep was run on "
                f"{tuple(a['size'] for a in self.axes)}"
            )
        factors, loadings = self._best(k)
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
        from .plot import plot_sweep

        return plot_sweep(self, ax=ax)

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A nested dict of arrays, strings and numbers (fit for HyperSpy metadata)."""
        a = self.arrays
        ks = [int(k) for k in a.k_values]
        out = {
            "format": "hyperspy_nmfdecide.NMFSweep/1",
            "params_json": json.dumps(self.params),
            "axes_json": json.dumps(self.axes, default=json_default),
            "source_metadata_json": json.dumps(self.source_metadata, default=json_default),
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


def optional_array(value):
    return None if value is None else np.asarray(value)


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "as_dictionary"):
        return value.as_dictionary()
    return str(value)


#: Where the k decision is kept in a signal's metadata.
METADATA_DECISION = "NMFDecide.decision"


@dataclass
class KDecision(SavedAsNpz):
    """The number of components decided from a sweep, with the evidence of both levels.

    Attributes
    ----------
    k : int
        The decision.
    elbow_k : int
        Level 1: the elbow of the minimum-MSE curve.
    method : str
        ``"noise"`` (default), ``"elbow"`` or ``"iqa"``; see
        :func:`hyperspy_nmfdecide.decide.decide`.
    reason : str
        One sentence to quote.
    k_values : numpy.ndarray
        The sweep's k values.
    columns : dict of str to numpy.ndarray
        Every metric per k (see :attr:`table`).
    spectrum : dict
        ``squared_singular_values``, ``noise_edge``, ``noise_scale`` and ``shape`` (rows,
        binned pixels) of the noise-scaled data.
    suggested_range : tuple of int or None
        Set when the sweep's k range does not bracket the decision.
    params : dict
        ``n_sample``, ``margin``, ``random_state``.
    noise : dict
        The noise measured between neighbouring probes
        (:meth:`hyperspy_nmfdecide.noise.NoiseModel.to_dict`): ``gain``, ``zero_variance``,
        ``offset``, ``readout_noise``, the mean–variance points and fit.
    fallback : str or None
        The rule that decided when the noise edge could not be trusted (``"stability"`` or
        ``"iqa"``; ``reason`` says why), else None.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(10, 10), pattern_size=32, random_state=0).signal
    >>> _ = s.nmf_sweep(range(1, 6), n_restarts=3, random_state=0)
    >>> decision = s.decide_k(n_sample=16)
    >>> decision.k in range(1, 6), decision.table[0]["k"]
    (True, 1)
    """

    k: int
    elbow_k: int
    method: str
    reason: str
    k_values: np.ndarray
    columns: dict[str, np.ndarray]
    spectrum: dict
    suggested_range: tuple[int, int] | None = None
    params: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)
    fallback: str | None = None

    @property
    def table(self) -> list[dict]:
        """One row per k: ``k`` and every metric (JSON-ready floats)."""
        rows = []
        for i, k in enumerate(self.k_values):
            row = {"k": int(k)}
            row |= {name: float(values[i]) for name, values in self.columns.items()}
            rows.append(row)
        return rows

    @property
    def noise_ratio(self) -> np.ndarray:
        """Squared singular values of the noise-scaled data over the noise edge, descending."""
        s = self.spectrum
        return np.asarray(s["squared_singular_values"]) / (s["noise_scale"] * s["noise_edge"])

    def plot(self, fig=None):
        """Level 1 and level 2 side by side, elbow and decision marked; returns the Figure."""
        from .plot import plot_decision

        return plot_decision(self, fig=fig)

    def to_dict(self) -> dict:
        """A nested dict of arrays, strings and numbers (fit for HyperSpy metadata)."""
        out = {
            "format": "hyperspy_nmfdecide.KDecision/2",
            "k": int(self.k),
            "elbow_k": int(self.elbow_k),
            "method": self.method,
            "reason": self.reason,
            "k_values": np.asarray(self.k_values),
            "column_names": json.dumps(list(self.columns)),
            "columns": np.stack([np.asarray(v, dtype=float) for v in self.columns.values()]),
            "squared_singular_values": np.asarray(self.spectrum["squared_singular_values"]),
            "noise_edge": float(self.spectrum["noise_edge"]),
            "noise_scale": float(self.spectrum["noise_scale"]),
            "spectrum_shape": np.asarray(self.spectrum["shape"]),
            "params_json": json.dumps(self.params),
            "noise_json": json.dumps(self.noise),
            "fallback": self.fallback or "",
        }
        if self.suggested_range is not None:
            out["suggested_range"] = np.asarray(self.suggested_range)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> KDecision:
        """Inverse of :meth:`to_dict`."""
        version = str(d.get("format", ""))
        if version not in ("hyperspy_nmfdecide.KDecision/1", "hyperspy_nmfdecide.KDecision/2"):
            raise ValueError(f"not a stored k decision (format {d.get('format')!r})")
        # Version 1 assumed Poisson counts and called the tail correction "gain".
        names = json.loads(str(d["column_names"]))
        columns = np.asarray(d["columns"])
        suggested = d.get("suggested_range")
        return cls(
            k=int(d["k"]),
            elbow_k=int(d["elbow_k"]),
            method=str(d["method"]),
            reason=str(d["reason"]),
            k_values=np.asarray(d["k_values"]),
            columns={name: columns[i] for i, name in enumerate(names)},
            spectrum={
                "squared_singular_values": np.asarray(d["squared_singular_values"]),
                "noise_edge": float(d["noise_edge"]),
                "noise_scale": float(d["noise_scale"] if "noise_scale" in d else d["gain"]),
                "shape": [int(v) for v in np.asarray(d["spectrum_shape"])],
            },
            suggested_range=None if suggested is None else tuple(int(v) for v in suggested),
            params=json.loads(str(d["params_json"])),
            noise=json.loads(str(d["noise_json"])) if "noise_json" in d else {},
            fallback=str(d.get("fallback", "")) or None,
        )

    def summary(self) -> dict:
        """JSON-ready decision, reason and table (for reports)."""
        return {
            "k": int(self.k),
            "elbow_k": int(self.elbow_k),
            "method": self.method,
            "fallback": self.fallback,
            "reason": self.reason,
            "suggested_range": self.suggested_range,
            "noise": {
                key: self.noise[key]
                for key in ("gain", "zero_variance", "offset", "readout_noise", "misfit")
                if key in self.noise
            },
            "table": self.table,
        }
