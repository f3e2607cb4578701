"""Export stage of the weather_64 recipe: held-out RMSE, baselines, plots, preset.

Called by ``python zoo/weather_64/train.py export``: loads the run's best weights,
forecasts 5 days from every simulated day of the test block, scores the forecasts
with area-weighted RMSE next to persistence and the training block's climatology,
and writes the preset folder with metrics.json, rmse.png, forecast.png and the card.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
from train import VARIABLES
from train import Recipe
from train import build_model
from train import splits_and_statistics

import keras_sphere
from keras_sphere import plotting
from keras_sphere import weather
from keras_sphere.training.loop import read_history

HEADLINE_LEADS_H = (6, 24, 72, 120)
UNITS = ("m2 s-2", "K", "m s-1", "m s-1")  # of VARIABLES
FORECASTS = ("model", "persistence", "climatology")


def simulation_hours(run_dir: pathlib.Path) -> float:
    """Wall hours of the simulation, from the simulate log's last line per call."""
    log = run_dir.parent / f"{run_dir.name}_simulate.log"
    if not log.exists():
        return float("nan")
    seconds, previous = 0.0, 0.0
    for line in log.read_text().splitlines():
        if line.endswith(" s") and ", " in line:
            value = float(line.rsplit(", ", 1)[1][:-2])
            if value < previous:  # a new call: its clock starts again
                seconds += previous
            previous = value
    return (seconds + previous) / 3600


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


# (latitude, longitude) of the reference points as fractions of the grid.
REFERENCE_POINTS = [(1, 0), (2, 3), (3, 5), (4, 1), (5, 6), (6, 4), (7, 7)]


def write_reference(model, out_dir: pathlib.Path) -> dict:
    """reference.json: z500 one day after the shipped sample state, at fixed grid
    points, for tests that the preset reproduces itself after loading."""
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


def listing_metrics(rmse: dict) -> dict:
    """Metadata metrics for `zoo.list_presets`: RMSE at 3 days (or the last lead)."""
    lead = "72h" if "72h" in rmse else list(rmse)[-1]
    model, persistence = rmse[lead]["model"], rmse[lead]["persistence"]
    metrics = {f"{name}_rmse_{lead}": value for name, value in model.items()}
    for name, value in persistence.items():
        metrics[f"{name}_rmse_{lead}_persistence"] = value
    return {"metrics": metrics, "headline_metric": next(iter(metrics))}


def goals(metrics: dict) -> str:
    """Whether the model beats persistence at every lead and climatology to 3 days."""
    lines = []
    for baseline, leads in (
        ("persistence", list(metrics["rmse"])),
        ("climatology", [lead for lead in metrics["rmse"] if int(lead[:-1]) <= 72]),
    ):
        losing = [
            f"{name} at {lead}"
            for lead in leads
            for name, value in metrics["rmse"][lead]["model"].items()
            if value >= metrics["rmse"][lead][baseline][name]
        ]
        target = f"better than {baseline} at " + (
            "every lead" if baseline == "persistence" else "leads up to 3 days"
        )
        lines.append(
            f"- Goal {target}: "
            + ("**met**." if not losing else f"not met ({', '.join(losing)}).")
        )
    return "\n".join(lines)


