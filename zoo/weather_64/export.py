"""Export stage of the weather_64 recipe: held-out RMSE, baselines, plots, preset.

Called by ``python zoo/weather_64/train.py export``: loads the run's best weights,
forecasts 5 days from every simulated day of the test block, scores the forecasts
with area-weighted RMSE next to persistence and the training block's climatology,
and writes the preset folder with metrics.json, rmse.png, forecast.png and the card.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from train import VARIABLES
from train import Recipe
from train import build_model
from train import splits_and_statistics

import keras_sphere
from keras_sphere import plotting
from keras_sphere import weather

HEADLINE_LEADS_H = (6, 24, 72, 120)
FORECASTS = ("model", "persistence", "climatology")


def headline(scores, recipe: Recipe) -> dict:
    """RMSE of z500 (m^2 s^-2), t850 (K) and the 850 hPa wind vector (m s^-1)."""
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
            name: {
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
            for name in FORECASTS
        }
    return table


def sample_leads(lead_steps: int) -> list[int]:
    """6 h steps of the shipped sample: 0, 6 h and every day up to the last lead."""
    return sorted({0, 1, *range(4, lead_steps + 1, 4)} & set(range(lead_steps + 1)))


def write_samples(test, climatology, recipe: Recipe, out_dir: pathlib.Path) -> None:
    """Ship the test block's first state, its truth at `sample_leads` and the
    training climatology in the preset folder (`keras_sphere.zoo.load_sample`)."""
    from keras_sphere.zoo.samples import write_sample

    steps = np.array(sample_leads(recipe.lead_steps))
    times = test["time"].values[0] + steps * np.timedelta64(6, "h")
    attrs = {
        "title": "Held-out simulated Held-Suarez states (not ERA5)",
        "source": f"dinosaur-dycore T{recipe.truncation}, test block of "
        f"zoo/weather_64/train.py, on the {recipe.grid_size} x {recipe.grid_size} "
        "model grid",
    }
    states = test[list(VARIABLES)].sel(time=times).assign_attrs(attrs)
    write_sample(states, out_dir, "states")
    write_sample(
        climatology.assign_attrs(attrs, title="Training-block climatology"),
        out_dir,
        "climatology",
    )


def plot_scores(scores, forecasts, test, out_dir: pathlib.Path, recipe: Recipe):
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


def card(metrics: dict, recipe: Recipe) -> str:
    rows = []
    for lead, by_forecast in metrics["rmse"].items():
        for forecast, values in by_forecast.items():
            cells = " | ".join(f"{value:.3g}" for value in values.values())
            rows.append(f"| {lead} | {forecast} | {cells} |")
    first = next(iter(metrics["rmse"].values()))
    names = " | ".join(next(iter(first.values())))
    return f"""# weather_64: pretrained on simulated Held-Suarez dynamics, not ERA5

A `WeatherForecaster` stepping geopotential, temperature and wind on
{", ".join(str(v) for v in recipe.levels)} hPa by 6 h on a {recipe.grid_size} x
{recipe.grid_size} grid (L = {recipe.grid.max_bandlimit}). Trained by
`zoo/weather_64/train.py` on a dry Held-Suarez atmosphere simulated with
dinosaur-dycore at T{recipe.truncation} ({recipe.sigma_levels} sigma levels, seed
{recipe.seed}, {recipe.spinup_days:g} days of spin-up; no seasons, moisture, land or
orography), resampled onto the model grid keeping degrees up to L.

## Held-out metrics
Area-weighted RMSE on the test block of simulated time ({metrics["test_forecasts"]}
forecasts, one per simulated day), separated from training by {recipe.gap} gaps;
climatology is the training block's time mean.

| lead | forecast | {names} |
|---|---|{"---|" * len(first["model"])}
{chr(10).join(rows)}

Compute: {metrics["compute_hours"]:.2f} h of training on 2 CPU cores.
![RMSE against lead time](rmse.png)
![z500 forecast](forecast.png)
"""


def export(run_dir: pathlib.Path, out_dir: pathlib.Path, recipe: Recipe | None = None):
    recipe = recipe or Recipe()
    splits, stats = splits_and_statistics(run_dir, recipe)
    model = build_model(recipe, stats)
    model.load_weights(run_dir / "best.weights.h5")
    test = splits["test"].load()
    starts = slice(0, test.sizes["time"] - recipe.lead_steps, recipe.test_stride)
    forecasts = weather.forecast(model, test.isel(time=starts), recipe.lead_steps)
    climatology = weather.climatology_of(splits["train"][list(VARIABLES)]).load()
    scores = weather.evaluate(forecasts, test, climatology)
    compute = json.loads((run_dir / "compute.json").read_text())
    metrics = {
        "rmse": headline(scores, recipe),
        "test_forecasts": int(forecasts.sizes["time"]),
        "compute_hours": compute["wall_seconds"] / 3600,
        "recipe": json.loads((run_dir / "recipe.json").read_text()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_scores(scores, forecasts, test, out_dir, recipe)
    write_samples(test, climatology, recipe, out_dir)
    keras_sphere.zoo.save_preset(
        model,
        out_dir,
        model_card=card(metrics, recipe),
        metadata={"grid": list(recipe.grid.shape), "training_data": "Held-Suarez"},
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics["rmse"], indent=2))
    return metrics
