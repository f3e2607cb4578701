import time

import keras
import numpy as np
import pytest

import keras_sphere  # noqa: F401
from keras_sphere.training import BudgetedBatches
from keras_sphere.training import ResumableBatches
from keras_sphere.training import default_run_dir
from keras_sphere.training import fit_run
from keras_sphere.training.loop import compute_seconds
from keras_sphere.training.loop import continue_from_weights
from keras_sphere.training.loop import inherited_of
from keras_sphere.training.loop import lineage_totals
from keras_sphere.training.loop import read_history


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return model


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.float32([1.0, -2.0, 0.5]))[:, None]


def batches(x, y):
    return ResumableBatches(x, y, batch_size=8, steps_per_epoch=4, shuffle=True)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    x, y = data()
    straight = small_model()
    fit_run(straight, batches(x, y), tmp_path / "a", epochs=4, verbose=0)
    resumed = small_model()
    fit_run(resumed, batches(x, y), tmp_path / "b", epochs=2, verbose=0)
    again = small_model(seed=1)  # a new process: fresh weights, restored from back-up
    result = fit_run(again, batches(x, y), tmp_path / "b", epochs=4, verbose=0)
    assert result["finished"]
    for a, b in zip(straight.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    rows = read_history(tmp_path / "b" / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    epochs = (tmp_path / "b" / "history.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in epochs] == ["1", "2", "3", "4"]  # not 1.0
    assert (tmp_path / "b" / "learning_curve.png").stat().st_size > 0


def test_best_weights_and_wall_budget(tmp_path):
    x, y = data()
    model = small_model()
    result = fit_run(
        model,
        batches(x, y),
        tmp_path,
        epochs=50,
        validation_data=(x[:16], y[:16]),
        max_hours=0.0,  # stops at the first epoch end
        verbose=0,
    )
    assert result["stopped_for_time"] and not result["finished"]
    assert result["best_weights"] and len(result["history"]["loss"]) == 1


def test_compute_seconds_are_counted_at_every_epoch_end_and_across_calls(tmp_path):
    # Counted at each epoch end (a killed call loses at most one epoch of them),
    # from when the caller began (loading, building), and summed over calls.
    x, y = data()
    seen = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(compute_seconds(tmp_path))

    assert compute_seconds(tmp_path) == 0.0
    started = time.time() - 100.0
    fit_run(
        small_model(), batches(x, y), tmp_path, epochs=2, callbacks=[Look()],
        verbose=0, started=started,
    )  # fmt: skip
    first = compute_seconds(tmp_path)
    assert 100.0 < seen[0] < seen[1] <= first <= time.time() - started
    fit_run(small_model(), batches(x, y), tmp_path, epochs=3, verbose=0)
    assert first < compute_seconds(tmp_path) < time.time() - started


def test_a_lost_run_continues_from_its_weights_at_its_step(tmp_path):
    x, y = data()
    earlier = small_model()
    fit_run(earlier, batches(x, y), tmp_path / "lost", epochs=2, verbose=0)
    model = small_model(seed=1)
    record = continue_from_weights(
        model, earlier.get_weights(), tmp_path / "new", keras_epochs=2, steps=8,
        wall_seconds=12.5, source="the lost run", splits={"train": 64},
    )  # fmt: skip
    for a, b in zip(earlier.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.value) == 8  # the schedule goes on
    assert inherited_of(tmp_path / "new") == record == {
        "keras_epochs": 2, "steps": 8, "wall_seconds": 12.5,
        "from": "the lost run", "splits": {"train": 64},
    }  # fmt: skip
    assert inherited_of(tmp_path / "lost") == {}
    fit_run(model, batches(x, y), tmp_path / "new", epochs=1, verbose=0)
    assert int(model.optimizer.iterations.value) == 12
    totals = lineage_totals(tmp_path / "new", steps_per_epoch=4)
    assert totals["epochs"] == 3 and totals["steps"] == 12
    assert totals["wall_seconds"] > 12.5

    # A run with a back-up resumes it; weights of another architecture are refused.
    with pytest.raises(ValueError, match="holds a back-up"):
        continue_from_weights(
            small_model(), earlier.get_weights(), tmp_path / "new", keras_epochs=2,
            steps=8, wall_seconds=1.0, source="the lost run",
        )  # fmt: skip
    inputs = keras.Input((3,))
    wider = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    wider.compile(keras.optimizers.Adam(0.05), "mse")
    with pytest.raises(ValueError, match="do not fit this model"):
        continue_from_weights(
            wider, earlier.get_weights(), tmp_path / "other", keras_epochs=2,
            steps=8, wall_seconds=1.0, source="the lost run",
        )  # fmt: skip
    assert not (tmp_path / "other").exists()  # a refused call writes nothing


def test_nan_loss_stops_and_keeps_last_good_backup(tmp_path):
    x, y = data()
    model = small_model()
    fit_run(model, batches(x, y), tmp_path, epochs=1, verbose=0)
    good = [w.copy() for w in model.get_weights()]
    bad_y = y.copy()
    bad_y[:] = np.nan
    with pytest.raises(FloatingPointError, match="last good back-up"):
        fit_run(small_model(), batches(x, bad_y), tmp_path, epochs=3, verbose=0)
    restored = small_model(seed=2)
    fit_run(restored, batches(x, y), tmp_path, epochs=1, verbose=0)  # done already
    for a, b in zip(good, restored.get_weights(), strict=True):
        np.testing.assert_allclose(a, b)


def test_default_run_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_SPHERE_CACHE", str(tmp_path))
    assert default_run_dir("qm9") == tmp_path / "runs" / "qm9"
    monkeypatch.setenv("KERAS_SPHERE_CACHE", "off")
    assert default_run_dir("qm9").parts[-3:] == ("keras_sphere", "runs", "qm9")


def test_budgeted_batches_never_exceed_capacity():
    costs = np.array([5, 9, 2, 8, 8, 1, 7, 3, 6, 4], np.float64)
    x = np.arange(10, dtype=np.float32)[:, None]
    data_ = BudgetedBatches(
        x, x[:, 0], costs=costs, capacity=15, batch_size=3, shuffle=True, seed=1
    )
    data_.start_epoch(0)
    seen = []
    for index in range(len(data_)):
        bx, by, weight = data_[index]
        kept = weight > 0
        assert costs[bx[kept, 0].astype(int)].sum() <= 15
        assert np.all(bx[~kept] == 0) and np.all(by[~kept] == 0)
        seen += bx[kept, 0].astype(int).tolist()
    assert len(seen) == len(set(seen))
    assert 0 < data_.dropped_fraction() < 1
    with pytest.raises(ValueError, match="Every cost must lie in"):
        BudgetedBatches(x, costs=costs, capacity=8, batch_size=3)
