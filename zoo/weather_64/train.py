"""Recipe of the ``weather_64`` preset: simulate the atmosphere, train, export.

Data: a dry Held-Suarez atmosphere simulated with dinosaur-dycore
(`keras_sphere.data.weather.simulate_held_suarez`, extra ``[weather]``) at T42 with
24 sigma levels, 200 days of spin-up, then 6-hourly states on pressure levels
(geopotential, temperature, u, v at 250, 500, 700 and 850 hPa). The states are put
on the model's 64 x 64 grid (L = 31) by `open_wb2`, keeping degrees up to 31 of the
T42 fields explicitly (``lmax=31``). Splits are whole blocks of simulated time with
5-day gaps (`split_by_time`).

    python zoo/weather_64/train.py simulate --years 2     # resumes; more years extend

The simulation keeps its state in ``~/.cache/keras_sphere/runs/weather_64/`` and
resumes where it stopped (about 18 s per simulated day on 2 busy CPU cores at T42).
"""

from __future__ import annotations

import argparse
import sys

import keras_sphere  # noqa: F401  (selects the JAX backend)

TRUNCATION = 42
SIGMA_LEVELS = 24
LEVELS = (250, 500, 700, 850)  # hPa; the card reports 500 and 850
SPINUP_DAYS = 200.0
SEED = 0
GRID_SIZE = 64  # model grid 64 x 64, L = 31
DATA_NAME = "held_suarez_t42.zarr"


def data_path():
    from keras_sphere.training.loop import default_run_dir

    return default_run_dir("weather_64") / DATA_NAME


def simulate(args) -> None:
    from keras_sphere.data.weather import simulate_held_suarez

    path = data_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate_held_suarez(
        path,
        years=args.years,
        truncation=TRUNCATION,
        n_sigma_levels=SIGMA_LEVELS,
        levels=LEVELS,
        seed=SEED,
        spinup_days=SPINUP_DAYS,
        verbose=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="simulate (or extend) the atmosphere")
    sim.add_argument("--years", type=float, default=2.0)
    args = parser.parse_args(argv)
    {"simulate": simulate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
