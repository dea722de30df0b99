"""Checkpoints of a sweep on disk, so that an interrupted sweep resumes where it stopped.

A checkpoint is a directory:

``manifest.json``
    The sweep's parameters and a fingerprint of the data (size, ``‖X‖²``, sum, masks).  A
    sweep asked to resume from a checkpoint written for other data or other parameters is
    refused, never mixed.
``<stage>.npz``
    Every run of a finished stage (a batch of restarts, the fast mode's polish, the refinement
    of the kept runs): its ``w``, ``h``, loss history and convergence flag.
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

__all__ = ["CheckpointError", "SweepCheckpoint", "data_fingerprint"]

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


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
            if not _same(stored.get(key), manifest.get(key))
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
    def load_runs(self, stage: str, runs: dict) -> bool:
        """Put the saved runs of a finished ``stage`` into ``runs``; False if not finished."""
        arrays = self._read(f"{stage}.npz")
        if arrays is None:
            return False
        try:
            for key in _keys(arrays):
                runs[key] = Run(
                    arrays[_name(key, "w")],
                    arrays[_name(key, "h")],
                    [float(v) for v in arrays[_name(key, "history")]],
                    bool(arrays[_name(key, "converged")]),
                )
        except KeyError as error:
            raise self._damaged(f"{stage}.npz", error) from error
        return True

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
    def load_state(self, stage: str) -> FitState | None:
        """The last snapshot of a running ``stage``, or None."""
        arrays = self._read(f"{stage}.state.npz")
        if arrays is None:
            return None
        try:
            counts = [tuple(int(v) for v in pair) for pair in arrays["counts"]]
            finished = {
                int(i): (arrays[f"finished_w_{i}"], arrays[f"finished_h_{i}"])
                for i in arrays["finished"]
            }
            return FitState(
                iteration=int(arrays["iteration"]),
                order=arrays["order"],
                alive=arrays["alive"],
                wt=np.ascontiguousarray(arrays["wt"]),
                counts=counts,
                factors=[np.ascontiguousarray(arrays[f"factors_{k}"]) for k, _ in counts],
                histories=[arrays[f"history_{i}"] for i in range(int(arrays["n_runs"]))],
                converged=arrays["converged"],
                finished=finished,
            )
        except KeyError as error:
            raise self._damaged(f"{stage}.state.npz", error) from error

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
        file = self.path / MANIFEST
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as error:
            raise self._damaged(MANIFEST, error) from error

    def _read(self, name: str):
        file = self.path / name
        if not file.exists():
            return None
        try:
            with np.load(file, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise self._damaged(name, error) from error

    def _write_npz(self, name: str, arrays: dict) -> None:
        temporary = self.path / f".{name}.tmp"
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, self.path / name)

    def _write_json(self, name: str, content: dict) -> None:
        temporary = self.path / f".{name}.tmp"
        temporary.write_text(json.dumps(content, indent=1))
        os.replace(temporary, self.path / name)

    def _damaged(self, name: str, error: Exception) -> CheckpointError:
        return CheckpointError(
            f"The checkpoint file {str(self.path / name)!r} is damaged ({error!r}).  Delete it "
            "(the stage it holds is recomputed) or the whole directory to start over."
        )


def _name(key: tuple[int, int], field: str) -> str:
    k, restart = key
    return f"{field}_{k}_{restart}"


def _keys(arrays: dict) -> list[tuple[int, int]]:
    return [(int(k), int(r)) for k, r in arrays["keys"]]


def _same(a, b) -> bool:
    """Equal manifest values; floats of the data fingerprint up to summation order."""
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
