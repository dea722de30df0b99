"""The ground truth of a simulated scan, with the scan: :class:`SimulatedScan`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .detector import _detector_mean

if TYPE_CHECKING:
    from ..signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D
    from .physics import _Physics

__all__ = ["SimulatedScan", "_labels"]


@dataclass(repr=False)
class SimulatedScan:
    """A simulated 4D-STEM scan and the ground truth it was drawn from.

    Attributes
    ----------
    signal : NMFDecideDiffraction2D or LazyNMFDecideDiffraction2D
        Poisson counts, calibrated (navigation ``x``, ``y`` in nm; signal ``kx``, ``ky`` in
        Å⁻¹ with 0 at the detector centre); detector units with a ``detector`` model.
    sources : numpy.ndarray
        (n_sources, H, W) noise-free source patterns, each non-negative and summing to 1.
        With the non-additive options of :func:`simulated_scan` these stay the intended
        additive model (the kinematic crystal patterns, the undepleted background).
    weights : numpy.ndarray
        (ny, nx, n_sources) expected counts contributed by each source at each probe (the
        additive model: with non-additive options the counts are drawn around
        :meth:`noise_free`, not around ``weights @ sources``).
    labels : numpy.ndarray
        (ny, nx) int, 0 where no crystal is present, else a key of ``label_sets``.
    label_sets : dict of int to tuple of int
        Label -> indices (into ``sources``) of the crystal sources present.  Label 0 (no
        crystal) is not a key.
    source_names : list of str
        ``"background"`` then ``"crystal 1"``, ``"crystal 2"``, ...
    background_index : int or None
        Index of the background source (direct beam and diffuse scattering), or None.
    true_k : int
        Number of independent non-negative sources of the noise-free additive model: the
        phases a user should find.  Beam depletion, descan, thickness non-linearity and
        double-diffraction spots do not add to it.
    dose : float
        Mean expected electrons per pattern.
    params : dict
        Every generation parameter (JSON-serialisable), including each crystal's phase, zone
        axis and orientation.
    spots : dict of int to numpy.ndarray
        Source index (into ``sources``) -> (n, 3) array of the true spots of that source with
        at least 1 % of their disc on the detector: ``x`` (column), ``y`` (row) in pixels
        (pixel i spans i ± 0.5; a spot cut by the detector edge may be centred outside it) and
        the fraction of the source's counts on the detector that the spot holds.  The direct
        beam is the spot of the background source.  Not part of ``params``.  With the
        non-additive options these stay the spots of the additive model: positions without
        descan, kinematic shares (``dynamical`` changes them probe by probe), the undepleted
        beam, and no double-diffraction spots.
    physics : object or None
        Private description of the non-additive physics (None when the scan is additive),
        used by :meth:`noise_free` and :meth:`beam_positions`.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> scan = simulated_scan(nav_shape=(6, 6), pattern_size=32, random_state=0)
    >>> scan.sources.shape, scan.weights.shape
    ((4, 32, 32), (6, 6, 4))
    >>> bool(np.allclose(scan.sources.sum(axis=(1, 2)), 1.0))
    True
    """

    signal: NMFDecideDiffraction2D | LazyNMFDecideDiffraction2D
    sources: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    label_sets: dict[int, tuple[int, ...]]
    source_names: list[str]
    background_index: int | None
    true_k: int
    dose: float
    params: dict = field(default_factory=dict)
    spots: dict[int, np.ndarray] = field(default_factory=dict)
    physics: _Physics | None = None

    @property
    def overlap(self) -> np.ndarray:
        """(ny, nx) bool: two or more crystal sources present.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, layout="grains")
        >>> bool(scan.overlap.any())
        False
        """
        table = np.zeros(int(self.labels.max(initial=0)) + 1, dtype=bool)
        for label, members in self.label_sets.items():
            table[label] = len(members) >= 2
        return table[self.labels]

    def true_orientations(self) -> list:
        """The crystals' true orientations, one ``orix.quaternion.Orientation`` (shape (1,)) each.

        Crystal j (``sources[background + j]``) in the order of ``params["crystals"]``, with the
        point group of its phase and in the convention of ``ComponentIndex.orientations``
        (diffsims' ``rotation=``: ``Rotation.from_matrix(rotation_matrix.T)``), so that
        ``found.angle_with(truth)`` is the misorientation under the crystal's symmetry.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, n_crystals=2,
        ...                       crystals=["Fe", "Mg"], random_state=0)
        >>> [(o.shape, o.symmetry.name) for o in scan.true_orientations()]
        [((1,), 'm-3m'), ((1,), '6/mmm')]
        """
        from orix.quaternion import Orientation, Rotation

        from .crystals import _phase

        out = []
        for crystal in self.params["crystals"]:
            rotation = Rotation.from_matrix(np.asarray(crystal["rotation_matrix"]).T)
            symmetry = _phase(crystal["phase"]).point_group
            out.append(Orientation(rotation.data, symmetry=symmetry))
        return out

    def noise_free(self, detector: bool = False) -> np.ndarray:
        """(ny, nx, H, W) float64 expected counts the data were drawn around.

        ``weights @ sources`` for an additive scan; with the non-additive options of
        :func:`simulated_scan` the true expected counts, computed probe by probe with all the
        physics (beam depletion, descan, dynamical intensities, overlap physics, absorption).

        Parameters
        ----------
        detector : bool
            Return the expected detector output instead of electrons: the expected counts
            blurred by the point-spread function, times the gain, plus the dark offset (the
            units of ``signal.data``).  The same as False without a detector model.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0)
        >>> expected = scan.noise_free()
        >>> expected.shape, round(float(expected.sum(axis=(2, 3)).mean()))
        ((4, 4, 32, 32), 1000)
        """
        n, h, w = self.sources.shape
        if self.physics is None:
            flat = self.weights @ self.sources.reshape(n, h * w)
        else:
            flat = np.stack([self.physics.expected(y) for y in range(self.weights.shape[0])])
        expected = flat.reshape(self.weights.shape[:-1] + (h, w))
        settings = self.params.get("detector")
        if detector and settings is not None:
            expected = _detector_mean(expected, settings)
        return expected

    def beam_positions(self) -> np.ndarray:
        """(ny, nx, 2) position (x, y) of the transmitted beam at each probe, pixels.

        The detector centre plus ``beam_offset`` everywhere, unless ``descan`` moves it.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, descan=2.0)
        >>> xy = scan.beam_positions().reshape(-1, 2)
        >>> round(float(np.hypot(*np.ptp(xy, axis=0))), 6)
        2.0
        """
        size = self.sources.shape[-1]
        centre = size / 2 + np.asarray(self.params["beam_offset"], dtype=float)
        positions = np.broadcast_to(centre, self.weights.shape[:-1] + (2,)).copy()
        if self.physics is not None and self.physics.shifts is not None:
            positions += self.physics.shifts
        return positions

    def expected_spots(
        self, min_counts: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The true spots of every probe expected to hold at least ``min_counts`` electrons.

        Parameters
        ----------
        min_counts : float
            Smallest expected counts (source weight at the probe × the spot's fraction of the
            source) of a spot returned, ≥ 0.

        Returns
        -------
        probe, x, y, counts : numpy.ndarray
            One entry per spot, sorted by probe: the flat probe index (C order of the
            navigation shape), the spot position in pixels (``x`` = column; just outside the
            detector for a spot cut by its edge) and its expected counts on the detector.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0)
        >>> probe, x, y, counts = scan.expected_spots(min_counts=10)
        >>> bool(counts.min() >= 10), sorted(set(probe.tolist())) == list(range(16))
        (True, True)
        """
        min_counts = float(min_counts)
        if not (np.isfinite(min_counts) and min_counts >= 0):
            raise ValueError(f"min_counts must be a number ≥ 0, got {min_counts!r}")
        flat = self.weights.reshape(-1, self.weights.shape[-1])
        found = [np.empty(0, dtype=np.int64)] + [np.empty(0)] * 3
        for source, table in self.spots.items():
            counts = flat[:, source, np.newaxis] * table[:, 2]
            probe, spot = np.nonzero(counts >= min_counts)
            found = [
                np.concatenate(pair)
                for pair in zip(found, (probe, table[spot, 0], table[spot, 1], counts[probe, spot]))
            ]
        order = np.argsort(found[0], kind="stable")
        return tuple(column[order] for column in found)

    def __repr__(self) -> str:
        shape = tuple(int(v) for v in self.weights.shape[:-1]) + self.sources.shape[1:]
        return (
            f"<SimulatedScan {shape}, {self.params.get('layout')}, true_k={self.true_k}, "
            f"dose={self.dose:g}, sources={self.source_names}>"
        )


def _labels(crystal_weights: np.ndarray, threshold: float, first: int):
    """Labels of the distinct sets of crystals present (weight > threshold × its maximum)."""
    peak = crystal_weights.max(axis=(0, 1))
    present = crystal_weights > threshold * np.where(peak > 0, peak, np.inf)
    ny, nx, n = present.shape
    codes = present.reshape(-1, n)
    unique = np.unique(codes, axis=0)
    sets = sorted(
        (tuple(int(j) + first for j in np.flatnonzero(row)) for row in unique if row.any()),
        key=lambda s: (len(s), s),
    )
    label_sets = {label: members for label, members in enumerate(sets, start=1)}
    lookup = {members: label for label, members in label_sets.items()}
    labels = np.array(
        [lookup.get(tuple(int(j) + first for j in np.flatnonzero(row)), 0) for row in codes],
        dtype=int,
    ).reshape(ny, nx)
    return labels, label_sets
