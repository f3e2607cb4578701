"""The weather_64 recipe end to end at toy size: simulate, train, resume, export,
the training and export through the recipes' command line."""

import json
import shutil

import numpy as np
import pytest


@pytest.mark.large
def test_recipe_runs_end_to_end_at_toy_size(recipe_modules, tmp_path):
    from keras_sphere.zoo import weather_recipe

    train, export = recipe_modules("weather_64", "train", "export")
    toy = train.Recipe(
        truncation=10,  # a 16 x 32 Gaussian grid; the model keeps L <= 7
        sigma_levels=6,
        levels=(500, 850),
        spinup_days=1.0,
        grid_size=16,
        widths=(4, 8),
        bottleneck_blocks=0,
        batch=2,
        single_step_epochs=1,
        max_rollout=2,
        epochs_per_rollout_step=1,
        steps_per_epoch=2,
        epochs=2,
        validation_steps=1,
        gap="1D",
        lead_steps=4,
    )
    run_dir = tmp_path / "run"
    preset_dir = tmp_path / "preset"  # where `export` writes: the recipe's folder
    preset_dir.mkdir()
    shutil.copy(export.__file__, preset_dir / "export.py")

    def command(*argv):
        weather_recipe.command_line(
            "toy", toy, preset_dir, ["--run-dir", str(run_dir), *argv]
        )

    command("simulate", "--years", str(16 / 365.25))
    command("train", "--verbose", "0")
    import xarray

    cache = xarray.open_zarr(run_dir / "model_grid.zarr")["geopotential"]
    assert cache.encoding["chunks"] == (4, 2, 16, 16)  # a day, all levels, whole grid
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header and two epochs (rollouts of 1 and 2 steps)
    assert (run_dir / "best.weights.h5").exists()
    again = weather_recipe.train(run_dir, None, toy, verbose=0)  # nothing left
    assert again["finished"]

    command("export")
    metrics = json.loads((preset_dir / "metrics.json").read_text())
    day = metrics["rmse"]["24h"]
    assert set(day) == {"model", "persistence", "climatology"}
    assert all(np.isfinite(list(v.values())).all() for v in day.values())
    card = (tmp_path / "preset" / "README.md").read_text()
    assert card.splitlines()[0].endswith("not ERA5")
    assert (tmp_path / "preset" / "rmse.png").stat().st_size > 10_000
    assert (tmp_path / "preset" / "forecast.png").stat().st_size > 10_000
    import keras_sphere

    loaded = keras_sphere.zoo.load(str(tmp_path / "preset"))
    assert loaded.normalization == json.loads(json.dumps(loaded.normalization))

    # The shipped sample: a held-out state and its truth at 0, 6 h and 1 day.
    states = keras_sphere.zoo.load_sample(str(tmp_path / "preset"))
    climatology = keras_sphere.zoo.load_sample(str(tmp_path / "preset"), "climatology")
    leads = (states["time"].values - states["time"].values[0]) // np.timedelta64(1, "h")
    assert list(leads) == [0, 6, 24]
    test_block = weather_recipe.splits_and_statistics(run_dir, toy)[0]["test"]
    assert states["time"].values[0] == test_block["time"].values[0]
    forecast = keras_sphere.weather.forecast(loaded, states.isel(time=[0]), "1D")
    scores = keras_sphere.weather.evaluate(
        forecast.sel(prediction_timedelta=leads * np.timedelta64(1, "h")),
        states,
        climatology,
    )
    assert np.isfinite(scores["geopotential"].values).all()
