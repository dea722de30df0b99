"""The random streams of a simulated scan, all derived from one seed.

Each part of a scan draws from its own stream, a child of the scan's
:class:`~numpy.random.SeedSequence` under a fixed key, so that turning an option on changes
nothing else and the noise of every scan row can be drawn alone (lazy scans).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "_STREAM_CRYSTALS",
    "_STREAM_DESCAN",
    "_STREAM_DYNAMICAL",
    "_STREAM_FIELDS",
    "_STREAM_LAYOUT",
    "_STREAM_NOISE",
    "_child",
    "_seed_sequence",
]

# Independent random streams, spelled out (not spawned) so that they never depend on state and
# turning on an option changes nothing else: keys of _child(seed_sequence, key).
_STREAM_CRYSTALS = 0  # crystal names and orientations
_STREAM_LAYOUT = 1  # where the crystals are
_STREAM_FIELDS = 2  # strengths, thickness maps, then the varying background field
_STREAM_NOISE = 3  # (3, y): Poisson and readout noise of scan row y
_STREAM_DESCAN = 4  # descan directions
_STREAM_DYNAMICAL = 5  # extinction lengths and phases of the dynamical intensities


def _seed_sequence(random_state) -> tuple[np.random.SeedSequence, int | str | None]:
    """A SeedSequence for ``random_state`` and what to record of it in ``params``."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state, "SeedSequence"
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63))), "Generator"
    if random_state is None:
        return np.random.SeedSequence(), None
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise ValueError(
            f"random_state must be an int, a numpy Generator or None, got {random_state!r}"
        )
    if random_state < 0:
        raise ValueError(f"random_state must be ≥ 0, got {random_state!r}")
    return np.random.SeedSequence(int(random_state)), int(random_state)


def _child(seed_sequence: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The SeedSequence that ``seed_sequence.spawn`` would give as child ``key``."""
    return np.random.SeedSequence(
        seed_sequence.entropy,
        spawn_key=tuple(seed_sequence.spawn_key) + key,
        pool_size=seed_sequence.pool_size,
    )
