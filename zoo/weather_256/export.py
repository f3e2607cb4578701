"""Export stage of the weather_256 recipe: held-out RMSE, baselines, plots, preset.

Called by ``python zoo/weather_256/train.py export``: `export_weather_preset`
(shared with weather_64) scores 5-day forecasts from every simulated day of the
test block next to persistence, the training climatology and the ``weather_64``
preset run on the same states truncated to 64 x 64 and resampled back to 256 x 256,
and writes the preset folder with this card.
"""

from __future__ import annotations

import pathlib

from keras_sphere.zoo.weather_export import continuation_text
from keras_sphere.zoo.weather_export import export_weather_preset
from keras_sphere.zoo.weather_export import goals
from keras_sphere.zoo.weather_export import upsampled_preset_forecast
from keras_sphere.zoo.weather_recipe import WeatherRecipe

BASELINE = "weather_64"
SAMPLE_STEPS = (0, 1, 4, 12, 20)
GOALS = {"persistence": None, "climatology": 72, BASELINE: None}


def cycles_text(recipe: WeatherRecipe) -> str:
    if recipe.cycles == 1:
        return ""
    return (
        f"{recipe.cycles} such cycles, each a warm restart from the last with the "
        f"optimizer's state, the cosine's height above the final rate scaled by "
        f"{recipe.restart_scale:g} at each restart. "
    )


def finetune_text(recipe: WeatherRecipe) -> str:
    lengths = recipe.finetune_rollout_lengths
    if not lengths:
        return ""
    epochs = recipe.epochs_per_rollout_step
    return (
        f"Then rollout fine-tuning on rollouts of {', '.join(map(str, lengths))} "
        f"steps, {epochs} epoch{'s' if epochs > 1 else ''} each, on the start of "
        "the next restart's cosine. "
    )


