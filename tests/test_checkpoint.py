"""Checkpoint and resume of the sweep: an interrupted sweep ends exactly as an uninterrupted one."""

import itertools
import os

import numpy as np
import pytest

from hyperspy_nmfdecide.nmf import run_sweep
from hyperspy_nmfdecide.nmf.checkpoint import CheckpointError

# Capped at a few tens of passes to stay fast: runs stopping at max_iter is expected here and
# the ConvergenceWarning that says so is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def spotty(n=200, p=80, k=3, seed=0):
    rng = np.random.default_rng(seed)
    h = np.full((k, p), 0.05)
    for j in range(k):
        h[j, rng.choice(p, 6, replace=False)] = rng.uniform(1, 3, 6)
    return rng.poisson(rng.gamma(0.8, 20.0, (n, k)) @ h).astype(np.float32)


# Small batches (a few runs each), a snapshot after every pass.
OPTIONS = {
    "k_values": [1, 2, 3],
    "n_restarts": 3,
    "random_state": 0,
    "tol": 1e-5,
    "max_iter": 40,
    "batch_bytes": 4 * (200 + 3 * 80) * 12,
    "checkpoint_interval": 0,
}


def interrupt_at(n_pass: int):
    """An on_pass callback that presses Ctrl-C at pass ``n_pass``."""
    counter = itertools.count(1)

    def on_pass():
        if next(counter) == n_pass:
            raise KeyboardInterrupt

    return on_pass


def assert_same_sweep(a, b):
    for name in ("loss", "n_iter", "converged", "nndsvd_loss", "best_run", "pca_loss"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for k in a.factors:
        np.testing.assert_array_equal(a.factors[k], b.factors[k])
        np.testing.assert_array_equal(a.loadings[k], b.loadings[k])
    for history_a, history_b in zip(a.loss_history, b.loss_history):
        np.testing.assert_array_equal(history_a, history_b)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_interrupted_twice_then_resumed_equals_uninterrupted(tmp_path, mode):
    x = spotty()
    reference = run_sweep(x, mode=mode, **OPTIONS)
    # Interrupted in the first batch (mid-fit, from a snapshot), then in a later one.
    for n_pass in (14, 40):
        with pytest.raises(KeyboardInterrupt):
            run_sweep(x, mode=mode, checkpoint=tmp_path, on_pass=interrupt_at(n_pass), **OPTIONS)
    assert any(name.endswith(".state.npz") for name in os.listdir(tmp_path))
    resumed = run_sweep(x, mode=mode, checkpoint=tmp_path, **OPTIONS)
    assert_same_sweep(resumed, reference)
    # A finished checkpoint answers again without fitting anything.
    passes = []
    again = run_sweep(
        x, mode=mode, checkpoint=tmp_path, on_pass=lambda: passes.append(1), **OPTIONS
    )
    assert_same_sweep(again, reference)
    assert len(passes) <= 12  # the SVD's passes and the final MSE, no iteration


def test_a_sweep_without_seed_resumes_with_the_seed_it_drew(tmp_path):
    x = spotty()
    options = OPTIONS | {"random_state": None}
    with pytest.raises(KeyboardInterrupt):
        run_sweep(x, checkpoint=tmp_path, on_pass=interrupt_at(30), **options)
    resumed = run_sweep(x, checkpoint=tmp_path, **options)
    assert_same_sweep(resumed, run_sweep(x, **(OPTIONS | {"random_state": resumed.entropy})))


def test_checkpoint_of_other_data_or_parameters_is_refused(tmp_path):
    x = spotty()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(x, checkpoint=tmp_path, on_pass=interrupt_at(20), **OPTIONS)
    with pytest.raises(CheckpointError, match="squared_norm"):
        run_sweep(spotty(seed=1), checkpoint=tmp_path, **OPTIONS)
    with pytest.raises(CheckpointError, match="n_restarts"):
        run_sweep(x, checkpoint=tmp_path, **(OPTIONS | {"n_restarts": 4}))
    mask = np.zeros(x.shape[1], dtype=bool)
    mask[3] = True
    with pytest.raises(CheckpointError, match="masks"):
        run_sweep(x, checkpoint=tmp_path, col_mask=mask, **OPTIONS)


def test_damaged_checkpoint_file_is_refused(tmp_path):
    x = spotty()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(x, checkpoint=tmp_path, on_pass=interrupt_at(30), **OPTIONS)
    saved = sorted(tmp_path.glob("*.npz"))
    assert saved, "a snapshot is taken after every pass"
    saved[0].write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="damaged"):
        run_sweep(x, checkpoint=tmp_path, **OPTIONS)


