"""The shared weather recipe's curriculum, learning-rate schedule and command line."""

import dataclasses

import keras
import numpy as np

from keras_sphere.zoo import weather_recipe
from keras_sphere.zoo.weather_recipe import WeatherRecipe
from keras_sphere.zoo.weather_recipe import curriculum_for
from keras_sphere.zoo.weather_recipe import learning_rate_schedule

RECIPE = WeatherRecipe(
    learning_rate=1e-4,
    final_learning_rate=1e-5,
    single_step_epochs=3,
    rollout_lengths=(2, 4, 12),
    epochs_per_rollout_step=1,
    steps_per_epoch=10,
    epochs=6,
)


def test_curriculum_goes_through_the_rollout_lengths_and_stays_at_the_last():
    lengths = [curriculum_for(epoch, RECIPE) for epoch in range(RECIPE.epochs)]
    assert lengths == [1, 1, 1, 2, 4, 12]


def test_grown_curriculum_without_listed_lengths():
    recipe = WeatherRecipe(single_step_epochs=2, max_rollout=3, epochs=8)
    lengths = [curriculum_for(epoch, recipe) for epoch in range(recipe.epochs)]
    assert lengths == [1, 1, 2, 2, 3, 3, 3, 3]


def test_first_cycle_is_a_plain_cosine_decay():
    schedule = learning_rate_schedule(RECIPE)
    cosine = keras.optimizers.schedules.CosineDecay(1e-4, decay_steps=60, alpha=0.1)
    rates = [float(schedule(step)) for step in range(60)]
    np.testing.assert_allclose(rates, [float(cosine(s)) for s in range(60)], rtol=1e-6)


def test_cycles_repeat_the_curriculum_and_restart_the_rate_scaled():
    recipe = WeatherRecipe(**{**RECIPE.__dict__, "cycles": 3, "restart_scale": 0.5})
    assert recipe.total_epochs == 18
    lengths = [curriculum_for(epoch, recipe) for epoch in range(recipe.total_epochs)]
    assert lengths == 3 * [1, 1, 1, 2, 4, 12]
    schedule = learning_rate_schedule(recipe)
    cycle = RECIPE.epochs * RECIPE.steps_per_epoch
    # The cosine's height above final_learning_rate halves at each restart; every
    # cycle ends at final_learning_rate.
    for index, peak in enumerate([1e-4, 5.5e-5, 3.25e-5]):
        np.testing.assert_allclose(float(schedule(index * cycle)), peak, rtol=1e-5)
        end = float(schedule((index + 1) * cycle - 1))
        np.testing.assert_allclose(end, 1e-5, rtol=0.02)


def test_fine_tuning_stage_follows_the_cycles_on_the_next_restart():
    recipe = dataclasses.replace(
        RECIPE, cycles=2, restart_scale=0.5, finetune_rollout_lengths=(16, 20)
    )
    assert recipe.cycle_epochs == 12 and recipe.total_epochs == 14
    lengths = [curriculum_for(epoch, recipe) for epoch in range(recipe.total_epochs)]
    assert lengths == 2 * [1, 1, 1, 2, 4, 12] + [16, 20]
    assert curriculum_for(20, recipe) == 20  # past the end: the last length
    doubled = dataclasses.replace(recipe, epochs_per_rollout_step=2)
    assert doubled.total_epochs == 16
    assert [curriculum_for(e, doubled) for e in range(12, 16)] == [16, 16, 20, 20]
    # The stage starts the third cycle's cosine: a quarter of the first height.
    schedule = learning_rate_schedule(recipe)
    start = recipe.cycle_epochs * recipe.steps_per_epoch
    np.testing.assert_allclose(float(schedule(start)), 1e-5 + 0.25 * 9e-5, rtol=1e-5)


def test_train_goes_on_from_the_shipped_preset_unless_told_to_start_afresh(
    monkeypatch, tmp_path
):
    calls = []

    def train(run_dir, hours, recipe, verbose=2, shipped=None):
        calls.append(shipped)
        return {}

    monkeypatch.setattr(weather_recipe, "train", train)
    run = ["--run-dir", str(tmp_path / "run"), "train"]
    weather_recipe.command_line("toy", RECIPE, tmp_path / "preset", run)
    weather_recipe.command_line(
        "toy", RECIPE, tmp_path / "preset", [*run, "--from-scratch"]
    )
    assert calls == [tmp_path / "preset", None]