def card(metrics: dict, recipe: Recipe) -> str:
    rows = []
    for lead, by_forecast in metrics["rmse"].items():
        for forecast, values in by_forecast.items():
            cells = " | ".join(f"{value:.3g}" for value in values.values())
            rows.append(f"| {lead} | {forecast} | {cells} |")
    first = next(iter(metrics["rmse"].values()))
    names = " | ".join(next(iter(first.values())))
    splits = metrics["splits"]
    split_lines = "\n".join(
        f"  - {name}: {info['states']} states, {info['first'][:13]} to "
        f"{info['last'][:13]} (simulated calendar)"
        for name, info in splits.items()
    )
    training = metrics["training"]
    return f"""# weather_64: pretrained on simulated Held-Suarez dynamics, not ERA5

A `WeatherForecaster` ({metrics["parameters"]:,} parameters) stepping geopotential,
temperature and wind on {", ".join(str(v) for v in recipe.levels)} hPa by 6 h on a
{recipe.grid_size} x {recipe.grid_size} equiangular grid with poles (L =
{recipe.grid.max_bandlimit}). It has never seen real weather: it is trained on a dry
Held-Suarez atmosphere (no seasons, moisture, land or orography), so it is a
demonstration and a starting point for fine-tuning, not a weather forecast.

```python
import keras_sphere
from keras_sphere import weather

model = keras_sphere.zoo.load("weather_64")
states = keras_sphere.zoo.load_sample("weather_64")  # a held-out state and its truth
forecast = weather.forecast(model, states.isel(time=[0]), lead_time="5D")
```

## Training data
- Simulated by `zoo/weather_64/train.py simulate` with dinosaur-dycore
  (`keras_sphere.data.weather.simulate_held_suarez`) at T{recipe.truncation} with
  {recipe.sigma_levels} sigma levels, seed {recipe.seed}, {recipe.spinup_days:g}
  days of spin-up from rest, then 6-hourly states interpolated to pressure levels;
  put on the model grid by `open_wb2` keeping degrees up to
  {recipe.grid.max_bandlimit} (`lmax`).
- Split into whole blocks of simulated time (fractions {recipe.fractions}) with
  {recipe.gap} gaps between them:
{split_lines}
- Normalisation from the training block (area-weighted; u and v share one scale per
  level and keep their mean), stored in the preset's config.

## Inputs and outputs
`weather.forecast(model, initial_state, lead_time)` takes a WeatherBench-2-layout
`xarray.Dataset` on the {recipe.grid_size} x {recipe.grid_size} grid with
`geopotential` (m2 s-2), `temperature` (K), `u_component_of_wind` and
`v_component_of_wind` (m s-1) at levels {list(recipe.levels)} hPa, and returns the
same variables with a `prediction_timedelta` dimension (6 h steps).
`keras_sphere.zoo.load_sample("weather_64")` is a held-out state with the simulated
truth at 6 h and 1 to 5 days; `load_sample("weather_64", "climatology")` the
training block's mean state.

## Recipe
Residual spherical UNet (`WeatherBackbone`, widths {recipe.widths}, spins 0 and 1:
scalars as spin 0 and each level's (u, v) as one spin-1 field) predicting normalised
6 h differences. Adam, batch {recipe.batch}, learning rate {recipe.learning_rate:g}
with cosine decay to {recipe.final_learning_rate:g} over {recipe.epochs} epochs of
{recipe.steps_per_epoch} steps; {recipe.single_step_epochs} epochs on single 6 h
steps, then rollouts of 2 to {recipe.max_rollout} steps
({recipe.epochs_per_rollout_step} epochs each, the last length to the end). Best
weights by the loss of 1-day rollouts on the validation block.

![learning curve](training_curves.png)

## Compute
{training["epochs"]} epochs ({training["steps"]:,} steps, {training["windows"]:,}
training windows seen) in {metrics["compute_hours"]:.2f} h on 2 CPU cores, plus
{metrics["simulation_hours"]:.1f} h of simulation.

## Held-out metrics
Area-weighted RMSE on the test block ({metrics["test_forecasts"]} forecasts, one
from every simulated day), separated from training and validation by {recipe.gap}
gaps; persistence keeps the initial state; climatology is the training block's
time mean. z500 in m2 s-2 (divide by 9.81 for metres), t850 in K, wind850 the RMSE
of the wind vector in m s-1.

| lead | forecast | {names} |
|---|---|{"---|" * len(first["model"])}
{chr(10).join(rows)}

{goals(metrics)}

![RMSE against lead time](rmse.png)
![z500 forecast](forecast.png)

## Limitations
- Simulated dry dynamics only: not ERA5, no seasons, moisture, land or orography;
  it will not forecast the real atmosphere without fine-tuning on real data.
- Degrees above L = {recipe.grid.max_bandlimit} are removed from the data; the
  model sees and predicts nothing finer.
- Trained for about an hour on 2 CPU cores.

## Citation
- I. M. Held and M. J. Suarez, A proposal for the intercomparison of the dynamical
  cores of atmospheric general circulation models, BAMS 75, 1825-1830 (1994).
- dinosaur-dycore (Google Research), the differentiable dynamical core used to
  simulate the data.
- C. Esteves, J.-J. Slotine, A. Makadia, Scaling Spherical CNNs, ICML 2023.
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
    history = read_history(run_dir / "history.csv")
    epochs = int(history[-1]["epoch"])
    steps = epochs * recipe.steps_per_epoch
    metrics = {
        "rmse": headline(scores, recipe),
        "test_forecasts": int(forecasts.sizes["time"]),
        "compute_hours": compute["wall_seconds"] / 3600,
        "simulation_hours": simulation_hours(run_dir),
        "parameters": int(model.count_params()),
        "training": {
            "epochs": epochs,
            "steps": steps,
            "windows": steps * recipe.batch,
            "best_val_loss": min(r["val_loss"] for r in history if "val_loss" in r),
        },
        "splits": {
            name: {
                "states": int(split.sizes["time"]),
                "first": str(split["time"].values[0]),
                "last": str(split["time"].values[-1]),
            }
            for name, split in splits.items()
        },
        "recipe": json.loads((run_dir / "recipe.json").read_text()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_scores(scores, forecasts, test, out_dir, recipe)
    shutil.copy(run_dir / "learning_curve.png", out_dir / "training_curves.png")
    write_samples(test, climatology, recipe, out_dir)
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
