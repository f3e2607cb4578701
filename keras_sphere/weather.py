"""Forecasts as WeatherBench-2 xarray, and their scores against baselines.

* `forecast(model, initial_state, lead_time="5D")` rolls a `WeatherForecaster` out in
  6 h steps from every time of `initial_state` (a dataset from
  `keras_sphere.data.weather.open_wb2` on the model's grid) and returns an
  `xarray.Dataset` laid out like WB2's forecast files: dims (time,
  prediction_timedelta, [level,] latitude, longitude), ``time`` the initialisation
  time, lead 0 the initial state, WB2 variable names and the source's units.
* `evaluate(forecast, truth, climatology=None)` gives the area-weighted RMSE per
  variable, level and lead time of the forecast and of two baselines on the same
  initialisation times: persistence (the initial state kept) and climatology (a
  time-mean state, e.g. of the training split: `climatology_of`).

Area weights are the model grid's quadrature weights (they integrate band-limited
fields exactly; WB2 uses cos(latitude) weights, which differ by O(1/n_lat) near the
poles).
"""

from __future__ import annotations

import math

import numpy as np

from keras_sphere._checks import check_finite
from keras_sphere.data.weather.normalization import Normalization
from keras_sphere.data.weather.wb2 import source_grid

__all__ = ["climatology_of", "evaluate", "forecast", "lead_steps"]

_STEP = np.timedelta64(6, "h")


def lead_steps(lead_time) -> int:
    """Number of 6 h steps in `lead_time` ("5D", "36h", a timedelta or an int)."""
    if isinstance(lead_time, int | np.integer):
        steps = int(lead_time)
    else:
        import pandas

        delta = pandas.Timedelta(lead_time).to_timedelta64()
        steps = delta / _STEP
        if steps != math.floor(steps):
            raise ValueError(
                f"lead_time must be a multiple of 6 h; received {lead_time!r}."
            )
        steps = int(steps)
    if steps < 1:
        raise ValueError(f"lead_time must be at least 6 h; received {lead_time!r}.")
    return steps


def _normalization(model, normalization) -> Normalization:
    if normalization is not None:
        return normalization
    stored = getattr(model, "normalization", None)
    if stored is None:
        raise ValueError(
            "forecast needs the statistics the model was trained with: pass "
            "normalization=, or use a model that stores them (zoo presets do)."
        )
    return (
        stored if isinstance(stored, Normalization) else Normalization.from_dict(stored)
    )


def _check_grid(model, dataset) -> None:
    grid = source_grid(
        np.asarray(dataset["latitude"].values), dataset.sizes["longitude"]
    )
    expected = tuple(getattr(model.backbone, "grid_shape", grid.shape))
    if grid.shape != expected or type(grid).__name__ != "Grid":
        raise ValueError(
            f"initial_state is on {type(grid).__name__}{grid.shape}; the model runs "
            f"on Grid{expected}. Put it on the model grid first: "
            f"open_wb2(..., grid=keras_sphere.sphere.Grid{expected})."
        )


