"""The weather presets' shared export: held-out RMSE, baselines, plots, preset folder.

`export_weather_preset` loads a run's best weights, forecasts 5 days from every
simulated day of the test block, scores the forecasts with area-weighted RMSE next
to persistence, the training block's climatology and any extra baselines, and
writes the preset folder (weights, card, metrics.json, rmse.png, forecast.png,
training_curves.png, the held-out sample and reference.json). Each recipe's
``export.py`` supplies its card.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable

import numpy as np

from keras_sphere.zoo.weather_recipe import VARIABLES
from keras_sphere.zoo.weather_recipe import WeatherRecipe
from keras_sphere.zoo.weather_recipe import build_model
from keras_sphere.zoo.weather_recipe import data_path
from keras_sphere.zoo.weather_recipe import splits_and_statistics

__all__ = [
    "HEADLINE_LEADS_H",
    "UNITS",
    "continuation_text",
    "export_weather_preset",
    "goals",
    "headline",
    "sample_leads",
    "upsampled_preset_forecast",
]

HEADLINE_LEADS_H = (6, 24, 72, 120)
UNITS = ("m2 s-2", "K", "m s-1", "m s-1")  # of VARIABLES
# (latitude, longitude) of reference.json's points as eighths of the grid.
REFERENCE_POINTS = [(1, 0), (2, 3), (3, 5), (4, 1), (5, 6), (6, 4), (7, 7)]


def headline(scores, recipe: WeatherRecipe) -> dict:
    """RMSE of z500, t850 and the 850 hPa wind vector per forecast and lead.

    Units m^2 s^-2, K and m s^-1; leads keyed "6h", "24h", ...
    """
    wind_level = 850 if 850 in recipe.levels else recipe.levels[-1]
    z_level = 500 if 500 in recipe.levels else recipe.levels[0]
    table = {}
    for hours in HEADLINE_LEADS_H:
        lead = np.timedelta64(hours, "h")
        if lead not in scores["prediction_timedelta"].values:
            continue
        at = scores.sel(prediction_timedelta=lead)
        u = at["u_component_of_wind"].sel(level=wind_level)
        v = at["v_component_of_wind"].sel(level=wind_level)
        table[f"{hours}h"] = {
            str(name): {
                f"z{z_level}": float(
                    at["geopotential"].sel(level=z_level, forecast=name)
                ),
                f"t{wind_level}": float(
                    at["temperature"].sel(level=wind_level, forecast=name)
                ),
                f"wind{wind_level}": float(
                    np.hypot(u.sel(forecast=name), v.sel(forecast=name))
                ),
            }
            for name in scores["forecast"].values
        }
    return table


def goals(metrics: dict, baselines: dict[str, int | None]) -> str:
    """Markdown lines: whether the model beats each baseline.

    `baselines` maps a forecast name to the longest lead in hours checked (None:
    every lead).
    """
    lines = []
    for baseline, limit in baselines.items():
        leads = [
            lead for lead in metrics["rmse"] if limit is None or int(lead[:-1]) <= limit
        ]
        losing = [
            f"{name} at {lead}"
            for lead in leads
            for name, value in metrics["rmse"][lead]["model"].items()
            if value >= metrics["rmse"][lead][baseline][name]
        ]
        where = "every lead" if limit is None else f"leads up to {limit // 24} days"
        lines.append(
            f"- Goal better than {baseline} at {where}: "
            + ("**met**." if not losing else f"not met ({', '.join(losing)}).")
        )
    return "\n".join(lines)


def continuation_text(metrics: dict) -> str:
    """The card's sentence on a run continued from a shipped preset ("" if none)."""
    continued = metrics["training"].get("continued_from")
    if not continued:
        return ""
    data = (
        "on the same data"
        if continued["same_data"]
        else "on an earlier simulation of the same climate, whose data were lost "
        "(the data above are a new one, and every metric here is measured on it)"
    )
    return (
        f"The first {continued['epochs']} of these epochs ({continued['steps']:,} "
        f"steps, {continued['hours']:.2f} h) made {continued['from']}, {data}; "
        "this run started from its weights and schedule step with fresh Adam "
        "moments (its run directory was lost), and the learning curve shows the "
        "later epochs only.\n"
    )


def listing_metrics(rmse: dict) -> dict:
    """Metadata metrics for `zoo.list_presets`: RMSE at 3 days (or the last lead)."""
    lead = "72h" if "72h" in rmse else list(rmse)[-1]
    model, persistence = rmse[lead]["model"], rmse[lead]["persistence"]
    metrics = {f"{name}_rmse_{lead}": value for name, value in model.items()}
    for name, value in persistence.items():
        metrics[f"{name}_rmse_{lead}_persistence"] = value
    return {"metrics": metrics, "headline_metric": next(iter(metrics))}


