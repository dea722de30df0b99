"""Result objects: plain arrays plus the axes they need, saved and loaded without loss.

One module per result (:class:`NMFSweep`, :class:`KDecision`, :class:`PhaseMaps`,
:class:`ComponentIndex`) over one base
(:mod:`.base`: where results are kept in a signal's metadata, ``.npz`` persistence, calibrated
signals built on demand from the source signal's axes).
"""

from .base import (
    METADATA_COMPONENT_INDEX,
    METADATA_DECISION,
    METADATA_PHASE_MAPS,
    METADATA_PREPROCESSING,
    METADATA_ROOT,
    METADATA_SWEEP,
    STORED_RESULTS,
    CalibratedResult,
    StoredResult,
)
from .decision import KDecision
from .orientation import ComponentIndex
from .phasemaps import PhaseMaps
from .sweep import NMFSweep

__all__ = [
    "METADATA_COMPONENT_INDEX",
    "METADATA_DECISION",
    "METADATA_PHASE_MAPS",
    "METADATA_PREPROCESSING",
    "METADATA_ROOT",
    "METADATA_SWEEP",
    "STORED_RESULTS",
    "CalibratedResult",
    "ComponentIndex",
    "KDecision",
    "NMFSweep",
    "PhaseMaps",
    "StoredResult",
]
