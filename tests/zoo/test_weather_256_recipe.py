"""The weather_256 recipe end to end at toy size: a finer run started from a coarser
run's checkpoint, a pooled forecaster initialised from a preset, the export with
that preset as the upsampled baseline, and a lost run continued from its export."""

import dataclasses
import shutil

import numpy as np
import pytest


@pytest.mark.large
def test_recipe_runs_end_to_end_at_toy_size(recipe_modules, tmp_path, monkeypatch):
    from keras_sphere.zoo import weather_recipe
    from keras_sphere.zoo.weather_recipe import WeatherRecipe

    runs = tmp_path / "runs"
    # The coarse run and preset (as weather_64): T10, 16 x 16, widths (4,).
    export_64 = recipe_modules("weather_64", "export")
    coarse = WeatherRecipe(
        truncation=10,
        sigma_levels=4,
        levels=(500, 850),
        spinup_days=1.0,
        grid_size=16,
        widths=(4,),
        batch=2,
        single_step_epochs=1,
        steps_per_epoch=2,
        epochs=1,
        validation_steps=1,
        gap="1D",
        lead_steps=4,
    )
    weather_recipe.simulate(runs / "base", years=16 / 365.25, recipe=coarse)
    weather_recipe.train(runs / "base", None, coarse, verbose=0)
    export_64.export(runs / "base", tmp_path / "base_preset", coarse)

    # The fine run: T21 from the T10 checkpoint, 32 x 32 pooled to 16 x 16.
    export_256 = recipe_modules("weather_256", "export")
    fine = WeatherRecipe(
        truncation=21,
        sigma_levels=4,
        levels=(500, 850),
        spinup_days=0.5,
        start_from="base/held_suarez_t10.zarr.checkpoint.npz",
        grid_size=32,
        widths=(4,),
        pool_factor=2,
        fine_widths=(2,),
        initial_preset=str(tmp_path / "base_preset"),
        batch=2,
        single_step_epochs=1,
        rollout_lengths=(3,),
        epochs_per_rollout_step=1,
        steps_per_epoch=2,
        epochs=2,  # cycles and restarts: test_weather_recipe.py
        validation_steps=1,
        gap="1D",
        lead_steps=4,
    )
    run_dir = runs / "fine"
    weather_recipe.simulate(run_dir, years=16 / 365.25, recipe=fine)
    assert (run_dir / "held_suarez_t21.zarr.start.npz").exists()
    result = weather_recipe.train(run_dir, None, fine, verbose=0)
    assert result["finished"]
    history = (run_dir / "history.csv").read_text().splitlines()
    # A single-step epoch, then a 3-step rollout.
    assert len(history) == 3

    metrics = export_256.export(
        run_dir, tmp_path / "preset", fine, baseline=str(tmp_path / "base_preset")
    )
    for lead in ("6h", "24h"):
        table = metrics["rmse"][lead]
        assert set(table) == {"model", "persistence", "climatology", "weather_64"}
        assert all(np.isfinite(list(v.values())).all() for v in table.values())
    card = (tmp_path / "preset" / "README.md").read_text()
    assert card.splitlines()[0] == (
        "# weather_256: pretrained on simulated Held-Suarez dynamics, not ERA5"
    )
    assert "Degrees above 21 carry no signal" in card
    # The start is described from the data's provenance, days included.
    assert "started from\n  the state of a Held-Suarez run at T10 with 4 sigma" in card
    assert "better than weather_64 at every lead" in card
    # The simulation's wall time comes from its checkpoint.
    assert 0 < metrics["simulation_hours"] < 1

    import keras_sphere

    loaded = keras_sphere.zoo.load(str(tmp_path / "preset"))
    assert type(loaded).__name__ == "PooledWeatherForecaster"
    states = keras_sphere.zoo.load_sample(str(tmp_path / "preset"))
    forecast = keras_sphere.weather.forecast(loaded, states.isel(time=[0]), "1D")
    assert forecast["geopotential"].shape[-2:] == (32, 32)

    # The run directory is lost (its data kept here, to save a simulation): a run
    # with one more cycle continues from the exported preset, with its weights,
    # schedule step, curriculum position, epochs and hours.
    for name in ("backup", "history.csv", "best.weights.h5", "compute.json"):
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(ValueError, match="raise the recipe's cycles"):
        weather_recipe.train(
            run_dir, None, fine, verbose=0, shipped=tmp_path / "preset"
        )
    longer = dataclasses.replace(fine, cycles=2)
    seen = []
    original = weather_recipe.curriculum_for
    monkeypatch.setattr(
        weather_recipe,
        "curriculum_for",
        lambda epoch, recipe: seen.append(epoch) or original(epoch, recipe),
    )
    result = weather_recipe.train(
        run_dir, None, longer, verbose=0, shipped=tmp_path / "preset"
    )
    # Its curriculum goes on at the recipe's third epoch (the 3-step rollout).
    assert result["finished"] and min(seen) == 2 and 3 in seen
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3
    again = export_256.export(
        run_dir, tmp_path / "preset", longer, baseline=str(tmp_path / "base_preset")
    )
    assert again["training"]["epochs"] == 4 and again["training"]["steps"] == 8
    assert again["compute_hours"] > metrics["compute_hours"]
    assert again["training"]["continued_from"]["same_data"]
    card = (tmp_path / "preset" / "README.md").read_text()
    assert "The first 2 of these epochs (4 steps" in card
