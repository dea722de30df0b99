"""The phase and orientation of every NMF component: :class:`ComponentIndex`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .._utils import json_default
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

_FORMAT = "hyperspy_nmfdecide.component_index/1"
_ARRAYS = (
    "best_phase",
    "euler",
    "score",
    "phase_reliability",
    "orientation_reliability",
    "candidate_phase",
    "candidate_euler",
    "candidate_score",
    "is_background",
)


@dataclass(repr=False)
class ComponentIndex(StoredResult):
    """Phase and orientation of each of the k NMF factors (made by ``s.index_components``).

    Attributes
    ----------
    k : int
        Number of components.
    phase_names : list of str
        The candidate phases, in the order given.
    space_groups : list of int
        Their space groups (their point groups give each orientation's symmetry).
    best_phase : numpy.ndarray
        (k,) int, index into ``phase_names`` of the best-scoring phase.
    euler : numpy.ndarray
        (k, 3) Bunge Euler angles (radians) of the best orientation, in the convention of
        diffsims' ``calculate_diffraction2d(rotation=...)``.
    score : numpy.ndarray
        (k,) correlation of the best template (unit-norm polar factor, 0 to ~1).
    phase_reliability : numpy.ndarray
        (k,) ``1 - best score of any other phase / score``: 0 when another phase fits as well.
    orientation_reliability : numpy.ndarray
        (k,) ``1 - second-best score of the best phase / score``.
    candidate_phase, candidate_euler, candidate_score : numpy.ndarray
        (k, n_phases * n_best) every phase's top ``n_best`` matches, best first.
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
    best_phase: np.ndarray
    euler: np.ndarray
    score: np.ndarray
    phase_reliability: np.ndarray
    orientation_reliability: np.ndarray
    candidate_phase: np.ndarray
    candidate_euler: np.ndarray
    candidate_score: np.ndarray
    is_background: np.ndarray
    params: dict = field(default_factory=dict)

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
        from orix.crystal_map import Phase

        return Phase(space_group=int(self.space_groups[i])).point_group

    @property
    def table(self) -> list[dict]:
        """One row per component: phase, Euler angles (degrees), score, reliabilities."""
        return [
            {
                "component": i,
                "phase": self.phase_names[int(self.best_phase[i])],
                "euler_deg": np.degrees(self.euler[i]).round(2).tolist(),
                "score": float(self.score[i]),
                "phase_reliability": float(self.phase_reliability[i]),
                "orientation_reliability": float(self.orientation_reliability[i]),
                "background": bool(self.is_background[i]),
            }
            for i in range(self.k)
        ]

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
        for name in _ARRAYS:
            out[name] = np.asarray(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ComponentIndex:
        """Inverse of :meth:`to_dict`; a ValueError when ``d`` is not a stored component index
        or its arrays disagree with k."""
        d = dict(d)
        if str(d.get("format")) != _FORMAT:
            raise ValueError(f"not a stored component index (format {d.get('format')!r})")
        what = cls.description
        k = int(stored_item(d, "k", what))
        arrays = {name: np.asarray(stored_item(d, name, what)) for name in _ARRAYS}
        names = stored_json(d, "phase_names_json", what)
        space_groups = np.asarray(stored_item(d, "space_groups", what)).astype(int).tolist()
        if len(space_groups) != len(names):
            raise damaged(what, "phase names and space groups differ in number")
        for name in ("best_phase", "score", "phase_reliability", "orientation_reliability"):
            check_shape(what, name, arrays[name], (k,))
        check_shape(what, "euler", arrays["euler"], (k, 3))
        check_shape(what, "is_background", arrays["is_background"], (k,))
        check_finite(what, {n: arrays[n] for n in ("euler", "score", "candidate_euler")})
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
        )
