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
epoch of STEPS_PER_EPOCH batches, best weights by the 1-day validation loss) under a
rollout curriculum; ``export`` forecasts 5 days from every day of the test block and
scores them next to persistence and climatology.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
import time

import keras_sphere  # noqa: F401  (selects the JAX backend)

TRUNCATION = 42
SIGMA_LEVELS = 24
LEVELS = (250, 500, 700, 850)  # hPa; the card reports 500 and 850
SPINUP_DAYS = 200.0
SEED = 0
GRID_SIZE = 64  # model grid 64 x 64, L = 31
TIME_CHUNK = 4  # 6-hourly states per chunk of the model-grid cache: one day
DATA_NAME = "held_suarez_t42.zarr"
VARIABLES = (
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the preset is trained with (tests run the same code at toy sizes)."""

    truncation: int = TRUNCATION
    sigma_levels: int = SIGMA_LEVELS
    levels: tuple = LEVELS
    spinup_days: float = SPINUP_DAYS
    grid_size: int = GRID_SIZE
    widths: tuple = (32, 64, 128)
    bottleneck_blocks: int = 1
    batch: int = 4
    learning_rate: float = 3e-4  # peak; cosine decay to final_learning_rate
    final_learning_rate: float = 1e-5
    # Measured here (2 cores, batch 4): 0.36 s per step on 6 h steps, 1.24 s on
    # 1-day rollouts: most epochs train single steps, the last ones roll out.
    single_step_epochs: int = 32  # 6 h steps only, before the rollout curriculum
    max_rollout: int = 4  # 1 day
    epochs_per_rollout_step: int = 2
    steps_per_epoch: int = 200  # one Keras epoch = one back-up (1.5 to 4 min)
    epochs: int = 40  # 32 x 1 step, 2 x 2, 2 x 3, 4 x 4: about 70 min here
    validation_steps: int = 4  # validation loss on 1-day rollouts
    validation_stride: int = 8  # a validation window every 2 days
    gap: str = "5D"
    fractions: tuple = (0.8, 0.1, 0.1)
    test_stride: int = 4  # a forecast from every simulated day of the test block
    lead_steps: int = 20  # 5 days
    seed: int = SEED

    @property
    def grid(self):
        return keras_sphere.sphere.Grid(self.grid_size, self.grid_size)


def data_path(run_dir: pathlib.Path) -> pathlib.Path:
    return run_dir / DATA_NAME


def default_dir() -> pathlib.Path:
    from keras_sphere.training.loop import default_run_dir

    return default_run_dir("weather_64")


def simulate(run_dir: pathlib.Path, years: float, recipe: Recipe = Recipe()) -> None:
    from keras_sphere.data.weather import simulate_held_suarez

    run_dir.mkdir(parents=True, exist_ok=True)
    simulate_held_suarez(
        data_path(run_dir),
        years=years,
        truncation=recipe.truncation,
        n_sigma_levels=recipe.sigma_levels,
        levels=recipe.levels,
        seed=recipe.seed,
        spinup_days=recipe.spinup_days,
        verbose=True,
    )


def model_grid_data(run_dir: pathlib.Path, recipe: Recipe):
    """The simulation on the model grid (degrees <= L kept explicitly), cached.

    Stored one simulated day per chunk with every level and the whole grid, so a
    training window reads a few small chunks (random windows from time-long
    chunks read ~100 MB per batch).
    """
    import xarray

    from keras_sphere.data.weather import open_wb2

    source = xarray.open_zarr(data_path(run_dir))
    prepared = run_dir / "model_grid.zarr"
    if prepared.exists():
        cached = xarray.open_zarr(prepared)
        chunks = cached[VARIABLES[0]].encoding.get("chunks", ())
        if cached.sizes["time"] == source.sizes["time"] and chunks[:1] == (TIME_CHUNK,):
            return cached
    grid = recipe.grid
    dataset = open_wb2(
        source, VARIABLES, levels=recipe.levels, grid=grid, lmax=grid.max_bandlimit
    )
    dataset = dataset.chunk({"time": TIME_CHUNK, "level": -1, "latitude": -1})
    dataset = dataset.chunk({"longitude": -1})
    for name in dataset.variables:
        dataset[name].encoding.pop("chunks", None)
    dataset.to_zarr(prepared, mode="w", zarr_format=2)
    return xarray.open_zarr(prepared)


def splits_and_statistics(run_dir: pathlib.Path, recipe: Recipe):
    from keras_sphere.data.weather import ChannelLayout
    from keras_sphere.data.weather import compute_normalization
    from keras_sphere.data.weather import split_by_time

    dataset = model_grid_data(run_dir, recipe)
    splits = split_by_time(dataset, recipe.fractions, gap=recipe.gap)
    layout = ChannelLayout.from_variables(VARIABLES, recipe.levels)
    stats = compute_normalization(splits["train"], layout, recipe.grid)
    return splits, stats


def build_model(recipe: Recipe, stats):
    from keras_sphere.models import WeatherBackbone
    from keras_sphere.models import WeatherForecaster

    layout = stats.layout
    backbone = WeatherBackbone(
        recipe.grid.shape,
        layout.num_scalar_channels,
        layout.num_wind_levels,
        widths=recipe.widths,
        bottleneck_blocks=recipe.bottleneck_blocks,
    )
    return WeatherForecaster(backbone, normalization=stats)


def learning_rate_schedule(recipe: Recipe):
    """Cosine decay over the whole run (resumes with the optimizer's step)."""
    import keras

    return keras.optimizers.schedules.CosineDecay(
        recipe.learning_rate,
        decay_steps=recipe.epochs * recipe.steps_per_epoch,
        alpha=recipe.final_learning_rate / recipe.learning_rate,
    )


def curriculum_for(epoch: int, recipe: Recipe) -> int:
    """Rollout length of an epoch: single 6 h steps first (cheap, and most of the
    learning), then `rollout_curriculum` up to ``max_rollout`` steps."""
    from keras_sphere.models.weather import rollout_curriculum

    if epoch < recipe.single_step_epochs:
        return 1
    return rollout_curriculum(
        epoch - recipe.single_step_epochs + recipe.epochs_per_rollout_step,
        max_steps=recipe.max_rollout,
        epochs_per_step=recipe.epochs_per_rollout_step,
    )


def train(
    run_dir: pathlib.Path,
    hours: float | None,
    recipe: Recipe = Recipe(),
    verbose: int = 2,
) -> dict:
    import keras

    from keras_sphere.data.weather import WeatherWindows
    from keras_sphere.training import set_seed
    from keras_sphere.training.loop import fit_run

    set_seed(recipe.seed)
    splits, stats = splits_and_statistics(run_dir, recipe)
    model = build_model(recipe, stats)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(recipe)))
    curriculum = functools.partial(curriculum_for, recipe=recipe)
    batches = WeatherWindows(
        splits["train"],
        stats,
        batch_size=recipe.batch,
        seed=recipe.seed,
        curriculum=curriculum,
        steps_per_epoch=recipe.steps_per_epoch,
    )
    validation = WeatherWindows(
        splits["validation"],
        stats,
        steps=recipe.validation_steps,
        batch_size=recipe.batch,
        shuffle=False,
        stride=recipe.validation_stride,
    )
    (run_dir / "recipe.json").write_text(
        json.dumps(dataclasses.asdict(recipe), indent=2)
    )
    started = time.time()
    result = fit_run(
        model,
        batches,
        run_dir,
        epochs=recipe.epochs,
        validation_data=validation,
        max_hours=hours,
        verbose=verbose,
    )
    compute = run_dir / "compute.json"
    spent = json.loads(compute.read_text()) if compute.exists() else {"wall_seconds": 0}
    spent["wall_seconds"] += time.time() - started
    compute.write_text(json.dumps(spent, indent=2))
    return result


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
        simulate(run_dir, args.years)
    elif args.command == "train":
        print(
            json.dumps(
                {
                    k: v
                    for k, v in train(run_dir, args.hours, verbose=args.verbose).items()
                    if k != "history"
                }
            )
        )
    else:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        from export import export

        export(run_dir, pathlib.Path(__file__).resolve().parent)


if __name__ == "__main__":
    sys.exit(main())