def test_unwritable_checkpoint_path_is_refused(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="cannot be written"):
        run_sweep(spotty(), checkpoint=blocker / "checkpoint", **OPTIONS)


# -- the data's identity: a checkpoint of reordered data is refused ----------------------------
def interrupted(tmp_path, x, **options):
    """A checkpoint of ``x`` with a finished stage and a snapshot of the next."""
    with pytest.raises(KeyboardInterrupt):
        run_sweep(x, checkpoint=tmp_path, on_pass=interrupt_at(40), **(OPTIONS | options))
    assert list(tmp_path.glob("batch*.npz"))


def transposed_scan(x, shape=(20, 10)):
    """The same probes, the scan's two navigation axes swapped."""
    return x.reshape(*shape, -1).transpose(1, 0, 2).reshape(x.shape)


def two_probes_swapped(x):
    y = x.copy()
    y[[3, 150]] = x[[150, 3]]
    return y


@pytest.mark.parametrize("reorder", [transposed_scan, two_probes_swapped])
def test_a_checkpoint_of_reordered_probes_is_refused(tmp_path, reorder):
    x = spotty()
    interrupted(tmp_path, x)
    y = reorder(x)
    assert not np.array_equal(x, y)
    with pytest.raises(CheckpointError, match="content"):
        run_sweep(y, checkpoint=tmp_path, **OPTIONS)


def test_a_checkpoint_of_rotated_patterns_is_refused(tmp_path):
    x = spotty(p=81)
    interrupted(tmp_path, x)
    rotated = np.rot90(x.reshape(-1, 9, 9), axes=(1, 2)).reshape(x.shape)
    with pytest.raises(CheckpointError, match="content"):
        run_sweep(rotated, checkpoint=tmp_path, **OPTIONS)


def test_the_same_data_in_another_dtype_resumes(tmp_path):
    x = spotty()
    interrupted(tmp_path, x)
    resumed = run_sweep(x.astype(np.float64), checkpoint=tmp_path, **OPTIONS)
    assert_same_sweep(resumed, run_sweep(x, **OPTIONS))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda manifest: manifest.unlink(), "no manifest.json"),
        (lambda manifest: manifest.write_text("null"), "holding null"),
        (lambda manifest: manifest.write_text("[1, 2]"), "holding a JSON list"),
    ],
    ids=["deleted", "null", "list"],
)
def test_a_checkpoint_without_a_usable_manifest_is_refused(tmp_path, damage, match):
    x = spotty()
    interrupted(tmp_path, x)
    damage(tmp_path / "manifest.json")
    # Even for the very data it was written for: without a manifest nothing can be checked.
    with pytest.raises(CheckpointError, match=match) as info:
        run_sweep(x, checkpoint=tmp_path, **OPTIONS)
    assert str(tmp_path) in str(info.value)
    assert "Delete the directory" in str(info.value)


def set_entries(file, change):
    """Rewrite a stage file with ``change(arrays)`` applied (its fingerprint kept)."""
    with np.load(file) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    with open(file, "wb") as handle:
        np.savez(handle, **arrays)


def first_w(arrays):
    return next(key for key in arrays if key.startswith("w_"))


def with_nan(arrays):
    name = first_w(arrays)
    arrays[name] = arrays[name].copy()
    arrays[name][0, 0] = np.nan