def forecast(
    model,
    initial_state,
    lead_time="5D",
    *,
    normalization: Normalization | None = None,
    batch_size: int = 4,
):
    """Forecast from every time of `initial_state` out to `lead_time` in 6 h steps.

    Args:
        model: a `WeatherForecaster` (e.g. ``zoo.load("weather_64")``).
        initial_state: an `xarray.Dataset` in WB2 layout on the model's grid with
            the model's variables and levels (`open_wb2(..., grid=...)`); every time
            in it is an initialisation time.
        lead_time: the last lead, a multiple of 6 h ("5D", "36h", or a step count).
        normalization: the training statistics (default: the model's own).
        batch_size: initial states rolled out at once.

    Returns:
        `xarray.Dataset` with dims (time, prediction_timedelta, [level,] latitude,
        longitude); prediction_timedelta runs 0, 6 h, ..., lead_time (lead 0 is the
        initial state); float32 in the source's units.
    """
    import xarray

    normalization = _normalization(model, normalization)
    layout = normalization.layout
    steps = lead_steps(lead_time)
    if "time" not in initial_state.dims:
        initial_state = initial_state.expand_dims("time")
    _check_grid(model, initial_state)
    missing = [v for v in layout.variables if v not in initial_state.data_vars]
    if missing:
        raise KeyError(
            f"initial_state lacks the model's variables {missing} (it needs "
            f"{list(layout.variables)} at levels {list(layout.levels)})."
        )
    fields = normalization.normalize(layout.stack(initial_state))
    check_finite(fields, "initial_state", axis=0)
    rollouts = []
    for start in range(0, fields.shape[0], batch_size):
        batch = fields[start : start + batch_size]
        states = np.asarray(model.rollout(batch, steps))
        rollouts.append(np.concatenate([batch[:, None], states], axis=1))
    physical = normalization.denormalize(np.concatenate(rollouts, axis=0))
    per_variable = layout.unstack(physical)  # (time, lead, [level,] lat, lon)

    leads = np.arange(steps + 1) * _STEP.astype("timedelta64[ns]")
    coords = {
        "time": initial_state["time"].values,
        "prediction_timedelta": leads,
        "latitude": initial_state["latitude"].values,
        "longitude": initial_state["longitude"].values,
    }
    dims = ("time", "prediction_timedelta", "latitude", "longitude")
    if layout.levels:
        coords["level"] = list(layout.levels)
        dims = ("time", "prediction_timedelta", "level", "latitude", "longitude")
    data = {
        name: xarray.DataArray(values, dims=dims, attrs=dict(initial_state[name].attrs))
        for name, values in per_variable.items()
    }
    return xarray.Dataset(
        data,
        coords=coords,
        attrs={"forecast_model": type(model).__name__, "time_step": "6h"},
    )


def climatology_of(dataset):
    """The time-mean state of `dataset` (e.g. the training split), per grid point."""
    return dataset.mean("time").astype(np.float32)


def _area_rmse(error, weights):
    """Area-weighted RMSE over (latitude, longitude), mean square over times."""
    w = weights / weights.sum()
    squared = (error**2).weighted(w).mean(("latitude", "longitude"))
    return np.sqrt(squared.mean("time"))


def evaluate(forecast_dataset, truth, climatology=None):
    """Area-weighted RMSE of a forecast and of persistence (and climatology).

    Args:
        forecast_dataset: output of `forecast`.
        truth: WB2-layout dataset on the same grid holding every valid time
            (initialisation time + lead).
        climatology: a state without time (`climatology_of(train_split)`), or None
            to skip that baseline.

    Returns:
        `xarray.Dataset` of RMSEs, one variable per forecast variable, dims
        (forecast, prediction_timedelta, [level]); forecast is "model",
        "persistence" and, with a climatology, "climatology".
    """
    import xarray

    init_times = forecast_dataset["time"].values
    leads = forecast_dataset["prediction_timedelta"].values
    valid = init_times[:, None] + leads[None, :]
    missing = np.setdiff1d(valid.ravel(), truth["time"].values)
    if missing.size:
        raise ValueError(
            f"truth lacks {missing.size} valid times the forecast needs, first "
            f"{missing[0]}; give it every time from the first initialisation to the "
            "last plus the lead time."
        )
    grid = source_grid(np.asarray(truth["latitude"].values), truth.sizes["longitude"])
    weights = xarray.DataArray(np.asarray(grid.weights), dims="latitude")
    scores = {}
    for name in forecast_dataset.data_vars:
        target = truth[name].sel(time=xarray.DataArray(valid, dims=("time", "lead")))
        target = target.rename(lead="prediction_timedelta").assign_coords(
            time=init_times, prediction_timedelta=leads
        )
        prediction = forecast_dataset[name]
        persistence = prediction.isel(prediction_timedelta=0)
        methods = {
            "model": _area_rmse(prediction - target, weights),
            "persistence": _area_rmse(persistence - target, weights),
        }
        if climatology is not None:
            methods["climatology"] = _area_rmse(climatology[name] - target, weights)
        scores[name] = xarray.concat(
            list(methods.values()), dim=xarray.DataArray(list(methods), dims="forecast")
        )
    return xarray.Dataset(scores)
