"""What every result object shares: where it is kept, how it is saved, its calibrated axes.

A result holds plain arrays plus the source signal's axes (DESIGN §1); HyperSpy signals are
built on demand with those calibrations, so a result read back from a file or from the signal's
metadata gives the same calibrated factors, maps and patterns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._utils import json_default

__all__ = [
    "METADATA_DECISION",
    "METADATA_PHASE_MAPS",
    "METADATA_PREPROCESSING",
    "METADATA_ROOT",
    "METADATA_SWEEP",
    "STORED_RESULTS",
    "CalibratedResult",
    "StoredResult",
]

#: Where everything this package keeps in a signal's metadata lives.
METADATA_ROOT = "NMFDecide"
#: The sweep of the last ``nmf_sweep``.
METADATA_SWEEP = f"{METADATA_ROOT}.sweep"
#: The decision of the last ``decide_k``.
METADATA_DECISION = f"{METADATA_ROOT}.decision"
#: The phase maps of the last ``phase_maps``.
METADATA_PHASE_MAPS = f"{METADATA_ROOT}.phase_maps"
#: The record of ``prepare_for_nmf`` (steps and beam mask).
METADATA_PREPROCESSING = f"{METADATA_ROOT}.preprocessing"
#: The results computed from the data, stale once the data change.
STORED_RESULTS = (METADATA_SWEEP, METADATA_DECISION, METADATA_PHASE_MAPS)


class StoredResult:
    """Saving to ``.npz`` and keeping in a signal's metadata, through ``to_dict``/``from_dict``.

    A subclass names where it is kept (:attr:`metadata_path`) and the method that makes it
    (:attr:`made_by`), and implements ``to_dict`` (a flat dict of arrays, strings and numbers)
    and ``from_dict``.
    """

    metadata_path: ClassVar[str]
    made_by: ClassVar[str]

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict):
        raise NotImplementedError

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

    def store(self, signal) -> None:
        """Keep the result in ``signal.metadata`` (saved with the signal)."""
        signal.metadata.set_item(self.metadata_path, self.to_dict())

    @classmethod
    def from_signal(cls, signal):
        """The result kept in ``signal.metadata``, or a RuntimeError naming the method to run."""
        if not signal.metadata.has_item(cls.metadata_path):
            raise RuntimeError(
                f"No {cls.__name__} is stored on this signal: run s.{cls.made_by}() first."
            )
        return cls.from_dict(signal.metadata.get_item(cls.metadata_path).as_dictionary())


class CalibratedResult(StoredResult):
    """A result over the source signal's axes: calibrated HyperSpy signals on demand.

    A subclass has the attributes ``axes`` (the source's axes as dicts, array order) and
    ``source_metadata`` (its ``General``, ``Signal`` and ``Acquisition_instrument`` trees).
    """

    axes: list[dict]
    source_metadata: dict

    @property
    def nav_axes(self) -> list[dict]:
        """The source's navigation axes (array order)."""
        return [dict(a, navigate=True) for a in self.axes if a["navigate"]]

    @property
    def sig_axes(self) -> list[dict]:
        """The source's signal (pattern) axes (array order)."""
        return [dict(a, navigate=False) for a in self.axes if not a["navigate"]]

    @property
    def scan_shape(self) -> tuple[int, ...]:
        """Probes along each navigation axis (array order)."""
        return tuple(int(a["size"]) for a in self.nav_axes)

    @property
    def pattern_shape(self) -> tuple[int, ...]:
        """Pixels along each signal axis (array order)."""
        return tuple(int(a["size"]) for a in self.sig_axes)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of the source signal's data."""
        return tuple(int(a["size"]) for a in self.axes)

    @property
    def source_title(self) -> str:
        """The source signal's title ("signal" when it had none)."""
        return self.source_metadata.get("General", {}).get("title", "") or "signal"

    def _metadata(self) -> dict:
        return {k: v for k, v in self.source_metadata.items() if k != "General"}

    def _scan_signal(self, data: np.ndarray, title: str, first_axis: dict | None = None):
        """A Signal2D over the calibrated scan (a stack of maps when ``first_axis`` is given)."""
        import hyperspy.api as hs

        scan_axes = [dict(a, navigate=False) for a in self.nav_axes]
        signal = hs.signals.Signal2D(data, axes=([first_axis] if first_axis else []) + scan_axes)
        signal.metadata.General.title = title
        return signal

    def _pattern_signal(self, data: np.ndarray, title: str, first_axis: dict):
        """An ElectronDiffraction2D stack of patterns on the calibrated detector axes."""
        from pyxem.signals import ElectronDiffraction2D

        signal = ElectronDiffraction2D(
            data, axes=[first_axis] + self.sig_axes, metadata=self._metadata()
        )
        signal.metadata.General.title = title
        return signal

    def _calibration_json(self) -> dict:
        """The axes and source metadata, as ``to_dict`` stores them."""
        return {
            "axes_json": json.dumps(self.axes, default=json_default),
            "source_metadata_json": json.dumps(self.source_metadata, default=json_default),
        }


def component_axis(k: int) -> dict:
    """The navigation axis of a stack of k components."""
    return {"name": "Component index", "size": k, "navigate": True}
