"""Export stage of the weather_64 recipe: held-out RMSE, baselines, plots, preset.

Called by ``python zoo/weather_64/train.py export``: `export_weather_preset` (shared
with weather_256) loads the run's best weights, forecasts 5 days from every
simulated day of the test block, scores the forecasts with area-weighted RMSE next
to persistence and the training block's climatology, and writes the preset folder
with metrics.json, rmse.png, forecast.png, the sample and this card.
"""

from __future__ import annotations

import pathlib

from keras_sphere.zoo.weather_export import continuation_text
from keras_sphere.zoo.weather_export import export_weather_preset
from keras_sphere.zoo.weather_export import goals
from keras_sphere.zoo.weather_recipe import WeatherRecipe as Recipe


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
{continuation_text(metrics)}
## Held-out metrics
Area-weighted RMSE on the test block ({metrics["test_forecasts"]} forecasts, one
from every simulated day), separated from training and validation by {recipe.gap}
gaps; persistence keeps the initial state; climatology is the training block's
time mean. z500 in m2 s-2 (divide by 9.81 for metres), t850 in K, wind850 the RMSE
of the wind vector in m s-1.

| lead | forecast | {names} |
|---|---|{"---|" * len(first["model"])}
{chr(10).join(rows)}

{goals(metrics, {"persistence": None, "climatology": 72})}

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
    if recipe is None:
        from train import RECIPE as recipe

    return export_weather_preset("weather_64", run_dir, out_dir, recipe, card)
