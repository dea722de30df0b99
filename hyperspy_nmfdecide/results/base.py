"""What every result object shares: where it is kept, how it is saved, its calibrated axes.

A result holds plain arrays plus the source signal's axes (DESIGN §1); HyperSpy signals are
built on demand with those calibrations, so a result read back from a file or from the signal's
metadata gives the same calibrated factors, maps and patterns.
"""

from __future__ import annotations

import errno
import json
import zipfile
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._utils import json_default

__all__ = [
    "METADATA_COMPONENT_INDEX",
    "METADATA_DECISION",
    "METADATA_PHASE_MAPS",
    "METADATA_PREPROCESSING",
    "METADATA_ROOT",
    "METADATA_SWEEP",
    "STORED_RESULTS",
    "CalibratedResult",
    "StoredResult",
    "drop_results",
]

#: Where everything this package keeps in a signal's metadata lives.
METADATA_ROOT = "NMFDecide"
#: The sweep of the last ``nmf_sweep``.
METADATA_SWEEP = f"{METADATA_ROOT}.sweep"
#: The decision of the last ``decide_k``.
METADATA_DECISION = f"{METADATA_ROOT}.decision"
#: The phase maps of the last ``phase_maps``.
METADATA_PHASE_MAPS = f"{METADATA_ROOT}.phase_maps"
#: The phase and orientation of every component of the last ``index_components``.
METADATA_COMPONENT_INDEX = f"{METADATA_ROOT}.component_index"
#: The record of ``prepare_for_nmf`` (steps and beam mask).
METADATA_PREPROCESSING = f"{METADATA_ROOT}.preprocessing"
#: The results computed from the data, stale once the data change.
STORED_RESULTS = (METADATA_SWEEP, METADATA_DECISION, METADATA_PHASE_MAPS, METADATA_COMPONENT_INDEX)


class StoredResult:
    """Saving to ``.npz`` and keeping in a signal's metadata, through ``to_dict``/``from_dict``.

    A subclass names where it is kept (:attr:`metadata_path`) and the method that makes it
    (:attr:`made_by`), and implements ``to_dict`` (a flat dict of arrays, strings and numbers)
    and ``from_dict``.
    """

    metadata_path: ClassVar[str]
    made_by: ClassVar[str]
    #: What the result is called in error messages ("NMF sweep").
    description: ClassVar[str] = "result"

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
        """Read a result written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        ValueError
            Naming the file and what is wrong with it: not a stored result of this kind,
            truncated or damaged, a missing entry, or arrays that cannot be right.
        """
        path = Path(path)
        stored = read_npz(path, cls.description)
        try:
            return cls.from_dict(stored)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def _mask_entries(self) -> dict:
        """The result's ``navigation_mask`` and ``signal_mask``, those it has, for ``to_dict``."""
        return {
            name: np.asarray(getattr(self, name))
            for name in ("navigation_mask", "signal_mask")
            if getattr(self, name, None) is not None
        }

    @property
    def data_fingerprint(self) -> dict | None:
        """The fingerprint of the data the result was computed from (None in older files).

        A seeded projection of the whole scan (``hyperspy_nmfdecide.nmf.content_fingerprint``)
        that any reordering or edit of the data changes: the signal methods refuse a stored
        result whose fingerprint is not their data's.
        """
        return self.params.get("data_fingerprint")

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
        try:
            return cls.from_dict(signal.metadata.get_item(cls.metadata_path).as_dictionary())
        except ValueError as error:
            raise ValueError(
                f"the {cls.__name__} kept in the signal's metadata ({cls.metadata_path}): "
                f"{error} (s.{cls.made_by}() makes a new one)"
            ) from error


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


def drop_results(signal, paths: tuple[str, ...]) -> list[str]:
    """Remove the results kept at ``paths`` in ``signal.metadata``; return those removed.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> s = hs.signals.Signal2D(np.zeros((2, 4, 4)))
    >>> s.metadata.set_item(METADATA_DECISION, {"k": 3})
    >>> drop_results(s, STORED_RESULTS), s.metadata.has_item(METADATA_DECISION)
    (['NMFDecide.decision'], False)
    """
    removed = []
    for path in paths:
        if signal.metadata.has_item(path):
            *parents, name = path.split(".")
            delattr(signal.metadata.get_item(".".join(parents)), name)
            removed.append(path)
    return removed


