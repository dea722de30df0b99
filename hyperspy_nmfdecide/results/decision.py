"""The number of components decided from a sweep, as a result: saved, stored and plotted.

The decision itself is made by :func:`hyperspy_nmfdecide.decide.evaluate`; a
:class:`KDecision` holds what it concluded in a form that saves without loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .._utils import optional_array
from .base import METADATA_DECISION, StoredResult, check_finite, damaged, stored_item, stored_json

__all__ = ["KDecision"]


@dataclass
class KDecision(StoredResult):
    """The number of components decided from a sweep, with the evidence of both levels.

    Attributes
    ----------
    k : int
        The decision.
    elbow_k : int
        Level 1: the elbow of the minimum-MSE curve.
    method : str
        ``"noise"`` (default), ``"elbow"`` or ``"iqa"``; see
        :func:`hyperspy_nmfdecide.decide.choose_k`.
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
    navigation_mask, signal_mask : numpy.ndarray or None
        The sweep's masks (True = excluded): the decision is of the data they leave.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(10, 10), pattern_size=32, random_state=0).signal
    >>> _ = s.nmf_sweep(range(1, 6), n_restarts=3, random_state=0)
    >>> decision = s.decide_k(n_sample=16)
    >>> decision.k in range(1, 6), decision.table[0]["k"]
    (True, 1)
    """

    metadata_path = METADATA_DECISION
    made_by = "decide_k"
    description = "k decision"

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
    navigation_mask: np.ndarray | None = None
    signal_mask: np.ndarray | None = None

    @classmethod
    def from_decision(cls, decision) -> KDecision:
        """The result of a :class:`hyperspy_nmfdecide.decide.Decision`, in its stored form."""
        spectrum = decision.spectrum
        return cls(
            k=decision.k,
            elbow_k=decision.elbow_k,
            method=decision.method,
            reason=decision.reason,
            k_values=np.asarray(decision.k_values),
            columns=decision.columns,
            spectrum={
                "squared_singular_values": spectrum.squared_singular_values,
                "noise_edge": spectrum.noise_edge,
                "noise_scale": spectrum.noise_scale,
                "shape": list(spectrum.shape),
            },
            suggested_range=decision.suggested_range,
            params=dict(decision.params),
            noise=spectrum.noise.to_dict(),
            fallback=decision.fallback,
        )

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
        from ..plot import plot_decision

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
        out |= self._mask_entries()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> KDecision:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            When ``d`` is not a stored decision, lacks an entry, or holds values that cannot
            be right (a k that was not swept, a table that does not fit the k values, NaN in
            the spectrum).
        """
        version = str(d.get("format", ""))
        if version not in ("hyperspy_nmfdecide.KDecision/1", "hyperspy_nmfdecide.KDecision/2"):
            raise ValueError(f"not a stored k decision (format {d.get('format')!r})")
        what = cls.description

        def item(name):
            return stored_item(d, name, what)

        # Version 1 assumed Poisson counts and called the tail correction "gain".
        names = stored_json(d, "column_names", what)
        columns = np.asarray(item("columns"))
        suggested = d.get("suggested_range")
        decision = cls(
            k=int(item("k")),
            elbow_k=int(item("elbow_k")),
            method=str(item("method")),
            reason=str(item("reason")),
            k_values=np.asarray(item("k_values")),
            columns={name: columns[i] for i, name in enumerate(names)},
            spectrum={
                "squared_singular_values": np.asarray(item("squared_singular_values")),
                "noise_edge": float(item("noise_edge")),
                "noise_scale": float(item("noise_scale" if "noise_scale" in d else "gain")),
                "shape": [int(v) for v in np.asarray(item("spectrum_shape"))],
            },
            suggested_range=None if suggested is None else tuple(int(v) for v in suggested),
            params=stored_json(d, "params_json", what),
            noise=stored_json(d, "noise_json", what) if "noise_json" in d else {},
            fallback=str(d.get("fallback", "")) or None,
            navigation_mask=optional_array(d.get("navigation_mask")),
            signal_mask=optional_array(d.get("signal_mask")),
        )
        _check_decision(decision, columns.shape, len(names))
        return decision

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


def _check_decision(decision: KDecision, columns_shape: tuple, n_names: int) -> None:
    """Raise ValueError (:func:`~.base.damaged`) unless the stored decision fits together.

    The decided and elbow k are swept k values, the table has one value per k for every
    named metric (NaN is allowed there: a metric can be undefined at a k), and the noise
    spectrum is finite.
    """
    what = KDecision.description
    ks = np.asarray(decision.k_values)
    if ks.ndim != 1 or not ks.size:
        raise damaged(what, f"its k_values {ks.tolist()} are not a list of swept k")
    for name in ("k", "elbow_k"):
        if getattr(decision, name) not in ks.tolist():
            raise damaged(what, f"its {name} = {getattr(decision, name)} is not among its k values")
    if tuple(columns_shape) != (n_names, ks.size):
        raise damaged(
            what,
            f"its table has shape {tuple(columns_shape)}, expected ({n_names} metrics, "
            f"{ks.size} k values)",
        )
    spectrum = decision.spectrum
    check_finite(
        what,
        {
            "squared_singular_values": spectrum["squared_singular_values"],
            "noise_edge": np.float64(spectrum["noise_edge"]),
            "noise_scale": np.float64(spectrum["noise_scale"]),
        },
    )
