"""Phase maps of one NMF factorisation: plain arrays plus the axes they need (DESIGN §1).

:func:`compute_phase_maps` reads the best factorisation at one k from an
:class:`~hyperspy_nmfdecide.results.NMFSweep` (and its neighbours k - 1, k + 1 for tracking),
runs the numerics of :mod:`hyperspy_nmfdecide.phases` and returns a :class:`PhaseMaps`.  Like
``NMFSweep``, a ``PhaseMaps`` holds arrays and the source signal's axes; calibrated HyperSpy
signals are built on demand, and ``to_dict``/``from_dict``/``save``/``load`` are lossless.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from . import phases
from .phases import PhaseArrays
from .results import SavedAsNpz, json_default, optional_array

_logger = logging.getLogger(__name__)

__all__ = ["METADATA_PHASE_MAPS", "PhaseMaps", "compute_phase_maps", "plot_phase_maps"]

#: Where phase maps may be kept in a signal's metadata.
METADATA_PHASE_MAPS = "NMFDecide.phase_maps"

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


def compute_phase_maps(
    sweep,
    k: int,
    data,
    *,
    threshold: str | float = "otsu",
    min_size: int | None = None,
    background: int | str | None = "auto",
    chunk_rows: int | None = None,
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
    >>> from hyperspy_nmfdecide.phasemaps import compute_phase_maps
    >>> scan = simulated_scan(nav_shape=(10, 10), pattern_size=16, n_crystals=1, dose=5000,
    ...                       random_state=0)
    >>> s = scan.signal
    >>> sweep = s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0)
    >>> pm = compute_phase_maps(sweep, 2, s.data.reshape(100, 256))
    >>> crystal = 1 - pm.background_index  # the other of the two components
    >>> pm.legend == {1: (crystal,)}
    True
    >>> pm.labels.axes_manager.signal_shape == s.axes_manager.navigation_shape
    True
    """
    if hasattr(data, "axes_manager"):  # a HyperSpy signal: view its data as the matrix below
        data = data.data
    sweep._index(k)  # ValueError naming the available k
    k = int(k)
    nav_axes = [a for a in sweep.axes if a["navigate"]]
    sig_axes = [a for a in sweep.axes if not a["navigate"]]
    scan_shape = tuple(int(a["size"]) for a in nav_axes)
    pattern_shape = tuple(int(a["size"]) for a in sig_axes)
    if len(scan_shape) != 2 or min(scan_shape) < 2:
        raise ValueError(
            f"sweep: phase maps need a 2-D scan of at least 2 x 2 probes, but the sweep was fit "
            f"on a scan of shape {scan_shape}"
        )
    n_probe = scan_shape[0] * scan_shape[1]
    n_pixel = int(np.prod(pattern_shape, dtype=int))
    if (
        hasattr(data, "shape")
        and len(data.shape) > 2
        and tuple(data.shape) == (scan_shape + pattern_shape)
    ):
        data = data.reshape(n_probe, n_pixel)
    factors, loadings = sweep._best(k)
    neighbours = {
        kk: sweep._best(kk) for kk in (k - 1, k + 1) if kk in set(sweep.k_values.tolist())
    }
    arrays = phases.phase_maps(
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
    )
    return PhaseMaps(
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


@dataclass
class PhaseMaps(SavedAsNpz):
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
    >>> from hyperspy_nmfdecide.phasemaps import PhaseMaps, compute_phase_maps
    >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
    ...                       random_state=0)
    >>> sweep = scan.signal.nmf_sweep(range(2, 3), n_restarts=2, random_state=0)
    >>> pm = compute_phase_maps(sweep, 2, scan.signal.data.reshape(64, 256))
    >>> pm.raw_means.axes_manager.navigation_shape, pm.components.axes_manager.signal_shape
    ((1,), (16, 16))
    >>> back = PhaseMaps.load(pm.save("phases.npz"))
    >>> bool(np.array_equal(back.label_array, pm.label_array)), back.legend == pm.legend
    (True, True)
    """

    arrays: PhaseArrays
    factors: np.ndarray
    loadings: np.ndarray
    axes: list[dict]
    navigation_mask: np.ndarray | None = None
    signal_mask: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    source_metadata: dict = field(default_factory=dict)

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
        return self.arrays.raw_means.reshape((self.n_phases,) + self._pattern_shape)

    @property
    def reconstructed_mean_array(self) -> np.ndarray:
        """(n_phases, ky, kx) mean reconstructed pattern per phase."""
        return self.arrays.reconstructed_means.reshape((self.n_phases,) + self._pattern_shape)

    @property
    def phase_sizes(self) -> np.ndarray:
        """(n_phases,) probes per phase."""
        return self.arrays.phase_sizes

    # -- calibrated signals ------------------------------------------------------------------
    @property
    def _nav_axes(self) -> list[dict]:
        return [dict(a, navigate=True) for a in self.axes if a["navigate"]]

    @property
    def _sig_axes(self) -> list[dict]:
        return [dict(a, navigate=False) for a in self.axes if not a["navigate"]]

    @property
    def _scan_as_signal_axes(self) -> list[dict]:
        return [dict(a, navigate=False) for a in self._nav_axes]

    @property
    def _pattern_shape(self) -> tuple[int, ...]:
        return tuple(int(a["size"]) for a in self._sig_axes)

    @property
    def _title(self) -> str:
        return self.source_metadata.get("General", {}).get("title", "") or "signal"

    def _metadata(self) -> dict:
        return {k: v for k, v in self.source_metadata.items() if k != "General"}

    def _scan_signal(self, data: np.ndarray, title: str, extra_axis: dict | None = None):
        import hyperspy.api as hs

        axes = ([extra_axis] if extra_axis else []) + self._scan_as_signal_axes
        signal = hs.signals.Signal2D(data, axes=axes)
        signal.metadata.General.title = f"{title} (k={self.k}) of {self._title}"
        return signal

    def _pattern_signal(self, data: np.ndarray, title: str, first_axis: dict):
        from pyxem.signals import ElectronDiffraction2D

        signal = ElectronDiffraction2D(
            data, axes=[first_axis] + self._sig_axes, metadata=self._metadata()
        )
        signal.metadata.General.title = f"{title} (k={self.k}) of {self._title}"
        return signal

    def _component_axis(self) -> dict:
        return {"name": "Component index", "size": self.k, "navigate": True}

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
        signal = self._scan_signal(self.label_array, "Phase labels")
        signal.metadata.set_item("Signal.quantity", "Phase label")
        return signal

    @property
    def overlap(self):
        """Overlap (two or more components present) as a boolean Signal2D over the scan."""
        return self._scan_signal(self.overlap_array, "Phase overlap")

    @property
    def component_masks(self):
        """The k component masks as a Signal2D stack (k | scan)."""
        return self._scan_signal(self.mask_array, "Component masks", self._component_axis())

    @property
    def components(self):
        """The k factors as an ElectronDiffraction2D (k | ky, kx), each summing to one."""
        data = self.factors.reshape((self.k,) + self._pattern_shape)
        return self._pattern_signal(data, "NMF components", self._component_axis())

    @property
    def raw_means(self):
        """Mean raw pattern per phase, ElectronDiffraction2D (n_phases | ky, kx), label 1 first."""
        return self._pattern_signal(self.raw_mean_array, "Raw mean per phase", self._phase_axis())

    @property
    def reconstructed_means(self):
        """Mean reconstructed pattern per phase, ElectronDiffraction2D (n_phases | ky, kx)."""
        return self._pattern_signal(
            self.reconstructed_mean_array, "Reconstructed mean per phase", self._phase_axis()
        )

    # -- plotting ----------------------------------------------------------------------------
    def plot(self, fig=None, *, max_phases: int | None = None):
        """Label map with its legend, RGB composite, and raw / reconstructed mean pairs.

        See :func:`plot_phase_maps`.  Returns the Figure.
        """
        return plot_phase_maps(self, fig=fig, max_phases=max_phases)

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
        for name in ("navigation_mask", "signal_mask"):
            if getattr(self, name) is not None:
                out[name] = np.asarray(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> PhaseMaps:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if str(d.get("format")) != _FORMAT:
            raise ValueError(f"not stored phase maps (format {d.get('format')!r})")
        legend = {
            int(label): tuple(int(j) for j in members)
            for label, members in json.loads(str(d["legend_json"])).items()
        }
        background = int(d["background_index"])
        arrays = PhaseArrays(
            k=int(d["k"]),
            legend=legend,
            background_index=None if background < 0 else background,
            min_size=int(d["min_size"]),
            **{name: np.asarray(d[name]) for name in _ARRAY_FIELDS},
            **{
                name: json.loads(str(d[f"{name}_json"]))
                if f"{name}_json" in d
                else _LATER_FIELDS[name]
                for name in _JSON_FIELDS
            },
        )
        return cls(
            arrays=arrays,
            factors=np.asarray(d["factors"]),
            loadings=np.asarray(d["loadings"]),
            axes=json.loads(str(d["axes_json"])),
            navigation_mask=optional_array(d.get("navigation_mask")),
            signal_mask=optional_array(d.get("signal_mask")),
            params=json.loads(str(d["pm_params_json"])),
            source_metadata=json.loads(str(d["source_metadata_json"])),
        )

    def summary(self) -> dict:
        """JSON-ready figures (non-finite numbers become None).

        Examples
        --------
        >>> import json
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
        ...                       random_state=0)
        >>> sweep = scan.signal.nmf_sweep(range(2, 3), n_restarts=2, random_state=0)
        >>> pm = compute_phase_maps(sweep, 2, scan.signal.data.reshape(64, 256))
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
        return _finite(
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


# -- plotting --------------------------------------------------------------------------------
def _extent(axes: list[dict]) -> list[float] | None:
    """imshow extent (left, right, bottom, top) of a (y, x) pair of axis dicts."""
    if len(axes) != 2:
        return None
    y, x = axes
    sx, ox = float(x.get("scale", 1.0)), float(x.get("offset", 0.0))
    sy, oy = float(y.get("scale", 1.0)), float(y.get("offset", 0.0))
    return [ox - sx / 2, ox + sx * (x["size"] - 0.5), oy + sy * (y["size"] - 0.5), oy - sy / 2]


def _axis_label(axis: dict) -> str:
    units = axis.get("units")
    name = axis.get("name") or ""
    return f"{name} ({units})" if units and str(units) != "<undefined>" else name


def label_colours(pm: PhaseMaps) -> np.ndarray:
    """(n_phases + 1, 3) colour of each label: black for 0, the component colour for a
    single component, the mean of the members' colours for an overlap."""
    colours = np.zeros((pm.n_phases + 1, 3))
    for label, members in pm.legend.items():
        colours[label] = np.mean(pm.arrays.colours[list(members)], axis=0)
    return colours


def plot_phase_maps(pm: PhaseMaps, fig=None, *, max_phases: int | None = None):
    """Label map with a legend, RGB composite, and raw / reconstructed mean pattern pairs.

    Parameters
    ----------
    pm : PhaseMaps
        The result of :func:`compute_phase_maps`.
    fig : matplotlib.figure.Figure, optional
        Where to draw (its existing axes are kept); a new figure when None.
    max_phases : int or None
        Show the pattern pairs of the first this many phases (all when None).

    Returns
    -------
    matplotlib.figure.Figure
        Its axes, in order: the label map (overlaps hatched; legend "label: components"),
        the RGB composite, then per phase shown the raw mean and the reconstructed mean
        (``2 + 2 * n_shown`` axes).  Patterns are drawn on a
        shared symmetric-log scale per pair; the comparison figures are in the titles.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, SymLogNorm
    from matplotlib.patches import Patch

    n_shown = pm.n_phases if max_phases is None else max(0, min(int(max_phases), pm.n_phases))
    n_rows = 1 + math.ceil(n_shown / 2)
    if fig is None:
        fig = plt.figure(figsize=(9.0, 3.6 + 2.3 * (n_rows - 1)), layout="constrained")
    grid = fig.add_gridspec(n_rows, 4, height_ratios=[1.6] + [1.0] * (n_rows - 1))
    extent = _extent(pm._nav_axes)
    nav = pm._nav_axes

    ax = fig.add_subplot(grid[0, :2])
    colours = label_colours(pm)
    ax.imshow(
        pm.label_array,
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=pm.n_phases + 0.5,
        interpolation="nearest",
        extent=extent,
    )
    if pm.overlap_array.any():  # hatch the overlaps: their blended colours are close
        ax.contourf(
            pm.overlap_array.astype(float),
            levels=[0.5, 1.5],
            colors="none",
            hatches=["////"],
            origin="upper",
            extent=extent,
        )
    handles = [
        Patch(
            facecolor=colours[label],
            hatch="////" if len(members) > 1 else None,
            label=f"{label}: C{'+C'.join(str(j) for j in members)}"
            + (" (overlap)" if len(members) > 1 else ""),
        )
        for label, members in pm.legend.items()
    ]
    handles.append(Patch(facecolor=colours[0], label="0: no phase"))
    ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"Phase labels (k={pm.k}, background: {pm.background_index})")
    if len(nav) == 2:
        ax.set_xlabel(_axis_label(nav[1]))
        ax.set_ylabel(_axis_label(nav[0]))

    ax = fig.add_subplot(grid[0, 2:])
    ax.imshow(pm.rgb, interpolation="nearest", extent=extent)
    ax.set_title("Components (RGB composite)")
    if len(nav) == 2:
        ax.set_xlabel(_axis_label(nav[1]))

    raw, rec = pm.raw_mean_array, pm.reconstructed_mean_array
    if pm.signal_mask is not None:  # masked pixels are not fitted: show them as the model does
        raw = np.where(np.asarray(pm.signal_mask).reshape(raw.shape[1:]), 0.0, raw)
    for i in range(n_shown):
        label = i + 1
        row = pm.comparison[i]
        vmax = float(max(raw[i].max(initial=0), rec[i].max(initial=0), 1e-12))
        norm = SymLogNorm(linthresh=max(vmax * 1e-3, 1e-12), vmin=0, vmax=vmax)
        r, c = 1 + i // 2, 2 * (i % 2)
        for j, (image, name) in enumerate(((raw[i], "raw"), (rec[i], "NMF"))):
            ax = fig.add_subplot(grid[r, c + j])
            ax.imshow(image, cmap="inferno", norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            members = "+".join(str(m) for m in pm.legend[label])
            if j == 0:
                ax.set_title(f"phase {label} ({members}) {name}", fontsize="small")
            else:
                ax.set_title(
                    f"{name}: SSIM {row['ssim']:.3f}, {row['psnr']:.1f} dB", fontsize="small"
                )
    return fig


# -- helpers ---------------------------------------------------------------------------------
def _finite(value):
    """Replace NaN and infinities by None, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
