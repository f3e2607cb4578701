"""Forecast 5 days with a weather preset from the held-out state it ships.

The `weather_256` preset (default; `--preset weather_64` for the 64 x 64 one)
holds a state from the held-out test block of its simulated Held-Suarez
atmosphere (not ERA5), the simulated truth at later days (6 h, 1, 3 and 5 days
for weather_256; 6 h and every day for weather_64) and the training block's
climatology (`keras_sphere.zoo.load_sample`). This loads
the preset with one call, rolls it out 20 six-hour steps, prints the area-weighted
RMSE of z500, t850 and the 850 hPa wind next to persistence and climatology, and
saves two plots: the 5-day z500 forecast next to the truth, and RMSE against lead.
One initial state gives a noisy score; the preset's card averages over the whole
test block.

    python examples/weather_forecast.py [--preset weather_256] [--output-dir .]
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import keras_sphere
from keras_sphere import plotting
from keras_sphere import weather

PRESETS = ("weather_256", "weather_64")


def rmse_table(scores) -> list[tuple]:
    """Rows (lead, forecast, z500 [m2 s-2], t850 [K], wind850 [m s-1])."""
    rows = []
    for lead in scores["prediction_timedelta"].values[1:]:
        at = scores.sel(prediction_timedelta=lead)
        for name in at["forecast"].values:
            one = at.sel(forecast=name)
            wind = np.hypot(
                one["u_component_of_wind"].sel(level=850),
                one["v_component_of_wind"].sel(level=850),
            )
            rows.append(
                (
                    f"{lead / np.timedelta64(1, 'h'):g} h",
                    str(name),
                    float(one["geopotential"].sel(level=500)),
                    float(one["temperature"].sel(level=850)),
                    float(wind),
                )
            )
    return rows


def main(argv=None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=PRESETS, default=PRESETS[0])
    parser.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("."))
    args = parser.parse_args(argv)

    model = keras_sphere.zoo.load(args.preset)
    states = keras_sphere.zoo.load_sample(args.preset)
    climatology = keras_sphere.zoo.load_sample(args.preset, "climatology")
    initial = states.isel(time=[0])
    prediction = weather.forecast(model, initial, lead_time="5D")

    # Score at the leads the sample has truth for.
    leads = states["time"].values - states["time"].values[0]
    scores = weather.evaluate(
        prediction.sel(prediction_timedelta=leads), states, climatology
    )
    rows = rmse_table(scores)
    print(f"{'lead':>6} {'forecast':>12} {'z500':>9} {'t850':>7} {'wind850':>8}")
    for lead, name, z500, t850, wind in rows:
        print(f"{lead:>6} {name:>12} {z500:9.1f} {t850:7.2f} {wind:8.2f}")

    args.output_dir.mkdir(parents=True, exist_ok=True)
    plotting.plot_forecast_maps(
        prediction,
        states,
        "geopotential",
        level=500,
        units="m2 s-2",
        path=args.output_dir / "weather_forecast_z500.png",
    )
    plotting.plot_rmse_by_lead(
        scores,
        [("geopotential", 500, "m2 s-2"), ("temperature", 850, "K")],
        path=args.output_dir / "weather_forecast_rmse.png",
    )
    print(
        f"plots: {args.output_dir / 'weather_forecast_z500.png'}, "
        f"{args.output_dir / 'weather_forecast_rmse.png'}"
    )
    return rows


if __name__ == "__main__":
    main()
