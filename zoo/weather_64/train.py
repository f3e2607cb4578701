"""Recipe of the ``weather_64`` preset: simulate the atmosphere, train, export.

Data: a dry Held-Suarez atmosphere simulated with dinosaur-dycore
(`keras_sphere.data.weather.simulate_held_suarez`, extra ``[weather]``) at T42 with
24 sigma levels, 200 days of spin-up, then 6-hourly states on pressure levels
(geopotential, temperature, u, v at 250, 500, 700 and 850 hPa). The states are put
on the model's 64 x 64 grid (L = 31) by `open_wb2`, keeping degrees up to 31 of the
T42 fields explicitly (``lmax=31``). Splits are whole blocks of simulated time with
5-day gaps (`split_by_time`).

    python zoo/weather_64/train.py simulate --years 2     # resumes; more years extend
    python zoo/weather_64/train.py train --hours 2  # resumes, or goes on from zoo/
    python zoo/weather_64/train.py export                  # held-out RMSE, preset

Everything lives in ``~/.cache/keras_sphere/runs/weather_64/`` (``--run-dir``): the
simulation resumes where it stopped (about 18 s per simulated day on 2 busy CPU
cores at T42); ``train`` puts the states on the model grid once
(``model_grid.zarr``, redone when the simulation has grown), computes the statistics
on the training block and fits with `keras_sphere.training.fit_run` (back-ups every
epoch, best weights by the 1-day validation loss) under a rollout curriculum, all in
`keras_sphere.zoo.weather_recipe`, which the weather_256 recipe shares; ``export``
forecasts 5 days from every day of the test block and scores them next to
persistence and climatology.
"""

from __future__ import annotations

import pathlib
import sys

import keras_sphere  # noqa: F401  (selects the JAX backend)
from keras_sphere.zoo.weather_recipe import WeatherRecipe
from keras_sphere.zoo.weather_recipe import command_line

NAME = "weather_64"
# The preset's numbers (`WeatherRecipe`'s defaults are this recipe's). Measured
# here (2 cores, batch 4): 0.36 s per step on 6 h steps, 1.24 s on 1-day rollouts,
# so most epochs train single steps and the last ones roll out: 32 x 1 step,
# 2 x 2, 2 x 3, 4 x 4, about 70 min.
Recipe = WeatherRecipe
RECIPE = Recipe(
    truncation=42,
    sigma_levels=24,
    spinup_days=200.0,
    grid_size=64,  # L = 31
    widths=(32, 64, 128),
    batch=4,
    single_step_epochs=32,
    max_rollout=4,  # 1 day
    epochs_per_rollout_step=2,
    steps_per_epoch=200,  # one Keras epoch = one back-up (1.5 to 4 min)
    epochs=40,
)


def main(argv=None) -> None:
    command_line(
        NAME,
        RECIPE,
        pathlib.Path(__file__).resolve().parent,
        argv,
        description=__doc__,
        default_years=2.0,
    )


if __name__ == "__main__":
    sys.exit(main())