def sample_leads(lead_steps: int) -> list[int]:
    """6 h steps of the shipped sample: 0, 6 h and every day up to the last lead."""
    return sorted({0, 1, *range(4, lead_steps + 1, 4)} & set(range(lead_steps + 1)))


def write_samples(test, climatology, recipe, preset: str, out_dir, steps=None) -> None:
    """Ship a held-out state, its truth and the climatology with the preset.

    The test block's first state and its truth at `sample_leads`, and the training
    climatology, read back by `keras_sphere.zoo.load_sample`.
    """
    from keras_sphere.zoo.samples import write_sample

    steps = np.array(sample_leads(recipe.lead_steps) if steps is None else steps)
    times = test["time"].values[0] + steps * np.timedelta64(6, "h")
    attrs = {
        "title": "Held-out simulated Held-Suarez states (not ERA5)",
        "source": f"dinosaur-dycore T{recipe.truncation}, test block of "
        f"zoo/{preset}/train.py, on the {recipe.grid_size} x {recipe.grid_size} "
        "model grid",
    }
    states = test[list(VARIABLES)].sel(time=times).assign_attrs(attrs)
    write_sample(states, out_dir, "states")
    write_sample(
        climatology.assign_attrs(attrs, title="Training-block climatology"),
        out_dir,
        "climatology",
    )


