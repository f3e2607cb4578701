"""Recipe of the ``weather_64`` preset: simulate the atmosphere, train, export.

Data: a dry Held-Suarez atmosphere simulated with dinosaur-dycore
(`keras_sphere.data.weather.simulate_held_suarez`, extra ``[weather]``) at T42 with
24 sigma levels, 200 days of spin-up, then 6-hourly states on pressure levels
(geopotential, temperature, u, v at 250, 500, 700 and 850 hPa). The states are put
on the model's 64 x 64 grid (L = 31) by `open_wb2`, keeping degrees up to 31 of the
T42 fields explicitly (``lmax=31``). Splits are whole blocks of simulated time with
5-day gaps (`split_by_time`).

    python zoo/weather_64/train.py simulate --years 2     # resumes; more years extend
    python zoo/weather_64/train.py train --hours 2         # resumes every time
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

import argparse
import json
import pathlib
import sys

import keras_sphere  # noqa: F401  (selects the JAX backend)
from keras_sphere.zoo.weather_recipe import VARIABLES  # noqa: F401  (export)
from keras_sphere.zoo.weather_recipe import WeatherRecipe
from keras_sphere.zoo.weather_recipe import build_model  # noqa: F401  (export)
from keras_sphere.zoo.weather_recipe import simulate
from keras_sphere.zoo.weather_recipe import splits_and_statistics  # noqa: F401
from keras_sphere.zoo.weather_recipe import train

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


def default_dir() -> pathlib.Path:
    from keras_sphere.training.loop import default_run_dir

    return default_run_dir(NAME)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=pathlib.Path, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="simulate (or extend) the atmosphere")
    sim.add_argument("--years", type=float, default=2.0)
    fit = commands.add_parser("train", help="train (resumes)")
    fit.add_argument("--hours", type=float, default=None, help="wall budget")
    fit.add_argument("--verbose", type=int, default=2)
    commands.add_parser("export", help="score on the test block, write the preset")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or default_dir()
    if args.command == "simulate":
        simulate(run_dir, args.years, RECIPE)
    elif args.command == "train":
        result = train(run_dir, args.hours, RECIPE, verbose=args.verbose)
        print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    else:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        from export import export

        export(run_dir, pathlib.Path(__file__).resolve().parent, RECIPE)


if __name__ == "__main__":
    sys.exit(main())