def wrong_shape(arrays):
    name = first_w(arrays)
    arrays[name] = arrays[name][:-1]


def missing_run(arrays):
    arrays["keys"] = arrays["keys"][1:]


@pytest.mark.parametrize(
    "change, match",
    [(with_nan, "non-finite"), (wrong_shape, "shape"), (missing_run, "holds runs")],
    ids=["nan", "wrong-shape", "missing-run"],
)
def test_a_stage_file_with_wrong_contents_is_refused(tmp_path, change, match):
    x = spotty()
    run_sweep(x, checkpoint=tmp_path, **OPTIONS)
    stage = tmp_path / "batch0000.npz"
    set_entries(stage, change)
    with pytest.raises(CheckpointError, match=match) as info:
        run_sweep(x, checkpoint=tmp_path, **OPTIONS)
    assert "batch0000.npz" in str(info.value)


def nan_loadings(arrays):
    arrays["wt"] = arrays["wt"].copy()
    arrays["wt"][0, 0] = np.nan


def one_run_less(arrays):
    arrays["n_runs"] = np.asarray(int(arrays["n_runs"]) - 1)


def factors_cut(arrays):
    name = next(key for key in arrays if key.startswith("factors_"))
    arrays[name] = arrays[name][..., :-1]


@pytest.mark.parametrize(
    "change, match",
    [(nan_loadings, "non-finite"), (one_run_less, "runs"), (factors_cut, "shape")],
    ids=["nan", "missing-run", "wrong-shape"],
)
def test_a_snapshot_with_wrong_contents_is_refused(tmp_path, change, match):
    x = spotty()
    interrupted(tmp_path, x)
    (snapshot,) = tmp_path.glob("*.state.npz")
    set_entries(snapshot, change)
    with pytest.raises(CheckpointError, match=match) as info:
        run_sweep(x, checkpoint=tmp_path, **OPTIONS)
    assert snapshot.name in str(info.value)


def test_a_stage_file_of_other_data_is_refused(tmp_path):
    x = spotty()
    run_sweep(x, checkpoint=tmp_path, **OPTIONS)
    other = tmp_path / "other"
    run_sweep(two_probes_swapped(x), checkpoint=other, **OPTIONS)
    os.replace(other / "batch0000.npz", tmp_path / "batch0000.npz")
    with pytest.raises(CheckpointError, match="other data") as info:
        run_sweep(x, checkpoint=tmp_path, **OPTIONS)
    assert "batch0000.npz" in str(info.value)


# -- the fingerprint the sweep reports --------------------------------------------------------
def test_the_sweep_reports_the_fingerprint_of_its_data():
    import dask.array as da
    from scipy import sparse

    from hyperspy_nmfdecide.nmf import Fingerprint, content_fingerprint, same_fingerprint

    x = spotty()
    sweep = run_sweep(x, [2], 2, random_state=0, max_iter=5)
    assert all(isinstance(value, float) for value in sweep.fingerprint.values())
    # stored as numbers (no pickle), read back whole
    assert Fingerprint.from_array(np.asarray(sweep.fingerprint)) == sweep.fingerprint
    for same in (x, x.astype(np.float64), da.from_array(x, chunks=(33, -1)), sparse.csr_matrix(x)):
        assert same_fingerprint(content_fingerprint(same), sweep.fingerprint)
    # and at another scale, the scale's fingerprint (in the data's units)
    scaled = content_fingerprint(x * 2.0**-60)
    assert np.isclose(scaled["squared_norm"], sweep.fingerprint["squared_norm"] * 2.0**-120)
    for other in (transposed_scan(x), two_probes_swapped(x), x * 1.001):
        assert not same_fingerprint(content_fingerprint(other), sweep.fingerprint)
    mask = np.zeros(x.shape[0], dtype=bool)
    mask[7] = True
    assert not same_fingerprint(content_fingerprint(x, row_mask=mask), sweep.fingerprint)