def write_reference(model, out_dir: pathlib.Path) -> dict:
    """Write reference.json: z500 one day after the shipped sample state.

    At fixed grid points, for tests that the preset reproduces itself after loading.
    """
    from keras_sphere import weather
    from keras_sphere.zoo.samples import load_sample

    states = load_sample(str(out_dir))
    day = weather.forecast(model, states.isel(time=[0]), "1D")
    z500 = day["geopotential"].isel(time=0, prediction_timedelta=-1).sel(level=500)
    n_lat, n_lon = z500.shape
    points = [(i * n_lat // 8, j * n_lon // 8) for i, j in REFERENCE_POINTS]
    reference = {
        "sample": "states",
        "variable": "geopotential",
        "level": 500,
        "lead": "1D",
        "points": points,
        "values": [float(z500.values[i, j]) for i, j in points],
        # m2 s-2, ~1e-5 of the field: float32 reductions may round differently
        # on other CPUs, and 4 steps compound it.
        "atol": 1.0,
    }
    (out_dir / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    return reference


def plot_scores(scores, forecasts, test, out_dir: pathlib.Path, recipe) -> None:
    from keras_sphere import plotting

    z_level = 500 if 500 in recipe.levels else recipe.levels[0]
    t_level = 850 if 850 in recipe.levels else recipe.levels[-1]
    plotting.plot_rmse_by_lead(
        scores,
        [
            ("geopotential", z_level, "m2 s-2"),
            ("temperature", t_level, "K"),
            ("u_component_of_wind", t_level, "m s-1"),
        ],
        out_dir / "rmse.png",
    )
    plotting.plot_forecast_maps(
        forecasts,
        test,
        "geopotential",
        level=z_level,
        units="m2 s-2",
        path=out_dir / "forecast.png",
    )


def upsampled_preset_forecast(preset: str, recipe: WeatherRecipe):
    """A baseline: another preset's forecasts, resampled onto `recipe`'s grid.

    `preset`'s forecaster runs on the initial states spectrally truncated to its
    grid; its forecast is resampled exactly (zero-padded degrees) onto the grid.

    Returns a function (initial states, lead steps) -> forecast dataset.
    """
    import xarray

    from keras_sphere import weather
    from keras_sphere.data.weather import open_wb2
    from keras_sphere.zoo.loading import load

    model = load(preset)
    coarse = model.backbone.grid
    fine = recipe.grid

    def resample(dataset, grid, lmax):
        # Independent initial states (one per day), not a 6-hourly series.
        return open_wb2(
            dataset,
            VARIABLES,
            levels=recipe.levels,
            grid=grid,
            lmax=lmax,
            six_hourly=False,
        )

    def run(initial, steps: int):
        small = resample(initial, coarse, coarse.max_bandlimit)
        predicted = weather.forecast(model, small, steps)
        leads = [
            resample(predicted.isel(prediction_timedelta=k), fine, coarse.max_bandlimit)
            for k in range(predicted.sizes["prediction_timedelta"])
        ]
        stacked = xarray.concat(leads, dim="prediction_timedelta")
        stacked = stacked.assign_coords(
            prediction_timedelta=predicted["prediction_timedelta"].values
        )
        return stacked.transpose("time", "prediction_timedelta", ...)

    return run


def export_weather_preset(
    preset: str,
    run_dir: pathlib.Path,
    out_dir: pathlib.Path,
    recipe: WeatherRecipe,
    card: Callable[[dict, WeatherRecipe], str],
    baselines: dict | None = None,
    sample_steps: tuple[int, ...] | None = None,
) -> dict:
    """Score the run's best weights on the test block and write the preset folder.

    Args:
        preset: the preset's name (``"weather_64"``), for the sample's provenance.
        run_dir: the recipe's run directory.
        out_dir: the preset folder to write.
        recipe: the run's `WeatherRecipe`.
        card: (metrics, recipe) -> the model card (markdown).
        baselines: extra forecasts to score, name -> function (initial states, lead
            steps) -> forecast dataset on the model grid (`upsampled_preset_forecast`).
        sample_steps: the 6 h steps of the shipped sample (default `sample_leads`:
            0, 6 h and every day); fewer keep a fine grid's sample small.

    Returns:
        The metrics written to metrics.json (RMSE table under "rmse").
    """
    import xarray

    import keras_sphere
    from keras_sphere import weather
    from keras_sphere.data.weather import simulation_wall_hours
    from keras_sphere.training.loop import inherited_of
    from keras_sphere.training.loop import lineage_totals
    from keras_sphere.training.loop import read_history

    splits, stats = splits_and_statistics(run_dir, recipe)
    model = build_model(recipe, stats)
    model.load_weights(run_dir / "best.weights.h5")
    test = splits["test"].load()
    starts = slice(0, test.sizes["time"] - recipe.lead_steps, recipe.test_stride)
    initial = test.isel(time=starts)
    forecasts = weather.forecast(model, initial, recipe.lead_steps)
    climatology = weather.climatology_of(splits["train"][list(VARIABLES)]).load()
    scores = weather.evaluate(forecasts, test, climatology)
    for name, baseline in (baselines or {}).items():
        other = weather.evaluate(baseline(initial, recipe.lead_steps), test)
        other = other.sel(forecast=["model"]).assign_coords(forecast=[name])
        scores = xarray.concat([scores, other], dim="forecast")
    history = read_history(run_dir / "history.csv")
    # A run continued from a shipped preset (its directory was lost) counts the
    # epochs, steps and hours that made that preset too.
    inherited = inherited_of(run_dir)
    totals = lineage_totals(run_dir, recipe.steps_per_epoch)
    steps = totals["steps"]
    split_info = {
        name: {
            "states": int(split.sizes["time"]),
            "first": str(split["time"].values[0]),
            "last": str(split["time"].values[-1]),
        }
        for name, split in splits.items()
    }
    metrics = {
        "rmse": headline(scores, recipe),
        "test_forecasts": int(forecasts.sizes["time"]),
        "compute_hours": totals["wall_seconds"] / 3600,
        "simulation_hours": simulation_wall_hours(data_path(run_dir, recipe)),
        # Where the simulation started (a restart names its source run's days).
        "initial_condition": xarray.open_zarr(data_path(run_dir, recipe)).attrs[
            "initial_condition"
        ],
        "parameters": int(model.count_params()),
        "training": {
            "epochs": totals["epochs"],
            "steps": steps,
            "windows": steps * recipe.batch,
            "best_val_loss": min(r["val_loss"] for r in history if "val_loss" in r),
        },
        "splits": split_info,
        "recipe": json.loads((run_dir / "recipe.json").read_text()),
    }
    if inherited:
        metrics["training"]["continued_from"] = {
            "from": inherited["from"],
            "epochs": inherited["keras_epochs"],
            "steps": inherited["steps"],
            "hours": inherited["wall_seconds"] / 3600,
            "same_data": inherited.get("splits") == split_info
            and inherited.get("initial_condition") == metrics["initial_condition"],
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_scores(scores, forecasts, test, out_dir, recipe)
    shutil.copy(run_dir / "learning_curve.png", out_dir / "training_curves.png")
    write_samples(test, climatology, recipe, preset, out_dir, sample_steps)
    keras_sphere.zoo.save_preset(
        model,
        out_dir,
        model_card=card(metrics, recipe),
        metadata={
            "grid": list(recipe.grid.shape),
            "ell_max": recipe.grid.max_bandlimit,
            "inputs": {
                name: {"units": units, "levels_hPa": list(recipe.levels)}
                for name, units in zip(VARIABLES, UNITS, strict=True)
            },
            "outputs": "the same variables 6 h later (forecast() rolls out)",
            "training_data": (
                f"simulated Held-Suarez atmosphere (dinosaur-dycore "
                f"T{recipe.truncation}), not ERA5"
            ),
            **listing_metrics(metrics["rmse"]),
        },
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_reference(model, out_dir)
    print(json.dumps(metrics["rmse"], indent=2))
    return metrics
