"""keras_sphere.training.schedules: warm-up + cosine decay scaled with the batch."""

import math

import keras
import numpy as np
import pytest

from keras_sphere.training import QM9_REFERENCE_BATCH_SIZE
from keras_sphere.training import QM9_REFERENCE_LEARNING_RATE
from keras_sphere.training import WarmupCosineDecay
from keras_sphere.training import qm9_reference_schedule


def rate(schedule, step):
    return float(schedule(step))


def test_values_at_start_end_of_warmup_middle_and_end():
    schedule = WarmupCosineDecay(0.1, total_steps=1100, warmup_steps=100)
    assert rate(schedule, 0) == 0.0
    assert rate(schedule, 50) == pytest.approx(0.05, rel=1e-6)
    assert rate(schedule, 100) == pytest.approx(0.1, rel=1e-6)
    assert rate(schedule, 600) == pytest.approx(0.05, rel=1e-5)  # half-way: cos = 0
    assert rate(schedule, 350) == pytest.approx(
        0.05 * (1 + math.cos(math.pi / 4)), rel=1e-5
    )
    assert rate(schedule, 1100) == pytest.approx(0.0, abs=1e-9)
    assert rate(schedule, 5000) == pytest.approx(0.0, abs=1e-9)  # stays at 0


def test_reference_oracle():
    # models.md section 1.7 (anchor formula in epochs): base 0.1, 312 steps per epoch,
    # 90 epochs, 5 warm-up epochs. Float32 evaluation: rel 1e-5.
    schedule = WarmupCosineDecay.from_epochs(
        0.1, epochs=90, steps_per_epoch=312, warmup_epochs=5
    )
    assert schedule.total_steps == 28080 and schedule.warmup_steps == 1560
    oracle = {
        1: 6.4103e-5,
        1000: 0.0641026,
        1560: 0.1,
        3000: 0.0992743,
        6000: 0.0932419,
        10000: 0.0770230,
    }
    for step, expected in oracle.items():
        assert rate(schedule, step) == pytest.approx(expected, rel=1e-5), step


def test_peak_scales_with_global_batch_size():
    schedule = WarmupCosineDecay(
        1e-4, total_steps=10, warmup_steps=2, global_batch_size=256,
        reference_batch_size=32,
    )  # fmt: skip
    assert schedule.peak_learning_rate == pytest.approx(8e-4)
    assert rate(schedule, 2) == pytest.approx(8e-4, rel=1e-6)


def test_no_warmup_starts_at_the_peak():
    schedule = WarmupCosineDecay(0.5, total_steps=4)
    np.testing.assert_allclose(
        [rate(schedule, s) for s in range(5)],
        [0.5 * (1 + math.cos(math.pi * s / 4)) / 2 for s in range(5)],
        rtol=1e-6,
        atol=1e-8,
    )


def test_qm9_reference_schedule():
    schedule = qm9_reference_schedule(
        global_batch_size=64, steps_per_epoch=100, epochs=250
    )
    assert QM9_REFERENCE_LEARNING_RATE == 1e-4 and QM9_REFERENCE_BATCH_SIZE == 32
    assert schedule.warmup_steps == 100 and schedule.total_steps == 25000
    assert rate(schedule, 100) == pytest.approx(2e-4, rel=1e-6)


def test_config_round_trip_and_registration():
    schedule = WarmupCosineDecay(
        1e-3, total_steps=500, warmup_steps=50, global_batch_size=64,
        reference_batch_size=32, restarts=((100, 0.5),), name="lr",
    )  # fmt: skip
    config = schedule.get_config()
    restored = WarmupCosineDecay.from_config(config)
    assert restored.get_config() == config
    assert (
        keras.saving.get_registered_object("keras_sphere>WarmupCosineDecay")
        is WarmupCosineDecay
    )
    optimizer = keras.optimizers.Adam(schedule)
    rebuilt = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    serialized = rebuilt.get_config()["learning_rate"]
    assert serialized["registered_name"] == "keras_sphere>WarmupCosineDecay"
    assert serialized["config"] == config
    rebuilt_schedule = keras.optimizers.schedules.deserialize(serialized)
    for step in (0, 25, 50, 300, 500, 550, 700):
        assert rate(rebuilt_schedule, step) == rate(schedule, step)


def test_warm_restarts_follow_the_first_cycle():
    # A first cycle of 110 steps (10 warm-up), then cycles of 40 steps at half the
    # peak and 20 at a quarter, each without warm-up; 0 after the last.
    schedule = WarmupCosineDecay(
        0.1, total_steps=110, warmup_steps=10, restarts=((40, 0.5), (20, 0.25))
    )
    assert schedule.cycle_ends == (110, 150, 170)
    assert schedule.end_step == 170
    # Each cycle's last step is under 1% of the rate it started at.
    for start, end in zip((10, 110, 150), schedule.cycle_ends, strict=True):
        assert rate(schedule, end - 1) < 0.01 * rate(schedule, start)
    first = WarmupCosineDecay(0.1, total_steps=110, warmup_steps=10)
    for step in (0, 5, 10, 60, 109):
        assert rate(schedule, step) == pytest.approx(rate(first, step), abs=1e-9)
    assert rate(schedule, 110) == pytest.approx(0.05, rel=1e-6)
    assert rate(schedule, 120) == pytest.approx(
        0.025 * (1 + math.cos(math.pi / 4)), rel=1e-5
    )
    assert rate(schedule, 130) == pytest.approx(0.025, rel=1e-5)
    assert rate(schedule, 150) == pytest.approx(0.025, rel=1e-6)
    assert rate(schedule, 160) == pytest.approx(0.0125, rel=1e-5)
    assert rate(schedule, 169) == pytest.approx(
        0.0125 * (1 + math.cos(math.pi * 19 / 20)), rel=1e-4
    )
    for step in (170, 500):
        assert rate(schedule, step) == pytest.approx(0.0, abs=1e-9)


def test_drives_an_optimizer_inside_fit():
    schedule = WarmupCosineDecay(0.1, total_steps=4, warmup_steps=2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule), "mse")
    rates = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            optimizer = self.model.optimizer
            rates.append(float(schedule(optimizer.iterations)))

    x = np.ones((8, 2), "float32")
    model.fit(x, x[:, :1], batch_size=2, epochs=1, callbacks=[Record()], verbose=0)
    np.testing.assert_allclose(rates, [0.0, 0.05, 0.1, 0.05], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"base_learning_rate": 0.0}, "base_learning_rate must be > 0"),
        ({"total_steps": 0}, "total_steps must be >= 1"),
        ({"warmup_steps": 20}, r"warmup_steps must be in \[0, total_steps=10\]"),
        ({"global_batch_size": 64}, "Give both global_batch_size"),
        (
            {"global_batch_size": 0, "reference_batch_size": 32},
            "Batch sizes must be >= 1",
        ),
        ({"restarts": ((0, 0.5),)}, r"Each restart is \(steps >= 1, scale > 0\)"),
        ({"restarts": ((10, 0.0),)}, r"Each restart is \(steps >= 1, scale > 0\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"base_learning_rate": 0.1, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        WarmupCosineDecay(**arguments)