# -- reading stored results ---------------------------------------------------------------------
def read_npz(path: Path, what: str) -> dict:
    """Every array of a result's ``.npz`` file, or a ValueError naming the file and the fault.

    Parameters
    ----------
    path : pathlib.Path
        The file written by ``save``.
    what : str
        What it should hold, for the messages ("NMF sweep").

    Returns
    -------
    dict
        Name -> array, every entry read (so a damaged entry fails here, not later).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist (the usual error, which names it).
    ValueError
        When the file is not an ``.npz`` archive, or is one that is truncated or damaged.
    """
    if not path.is_file():
        if path.exists():
            raise ValueError(f"{path} is a directory, not a stored {what} (.npz file)")
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    with path.open("rb") as file:
        is_zip = file.read(4) == b"PK\x03\x04"
    if not is_zip:
        # np.load would read it as a pickle or a single .npy array: neither is a result.
        raise ValueError(f"{path} is not a stored {what}: it is not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise _truncated(path, what, error) from error
        raise ValueError(
            f"{path} is not a stored {what}: it holds pickled Python objects, which load() "
            "does not read (unpickling can run any code)"
        ) from error
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise _truncated(path, what, error) from error


def _truncated(path: Path, what: str, error: Exception) -> ValueError:
    """The error of an ``.npz`` archive that cannot be read to its end."""
    return ValueError(
        f"{path} is truncated or damaged ({type(error).__name__}: {error}); save the {what} "
        "again or use another copy"
    )


def stored_item(d: dict, name: str, what: str):
    """``d[name]`` of a stored result, or a ValueError saying the result lacks it.

    Examples
    --------
    >>> stored_item({"k": 3}, "k", "k decision")
    3
    >>> stored_item({}, "loadings", "NMF sweep")
    Traceback (most recent call last):
    ...
    ValueError: the stored NMF sweep lacks 'loadings': it was not written by save() ...
    """
    try:
        return d[name]
    except KeyError:
        raise ValueError(
            f"the stored {what} lacks {name!r}: it was not written by save() of this package "
            "or it was cut short"
        ) from None


def stored_json(d: dict, name: str, what: str):
    """The JSON text ``d[name]`` of a stored result, decoded; a ValueError naming it if broken.

    Examples
    --------
    >>> stored_json({"params_json": '{"a": 1}'}, "params_json", "NMF sweep")
    {'a': 1}
    >>> stored_json({"params_json": '{"a": '}, "params_json", "NMF sweep")
    Traceback (most recent call last):
    ...
    ValueError: damaged NMF sweep: its 'params_json' is not valid JSON (Expecting value: ...
    """
    text = stored_item(d, name, what)
    try:
        return json.loads(str(text))
    except json.JSONDecodeError as error:
        raise damaged(what, f"its {name!r} is not valid JSON ({error})") from None


def damaged(what: str, problem: str) -> ValueError:
    """The error of a stored result whose arrays cannot be right (to ``raise``)."""
    return ValueError(
        f"damaged {what}: {problem}; part of it was lost or changed after it was saved — "
        "compute it again"
    )


def check_finite(what: str, arrays: dict) -> None:
    """Raise :func:`damaged` naming the first of ``arrays`` (name -> array) with NaN or inf."""
    for name, values in arrays.items():
        values = np.asarray(values)
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            raise damaged(what, f"{name} holds NaN or infinite values")


def check_shape(what: str, name: str, values, shape: tuple[int, ...]) -> None:
    """Raise :func:`damaged` when ``values`` has not the shape ``shape``."""
    if np.shape(values) != tuple(shape):
        raise damaged(what, f"{name} has shape {np.shape(values)}, expected {tuple(shape)}")


def check_unit_rows(what: str, name: str, factors, loadings=None) -> None:
    """Raise :func:`damaged` unless every row of ``factors`` sums to one.

    Factors are saved normalised to unit sum.  A row of zeros is a component that died in
    the fit only when its loading column (``loadings``, (n_probe, k), when given) is zero
    too; zeros with non-zero loadings are what a lost chunk of a file reads back as.
    """
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim != 2 or not factors.shape[0]:
        raise damaged(what, f"{name} has shape {factors.shape}, expected (k, pixels)")
    if np.any(factors < 0):
        raise damaged(what, f"{name} holds negative values")
    sums = factors.sum(axis=1)
    dead = sums == 0
    if loadings is not None:
        dead &= ~np.any(np.asarray(loadings) != 0, axis=0)
    wrong = ~dead & ~np.isclose(sums, 1.0, rtol=1e-3, atol=0)
    if np.any(wrong) or np.all(dead):
        rows = np.flatnonzero(wrong if np.any(wrong) else dead).tolist()
        raise damaged(
            what, f"{name} rows {rows} sum to {np.round(sums[rows], 4).tolist()}, not one"
        )
