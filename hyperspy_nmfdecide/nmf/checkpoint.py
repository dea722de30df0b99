"""Checkpoints of a sweep on disk, so that an interrupted sweep resumes where it stopped.

A checkpoint is a directory:

``manifest.json``
    The sweep's parameters and fingerprints of the data (size, ``‖X‖²``, sum, masks, and the
    content fingerprint of :mod:`.fingerprint`, which changes when probes or pixels are
    reordered).  A sweep asked to resume from a checkpoint written for other data or other
    parameters is refused, never mixed.  A directory with stage files but no manifest (deleted,
    ``null``, not a JSON object) is refused too: it cannot be checked.
``<stage>.npz``
    Every run of a finished stage (a batch of restarts, the fast mode's polish, the refinement
    of the kept runs): its ``w``, ``h``, loss history and convergence flag, and the content
    fingerprint of the data it was fitted on (checked on reading, with the shapes and values
    of every run: a file that holds NaN, lacks a run or has the wrong shapes is refused).
``<stage>.state.npz``
    A snapshot of the stage that is running (:class:`~.engine.FitState`), taken between two
    passes over X at most every ``interval`` seconds.  Resuming from it repeats the same
    products in the same layout, so the sweep ends exactly as an uninterrupted one.

Files are written to a temporary name and renamed, so a killed process leaves either the old
file or the new one, never half of one (no fsync: a snapshot per pass must stay cheap; a power
cut may cost the last snapshot, which the damaged-file check then reports).  Written here
because no library checkpoints an iterative numpy computation between two of its steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .chunks import MatrixStats
from .engine import FitState, Run
from .fingerprint import same_fingerprint

__all__ = ["CheckpointError", "SweepCheckpoint", "data_fingerprint"]

_logger = logging.getLogger(__name__)

# 2: content fingerprints in the manifest and in every stage file (1 had neither).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
#: The entry of every stage file that holds the content fingerprint, as JSON.
_FINGERPRINT = "data_fingerprint"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: other data or parameters, or a damaged file."""


def data_fingerprint(stats: MatrixStats, row_keep: np.ndarray, col_keep: np.ndarray) -> dict:
    """What identifies the data of a sweep: its size, ``‖X‖²``, sum and masks.

    Examples
    --------
    >>> keep = np.ones(3, dtype=bool)
    >>> print(data_fingerprint(MatrixStats(5.0, 3, 3, 3, 4.0), keep, keep)["squared_norm"])
    5.0
    """
    return {
        "n_rows": int(stats.n_rows),
        "n_cols": int(stats.n_cols),
        "n_loss_cols": int(stats.n_loss_cols),
        "squared_norm": float(stats.squared_norm),
        "total": float(stats.total),
        "masks_sha1": hashlib.sha1(
            np.packbits(row_keep).tobytes() + b"|" + np.packbits(col_keep).tobytes()
        ).hexdigest(),
    }


