"""Fit a small forecaster to real surface temperature and compare it with persistence.

The shared file ``surface_temperature_6h_96x192.nc`` holds 40 six-hourly fields of
surface temperature from an ECHAM-type climate model on a 96 x 192 Gaussian grid
(``data.md`` section 2.3). `open_wb2` recognises the Gaussian grid from its
latitudes, rolls the longitudes to start at 0 and resamples the fields onto a 32 x 32
equiangular grid, keeping degrees up to 15 as asked (``lmax=15``; nothing is dropped
silently). A `WeatherForecaster` with one scalar channel is fitted with ``model.fit``
on the first 30 steps, then forecasts 6 h ahead from each of the last 10 and is
scored against persistence with area-weighted RMSE (`keras_sphere.weather.evaluate`).
Ten days are far too few to learn the weather: this shows the real-data path end to
end, not a skilful model.

    python examples/weather_real_data.py [--epochs 30] [--output weather_real_data.png]

Measured on 2 CPU cores shared with other jobs (``/usr/bin/time -v``), defaults:
4 min (191 s of CPU time, most of it compiling), peak memory 2.4 GiB; training loss
1.00 -> 0.23, 6 h RMSE on the last 9 steps 1.75 degC against 2.03 for persistence.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import keras_sphere
from keras_sphere import weather
from keras_sphere.data.weather import ChannelLayout
from keras_sphere.data.weather import WeatherWindows
from keras_sphere.data.weather import compute_normalization
from keras_sphere.data.weather import open_wb2

DATA = (
    pathlib.Path(__file__).resolve().parents[2]
    / "shared/data/weather/surface_temperature_6h_96x192.nc"
)
GRID = keras_sphere.sphere.Grid(32, 32)  # L = 15
TRAIN_STEPS = 30


def main(argv=None) -> dict:
    import keras

    from keras_sphere.models import WeatherBackbone
    from keras_sphere.models import WeatherForecaster

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--output", type=pathlib.Path, default="weather_real_data.png")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    dataset = open_wb2(args.data, ["tC"], grid=GRID, lmax=GRID.max_bandlimit)
    train = dataset.isel(time=slice(0, TRAIN_STEPS))
    test = dataset.isel(time=slice(TRAIN_STEPS, None))
    layout = ChannelLayout(scalars=("tC",), levels=(), wind=None)
    stats = compute_normalization(train, layout, GRID)

    backbone = WeatherBackbone(GRID.shape, 1, 0, widths=(8, 16))
    model = WeatherForecaster(backbone, delta_scale=stats.delta_std)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    windows = WeatherWindows(train, stats, steps=1, batch_size=4, seed=0)
    state, targets = (np.concatenate(a) for a in zip(*windows, strict=True))
    history = model.fit(state, targets, batch_size=4, epochs=args.epochs, verbose=0)
    print(
        f"training loss: {history.history['loss'][0]:.3f} -> "
        f"{history.history['loss'][-1]:.3f} (normalised units)"
    )

    forecasts = weather.forecast(
        model, test.isel(time=slice(0, -1)), "6h", normalization=stats
    )
    scores = weather.evaluate(forecasts, test)["tC"]
    six_hours = scores.sel(prediction_timedelta=np.timedelta64(6, "h"))
    rmse = {
        name: float(six_hours.sel(forecast=name)) for name in ("model", "persistence")
    }
    print(
        f"6 h RMSE on the last {test.sizes['time'] - 1} steps (degC): "
        f"model {rmse['model']:.3f}, persistence {rmse['persistence']:.3f}"
    )
    plot(forecasts, test, args.output)
    print(f"saved {args.output}")
    return rmse


def plot(forecasts, truth, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_sphere.plotting import plot_mollweide

    first = forecasts.isel(time=0)
    valid = first["time"].values + np.timedelta64(6, "h")
    panels = {
        "initial state": first["tC"].isel(prediction_timedelta=0).values,
        "6 h forecast": first["tC"].isel(prediction_timedelta=1).values,
        "truth at 6 h": truth["tC"].sel(time=valid).values,
    }
    figure = plt.figure(figsize=(13, 3.6))
    for index, (title, field) in enumerate(panels.items()):
        ax = figure.add_subplot(1, 3, index + 1, projection="mollweide")
        plot_mollweide(
            field, ax=ax, title=title, units="degC", cmap="coolwarm", symmetric=False
        )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
