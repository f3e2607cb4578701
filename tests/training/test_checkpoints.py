"""keras_sphere.training.checkpoints: a killed fit resumes to the uninterrupted weights.

The training runs are this file run as a script in subprocesses: one uninterrupted
run, one killed with SIGKILL in the middle of an epoch, and one restarted with the
killed run's directory. The model has everything a restart must restore: Adam moments,
a warm-up + cosine schedule driven by the iteration count, SpectralBatchNorm moving
statistics, and shuffled, padded batches from `ResumableBatches` whose epochs are
shorter than a pass over the data.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

EPOCHS = 5
STEPS_PER_EPOCH = 2  # a pass over 20 examples is 3 batches of 8 (the last padded)
KILL_AT_STEP = 7  # epoch 3, batch 1: back-ups exist for epochs 0, 1 and 2
SPINS = (0, 1)


# -- the worker (runs in a subprocess) -------------------------------------------------


def build_model(n_grid=8):
    import keras

    from keras_sphere import layers

    fields = keras.Input((n_grid, n_grid, 1, 1), name="fields")
    mask = keras.Input((), name="mask")
    x = layers.SpinSphericalConv(
        4, (0,), SPINS, num_filter_params=2, output_representation="spectral"
    )(fields)
    x = layers.SpectralBatchNorm(SPINS, momentum=0.5)(x, mask=mask)
    x = layers.SpinSphericalConv(4, SPINS, SPINS, input_representation="spectral")(x)
    x = layers.PhaseCollapse(SPINS)(x)
    x = layers.SphericalResBlock(4, SPINS, momentum=0.5)(x, mask=mask)
    features = layers.InvariantReadout(SPINS)(x)
    return keras.Model(
        {"fields": fields, "mask": mask}, keras.layers.Dense(1)(features)
    )


def kill_at(step):
    """A callback that SIGKILLs its own process after global step `step`."""
    import keras

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch * STEPS_PER_EPOCH + batch + 1 == step:
                os.kill(os.getpid(), signal.SIGKILL)

    return Kill()


def worker(mode, directory, output):
    import keras

    from keras_sphere import training

    training.set_seed(3)
    rng = np.random.default_rng(0)
    fields = rng.standard_normal((20, 8, 8, 1, 1)).astype("float32")
    targets = rng.standard_normal((20, 1)).astype("float32")
    batches = training.ResumableBatches(
        {"fields": fields, "mask": np.ones((20,), "float32")},
        targets,
        batch_size=8,
        steps_per_epoch=STEPS_PER_EPOCH,
        shuffle=True,
        seed=11,
        remainder="pad",
    )
    model = build_model()
    schedule = training.WarmupCosineDecay(
        3e-3, total_steps=EPOCHS * STEPS_PER_EPOCH, warmup_steps=3
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    callbacks = training.resumable_callbacks(
        directory, batches=batches, keep_checkpoints=True
    )
    if mode == "killed":
        callbacks.append(kill_at(KILL_AT_STEP))
    history = model.fit(
        batches, epochs=EPOCHS, shuffle=False, callbacks=callbacks, verbose=0
    )
    np.savez(output, *[np.asarray(v.value) for v in model.variables])
    report = {
        "epochs_run": len(history.history["loss"]),
        "iterations": int(model.optimizer.iterations.value),
        "losses": history.history["loss"],
    }
    print("REPORT " + json.dumps(report))


# -- the tests -------------------------------------------------------------------------


def run_worker(mode, directory, output):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-W", "ignore", __file__, mode, str(directory), str(output)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def parse_report(result):
    assert result.returncode == 0, result.stderr[-4000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("REPORT ")][-1]
    return json.loads(line.removeprefix("REPORT "))


def load(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    full = parse_report(run_worker("full", tmp / "full", tmp / "full.npz"))
    killed = run_worker("killed", tmp / "run", tmp / "killed.npz")
    backup_after_kill = sorted(os.listdir(tmp / "run" / "backup"))
    resumed = parse_report(run_worker("resume", tmp / "run", tmp / "resumed.npz"))
    return {
        "tmp": tmp,
        "full": full,
        "killed": killed,
        "backup_after_kill": backup_after_kill,
        "resumed": resumed,
    }


def test_killed_run_died_midway_and_left_a_backup(runs):
    assert runs["killed"].returncode == -signal.SIGKILL
    assert not (runs["tmp"] / "killed.npz").exists()
    assert "latest.weights.h5" in runs["backup_after_kill"]
    assert "training_metadata.json" in runs["backup_after_kill"]


def test_resumed_run_continues_from_the_backup(runs):
    completed = (KILL_AT_STEP - 1) // STEPS_PER_EPOCH  # epochs saved before the kill
    assert runs["full"]["epochs_run"] == EPOCHS
    assert runs["resumed"]["epochs_run"] == EPOCHS - completed
    assert runs["resumed"]["iterations"] == runs["full"]["iterations"]
    assert runs["full"]["iterations"] == EPOCHS * STEPS_PER_EPOCH
    np.testing.assert_array_equal(
        runs["resumed"]["losses"], runs["full"]["losses"][completed:]
    )


def test_resumed_run_ends_with_the_uninterrupted_weights(runs):
    full = load(runs["tmp"] / "full.npz")
    resumed = load(runs["tmp"] / "resumed.npz")
    assert len(full) == len(resumed)
    difference = max(
        float(np.max(np.abs(a - b))) for a, b in zip(full, resumed, strict=True)
    )
    print(f"max |resumed - uninterrupted| = {difference:.3g}")
    # Same program, same inputs, same device: XLA on CPU is bit-reproducible.
    assert difference == 0.0


def test_checkpoints_are_kept_and_the_backup_removed(runs):
    names = [f"epoch_{epoch:04d}.weights.h5" for epoch in range(1, EPOCHS + 1)]
    for run in ("full", "run"):
        assert sorted(os.listdir(runs["tmp"] / run / "checkpoints")) == names
        assert not (runs["tmp"] / run / "backup").exists()


# -- ResumableBatches and resumable_callbacks without training -------------------------


def test_training_public_names_are_deliberate():
    from keras_sphere import training

    names = {name for name in vars(training) if not name.startswith("_")}
    names -= {"checkpoints", "determinism", "loop", "schedules"}  # the submodules
    assert names == {
        "BudgetedBatches",
        "QM9_REFERENCE_BATCH_SIZE",
        "QM9_REFERENCE_LEARNING_RATE",
        "QM9_REFERENCE_WARMUP_EPOCHS",
        "ResumableBatches",
        "WarmupCosineDecay",
        "XLA_GPU_DETERMINISTIC_FLAGS",
        "default_run_dir",
        "fit_run",
        "qm9_reference_schedule",
        "resumable_callbacks",
        "set_seed",
    }


def batch_order(batches, epoch):
    batches.start_epoch(epoch)
    return [batches[i][0] for i in range(len(batches))]


def test_batches_depend_on_seed_epoch_and_index_only():
    from keras_sphere.training import ResumableBatches

    x = np.arange(10)
    a = ResumableBatches(x, batch_size=4, shuffle=True, seed=5)
    b = ResumableBatches(x, batch_size=4, shuffle=True, seed=5)
    assert len(a) == 2  # 10 // 4 full batches, 2 examples dropped per pass
    for epoch in (3, 0, 7):
        assert all(
            np.array_equal(p, q)
            for p, q in zip(batch_order(a, epoch), batch_order(b, epoch), strict=True)
        )
    first_pass = np.concatenate(batch_order(a, 0))
    assert len(set(first_pass)) == 8  # no repeats within a pass
    assert not np.array_equal(first_pass, np.concatenate(batch_order(a, 1)))
    c = ResumableBatches(x, batch_size=4, shuffle=True, seed=6)
    assert not np.array_equal(first_pass, np.concatenate(batch_order(c, 0)))


def test_epochs_shorter_than_a_pass_continue_where_the_last_stopped():
    from keras_sphere.training import ResumableBatches

    x = np.arange(12)
    batches = ResumableBatches(x, batch_size=3, steps_per_epoch=3)  # 4 per pass
    served = np.concatenate([np.concatenate(batch_order(batches, e)) for e in (0, 1)])
    np.testing.assert_array_equal(served, np.r_[np.arange(12), np.arange(6)])


def test_padding_zeroes_the_extra_examples_and_their_weights():
    from keras_sphere.training import ResumableBatches

    x = {"fields": np.ones((5, 2), "float32"), "mask": np.ones((5,), "float32")}
    y = np.arange(5)
    batches = ResumableBatches(
        x, y, sample_weight=np.full(5, 2.0), batch_size=4, remainder="pad"
    )
    assert len(batches) == 2
    inputs, targets, weights = batches[1]
    np.testing.assert_array_equal(weights, [2, 0, 0, 0])
    np.testing.assert_array_equal(inputs["mask"], [1, 0, 0, 0])
    np.testing.assert_array_equal(inputs["fields"][1:], 0)
    np.testing.assert_array_equal(targets, [4, 0, 0, 0])
    assert inputs["fields"].dtype == np.float32 and targets.dtype == y.dtype


def test_the_callback_starts_epochs():
    from keras_sphere.training import ResumableBatches
    from keras_sphere.training import resumable_callbacks

    batches = ResumableBatches(np.arange(8), batch_size=4)
    callbacks = resumable_callbacks("unused", batches=batches)
    callbacks[-1].on_epoch_begin(5)
    assert batches.epoch == 5
    np.testing.assert_array_equal(batches[0][0], batches.batch(5, 0)[0])


def test_batches_out_of_order_ask_for_shuffle_false():
    from keras_sphere.training import ResumableBatches

    batches = ResumableBatches(np.arange(8), batch_size=2)
    batches.start_epoch(0)
    batches[0]
    with pytest.raises(ValueError, match=r"shuffle=False"):
        batches[2]


def test_batches_without_the_callback_explain_what_is_missing():
    from keras_sphere.training import ResumableBatches

    batches = ResumableBatches(np.arange(8), batch_size=2)
    batches[1]  # fit's look at one batch before the first epoch is allowed
    with pytest.raises(RuntimeError, match=r"resumable_callbacks\(directory, batches"):
        batches[0]


def test_resumable_callbacks_configuration(tmp_path):
    import keras

    from keras_sphere.training import resumable_callbacks

    backup, *rest = resumable_callbacks(tmp_path, keep_checkpoints=True)
    assert isinstance(backup, keras.callbacks.BackupAndRestore)
    assert backup.backup_dir == os.path.join(tmp_path, "backup")
    assert backup.save_freq == "epoch" and backup.double_checkpoint
    assert isinstance(rest[0], keras.callbacks.ModelCheckpoint)
    assert len(resumable_callbacks(tmp_path)) == 1
    with pytest.raises(TypeError, match="must be the ResumableBatches"):
        resumable_callbacks(tmp_path, batches=np.arange(3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 8}, "do not fill one batch of 8"),
        ({"batch_size": 2, "remainder": "wrap"}, "remainder must be"),
        ({"batch_size": 2, "steps_per_epoch": 0}, "steps_per_epoch must be >= 1"),
        ({"batch_size": 2, "sample_weight": np.ones(4)}, "same number of examples"),
    ],
)
def test_resumable_batches_errors(kwargs, match):
    from keras_sphere.training import ResumableBatches

    with pytest.raises(ValueError, match=match):
        ResumableBatches(np.arange(5), **kwargs)


if __name__ == "__main__":
    worker(*sys.argv[1:])
