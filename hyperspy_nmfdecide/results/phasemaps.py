"""Phase maps of one NMF factorisation, as a result: plain arrays plus the axes they need.

:meth:`PhaseMaps.from_sweep` reads the best factorisation at one k from an
:class:`~hyperspy_nmfdecide.results.NMFSweep` (and its neighbours k - 1, k + 1 for tracking) and
runs the numerics of :mod:`hyperspy_nmfdecide.phases`.  Like ``NMFSweep``, a ``PhaseMaps`` holds
arrays and the source signal's axes; calibrated HyperSpy signals are built on demand, and
``to_dict``/``from_dict``/``save``/``load`` are lossless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import phases
from .._utils import json_default, optional_array, to_jsonable
from ..phases import PhaseArrays
from .base import (
    METADATA_PHASE_MAPS,
    CalibratedResult,
    check_finite,
    check_shape,
    check_unit_rows,
    component_axis,
    damaged,
    stored_item,
    stored_json,
)

_logger = logging.getLogger(__name__)

__all__ = ["PhaseMaps"]

_FORMAT = "hyperspy_nmfdecide.PhaseMaps/1"
# PhaseArrays fields stored as arrays, and those stored as JSON.
_ARRAY_FIELDS = (
    "labels",
    "overlap",
    "masks",
    "thresholds",
    "rgb",
    "colours",
    "phase_sizes",
    "mean_loadings",
    "raw_means",
    "reconstructed_means",
)
_JSON_FIELDS = ("background_scores", "comparison", "tracking", "roles", "params")
# JSON fields added after the format was first released, and their value when absent.
_LATER_FIELDS = {"roles": []}


@dataclass
class PhaseMaps(CalibratedResult):
    """Phase maps of the best factorisation at one k (Cao et al.), with calibrated getters.

    Attributes
    ----------
    arrays : PhaseArrays
        Everything computed (see :class:`hyperspy_nmfdecide.phases.PhaseArrays`).
    factors : numpy.ndarray
        (k, n_pixel) the factors the maps were computed from.
    loadings : numpy.ndarray
        (n_probe, k) their loadings.
    axes : list of dict
        The source signal's axes (array order), for calibrated results.
    navigation_mask, signal_mask : numpy.ndarray or None
        The sweep's masks (True = excluded).
    params : dict
        k, threshold, min_size, background and the sweep's parameters.

    Plain arrays: :attr:`label_array`, :attr:`overlap_array`, :attr:`mask_array`, :attr:`rgb`,
    :attr:`raw_mean_array`, :attr:`reconstructed_mean_array`.  HyperSpy signals (built on
    demand with the source calibrations): :attr:`labels`, :attr:`overlap`,
    :attr:`component_masks`, :attr:`components`, :attr:`raw_means`,
    :attr:`reconstructed_means`.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> from hyperspy_nmfdecide.results import PhaseMaps
    >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
    ...                       random_state=0)
    >>> sweep = scan.signal.nmf_sweep(range(2, 3), n_restarts=2, random_state=0)
    >>> pm = PhaseMaps.from_sweep(sweep, 2, scan.signal.data.reshape(64, 256))
    >>> pm.raw_means.axes_manager.navigation_shape, pm.components.axes_manager.signal_shape
    ((1,), (16, 16))
    >>> back = PhaseMaps.load(pm.save("phases.npz"))
    >>> bool(np.array_equal(back.label_array, pm.label_array)), back.legend == pm.legend
    (True, True)
    """

    metadata_path = METADATA_PHASE_MAPS
    made_by = "phase_maps"
    description = "phase maps"

    arrays: PhaseArrays
    factors: np.ndarray
    loadings: np.ndarray
    axes: list[dict]
    navigation_mask: np.ndarray | None = None
    signal_mask: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    source_metadata: dict = field(default_factory=dict)

    @classmethod
    def from_sweep(
        cls,
        sweep,
        k: int,
        data,
        *,
        threshold: str | float = "otsu",
        min_size: int | None = None,
        background: int | str | None = "auto",
        chunk_rows: int | None = None,
        progress: Callable[[], None] | None = None,
    ) -> PhaseMaps:
        """Phase maps from the best factorisation at ``k`` of a sweep (Cao et al.).

        Thresholds each loading map into a component mask, recognises the background, labels every
        probe by the set of components present (overlaps included), follows the components to
        k - 1 and k + 1, and averages the raw patterns per phase to compare them with the
        reconstruction.  See :mod:`hyperspy_nmfdecide.phases` for each rule.

        Parameters
        ----------
        sweep : NMFSweep
            The sweep, as returned by ``s.nmf_sweep``.
        k : int
            A number of components in ``sweep.k_values``.
        data : numpy.ndarray or dask.array.Array
            The (n_probe, n_pixel) matrix the sweep was fit on (e.g.
            ``s.data.reshape(n_probe, n_pixel)``), float or integer.  It is read once, in chunks,
            and never modified; a dask array is never computed whole.  A HyperSpy signal of the
            same shape is also accepted (its data are viewed as that matrix).
        threshold : {"otsu", "otsu-level"} or float
            How loading maps become masks: Otsu's classes with a presence level and hysteresis
            (default), Otsu's level as it is, or a fraction in (0, 1) of each map's robust maximum
            (99.5th percentile).  See :func:`hyperspy_nmfdecide.phases.component_masks`.
        min_size : int or None
            Specks and holes smaller than this many probes are removed (default: 0.2 % of the
            kept probes, at least 4).
        background : "auto", int or None
            ``"auto"`` recognises the background component (present on >= 80 % of the kept probes
            above 10 % of its robust maximum, and diffuse); an int names it; None: no background.
            The background is kept out of the phases.
        chunk_rows : int or None
            Probes per block of the pass over ``data`` (default: about 32 MiB; dask data keep
            their own chunks unless this is given).
        progress : callable, optional
            Called with no argument after each of the
            :data:`~hyperspy_nmfdecide.phases.N_STAGES` stages (for a progress bar).

        Returns
        -------
        PhaseMaps

        Raises
        ------
        ValueError
            If ``k`` is not in the sweep (the message lists the available k), ``data`` does not
            match the sweep, the scan has a single row or column (``sweep``), ``threshold`` is
            not ``"otsu"``, ``"otsu-level"`` or in (0, 1), ``min_size`` is below 0 or above the
            number of probes, or ``background`` is not a component index.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(10, 10), pattern_size=16, n_crystals=1, dose=5000,
        ...                       random_state=0)
        >>> s = scan.signal
        >>> sweep = s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0)
        >>> pm = PhaseMaps.from_sweep(sweep, 2, s.data.reshape(100, 256))
        >>> crystal = 1 - pm.background_index  # the other of the two components
        >>> pm.legend == {1: (crystal,)}
        True
        >>> pm.labels.axes_manager.signal_shape == s.axes_manager.navigation_shape
        True
        """
        factors, loadings = sweep.best_factorisation(k)  # ValueError naming the available k
        k = int(k)
        scan_shape, pattern_shape = sweep.scan_shape, sweep.pattern_shape
        data = _as_matrix(data, scan_shape, pattern_shape)
        neighbours = {
            kk: sweep.best_factorisation(kk)
            for kk in (k - 1, k + 1)
            if kk in set(sweep.k_values.tolist())
        }
        arrays = phases.label_phases(
            factors,
            loadings,
            data,
            scan_shape,
            neighbours=neighbours,
            navigation_mask=sweep.navigation_mask,
            signal_mask=sweep.signal_mask,
            pattern_shape=pattern_shape if len(pattern_shape) == 2 else None,
            threshold=threshold,
            min_size=min_size,
            background=background,
            chunk_rows=chunk_rows,
            progress=progress,
        )
        return cls(
            arrays=arrays,
            factors=np.asarray(factors),
            loadings=np.asarray(loadings),
            axes=[dict(a) for a in sweep.axes],
            navigation_mask=sweep.navigation_mask,
            signal_mask=sweep.signal_mask,
            params={
                "k": k,
                "threshold": arrays.params["threshold"],
                "min_size": arrays.min_size,
                "background": background,
                "sweep": dict(sweep.params),
            },
            source_metadata=dict(sweep.source_metadata),
        )

    @property
    def data_fingerprint(self) -> dict | None:
        """The fingerprint of the data, as the sweep the maps come from recorded it."""
        return self.params.get("sweep", {}).get("data_fingerprint")

    # -- the numbers -------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.arrays.k)

    @property
    def legend(self) -> dict[int, tuple[int, ...]]:
        """Phase label -> component indices present (label 0, no phase, is not a key)."""
        return self.arrays.legend

    @property
    def n_phases(self) -> int:
        return self.arrays.n_phases

    @property
    def background_index(self) -> int | None:
        return self.arrays.background_index

    @property
    def tracking(self) -> dict:
        """Components followed to k - 1 and k + 1: stable / splits / merges, and overlaps.

        ``tracking["components"]`` holds one dict per component (match and similarity at each
        neighbour, ``stable``, ``splits_at_next``, ``merges_at_prev``);
        ``tracking["overlaps"]`` one per overlap phase (``holds_prev``, ``holds_next``).
        """
        return self.arrays.tracking

    @property
    def roles(self) -> list[dict]:
        """Per component: ``role`` (background, phase, variant, interaction) and ``parents``.

        A variant (the same crystal at another thickness, a phase split in two) counts as its
        phase in the labels; an interaction (spots only where two phases overlap: double
        diffraction, absorption) is left out of them.  See
        :func:`hyperspy_nmfdecide.components.component_roles`.
        """
        return self.arrays.roles

    @property
    def comparison(self) -> list[dict]:
        """Per phase: label, components, n_probes, ssim, psnr (dB), cosine, data_range."""
        return self.arrays.comparison

    @property
    def label_array(self) -> np.ndarray:
        """(ny, nx) int phase labels, 0 = no phase."""
        return self.arrays.labels

    @property
    def overlap_array(self) -> np.ndarray:
        """(ny, nx) bool, two or more components present."""
        return self.arrays.overlap

    @property
    def mask_array(self) -> np.ndarray:
        """(k, ny, nx) bool component masks."""
        return self.arrays.masks

    @property
    def rgb(self) -> np.ndarray:
        """(ny, nx, 3) colour composite of the non-background loading maps."""
        return self.arrays.rgb

    @property
    def raw_mean_array(self) -> np.ndarray:
        """(n_phases, ky, kx) mean raw pattern per phase."""
        return self.arrays.raw_means.reshape((self.n_phases,) + self.pattern_shape)

    @property
    def reconstructed_mean_array(self) -> np.ndarray:
        """(n_phases, ky, kx) mean reconstructed pattern per phase."""
        return self.arrays.reconstructed_means.reshape((self.n_phases,) + self.pattern_shape)

    @property
    def phase_sizes(self) -> np.ndarray:
        """(n_phases,) probes per phase."""
        return self.arrays.phase_sizes

    # -- calibrated signals ------------------------------------------------------------------
    def _title_of(self, what: str) -> str:
        return f"{what} (k={self.k}) of {self.source_title}"

    def _phase_axis(self) -> dict:
        if self.n_phases == 0:
            raise ValueError("no phase was found: every probe is background or excluded")
        return {
            "name": "Phase label",
            "size": self.n_phases,
            "offset": 1.0,
            "scale": 1.0,
            "units": "",
            "navigate": True,
        }

    @property
    def labels(self):
        """Phase label per probe (0 = no phase) as a Signal2D over the calibrated scan."""
        signal = self._scan_signal(self.label_array, self._title_of("Phase labels"))
        signal.metadata.set_item("Signal.quantity", "Phase label")
        return signal

    @property
    def overlap(self):
        """Overlap (two or more components present) as a boolean Signal2D over the scan."""
        return self._scan_signal(self.overlap_array, self._title_of("Phase overlap"))

    @property
    def component_masks(self):
        """The k component masks as a Signal2D stack (k | scan)."""
        return self._scan_signal(
            self.mask_array, self._title_of("Component masks"), component_axis(self.k)
        )

    @property
    def components(self):
        """The k factors as an ElectronDiffraction2D (k | ky, kx), each summing to one."""
        data = self.factors.reshape((self.k,) + self.pattern_shape)
        return self._pattern_signal(data, self._title_of("NMF components"), component_axis(self.k))

    @property
    def raw_means(self):
        """Mean raw pattern per phase, ElectronDiffraction2D (n_phases | ky, kx), label 1 first."""
        return self._pattern_signal(
            self.raw_mean_array, self._title_of("Raw mean per phase"), self._phase_axis()
        )

    @property
    def reconstructed_means(self):
        """Mean reconstructed pattern per phase, ElectronDiffraction2D (n_phases | ky, kx)."""
        return self._pattern_signal(
            self.reconstructed_mean_array,
            self._title_of("Reconstructed mean per phase"),
            self._phase_axis(),
        )

    # -- plotting ----------------------------------------------------------------------------
    def plot(self, fig=None, *, max_phases: int | None = None, index=None):
        """Label map with its legend, RGB composite, and raw / reconstructed mean pairs.

        With ``index`` (a :class:`~hyperspy_nmfdecide.results.ComponentIndex` at this k of
        the same data, from ``s.index_components``) the legend names each component's phase
        and zone axis.  See :func:`hyperspy_nmfdecide.plot.plot_phase_maps`.  Returns the
        Figure.
        """
        from ..plot import plot_phase_maps

        names = None
        if index is not None:
            index._check_phase_maps(self)
            names = index.component_names
        return plot_phase_maps(self, fig=fig, max_phases=max_phases, component_names=names)

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A flat dict of arrays, strings and numbers (fit for HyperSpy metadata)."""
        a = self.arrays
        out = {
            "format": _FORMAT,
            "k": int(a.k),
            "min_size": int(a.min_size),
            "background_index": -1 if a.background_index is None else int(a.background_index),
            "legend_json": json.dumps({str(label): list(m) for label, m in a.legend.items()}),
            "axes_json": json.dumps(self.axes, default=json_default),
            "pm_params_json": json.dumps(self.params, default=json_default),
            "source_metadata_json": json.dumps(self.source_metadata, default=json_default),
            "factors": np.asarray(self.factors),
            "loadings": np.asarray(self.loadings),
        }
        for name in _ARRAY_FIELDS:
            out[name] = np.asarray(getattr(a, name))
        for name in _JSON_FIELDS:
            out[f"{name}_json"] = json.dumps(getattr(a, name), default=json_default)
        out |= self._mask_entries()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> PhaseMaps:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            When ``d`` is not stored phase maps, lacks an entry, or holds arrays that cannot
            be right (shapes that disagree with k and the axes, NaN, factors that do not sum
            to one, labels outside the legend).
        """
        d = dict(d)
        if str(d.get("format")) != _FORMAT:
            raise ValueError(f"not stored phase maps (format {d.get('format')!r})")
        what = cls.description

        def item(name):
            return stored_item(d, name, what)

        try:
            legend = {
                int(label): tuple(int(j) for j in members)
                for label, members in stored_json(d, "legend_json", what).items()
            }
        except (AttributeError, TypeError, ValueError):
            raise damaged(what, "its legend_json is not a legend of phases") from None
        background = int(item("background_index"))
        arrays = PhaseArrays(
            k=int(item("k")),
            legend=legend,
            background_index=None if background < 0 else background,
            min_size=int(item("min_size")),
            **{name: np.asarray(item(name)) for name in _ARRAY_FIELDS},
            **{
                name: stored_json(d, f"{name}_json", what)
                if f"{name}_json" in d
                else _LATER_FIELDS[name]
                for name in _JSON_FIELDS
            },
        )
        pm = cls(
            arrays=arrays,
            factors=np.asarray(item("factors")),
            loadings=np.asarray(item("loadings")),
            axes=stored_json(d, "axes_json", what),
            navigation_mask=optional_array(d.get("navigation_mask")),
            signal_mask=optional_array(d.get("signal_mask")),
            params=stored_json(d, "pm_params_json", what),
            source_metadata=stored_json(d, "source_metadata_json", what),
        )
        _check_phase_maps(pm)
        return pm

    def summary(self) -> dict:
        """JSON-ready figures (non-finite numbers become None).

        Examples
        --------
        >>> import json
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
        ...                       random_state=0)
        >>> sweep = scan.signal.nmf_sweep(range(2, 3), n_restarts=2, random_state=0)
        >>> pm = PhaseMaps.from_sweep(sweep, 2, scan.signal.data.reshape(64, 256))
        >>> sorted(json.loads(json.dumps(pm.summary())))[:4]
        ['background_index', 'comparison', 'components', 'k']
        """
        tracking = self.tracking
        components = [
            {
                "component": row["component"],
                "background": row["component"] == self.background_index,
                "stable": row["stable"],
                "similarity_prev": row["similarity_prev"],
                "similarity_next": row["similarity_next"],
                "splits_at_next": None
                if row["splits_at_next"] is None
                else row["splits_at_next"]["parts"],
                "merges_at_prev": None
                if row["merges_at_prev"] is None
                else [row["merges_at_prev"]["partner"], row["merges_at_prev"]["into"]],
            }
            for row in tracking["components"]
        ]
        kept = (
            ~self.navigation_mask.reshape(self.label_array.shape)
            if (self.navigation_mask is not None)
            else np.ones(self.label_array.shape, dtype=bool)
        )
        return to_jsonable(
            {
                "k": self.k,
                "n_phases": self.n_phases,
                "background_index": self.background_index,
                "legend": {str(label): list(m) for label, m in self.legend.items()},
                "phase_sizes": self.phase_sizes.tolist(),
                "no_phase_probes": int(np.sum((self.label_array == 0) & kept)),
                "overlap_fraction": float(self.overlap_array[kept].mean()) if kept.any() else 0.0,
                "comparison": self.comparison,
                "components": components,
                "overlaps": tracking.get("overlaps", []),
                "params": self.params,
            }
        )


def _check_phase_maps(pm: PhaseMaps) -> None:
    """Raise ValueError (:func:`~.base.damaged`) unless the stored phase maps fit together.

    Shapes agree with k and the axes, the numbers are finite, the factors sum to one (a lost
    chunk reads back as zeros) and every label is 0 or a phase of the legend.
    """
    what, a = PhaseMaps.description, pm.arrays
    try:
        scan, pattern = pm.scan_shape, pm.pattern_shape
    except (KeyError, TypeError, ValueError):
        raise damaged(what, "its axes_json lacks the axis sizes") from None
    n_probe, n_pixel = int(np.prod(scan, dtype=int)), int(np.prod(pattern, dtype=int))
    k, n_phases = pm.k, pm.n_phases
    expected = {
        "factors": (pm.factors, (k, n_pixel)),
        "loadings": (pm.loadings, (n_probe, k)),
        "labels": (a.labels, scan),
        "overlap": (a.overlap, scan),
        "masks": (a.masks, (k, *scan)),
        "thresholds": (a.thresholds, (k,)),
        "phase_sizes": (a.phase_sizes, (n_phases,)),
        "raw_means": (a.raw_means, (n_phases, n_pixel)),
        "reconstructed_means": (a.reconstructed_means, (n_phases, n_pixel)),
    }
    for name, (values, shape) in expected.items():
        check_shape(what, name, values, shape)
    check_finite(
        what, {name: values for name, (values, _) in expected.items() if name != "thresholds"}
    )
    check_unit_rows(what, "factors", pm.factors, pm.loadings)
    if np.any(pm.loadings < 0):
        raise damaged(what, "loadings hold negative values")
    if sorted(pm.legend) != list(range(1, n_phases + 1)):
        raise damaged(what, f"its legend labels {sorted(pm.legend)} are not 1 to {n_phases}")
    if a.labels.size and not (0 <= a.labels.min() and a.labels.max() <= n_phases):
        raise damaged(what, f"labels outside 0 to {n_phases} (the phases of its legend)")


# -- plotting --------------------------------------------------------------------------------


def _as_matrix(data, scan_shape: tuple[int, ...], pattern_shape: tuple[int, ...]):
    """``data`` (a signal, or an array of the scan's shape) as the (n_probe, n_pixel) matrix."""
    if hasattr(data, "axes_manager"):  # a HyperSpy signal: view its data as the matrix
        data = data.data
    if len(scan_shape) != 2 or min(scan_shape) < 2:
        raise ValueError(
            "sweep: phase maps need a 2-D scan of at least 2 x 2 probes, but the sweep was "
            f"fit on a scan of shape {scan_shape}"
        )
    if hasattr(data, "shape") and tuple(data.shape) == (scan_shape + pattern_shape):
        n_pixel = int(np.prod(pattern_shape, dtype=int))
        data = data.reshape(scan_shape[0] * scan_shape[1], n_pixel)
    return data
