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


def plot_rmse(scores, path: pathlib.Path, recipe: Recipe) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level = 500 if 500 in recipe.levels else recipe.levels[0]
    leads = scores["prediction_timedelta"].values / np.timedelta64(1, "D")
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, name, units in zip(
        axes, ("geopotential", "temperature"), ("m2 s-2", "K"), strict=True
    ):
        for forecast in FORECASTS:
            ax.plot(
                leads, scores[name].sel(level=level, forecast=forecast), label=forecast
            )
        ax.set(
            xlabel="lead time (days)",
            ylabel=f"RMSE ({units})",
            title=f"{name} {level} hPa",
        )
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_forecast(forecasts, truth, path: pathlib.Path, recipe: Recipe) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_sphere.plotting import plot_mollweide

    level = 500 if 500 in recipe.levels else recipe.levels[0]
    first = forecasts["geopotential"].isel(time=0).sel(level=level)
    lead = first["prediction_timedelta"].values[-1]
    valid = forecasts["time"].values[0] + lead
    predicted = first.sel(prediction_timedelta=lead).values
    actual = truth["geopotential"].sel(time=valid, level=level).values
    days = lead / np.timedelta64(1, "D")
    figure = plt.figure(figsize=(13, 3.6))
    for index, (title, field, symmetric) in enumerate(
        [
            (f"forecast at {days:g} days", predicted, False),
            ("simulated truth", actual, False),
            ("error", predicted - actual, True),
        ]
    ):
        ax = figure.add_subplot(1, 3, index + 1, projection="mollweide")
        plot_mollweide(
            field,
            ax=ax,
            title=f"z{level}: {title}",
            units="m2 s-2",
            symmetric=symmetric,
            cmap="RdBu_r" if symmetric else "viridis",
        )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
    plot_rmse(scores, out_dir / "rmse.png", recipe)
    plot_forecast(forecasts, test, out_dir / "forecast.png", recipe)
    keras_sphere.zoo.save_preset(
        model,
        out_dir,
        model_card=card(metrics, recipe),
        metadata={"grid": list(recipe.grid.shape), "training_data": "Held-Suarez"},
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics["rmse"], indent=2))
    return metrics
