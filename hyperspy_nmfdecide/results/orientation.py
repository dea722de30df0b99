"""The phase and orientation of every NMF component: :class:`ComponentIndex`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import numpy as np

from .. import crystal_maps
from .. import orientation as om
from .._utils import json_default
from ..orientation import IndexArrays
from .base import (
    METADATA_COMPONENT_INDEX,
    StoredResult,
    check_finite,
    check_shape,
    damaged,
    stored_item,
    stored_json,
)

__all__ = ["ComponentIndex"]

_FORMAT = "hyperspy_nmfdecide.component_index/2"
#: Format 1 (before refinement) had no grid_euler nor in_plane_deg.
_FORMAT_1 = "hyperspy_nmfdecide.component_index/1"
_ARRAYS = tuple(f.name for f in fields(IndexArrays)) + ("is_background",)
#: Colour of each candidate phase in orix maps (distinct, in the order given).
_PHASE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


@dataclass(repr=False)
class ComponentIndex(IndexArrays, StoredResult):
    """Phase and orientation of each of the k NMF factors (made by ``s.index_components``).

    The per-component arrays are those of
    :class:`~hyperspy_nmfdecide.orientation.IndexArrays` (``best_phase``, ``euler``, ``score``,
    ``phase_reliability``, ``orientation_reliability``, the candidates, ``grid_euler``,
    ``in_plane_deg``); ``euler`` holds Bunge angles (radians) in the convention of diffsims'
    ``calculate_diffraction2d(rotation=...)``.

    Attributes
    ----------
    k : int
        Number of components.
    phase_names : list of str
        The candidate phases, in the order given.
    space_groups : list of int
        Their space groups (their point groups give each orientation's symmetry).
    is_background : numpy.ndarray
        (k,) bool.  The rule in ``params["background_rule"]``: ``"phase_maps"`` when stored
        phase maps at this k name a background component (that one), else ``"score"``: every
        component whose best score is below ``params["background_score"]``.
    params : dict
        The parameters of the matching (beam energy, resolution, radial range, ...) and the
        sweep's ``data_fingerprint``.

    Examples
    --------
    >>> idx = ComponentIndex(
    ...     k=1, phase_names=["Fe"], space_groups=[229], best_phase=np.array([0]),
    ...     euler=np.zeros((1, 3)), score=np.array([0.3]), phase_reliability=np.ones(1),
    ...     orientation_reliability=np.array([0.1]), candidate_phase=np.zeros((1, 2), int),
    ...     candidate_euler=np.zeros((1, 2, 3)), candidate_score=np.array([[0.3, 0.27]]),
    ...     grid_euler=np.zeros((1, 3)), in_plane_deg=np.array([0.5]),
    ...     is_background=np.array([False]))
    >>> idx.best_phase_names, idx.orientations[0].shape
    (['Fe'], (1,))
    >>> ComponentIndex.from_dict(idx.to_dict()).table[0]["phase"]
    'Fe'
    """

    metadata_path = METADATA_COMPONENT_INDEX
    made_by = "index_components"
    description = "component index"

    k: int
    phase_names: list[str]
    space_groups: list[int]
    is_background: np.ndarray
    params: dict = field(default_factory=dict)
    lattices: list[list[float]] | None = None

    @classmethod
    def from_sweep(
        cls,
        sweep,
        phases,
        k: int,
        *,
        beam_energy: float | None = None,
        sig_axes: list[dict] | None = None,
        n_best: int = 3,
        resolution: float = om.DEFAULT_RESOLUTION,
        refine: bool = True,
        background_index: int | None = None,
        background_score: float = om.BACKGROUND_SCORE,
    ) -> ComponentIndex:
        """Index the factors at ``k`` of a sweep (what ``s.index_components`` runs).

        Parameters
        ----------
        sweep : NMFSweep
            Its signal axes must be in Å⁻¹ with 0 on the direct beam.
        phases : list of orix.crystal_map.Phase or CIF paths
        k : int
            A swept number of components.
        beam_energy : float, optional
            kV; default: the sweep's source metadata
            (``Acquisition_instrument.TEM.beam_energy``).
        sig_axes : list of dict, optional
            The detector calibration (HyperSpy axis dicts, array order: y then x), when it
            changed since the sweep (e.g. the signal was calibrated afterwards); default: the
            sweep's.
        n_best, resolution, refine, background_score
            As ``s.index_components``.
        background_index : int, optional
            The background component (from phase maps at ``k``); else the score rule.

        Returns
        -------
        ComponentIndex
        """
        if int(k) not in sweep.k_values.tolist():
            raise ValueError(f"k={k} was not swept (swept: {sweep.k_values.tolist()})")
        phase_list = om.as_phases(phases)
        if beam_energy is None:
            beam_energy = om.beam_energy_of(sweep.source_metadata)
        sig_axes = sweep.sig_axes if sig_axes is None else sig_axes
        radial = om.reciprocal_range(sig_axes)
        factors = sweep.get_factors(int(k))
        for axis, calibration in zip(factors.axes_manager.signal_axes, reversed(sig_axes)):
            axis.scale, axis.offset = calibration["scale"], calibration["offset"]
            axis.units = calibration.get("units")
        found = om.index_factor_signal(
            factors, phase_list, beam_energy, radial, n_best=n_best, resolution=resolution
        )
        is_bg, rule = om.background_components(found.score, background_index, background_score)
        if refine:
            found = om.refine_factors(factors, phase_list, found, beam_energy, radial, skip=is_bg)
        params = {
            "beam_energy": float(beam_energy),
            "radial_range": list(radial),
            "n_best": int(n_best),
            "resolution": float(resolution),
            "refine": bool(refine),
            "background_rule": rule,
            "background_score": float(background_score),
            "data_fingerprint": sweep.data_fingerprint,
        }
        return cls(
            **vars(found),
            k=int(k),
            phase_names=[p.name for p in phase_list],
            space_groups=[int(p.space_group.number) for p in phase_list],
            is_background=is_bg,
            params=params,
            lattices=[_lattice_of(p) for p in phase_list],
        )

    @property
    def best_phase_names(self) -> list[str]:
        """The best phase's name of every component."""
        return [self.phase_names[int(i)] for i in self.best_phase]

    @property
    def rotations(self):
        """The best orientations as one ``orix.quaternion.Rotation`` of shape (k,)."""
        from orix.quaternion import Rotation

        return Rotation.from_euler(self.euler)

    @property
    def orientations(self) -> list:
        """Per component, an ``orix.quaternion.Orientation`` (shape (1,)) with the point group
        of its best phase (one list: the components' phases may differ in symmetry)."""
        from orix.quaternion import Orientation

        return [
            Orientation.from_euler(e[None], symmetry=self._point_group(int(p)))
            for e, p in zip(self.euler, self.best_phase)
        ]

    def _point_group(self, i: int):
        return self.phase(i).point_group

    def phase(self, i: int):
        """Candidate phase ``i`` as an orix ``Phase`` (name, space group and lattice; no atoms).

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import crystal_phase
        >>> idx = ComponentIndex(**_example_fields(), lattices=[[2.87, 2.87, 2.87, 90, 90, 90]])
        >>> idx.phase(0).name, idx.phase(0).point_group.name
        ('Fe', 'm-3m')
        """
        from diffpy.structure import Lattice, Structure
        from orix.crystal_map import Phase

        lattice = None if self.lattices is None else Lattice(*self.lattices[i])
        return Phase(
            name=self.phase_names[i],
            space_group=int(self.space_groups[i]),
            structure=Structure(lattice=lattice) if lattice is not None else None,
            color=_PHASE_COLOURS[i % len(_PHASE_COLOURS)],
        )

    @property
    def phase_list(self):
        """The candidate phases as an orix ``PhaseList`` (ids 0, 1, ... in the given order)."""
        from orix.crystal_map import PhaseList

        return PhaseList([self.phase(i) for i in range(len(self.phase_names))])

    @property
    def zone_axes(self) -> list[tuple[tuple[int, ...], float] | None]:
        """Per component, the low-index zone axis [uvw] nearest to the beam and its angle
        (degrees); None for the background.  See
        :func:`~hyperspy_nmfdecide.crystal_maps.nearest_zone_axis`."""
        return [
            None
            if self.is_background[i]
            else crystal_maps.nearest_zone_axis(
                self.orientations[i], self.phase(int(self.best_phase[i]))
            )
            for i in range(self.k)
        ]

    @property
    def runner_up_phases(self) -> list[str | None]:
        """Per component the best-scoring other phase when the phase is ambiguous (phase
        reliability below :data:`~hyperspy_nmfdecide.orientation.AMBIGUOUS_PHASE`), else None
        (and None for the background).
        """
        out: list[str | None] = []
        for i in range(self.k):
            others = [int(p) for p in self.candidate_phase[i] if int(p) != int(self.best_phase[i])]
            ambiguous = self.phase_reliability[i] < om.AMBIGUOUS_PHASE and others
            ambiguous = ambiguous and not self.is_background[i]
            out.append(self.phase_names[others[0]] if ambiguous else None)
        return out

    @property
    def component_names(self) -> list[str]:
        """Per component a short name for legends: ``"C1 Fe [011]"``, ``"C0 background"``;
        an ambiguous phase with its runner-up: ``"C2 Si|Au [001]"``."""
        names = []
        for i, (zone, other) in enumerate(zip(self.zone_axes, self.runner_up_phases)):
            if zone is None:
                names.append(f"C{i} background")
                continue
            uvw = "".join(str(u) if u >= 0 else f"-{-u}" for u in zone[0])
            phase = self.phase_names[int(self.best_phase[i])] + (f"|{other}" if other else "")
            names.append(f"C{i} {phase} [{uvw}]")
        return names

    @property
    def table(self) -> list[dict]:
        """One row per component: phase, zone axis, Euler angles (degrees), scores,
        reliabilities."""
        zones, runner_up = self.zone_axes, self.runner_up_phases
        return [
            {
                "component": i,
                "phase": self.phase_names[int(self.best_phase[i])],
                "zone_axis": None if zones[i] is None else list(zones[i][0]),
                "off_zone_deg": None if zones[i] is None else zones[i][1],
                "euler_deg": np.degrees(self.euler[i]).round(2).tolist(),
                "score": float(self.score[i]),
                "in_plane_deg": float(self.in_plane_deg[i]),
                "phase_reliability": float(self.phase_reliability[i]),
                "ambiguous_with": runner_up[i],
                "orientation_reliability": float(self.orientation_reliability[i]),
                "background": bool(self.is_background[i]),
            }
            for i in range(self.k)
        ]

    # -- per-probe maps ----------------------------------------------------------------------
    def crystal_stack(self, phase_maps) -> np.ndarray:
        """The crystal components present at every probe, strongest first.

        Parameters
        ----------
        phase_maps : PhaseMaps
            Phase maps at this k of the same data (``s.phase_maps(k)``).

        Returns
        -------
        numpy.ndarray
            (n_layers, *scan_shape) int components, -1 where fewer crystals are present
            (:func:`~hyperspy_nmfdecide.crystal_maps.crystal_stack`).
        """
        self._check_phase_maps(phase_maps)
        return crystal_maps.crystal_stack(
            phase_maps.label_array,
            phase_maps.legend,
            phase_maps.loadings,
            ~np.asarray(self.is_background, dtype=bool),
        )

    def crystal_map(self, phase_maps):
        """The crystals at every probe as an orix ``CrystalMap`` (calibrated scan steps).

        Each point's phase is that of its strongest crystal; overlap probes keep every
        crystal present (``rotations_per_point`` = the most crystals at any probe; properties
        ``component``, ``score``, ``n_crystals``, ``component_2``, ``phase_id_2``, ...).  orix
        writes it to ``.ang`` or ``.h5`` (``orix.io.save``), colours it with its IPF keys
        and measures misorientations on it.

        Parameters
        ----------
        phase_maps : PhaseMaps
            Phase maps at this k of the same data.
        """
        stack = self.crystal_stack(phase_maps)
        if stack.ndim != 3:
            raise ValueError("crystal_map needs a 2-D scan (the CrystalMap is a 2-D map)")
        y_axis, x_axis = phase_maps.nav_axes
        return crystal_maps.to_crystal_map(
            stack,
            self.rotations,
            self.best_phase,
            self.phase_list,
            scale=(float(y_axis.get("scale", 1.0)), float(x_axis.get("scale", 1.0))),
            scan_unit=str(x_axis.get("units") or "px"),
            scores=self.score,
        )

    def ipf_map(self, phase_maps, direction=(0.0, 0.0, 1.0)):
        """Inverse-pole-figure colours of the strongest crystal at every probe.

        Parameters
        ----------
        phase_maps : PhaseMaps
            Phase maps at this k of the same data.
        direction : (float, float, float)
            The sample direction (z: the beam) whose crystal direction sets the colour
            (orix's TSL key of each phase's Laue group).

        Returns
        -------
        hyperspy.signals.Signal2D
            RGB (``rgb8``) image over the calibrated scan; black where no crystal is.
        """
        stack = self.crystal_stack(phase_maps)
        colours = crystal_maps.ipf_colours(self.orientations, direction)
        first = stack[0]
        rgb = np.where((first >= 0)[..., None], colours[np.clip(first, 0, None)], 0.0)
        import hyperspy.api as hs

        # HyperSpy makes RGB images from a 1-D signal of 3 channels over the image's axes.
        channels = {"name": "RGB", "size": 3, "navigate": False}
        signal = hs.signals.Signal1D(
            np.round(rgb * 255).astype(np.uint8), axes=[*phase_maps.nav_axes, channels]
        )
        signal.change_dtype("rgb8")
        signal.metadata.General.title = f"IPF-{_direction_name(direction)} colours"
        return signal

    def plot(self, phase_maps, fig=None, direction=(0.0, 0.0, 1.0)):
        """Crystal map (legend: phase and zone axis of each crystal) and IPF map side by side.

        See :func:`hyperspy_nmfdecide.plot.plot_orientation_maps`.  Returns the Figure.
        """
        from ..plot import plot_orientation_maps

        return plot_orientation_maps(self, phase_maps, fig=fig, direction=direction)

    def _check_phase_maps(self, phase_maps) -> None:
        """Phase maps of this k and of the same data, or a ValueError saying which differs."""
        if int(phase_maps.k) != int(self.k):
            raise ValueError(
                f"phase_maps are at k={phase_maps.k}, the component index at k={self.k}: "
                f"use s.phase_maps({self.k})"
            )
        mine = self.params.get("data_fingerprint")
        theirs = phase_maps.data_fingerprint
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError("phase_maps were computed from other data than this component index")

    def __repr__(self) -> str:
        found = ", ".join(
            "bg" if bg else name for name, bg in zip(self.best_phase_names, self.is_background)
        )
        return f"<ComponentIndex, k={self.k}: {found}>"

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A flat dict of arrays, strings and numbers (fit for HyperSpy metadata)."""
        out = {
            "format": _FORMAT,
            "k": int(self.k),
            "phase_names_json": json.dumps(list(self.phase_names)),
            "space_groups": np.asarray(self.space_groups, dtype=int),
            "params_json": json.dumps(self.params, default=json_default),
        }
        if self.lattices is not None:
            out["lattices"] = np.asarray(self.lattices, dtype=float)
        for name in _ARRAYS:
            out[name] = np.asarray(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ComponentIndex:
        """Inverse of :meth:`to_dict`; a ValueError when ``d`` is not a stored component index
        or its arrays disagree with k."""
        d = dict(d)
        if str(d.get("format")) == _FORMAT_1:
            d.setdefault("grid_euler", d.get("euler"))
            d.setdefault("in_plane_deg", np.zeros(np.shape(d.get("score"))))
        elif str(d.get("format")) != _FORMAT:
            raise ValueError(f"not a stored component index (format {d.get('format')!r})")
        what = cls.description
        k = int(stored_item(d, "k", what))
        arrays = {name: np.asarray(stored_item(d, name, what)) for name in _ARRAYS}
        names = stored_json(d, "phase_names_json", what)
        space_groups = np.asarray(stored_item(d, "space_groups", what)).astype(int).tolist()
        if len(space_groups) != len(names):
            raise damaged(what, "phase names and space groups differ in number")
        for name in (
            "best_phase",
            "score",
            "phase_reliability",
            "orientation_reliability",
            "in_plane_deg",
        ):
            check_shape(what, name, arrays[name], (k,))
        check_shape(what, "euler", arrays["euler"], (k, 3))
        check_shape(what, "grid_euler", arrays["grid_euler"], (k, 3))
        check_shape(what, "is_background", arrays["is_background"], (k,))
        check_finite(
            what, {n: arrays[n] for n in ("euler", "grid_euler", "score", "candidate_euler")}
        )
        if arrays["best_phase"].size and not (0 <= arrays["best_phase"].min()) & (
            arrays["best_phase"].max() < len(names)
        ):
            raise damaged(what, "best_phase is outside the phases")
        return cls(
            k=k,
            phase_names=list(names),
            space_groups=space_groups,
            **{
                **arrays,
                "best_phase": arrays["best_phase"].astype(int),
                "candidate_phase": arrays["candidate_phase"].astype(int),
                "is_background": arrays["is_background"].astype(bool),
            },
            params=stored_json(d, "params_json", what),
            lattices=_stored_lattices(d, len(names), what),
        )


def _stored_lattices(d: dict, n_phases: int, what: str) -> list[list[float]] | None:
    """The phases' lattice parameters (None in a format-1 file, which had none)."""
    if "lattices" not in d:
        return None
    lattices = np.asarray(d["lattices"], dtype=float)
    check_shape(what, "lattices", lattices, (n_phases, 6))
    check_finite(what, {"lattices": lattices})
    return lattices.tolist()


def _lattice_of(phase) -> list[float]:
    """a, b, c (Å) and α, β, γ (degrees) of an orix phase."""
    lattice = phase.structure.lattice
    return [float(v) for v in (lattice.a, lattice.b, lattice.c)] + [
        float(v) for v in (lattice.alpha, lattice.beta, lattice.gamma)
    ]


def _direction_name(direction) -> str:
    """``"z"`` for (0, 0, 1), else the vector."""
    names = {(1.0, 0.0, 0.0): "x", (0.0, 1.0, 0.0): "y", (0.0, 0.0, 1.0): "z"}
    return names.get(tuple(float(v) for v in direction), str(list(direction)))


def _example_fields() -> dict:
    """A one-component index, for the docstring examples."""
    return dict(
        k=1,
        phase_names=["Fe"],
        space_groups=[229],
        best_phase=np.array([0]),
        euler=np.zeros((1, 3)),
        score=np.array([0.3]),
        phase_reliability=np.ones(1),
        orientation_reliability=np.array([0.1]),
        candidate_phase=np.zeros((1, 2), int),
        candidate_euler=np.zeros((1, 2, 3)),
        candidate_score=np.array([[0.3, 0.27]]),
        grid_euler=np.zeros((1, 3)),
        in_plane_deg=np.array([0.4]),
        is_background=np.array([False]),
    )