class SweepCheckpoint:
    """The checkpoint directory of one sweep.

    Parameters
    ----------
    path
        Directory, created if needed.  If it holds a manifest, it must match ``manifest``.
    manifest
        JSON-able parameters of the sweep, with ``"data"`` from :func:`data_fingerprint`.
        Its ``"entropy"`` may be None: the checkpoint's own is then used (a sweep started
        with ``random_state=None`` resumes with the seed it drew), or ``new_entropy`` for a
        new checkpoint.
    interval
        Seconds between two snapshots of a running stage (0: after every pass).
    new_entropy
        The seed recorded by a new checkpoint whose manifest gives none.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> checkpoint = SweepCheckpoint(folder, {"k_values": [2, 3], "entropy": 7})
    >>> SweepCheckpoint(folder, {"k_values": [2, 3], "entropy": None}).manifest["entropy"]
    7
    >>> SweepCheckpoint(folder, {"k_values": [2, 4], "entropy": 7})
    Traceback (most recent call last):
    ...
    hyperspy_nmfdecide.nmf.checkpoint.CheckpointError: The checkpoint ... k_values ...
    """

    def __init__(
        self,
        path: str | os.PathLike,
        manifest: dict,
        *,
        interval: float = 300.0,
        new_entropy: int | None = None,
    ):
        if not interval >= 0:
            raise ValueError(f"checkpoint_interval must be ≥ 0 seconds, got {interval!r}")
        self.path = Path(path)
        self.interval = float(interval)
        self._last_snapshot = time.monotonic()
        manifest = {"format": FORMAT_VERSION, **manifest}
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".writable"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise CheckpointError(
                f"The checkpoint directory {str(self.path)!r} cannot be written: {error}"
            ) from error
        stored = self._read_manifest()
        if stored is None:
            if manifest.get("entropy") is None:
                manifest["entropy"] = new_entropy
            self._write_json(MANIFEST, manifest)
            self.manifest = manifest
            return
        if manifest.get("entropy") is None:
            manifest["entropy"] = stored.get("entropy")
        differing = sorted(
            key
            for key in set(stored) | set(manifest)
            if not _same(stored.get(key), manifest.get(key), content=key == "content")
        )
        if differing:
            raise CheckpointError(
                f"The checkpoint in {str(self.path)!r} was written by another sweep: "
                f"{', '.join(differing)} differ ({_describe(stored, manifest, differing)}).  "
                "Use another checkpoint directory, or delete this one to start over."
            )
        self.manifest = stored
        _logger.info("Resuming the sweep from the checkpoint in %s", self.path)

    # -- finished stages ------------------------------------------------------------------
    def load_runs(self, stage: str, runs: dict, keys: list | None = None) -> bool:
        """Put the saved runs of a finished ``stage`` into ``runs``; False if not finished.

        ``keys`` are the runs the stage fits (default: those the file holds); a file that
        lacks one of them, or holds a run of the wrong shape or with non-finite values, is
        refused (:class:`CheckpointError` naming it).
        """
        name = f"{stage}.npz"
        arrays = self._read(name)
        if arrays is None:
            return False
        try:
            saved = _keys(arrays)
            wanted = saved if keys is None else [tuple(key) for key in keys]
            if sorted(saved) != sorted(wanted):
                missing = sorted(set(wanted) - set(saved))
                raise ValueError(f"it holds runs {saved}, the stage needs {wanted} ({missing})")
            loaded = {key: self._checked_run(arrays, key) for key in wanted}
        except (KeyError, ValueError, TypeError, IndexError) as error:
            raise self._damaged(name, error) from error
        runs.update(loaded)
        return True

    def _checked_run(self, arrays: dict, key: tuple[int, int]) -> Run:
        """One saved run, after checking its shapes and that its values are finite."""
        k = key[0]
        n, p = self._shape
        w, h = arrays[_name(key, "w")], arrays[_name(key, "h")]
        history = np.asarray(arrays[_name(key, "history")], dtype=np.float64)
        _check_array(f"w of run {key}", w, (n, k))
        _check_array(f"h of run {key}", h, (k, p))
        _check_array(f"history of run {key}", history, (None,))
        if history.size == 0:
            raise ValueError(f"the history of run {key} is empty")
        return Run(w, h, [float(v) for v in history], bool(arrays[_name(key, "converged")]))

    def save_runs(self, stage: str, runs: dict) -> None:
        """Record every run of a finished ``stage``; its snapshot is then obsolete."""
        arrays = {"keys": np.array(list(runs), dtype=np.int64).reshape(-1, 2)}
        for key, run in runs.items():
            arrays[_name(key, "w")] = run.w
            arrays[_name(key, "h")] = run.h
            arrays[_name(key, "history")] = np.asarray(run.history, dtype=np.float64)
            arrays[_name(key, "converged")] = np.asarray(run.converged)
        self._write_npz(f"{stage}.npz", arrays)
        (self.path / f"{stage}.state.npz").unlink(missing_ok=True)

    # -- running stages -------------------------------------------------------------------
    def load_state(self, stage: str, n_runs: int | None = None) -> FitState | None:
        """The last snapshot of a running ``stage`` of ``n_runs`` runs, or None.

        Checked as :meth:`load_runs`: shapes, finite values, and the number of runs.
        """
        name = f"{stage}.state.npz"
        arrays = self._read(name)
        if arrays is None:
            return None
        try:
            state = self._checked_state(arrays)
            if n_runs is not None and len(state.histories) != n_runs:
                raise ValueError(f"it holds {len(state.histories)} runs, the stage has {n_runs}")
            return state
        except (KeyError, ValueError, TypeError, IndexError) as error:
            raise self._damaged(name, error) from error

    def _checked_state(self, arrays: dict) -> FitState:
        n, p = self._shape
        counts = [tuple(int(v) for v in pair) for pair in arrays["counts"]]
        n_runs = int(arrays["n_runs"])
        wt = np.ascontiguousarray(arrays["wt"])
        _check_array("wt", wt, (sum(k * count for k, count in counts), n))
        factors = [np.ascontiguousarray(arrays[f"factors_{k}"]) for k, _ in counts]
        for (k, count), h in zip(counts, factors):
            _check_array(f"factors_{k}", h, (count, k, p))
        histories = [arrays[f"history_{i}"] for i in range(n_runs)]
        for i, history in enumerate(histories):
            _check_array(f"history_{i}", np.asarray(history, dtype=np.float64), (None,))
        order = arrays["order"]
        if order.size and not (0 <= order.min() and order.max() < n_runs):
            raise ValueError(f"order refers to runs outside 0..{n_runs - 1}")
        finished = {}
        for i in arrays["finished"]:
            w, h = arrays[f"finished_w_{i}"], arrays[f"finished_h_{i}"]
            _check_array(f"finished_w_{i}", w, (n, None))
            _check_array(f"finished_h_{i}", h, (w.shape[1], p))
            finished[int(i)] = (w, h)
        return FitState(
            iteration=int(arrays["iteration"]),
            order=order,
            alive=arrays["alive"],
            wt=wt,
            counts=counts,
            factors=factors,
            histories=histories,
            converged=arrays["converged"],
            finished=finished,
        )

    def snapshotter(self, stage: str) -> Callable[[Callable[[], FitState]], None]:
        """An ``on_state`` callback for :func:`~.engine.fit_runs` that saves ``stage``."""

        def snapshot(state: Callable[[], FitState]) -> None:
            if time.monotonic() - self._last_snapshot < self.interval:
                return
            self._write_state(stage, state())
            self._last_snapshot = time.monotonic()

        return snapshot

    def _write_state(self, stage: str, state: FitState) -> None:
        arrays = {
            "iteration": np.asarray(state.iteration),
            "order": state.order,
            "alive": state.alive,
            "wt": state.wt,
            "counts": np.array(state.counts, dtype=np.int64).reshape(-1, 2),
            "converged": state.converged,
            "n_runs": np.asarray(len(state.histories)),
            "finished": np.array(sorted(state.finished), dtype=np.int64),
        }
        for (k, _), factors in zip(state.counts, state.factors):
            arrays[f"factors_{k}"] = factors
        for i, history in enumerate(state.histories):
            arrays[f"history_{i}"] = history
        for i, (w, h) in state.finished.items():
            arrays[f"finished_w_{i}"], arrays[f"finished_h_{i}"] = w, h
        self._write_npz(f"{stage}.state.npz", arrays)

    # -- files ----------------------------------------------------------------------------
    def _read_manifest(self) -> dict | None:
        """The stored manifest; None for a new checkpoint (no manifest and no stage file)."""
        file = self.path / MANIFEST
        if not file.exists():
            if any(self.path.glob("*.npz")):
                raise self._unverifiable("holds stage files but no manifest.json")
            return None
        try:
            stored = json.loads(file.read_text())
        except (OSError, ValueError) as error:
            raise self._damaged(MANIFEST, error) from error
        if not isinstance(stored, dict):
            kind = "null" if stored is None else f"a JSON {type(stored).__name__}"
            raise self._unverifiable(f"has a manifest.json holding {kind}, not a JSON object")
        return stored

    def _unverifiable(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"The checkpoint directory {str(self.path)!r} {what}: its stages cannot be checked "
            "against this sweep's data and parameters, so they are not used.  Delete the "
            "directory to start over, or choose another checkpoint directory."
        )

    @property
    def _shape(self) -> tuple[int | None, int | None]:
        """``(n, p)`` of the kept matrix the runs are fitted on (None: not recorded)."""
        data = self.manifest.get("data")
        data = data if isinstance(data, dict) else {}
        return data.get("n_rows"), data.get("n_cols")

    def _read(self, name: str):
        """A stage file's arrays (None if absent), once its data fingerprint is checked."""
        file = self.path / name
        if not file.exists():
            return None
        try:
            with np.load(file, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            stored = json.loads(str(arrays.pop(_FINGERPRINT)))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            raise self._damaged(name, error) from error
        if not same_fingerprint(stored, self.manifest.get("content")):
            raise CheckpointError(
                f"The checkpoint file {str(file)!r} was written for other data than its "
                f"manifest describes.  Delete the directory {str(self.path)!r} to start over, "
                "or choose another checkpoint directory."
            )
        return arrays

    def _write_npz(self, name: str, arrays: dict) -> None:
        arrays = {**arrays, _FINGERPRINT: np.array(json.dumps(self.manifest.get("content")))}
        temporary = self.path / f".{name}.tmp"
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, self.path / name)

    def _write_json(self, name: str, content: dict) -> None:
        temporary = self.path / f".{name}.tmp"
        temporary.write_text(json.dumps(content, indent=1))
        os.replace(temporary, self.path / name)

    def _damaged(self, name: str, error: Exception) -> CheckpointError:
        if name == MANIFEST:  # without it no stage file can be checked: never delete it alone
            advice = f"Delete the directory {str(self.path)!r} to start over, or choose another"
        else:
            advice = "Delete it (the stage it holds is recomputed) or the whole directory"
        return CheckpointError(
            f"The checkpoint file {str(self.path / name)!r} is damaged ({error!r}).  {advice}."
        )


def _name(key: tuple[int, int], field: str) -> str:
    k, restart = key
    return f"{field}_{k}_{restart}"


def _keys(arrays: dict) -> list[tuple[int, int]]:
    return [(int(k), int(r)) for k, r in arrays["keys"]]


def _check_array(what: str, array: np.ndarray, shape: tuple[int | None, ...]) -> None:
    """Refuse a saved array of another shape (None: any length) or with non-finite values."""
    array = np.asarray(array)
    if array.ndim != len(shape) or any(
        want is not None and have != want for have, want in zip(array.shape, shape)
    ):
        raise ValueError(f"{what} has shape {array.shape}, expected {shape}")
    if array.dtype.kind not in "fiub" or not np.isfinite(array).all():
        raise ValueError(f"{what} holds non-finite values")


def _same(a, b, content: bool = False) -> bool:
    """Equal manifest values; floats of the data fingerprint up to summation order."""
    if content:
        return same_fingerprint(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0))
        except (TypeError, ValueError):
            return False
    return a == b


def _describe(stored: dict, wanted: dict, keys: list[str]) -> str:
    return "; ".join(
        f"{key}: checkpoint {stored.get(key)!r}, now {wanted.get(key)!r}" for key in keys
    )