def card(metrics: dict, recipe: WeatherRecipe) -> str:
    rows = []
    for lead, by_forecast in metrics["rmse"].items():
        for forecast, values in by_forecast.items():
            cells = " | ".join(f"{value:.3g}" for value in values.values())
            rows.append(f"| {lead} | {forecast} | {cells} |")
    first = next(iter(metrics["rmse"].values()))
    names = " | ".join(next(iter(first.values())))
    split_lines = "\n".join(
        f"  - {name}: {info['states']} states, {info['first'][:13]} to "
        f"{info['last'][:13]} (simulated calendar)"
        for name, info in metrics["splits"].items()
    )
    training = metrics["training"]
    coarse = recipe.grid_size // recipe.pool_factor
    return f"""# weather_256: pretrained on simulated Held-Suarez dynamics, not ERA5

A `PooledWeatherForecaster` ({metrics["parameters"]:,} parameters) stepping
geopotential, temperature and wind on {", ".join(str(v) for v in recipe.levels)} hPa
by 6 h on a {recipe.grid_size} x {recipe.grid_size} equiangular grid with poles
(L = {recipe.grid.max_bandlimit}), the grid of "Scaling Spherical CNNs". It has never
seen real weather: it is trained on a dry Held-Suarez atmosphere (no seasons,
moisture, land or orography), so it is a demonstration and a starting point for
fine-tuning, not a weather forecast.

```python
import keras_sphere
from keras_sphere import weather

model = keras_sphere.zoo.load("weather_256")
states = keras_sphere.zoo.load_sample("weather_256")  # a held-out state and its truth
forecast = weather.forecast(model, states.isel(time=[0]), lead_time="5D")
```

## Training data
- Simulated by `zoo/weather_256/train.py simulate` with dinosaur-dycore
  (`keras_sphere.data.weather.simulate_held_suarez`) at T{recipe.truncation} (a
  128 x 256 Gaussian grid) with {recipe.sigma_levels} sigma levels and
  {recipe.time_step_minutes}-minute steps, started from
  {metrics["initial_condition"]}; {recipe.spinup_days:g} days of spin-up, then
  6-hourly states interpolated to pressure levels and resampled exactly onto the
  {recipe.grid_size} x {recipe.grid_size} grid (`open_wb2`, `lmax` =
  {recipe.truncation}). **Degrees above {recipe.truncation} carry no signal in
  these data**: the grid holds degrees up to {recipe.grid.max_bandlimit}, the
  simulation resolves {recipe.truncation}.
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
`keras_sphere.zoo.load_sample("weather_256")` is a held-out state with the simulated
truth at 6 h, 1, 3 and 5 days; `load_sample("weather_256", "climatology")` the
training block's mean state.

## Recipe
`PooledWeatherBackbone`: the state is pooled spectrally (degrees up to
{coarse // 2 - 1} kept exactly) to {coarse} x {coarse}, where a residual spherical
UNet of the `weather_64` architecture (widths {recipe.widths}) predicts the
normalised 6 h difference, upsampled exactly back; a thin full-grid UNet (widths
{recipe.fine_widths}) adds the finer degrees. Scalars are spin-0 fields and each
level's (u, v) one spin-1 field throughout. The coarse branch starts from the
`{recipe.initial_preset}` preset's weights. Adam, batch {recipe.batch}, learning
rate {recipe.learning_rate:g} with cosine decay to {recipe.final_learning_rate:g}
over cycles of {recipe.epochs} epochs of {recipe.steps_per_epoch} steps; in each,
{recipe.single_step_epochs} epochs on single 6 h steps, then rollouts of
{", ".join(str(n) for n in recipe.rollout_lengths)} steps (the last to the end).
{cycles_text(recipe)}{finetune_text(recipe)}Best weights by the loss of 1-day
rollouts on the validation block.

![learning curve](training_curves.png)

## Compute
{training["epochs"]} of {recipe.total_epochs} planned epochs
({training["steps"]:,} steps, {training["windows"]:,} training windows seen)
in {metrics["compute_hours"]:.2f} h on 2 CPU cores, plus
{metrics["simulation_hours"]:.1f} h of T{recipe.truncation} simulation (and the
`weather_64` T42 run it started from, and that preset's training, for the initial
weights).
{continuation_text(metrics)}
## Held-out metrics
Area-weighted RMSE on the test block ({metrics["test_forecasts"]} forecasts, one
from every simulated day), separated from training and validation by {recipe.gap}
gaps; persistence keeps the initial state; climatology is the training block's
time mean; `{BASELINE}` is that preset run on the same initial states truncated to
its 64 x 64 grid, its forecast resampled exactly to {recipe.grid_size} x
{recipe.grid_size}. z500 in m2 s-2 (divide by 9.81 for metres), t850 in K, wind850
the RMSE of the wind vector in m s-1.

| lead | forecast | {names} |
|---|---|{"---|" * len(first["model"])}
{chr(10).join(rows)}

{goals(metrics, GOALS)}

![RMSE against lead time](rmse.png)
![z500 forecast](forecast.png)

## Limitations
- Simulated dry dynamics only: not ERA5, no seasons, moisture, land or orography;
  it will not forecast the real atmosphere without fine-tuning on real data.
- Degrees {recipe.truncation + 1} to {recipe.grid.max_bandlimit} are zero in the
  training data; what the model puts there is not trained against any signal.
- Trained for {metrics["compute_hours"]:.1f} h on 2 CPU cores, on
  {metrics["splits"]["train"]["states"]} training states.

## Citation
- I. M. Held and M. J. Suarez, A proposal for the intercomparison of the dynamical
  cores of atmospheric general circulation models, BAMS 75, 1825-1830 (1994).
- dinosaur-dycore (Google Research), the differentiable dynamical core used to
  simulate the data.
- C. Esteves, J.-J. Slotine, A. Makadia, Scaling Spherical CNNs, ICML 2023.
"""


def export(
    run_dir: pathlib.Path,
    out_dir: pathlib.Path,
    recipe: WeatherRecipe | None = None,
    baseline: str = BASELINE,
):
    if recipe is None:
        from train import RECIPE as recipe

    return export_weather_preset(
        "weather_256",
        run_dir,
        out_dir,
        recipe,
        card,
        baselines={BASELINE: upsampled_preset_forecast(baseline, recipe)},
        # 0, 6 h, 1, 3 and 5 days: 4 MB per state at 256 x 256.
        sample_steps=[s for s in SAMPLE_STEPS if s <= recipe.lead_steps],
    )
