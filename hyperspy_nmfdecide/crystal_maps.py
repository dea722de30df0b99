"""Per-probe crystals from phase maps and a component index: stacks, orix CrystalMap, IPF colours.

Each probe's phase label names the components present there (``PhaseMaps.legend``); with the
component index each of them is a crystal (a phase and an orientation).  Overlap probes carry
every crystal present, ordered by their loadings at that probe (the strongest first).  These
functions take plain arrays; :class:`~hyperspy_nmfdecide.results.ComponentIndex` builds the
calibrated signals and the orix map from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import gcd

import numpy as np

__all__ = ["crystal_stack", "ipf_colours", "nearest_zone_axis", "to_crystal_map"]


def crystal_stack(
    labels: np.ndarray,
    legend: Mapping[int, Sequence[int]],
    loadings: np.ndarray,
    crystals: np.ndarray,
) -> np.ndarray:
    """The crystal components present at every probe, strongest first.

    Parameters
    ----------
    labels : numpy.ndarray
        (ny, nx) phase labels (0: none).
    legend : mapping of int to sequence of int
        Label -> the components present.
    loadings : numpy.ndarray
        (ny * nx, k) the components' loadings (they order the components of an overlap).
    crystals : numpy.ndarray
        (k,) bool, the components that are crystals (not the background).

    Returns
    -------
    numpy.ndarray
        (n_layers, ny, nx) int component indices, -1 where fewer crystals are present;
        ``n_layers`` is the most crystals at any probe (at least 1).

    Examples
    --------
    >>> labels = np.array([[1, 3], [2, 0]])
    >>> loadings = np.array([[5, 0, 1], [2, 3, 1], [0, 4, 1], [0, 0, 1]], float)
    >>> crystal_stack(labels, {1: (0,), 2: (1,), 3: (0, 1)}, loadings, np.array([1, 1, 0], bool))
    array([[[ 0,  1],
            [ 1, -1]],
    <BLANKLINE>
           [[-1,  0],
            [-1, -1]]])
    """
    labels = np.asarray(labels)
    loadings = np.asarray(loadings, dtype=float).reshape(labels.size, -1)
    present = np.zeros((labels.size, loadings.shape[1]), dtype=bool)
    for label, components in legend.items():
        kept = [c for c in components if crystals[c]]
        present[np.ix_(labels.ravel() == int(label), kept)] = True
    strength = np.where(present, loadings, -np.inf)
    order = np.argsort(-strength, axis=1, kind="stable")
    n_layers = max(1, int(present.sum(axis=1).max(initial=0)))
    stack = np.where(
        np.take_along_axis(present, order, axis=1)[:, :n_layers], order[:, :n_layers], -1
    )
    return stack.T.reshape((n_layers, *labels.shape))


def to_crystal_map(
    stack: np.ndarray,
    rotations,
    component_phase: np.ndarray,
    phase_list,
    *,
    scale: tuple[float, float],
    scan_unit: str,
    scores: np.ndarray,
):
    """An orix ``CrystalMap`` of the crystals at each probe.

    Parameters
    ----------
    stack : numpy.ndarray
        (n_layers, ny, nx) from :func:`crystal_stack`.
    rotations : orix.quaternion.Rotation
        (k,) each component's orientation.
    component_phase : numpy.ndarray
        (k,) each component's phase id (an index into ``phase_list``).
    phase_list : orix.crystal_map.PhaseList
    scale : (float, float)
        (y, x) step of the scan.
    scan_unit : str
    scores : numpy.ndarray
        (k,) each component's match score.

    Returns
    -------
    orix.crystal_map.CrystalMap
        One point per probe, ``rotations_per_point = n_layers``: the strongest crystal's phase is
        the point's phase (-1, not indexed, where none), every layer's rotation is kept (the
        identity where a layer is empty).  Properties: ``component`` (strongest crystal),
        ``score``, ``n_crystals`` and, per further layer j, ``component_j`` and ``phase_id_j``.
    """
    from orix.crystal_map import CrystalMap, create_coordinate_arrays
    from orix.quaternion import Rotation

    n_layers, ny, nx = stack.shape
    flat = stack.reshape(n_layers, -1).T  # (n, n_layers)
    quats = np.where(
        (flat >= 0)[..., None],
        rotations.data[np.clip(flat, 0, None)],
        Rotation.identity().data,
    )
    first = flat[:, 0]
    phase_id = np.where(first >= 0, np.asarray(component_phase)[np.clip(first, 0, None)], -1)
    coords, _ = create_coordinate_arrays((ny, nx), step_sizes=scale)
    prop = {
        "component": first,
        "score": np.where(first >= 0, np.asarray(scores)[np.clip(first, 0, None)], 0.0),
        "n_crystals": (flat >= 0).sum(axis=1),
    }
    for j in range(1, n_layers):
        prop[f"component_{j + 1}"] = flat[:, j]
        prop[f"phase_id_{j + 1}"] = np.where(
            flat[:, j] >= 0, np.asarray(component_phase)[np.clip(flat[:, j], 0, None)], -1
        )
    rotations_out = Rotation(quats if n_layers > 1 else quats[:, 0])
    return CrystalMap(
        rotations=rotations_out,
        phase_id=phase_id,
        x=coords["x"],
        y=coords["y"],
        phase_list=phase_list,
        prop=prop,
        scan_unit=scan_unit,
    )


def ipf_colours(orientations: Sequence, direction: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """The inverse-pole-figure colour (orix's TSL key) of each orientation.

    Parameters
    ----------
    orientations : sequence of orix.quaternion.Orientation
        One (1,) orientation per component, each with its phase's symmetry.
    direction : (float, float, float)
        The sample direction whose crystal direction is coloured (z: the beam).

    Returns
    -------
    numpy.ndarray
        (k, 3) RGB in [0, 1].

    Examples
    --------
    >>> from orix.quaternion import Orientation
    >>> from orix.quaternion.symmetry import Oh
    >>> ipf_colours([Orientation.from_euler([0, 0, 0], symmetry=Oh)]).round(2)  # [001] is red
    array([[1., 0., 0.]])
    """
    from orix.plot import IPFColorKeyTSL
    from orix.vector import Vector3d

    out = np.zeros((len(orientations), 3))
    for i, orientation in enumerate(orientations):
        key = IPFColorKeyTSL(orientation.symmetry.laue, direction=Vector3d(direction))
        out[i] = np.asarray(key.orientation2color(orientation)).reshape(-1, 3)[0]
    return out


def nearest_zone_axis(orientation, phase, max_index: int = 3) -> tuple[tuple[int, ...], float]:
    """The low-index zone axis [uvw] nearest to the beam, and its angle (degrees).

    Parameters
    ----------
    orientation : orix.quaternion.Orientation
        (1,) as ``ComponentIndex.orientations`` gives (crystal from lab, beam along z).
    phase : orix.crystal_map.Phase
    max_index : int
        Largest |u|, |v|, |w| tried.  Of equally near (symmetry-equivalent) axes, the one of
        smallest indices wins, then one without negative indices in ascending order ([011]
        rather than [110]).

    Examples
    --------
    >>> from orix.quaternion import Orientation
    >>> from hyperspy_nmfdecide.data import crystal_phase
    >>> fe = crystal_phase("Fe")
    >>> nearest_zone_axis(Orientation.from_euler([0, 0, 0], symmetry=fe.point_group), fe)
    ((0, 0, 1), 0.0)
    """
    from orix.vector import Miller, Vector3d

    grid = np.stack(np.meshgrid(*[np.arange(-max_index, max_index + 1)] * 3), -1).reshape(-1, 3)
    grid = np.array([g for g in grid if g.any() and gcd(*map(int, g)) == 1])
    beam = Miller(xyz=(orientation * Vector3d.zvector()).data, phase=phase)
    angles = np.degrees(
        beam.in_fundamental_sector().angle_with(
            Miller(uvw=grid, phase=phase).in_fundamental_sector()
        )
    )
    unordered = np.any(np.diff(grid, axis=1) < 0, axis=1)
    order = np.lexsort(
        (unordered, (grid < 0).sum(axis=1), np.abs(grid).sum(axis=1), np.round(angles, 3))
    )
    best = int(order[0])
    return tuple(int(u) for u in grid[best]), float(round(angles[best], 3))
