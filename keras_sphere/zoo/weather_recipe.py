"""The weather presets' shared recipe: simulate, put on the model grid, train.

`zoo/weather_64/train.py` and `zoo/weather_256/train.py` are a `WeatherRecipe` each
(the numbers) and a command line; everything they do is here, so both presets are
made by one data pipeline and one training loop (`keras_sphere.training.fit_run`).

Data: a dry Held-Suarez atmosphere simulated with dinosaur-dycore
(`keras_sphere.data.weather.simulate_held_suarez`, extra ``[weather]``), 6-hourly
states on pressure levels, put on the model's square grid by `open_wb2` keeping the
degrees the grid holds (``lmax = L``) and cached one simulated day per chunk;
splits are whole blocks of simulated time with gaps (`split_by_time`). Training
runs single 6 h steps first, then a rollout curriculum, with a cosine learning
rate; the best weights are chosen by the validation loss of multi-step rollouts.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import pathlib
import time

from keras_sphere.sphere import Grid

__all__ = [
    "TIME_CHUNK",
    "VARIABLES",
    "WeatherRecipe",
    "build_model",
    "command_line",
    "curriculum_for",
    "data_path",
    "learning_rate_schedule",
    "model_grid_data",
    "simulate",
    "splits_and_statistics",
    "train",
]

TIME_CHUNK = 4  # 6-hourly states per chunk of the model-grid cache: one day
VARIABLES = (
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
)


@dataclasses.dataclass(frozen=True)
class WeatherRecipe:
    """What a weather preset is trained with (tests run the same code at toy size).

    Simulation: `truncation`, `sigma_levels`, `levels` (hPa), `spinup_days`,
    `time_step_minutes` (None: the simulator's default for the truncation) and
    `start_from` (None: from rest; else another run's checkpoint, relative to the
    parent of the run directory, e.g.
    ``"weather_64/held_suarez_t42.zarr.checkpoint.npz"``).

    Model: a `WeatherBackbone` of `widths` on the `grid_size` square grid, or,
    with `pool_factor`, a `PooledWeatherBackbone` whose coarse branch has
    `widths` and whose full-grid branch has `fine_widths`; `initial_preset` names a
    preset whose backbone initialises the coarse branch (its grid must be the
    coarse grid).

    Training: Adam on batches of `batch` windows, `learning_rate` decaying by a
    cosine to `final_learning_rate` over `epochs` epochs of `steps_per_epoch`
    steps; `single_step_epochs` epochs of 6 h steps, then rollouts growing by one
    step every `epochs_per_rollout_step` epochs to `max_rollout` (or, with
    `rollout_lengths`, through those lengths, `epochs_per_rollout_step` epochs
    each, the last to the end: long rollouts without every length between them,
    whose cost grows with the length); validation on
    `validation_steps`-step rollouts every `validation_stride` states. With
    `cycles` > 1 that whole schedule (curriculum and cosine) repeats, the cosine's
    height above `final_learning_rate` scaled by `restart_scale` at each restart
    (Keras' `CosineDecayRestarts`): a warm restart lets a
    finished run train on, single steps again and then the long rollouts, with its
    optimizer state, and a run from scratch reproduces it. After the cycles,
    `finetune_rollout_lengths` (if any) are a rollout fine-tuning stage: those
    lengths, `epochs_per_rollout_step` epochs each, on the beginning of the next
    restart's cosine (a rate near `final_learning_rate`), for skill at the longer
    leads that the cycles' rollouts do not reach.
    """

    truncation: int = 42
    sigma_levels: int = 24
    levels: tuple = (250, 500, 700, 850)  # hPa; the cards report 500 and 850
    spinup_days: float = 200.0
    time_step_minutes: int | None = None
    start_from: str | None = None
    grid_size: int = 64
    widths: tuple = (32, 64, 128)
    bottleneck_blocks: int = 1
    pool_factor: int | None = None
    fine_widths: tuple = (8, 16)
    initial_preset: str | None = None
    batch: int = 4
    learning_rate: float = 3e-4
    final_learning_rate: float = 1e-5
    single_step_epochs: int = 32
    max_rollout: int = 4
    epochs_per_rollout_step: int = 2
    rollout_lengths: tuple | None = None
    steps_per_epoch: int = 200
    epochs: int = 40  # of one cycle
    cycles: int = 1
    restart_scale: float = 1.0
    finetune_rollout_lengths: tuple = ()
    validation_steps: int = 4
    validation_stride: int = 8
    gap: str = "5D"
    fractions: tuple = (0.8, 0.1, 0.1)
    test_stride: int = 4  # a test forecast from every simulated day
    lead_steps: int = 20  # 5 days
    seed: int = 0

    @property
    def grid(self) -> Grid:
        return Grid(self.grid_size, self.grid_size)

    @property
    def cycle_epochs(self) -> int:
        """Epochs of all the cycles (before any fine-tuning)."""
        return self.epochs * self.cycles

    @property
    def total_epochs(self) -> int:
        finetune = len(self.finetune_rollout_lengths) * self.epochs_per_rollout_step
        return self.cycle_epochs + finetune

    @property
    def data_name(self) -> str:
        return f"held_suarez_t{self.truncation}.zarr"


def data_path(run_dir: pathlib.Path, recipe: WeatherRecipe) -> pathlib.Path:
    """The simulation's zarr store in `run_dir`."""
    return run_dir / recipe.data_name


def simulate(run_dir: pathlib.Path, years: float, recipe: WeatherRecipe) -> None:
    """Simulate (or extend, or resume) the recipe's atmosphere in `run_dir`."""
    from keras_sphere.data.weather import simulate_held_suarez

    run_dir.mkdir(parents=True, exist_ok=True)
    start_from = None
    if recipe.start_from is not None:
        start_from = run_dir.parent / recipe.start_from
    simulate_held_suarez(
        data_path(run_dir, recipe),
        years=years,
        truncation=recipe.truncation,
        n_sigma_levels=recipe.sigma_levels,
        levels=recipe.levels,
        time_step_minutes=recipe.time_step_minutes,
        seed=recipe.seed,
        spinup_days=recipe.spinup_days,
        start_from=start_from,
        verbose=True,
    )


def model_grid_data(run_dir: pathlib.Path, recipe: WeatherRecipe):
    """The simulation on the model grid (degrees <= L kept explicitly), cached.

    Stored one simulated day per chunk with every level and the whole grid, so a
    training window reads a few small chunks (random windows from time-long
    chunks read ~100 MB per batch at 64 x 64).
    """
    import xarray

    from keras_sphere.data.weather import open_wb2

    source = xarray.open_zarr(data_path(run_dir, recipe))
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


def splits_and_statistics(run_dir: pathlib.Path, recipe: WeatherRecipe):
    """({"train", "validation", "test"} datasets, training `Normalization`)."""
    from keras_sphere.data.weather import ChannelLayout
    from keras_sphere.data.weather import compute_normalization
    from keras_sphere.data.weather import split_by_time

    dataset = model_grid_data(run_dir, recipe)
    splits = split_by_time(dataset, recipe.fractions, gap=recipe.gap)
    layout = ChannelLayout.from_variables(VARIABLES, recipe.levels)
    stats = compute_normalization(splits["train"], layout, recipe.grid)
    return splits, stats


def build_model(recipe: WeatherRecipe, stats, initialise: bool = False):
    """The recipe's forecaster, untrained.

    With `initialise`, a pooled model's coarse branch starts from
    `recipe.initial_preset`'s backbone.
    """
    from keras_sphere.models import PooledWeatherBackbone
    from keras_sphere.models import PooledWeatherForecaster
    from keras_sphere.models import WeatherBackbone
    from keras_sphere.models import WeatherForecaster

    layout = stats.layout
    counts = (layout.num_scalar_channels, layout.num_wind_levels)
    if recipe.pool_factor is None:
        backbone = WeatherBackbone(
            recipe.grid.shape,
            *counts,
            widths=recipe.widths,
            bottleneck_blocks=recipe.bottleneck_blocks,
        )
        return WeatherForecaster(backbone, normalization=stats)
    backbone = PooledWeatherBackbone(
        recipe.grid.shape,
        *counts,
        pool_factor=recipe.pool_factor,
        coarse_widths=recipe.widths,
        fine_widths=recipe.fine_widths,
        bottleneck_blocks=recipe.bottleneck_blocks,
    )
    if initialise and recipe.initial_preset is not None:
        from keras_sphere.zoo.loading import load_backbone

        initial = load_backbone(recipe.initial_preset)
        if initial.get_config()["grid_shape"] != list(backbone.coarse.grid_shape):
            raise ValueError(
                f"initial_preset {recipe.initial_preset!r} works on a "
                f"{initial.grid_shape} grid, not the coarse grid "
                f"{backbone.coarse.grid_shape}."
            )
        backbone.coarse.set_weights(initial.get_weights())
    return PooledWeatherForecaster(backbone, normalization=stats)


def learning_rate_schedule(recipe: WeatherRecipe):
    """Cosine decay over each cycle (resumes with the optimizer's step).

    In the first cycle this is exactly `keras.optimizers.schedules.CosineDecay`.
    """
    import keras

    return keras.optimizers.schedules.CosineDecayRestarts(
        recipe.learning_rate,
        first_decay_steps=recipe.epochs * recipe.steps_per_epoch,
        t_mul=1.0,
        m_mul=recipe.restart_scale,
        alpha=recipe.final_learning_rate / recipe.learning_rate,
    )


def curriculum_for(epoch: int, recipe: WeatherRecipe) -> int:
    """Rollout length of an epoch.

    Single 6 h steps first (cheap, and most of the learning), then
    `rollout_curriculum` up to ``max_rollout`` steps (or `rollout_lengths`); after
    the cycles, the fine-tuning stage's lengths.
    """
    from keras_sphere.models.weather import rollout_curriculum

    if epoch >= recipe.cycle_epochs and recipe.finetune_rollout_lengths:
        index = (epoch - recipe.cycle_epochs) // recipe.epochs_per_rollout_step
        lengths = recipe.finetune_rollout_lengths
        return int(lengths[min(index, len(lengths) - 1)])
    epoch %= recipe.epochs  # each cycle repeats the curriculum
    if epoch < recipe.single_step_epochs:
        return 1
    if recipe.rollout_lengths:
        index = (epoch - recipe.single_step_epochs) // recipe.epochs_per_rollout_step
        return int(recipe.rollout_lengths[min(index, len(recipe.rollout_lengths) - 1)])
    return rollout_curriculum(
        epoch - recipe.single_step_epochs + recipe.epochs_per_rollout_step,
        max_steps=recipe.max_rollout,
        epochs_per_step=recipe.epochs_per_rollout_step,
    )


def train(
    run_dir: pathlib.Path,
    hours: float | None,
    recipe: WeatherRecipe,
    verbose: int = 2,
    shipped: pathlib.Path | None = None,
) -> dict:
    """Train (or resume) in `run_dir` for at most `hours` (`fit_run`'s result).

    A run directory with a back-up resumes it. Without one, a run starts from the
    preset folder `shipped` when it holds an exported preset (the run that made it
    was lost: its weights, epochs, steps and hours carry over, `continue_from_weights`)
    and otherwise from scratch (the coarse branch from `recipe.initial_preset`).

    Raises:
        ValueError: the shipped preset was trained for all of the recipe's epochs
            (raise `cycles` or add `finetune_rollout_lengths` to train on), or
            is of another architecture (``train --from-scratch`` on the command
            line passes no `shipped`).
    """
    import keras

    from keras_sphere.data.weather import WeatherWindows
    from keras_sphere.training import set_seed
    from keras_sphere.training.loop import fit_run
    from keras_sphere.training.loop import has_backup
    from keras_sphere.training.loop import inherited_of

    started = time.time()  # compute.json counts loading and building too
    set_seed(recipe.seed)
    splits, stats = splits_and_statistics(run_dir, recipe)
    from_shipped = (
        shipped is not None
        and (pathlib.Path(shipped) / "metrics.json").exists()
        and not has_backup(run_dir)
    )
    # A resumed run restores its weights from the back-up and a continued one
    # takes the shipped weights: only a new run needs the initial preset.
    model = build_model(recipe, stats, initialise=not from_shipped)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(recipe)))
    if from_shipped:
        _continue_shipped(model, pathlib.Path(shipped), run_dir, recipe)
    done = inherited_of(run_dir).get("keras_epochs", 0)
    batches = WeatherWindows(
        splits["train"],
        stats,
        batch_size=recipe.batch,
        seed=recipe.seed,
        curriculum=functools.partial(_curriculum_after, done=done, recipe=recipe),
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
    result = fit_run(
        model,
        batches,
        run_dir,
        epochs=recipe.total_epochs - done,
        validation_data=validation,
        max_hours=hours,
        verbose=verbose,
        started=started,
    )
    return result


def _curriculum_after(epoch: int, done: int, recipe: WeatherRecipe) -> int:
    """`curriculum_for` of a run's `epoch` that continues `done` earlier epochs."""
    return curriculum_for(epoch + done, recipe)


def _continue_shipped(
    model, shipped: pathlib.Path, run_dir: pathlib.Path, recipe: WeatherRecipe
) -> None:
    """Start `run_dir` from the preset exported to `shipped` by an earlier run.

    The preset's metrics say how many epochs, steps and hours made it; the data it
    was scored on (its splits) are recorded too, so that the export can say when
    the new run trains on another simulation of the same climate.
    """
    from keras_sphere.training.loop import continue_from_weights
    from keras_sphere.zoo import load

    metrics = json.loads((shipped / "metrics.json").read_text())
    training = metrics["training"]
    if training["epochs"] >= recipe.total_epochs:
        raise ValueError(
            f"The preset in {shipped} was trained for {training['epochs']} epochs, "
            f"all of the recipe's {recipe.total_epochs}: raise the recipe's cycles "
            "or add finetune_rollout_lengths to train it on (or start a new run "
            "with `train --from-scratch`)."
        )
    try:
        record = continue_from_weights(
            model,
            load(str(shipped)).get_weights(),
            run_dir,
            keras_epochs=training["epochs"],
            steps=training["steps"],
            wall_seconds=3600.0 * metrics["compute_hours"],
            source=f"the preset in {shipped.name}/ (the best weights of an earlier "
            "run)",
            splits=metrics["splits"],
            # The simulation it was trained on: equal splits (the same simulated
            # calendar) do not make the same data.
            initial_condition=metrics.get("initial_condition"),
        )
    except ValueError as error:  # another architecture
        hint = "On the command line, `train --from-scratch` starts a new run."
        raise ValueError(f"{error} {hint}") from error
    print(
        f"continuing {record['from']}: {record['keras_epochs']} epochs and "
        f"{record['steps']} steps done before"
    )


def command_line(
    name: str,
    recipe: WeatherRecipe,
    recipe_dir: pathlib.Path,
    argv: list[str] | None = None,
    *,
    description: str = "",
    default_years: float = 1.0,
) -> None:
    """The command line of ``zoo/<name>/train.py``: simulate, train or export.

    ``export`` runs ``export(run_dir, recipe_dir, recipe)`` of the recipe's own
    ``export.py`` (its card), which writes the preset folder `recipe_dir`. The run
    directory defaults to ``~/.cache/keras_sphere/runs/<name>``.
    """
    from keras_sphere.training.loop import default_run_dir

    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    parser.add_argument("--run-dir", type=pathlib.Path, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="simulate (or extend) the atmosphere")
    sim.add_argument("--years", type=float, default=default_years)
    fit = commands.add_parser("train", help="train (resumes)")
    fit.add_argument("--hours", type=float, default=None, help="wall budget")
    fit.add_argument("--verbose", type=int, default=2)
    fit.add_argument(
        "--from-scratch",
        action="store_true",
        help="a new run without a back-up starts afresh, not from the shipped "
        "preset (for a recipe whose architecture changed)",
    )
    commands.add_parser("export", help="score on the test block, write the preset")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or default_run_dir(name)
    if args.command == "simulate":
        simulate(run_dir, args.years, recipe)
    elif args.command == "train":
        result = train(
            run_dir,
            args.hours,
            recipe,
            verbose=args.verbose,
            shipped=None if args.from_scratch else recipe_dir,
        )
        print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    else:
        path = pathlib.Path(recipe_dir) / "export.py"
        spec = importlib.util.spec_from_file_location(f"{name}_export", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.export(run_dir, pathlib.Path(recipe_dir), recipe)
