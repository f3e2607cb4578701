"""A dry atmosphere under Held-Suarez forcing, simulated with dinosaur-dycore.

`simulate_held_suarez` integrates the dry primitive equations on sigma levels with
the forcing of Held and Suarez (BAMS 75, 1825-1830, 1994), following dinosaur's own
Held-Suarez example (``notebooks/held_suarez.ipynb`` in google-research/dinosaur):
an isothermal (288 K) atmosphere at rest with surface pressure 1000 hPa plus a
seeded surface-pressure bump (dinosaur's ``isothermal_rest_atmosphere``, amplitude
50 hPa at a random position), ``imex_rk_sil3`` time stepping and an exponential
filter. After the spin-up it writes one state every 6 h on pressure levels, in the
WeatherBench-2 layout: dims (time, level, latitude, longitude), latitude north
first, longitude from 0 degrees east, level in hPa, float32. The fields stay on
dinosaur's Gaussian nodal grid (no poles); putting them on a model grid is a
separate, explicit step.

Sigma to pressure levels follow `EXTRAPOLATION_RULE` (module `sigma_to_pressure`).

The run is split into chunks; after each one the model state is checkpointed in
``<path>.checkpoint.npz``, so an interrupted call continues where it stopped when
called again with the same arguments, and a larger ``years`` extends a finished run.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import numbers
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Sequence

import numpy as np

from keras_sphere.data.weather import held_suarez_restart
from keras_sphere.data.weather.held_suarez_model import OUTPUT_HOURS
from keras_sphere.data.weather.held_suarez_model import held_suarez_model
from keras_sphere.data.weather.sigma_to_pressure import EXTRAPOLATION_RULE
from keras_sphere.data.weather.sigma_to_pressure import LAPSE_RATE

__all__ = [
    "DAYS_PER_YEAR",
    "DEFAULT_LEVELS",
    "EPOCH",
    "EXTRAPOLATION_RULE",
    "simulate_held_suarez",
]

# The first output time; it holds the state reached after the spin-up. The forcing
# is steady (no seasons, no day), so the calendar carries no meaning.
EPOCH = np.datetime64("2000-01-01T00:00", "ns")
DAYS_PER_YEAR = 365.25  # `years` counts Julian years of simulated time
DEFAULT_LEVELS = (250, 500, 700, 850)  # hPa

_EXTRA = 'pip install "keras-sphere[weather]"'
_FORMAT_VERSION = 1
_TIME_CHUNK = 4  # output steps per zarr chunk: one simulated day
_CONFIG_ATTR = "keras_sphere_config"

_VARIABLES = {  # name -> (units, long_name, CF standard_name)
    "geopotential": ("m**2 s**-2", "Geopotential", "geopotential"),
    "temperature": ("K", "Temperature", "air_temperature"),
    "u_component_of_wind": ("m s**-1", "U component of wind", "eastward_wind"),
    "v_component_of_wind": ("m s**-1", "V component of wind", "northward_wind"),
    "surface_pressure": ("Pa", "Surface pressure", "surface_air_pressure"),
}


def simulate_held_suarez(
    path: str | os.PathLike,
    *,
    years: float = 10.0,
    truncation: int = 42,
    n_sigma_levels: int = 24,
    levels: Sequence[int] = DEFAULT_LEVELS,
    time_step_minutes: int | None = None,
    seed: int = 0,
    spinup_days: float = 200.0,
    checkpoint_days: float = 10.0,
    start_from: str | os.PathLike | None = None,
    verbose: bool = True,
):
    """Simulate a Held-Suarez atmosphere and write it in WeatherBench-2 layout.

    Cost, measured with dinosaur-dycore 1.2.1 on 2 CPU cores shared with other
    jobs (load about 6), output included: about 1 s per simulated day at T21
    with 12 sigma levels, 1.8 s at T21 with 24, and 18 s at T42 with 24 levels
    and 10 minute steps, plus 10 to 30 s of compilation per call. A 200-day
    spin-up and 10 years therefore take about 2 hours at T21 (24 levels) and
    about 19 hours at T42 on such a machine: use a GPU for T42 and finer.

    Args:
        path: where to write: a zarr directory (e.g. ``"hs_t21.zarr"``), or a
            NetCDF file when the name ends in ``.nc`` (built in
            ``<path>.partial.zarr`` and converted once complete; zarr is better
            for long runs). The checkpoint lives in ``<path>.checkpoint.npz``.
        years: simulated time to write after the spin-up, in years of
            `DAYS_PER_YEAR` days: ``round(years * DAYS_PER_YEAR * 4)`` states,
            6 h apart, the first at `EPOCH`. A later call with a larger value
            extends the run; the stored data is never shortened.
        truncation: triangular truncation T (maximum total wavenumber). The nodal
            grid is Gaussian with ``n_lat = 2 ceil((3 T + 1) / 4)`` and
            ``n_lon = 2 n_lat``: 32 x 64 at T21, 64 x 128 at T42.
        n_sigma_levels: number of equally spaced sigma layers.
        levels: output pressure levels in hPa (ints, 1 to 1100), written in
            ascending order.
        time_step_minutes: model time step, a divisor of 360; default
            ``20 * 21 / truncation`` rounded down to a divisor of 360 (20 at T21,
            10 at T42 as in dinosaur's example).
        seed: seed of the initial perturbation (``jax.random.PRNGKey(seed)``).
        spinup_days: simulated days before the first output, a multiple of 6 h
            (at least 200 for statistically steady data; fewer for tests).
        checkpoint_days: simulated days between checkpoints, a multiple of 6 h;
            it does not change the result (every chunk runs the same compiled
            6-hour step).
        start_from: the checkpoint of another run (``<its path>.checkpoint.npz``)
            whose state starts this one instead of the rest atmosphere, moved to
            `truncation` and `n_sigma_levels` (`held_suarez_restart`): a T42 run
            spun up for 200 days lets a T85 run spin up in tens of days. It is
            copied to ``<path>.start.npz`` when the run starts, so the source
            may go on running; `seed` is then unused.
        verbose: print one line per chunk on stderr.

    Returns:
        `xarray.Dataset` read lazily from `path`, the first
        ``round(years * DAYS_PER_YEAR * 4)`` times, with float32 variables
        ``geopotential`` (m^2 s^-2), ``temperature`` (K), ``u_component_of_wind``
        and ``v_component_of_wind`` (m s^-1) of shape (time, level, latitude,
        longitude) and ``surface_pressure`` (Pa) of shape (time, latitude,
        longitude); coordinates ``time`` (datetime64, 6 h apart from `EPOCH`),
        ``level`` (hPa, int64, ascending), ``latitude`` (Gaussian nodes in
        degrees north, strictly decreasing, no poles) and ``longitude`` (degrees
        east, from 0, ascending). Its attributes record the generator and its
        version, the grid, sigma levels, time step, forcing, seed, spin-up and
        `EXTRAPOLATION_RULE`. No vertical velocity: dinosaur does not diagnose
        omega on pressure levels.

    Raises:
        ImportError: without dinosaur-dycore, xarray or zarr
            (``pip install "keras-sphere[weather]"``).
        ValueError: for invalid arguments, or when `path` holds a run made with
            different arguments (naming them), or a dataset and checkpoint that
            do not match.
        TypeError: for arguments of the wrong kind (e.g. levels that are not
            ints).
        FileNotFoundError: when `path` holds fewer times than asked for and no
            checkpoint to continue from.
    """
    xr = _import_dependencies()
    config = _config(truncation, n_sigma_levels, levels, time_step_minutes, seed)
    config["spinup_days"] = _days(spinup_days, "spinup_days", allow_zero=True)
    if start_from is not None:  # absent otherwise: older runs' configs stay equal
        config["start_from"] = str(pathlib.Path(start_from).resolve())
    chunk_outputs = round(_days(checkpoint_days, "checkpoint_days") * 24 / OUTPUT_HOURS)
    n_times = _n_times(years)
    path = pathlib.Path(path)
    is_netcdf = path.suffix == ".nc"
    store = path.with_name(path.name + ".partial.zarr") if is_netcdf else path
    checkpoint = _checkpoint_path(path)

    if is_netcdf and path.exists() and not store.exists():
        finished = xr.open_dataset(path)
        _check_config(json.loads(finished.attrs.get(_CONFIG_ATTR, "{}")), config, path)
        if finished.sizes["time"] >= n_times:
            return finished.isel(time=slice(0, n_times))
        # Extending a finished NetCDF run: continue in zarr, convert again.
        finished = _drop_encoding(finished)
        finished.to_zarr(
            store, mode="w-", encoding=_encoding(finished), **_zarr_options()
        )
        finished.close()
    written = _stored_times(xr, store, config)
    if written < n_times:
        path.parent.mkdir(parents=True, exist_ok=True)
        _run(xr, config, store, checkpoint, written, n_times, chunk_outputs, verbose)
    if is_netcdf and store.exists():
        _to_netcdf(xr, store, path)
    return _open(xr, path).isel(time=slice(0, n_times))


# --- arguments ---------------------------------------------------------------


def _import_dependencies():
    try:
        import dinosaur  # noqa: F401
        import xarray
        import zarr  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"simulate_held_suarez needs dinosaur-dycore, xarray and zarr: {_EXTRA}"
        ) from error
    return xarray


def _config(truncation, n_sigma_levels, levels, time_step_minutes, seed) -> dict:
    """The arguments that determine the data, checked and made JSON-friendly."""
    for name, value, low in (
        ("truncation", truncation, 10),
        ("n_sigma_levels", n_sigma_levels, 2),
        ("seed", seed, 0),
    ):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int. Received: {name}={value!r}")
        if value < low:
            raise ValueError(f"{name} must be at least {low}. Received: {name}={value}")
    if seed >= 2**32:
        raise ValueError(f"seed must be below 2**32. Received: seed={seed}")
    if isinstance(levels, numbers.Number) or not len(levels):
        raise ValueError(
            "levels must be a non-empty sequence of pressure levels in hPa, e.g. "
            f"(500, 850). Received: levels={levels!r}"
        )
    for level in levels:
        if not isinstance(level, numbers.Integral) or isinstance(level, bool):
            raise TypeError(
                f"levels must be ints in hPa (e.g. 500). Received: {level!r} in "
                f"levels={levels!r}"
            )
    sorted_levels = sorted(int(level) for level in levels)
    if sorted_levels[0] < 1 or sorted_levels[-1] > 1100:
        raise ValueError(f"levels must lie in 1 to 1100 hPa. Received: {levels!r}")
    if len(set(sorted_levels)) != len(sorted_levels):
        raise ValueError(f"levels must be distinct. Received: levels={levels!r}")
    if time_step_minutes is None:
        time_step_minutes = max(d for d in _divisors(360) if d <= 420 / truncation)
    elif (
        not isinstance(time_step_minutes, numbers.Integral)
        or isinstance(time_step_minutes, bool)
        or time_step_minutes < 1
        or 360 % time_step_minutes
    ):
        raise ValueError(
            "time_step_minutes must be a whole number of minutes dividing the 6 h "
            f"output interval (e.g. 10, 15, 20). Received: {time_step_minutes!r}"
        )
    return dict(
        format_version=_FORMAT_VERSION,
        truncation=int(truncation),
        n_sigma_levels=int(n_sigma_levels),
        levels=sorted_levels,
        time_step_minutes=int(time_step_minutes),
        seed=int(seed),
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _days(days, name: str, allow_zero: bool = False) -> float:
    """`days` as a float, checked to be a whole number of 6 h steps."""
    if not isinstance(days, numbers.Real) or isinstance(days, bool):
        raise TypeError(f"{name} must be a number of days. Received: {days!r}")
    steps = float(days) * 24 / OUTPUT_HOURS
    if not math.isfinite(steps) or abs(steps - round(steps)) > 1e-9 or steps < 0:
        raise ValueError(
            f"{name} must be a non-negative multiple of 6 h (0.25 days). "
            f"Received: {name}={days!r}"
        )
    if steps < 0.5 and not allow_zero:
        raise ValueError(f"{name} must be at least 0.25 days. Received: {days!r}")
    return round(steps) * OUTPUT_HOURS / 24


def _n_times(years) -> int:
    if not isinstance(years, numbers.Real) or isinstance(years, bool):
        raise TypeError(f"years must be a number. Received: years={years!r}")
    n_times = round(float(years) * DAYS_PER_YEAR * 24 / OUTPUT_HOURS)
    if not math.isfinite(years) or n_times < 1:
        raise ValueError(
            "years must give at least one 6-hourly state (years >= 0.25 / "
            f"{DAYS_PER_YEAR} for one). Received: years={years!r}"
        )
    return n_times


def _check_config(recorded: dict, config: dict, where: pathlib.Path) -> None:
    if recorded == config:
        return
    if not recorded:
        raise ValueError(
            f"{where} exists but was not written by simulate_held_suarez (no "
            f"{_CONFIG_ATTR} attribute). Choose another path, or delete it."
        )
    keys = sorted(set(recorded) | set(config))
    differences = ", ".join(
        f"{key}={recorded.get(key)!r} (asked: {config.get(key)!r})"
        for key in keys
        if recorded.get(key) != config.get(key)
    )
    raise ValueError(
        f"{where} holds a Held-Suarez run made with different arguments: "
        f"{differences}. Call again with the recorded arguments to continue it, or "
        "write to another path."
    )


# --- the run -------------------------------------------------------------------


def _run(xr, config, store, checkpoint, written, n_times, chunk_outputs, verbose):
    """Spin up and write states from index `written` to `n_times`, in chunks."""
    simulator = held_suarez_model(
        config["truncation"],
        config["n_sigma_levels"],
        config["time_step_minutes"],
        tuple(config["levels"]),
    )
    spinup_intervals = round(config["spinup_days"] * 24 / OUTPUT_HOURS)
    state, done, spent_before = _load_checkpoint(simulator, checkpoint, config)
    start = checkpoint.with_name(
        checkpoint.name.removesuffix(".checkpoint.npz") + ".start.npz"
    )
    if state is None:
        if written:
            raise FileNotFoundError(
                f"{store} holds {written} of {n_times} times but its checkpoint "
                f"{checkpoint} is missing, so the run cannot continue. Pass "
                f"years <= {written / (DAYS_PER_YEAR * 4)!r} to read what is there, "
                "or delete the dataset to start again."
            )
        state, done, spent_before = _initial_state(simulator, config, start), 0, 0.0
    initial_condition = (
        held_suarez_restart.describe_start(
            start, config["truncation"], config["n_sigma_levels"]
        )
        if "start_from" in config
        else None
    )
    in_store = max(0, done - spinup_intervals)
    if in_store > written:
        raise ValueError(
            f"The checkpoint {checkpoint} is {in_store} states past the start of "
            f"the output, but {store} holds only {written}. Delete both to start "
            "again."
        )
    if written > in_store:  # interrupted after writing data, before checkpointing
        _truncate_time(store, in_store)
        written = in_store
    label = f"Held-Suarez T{config['truncation']} L{config['n_sigma_levels']}"
    start = time.perf_counter()

    def wall_seconds() -> float:  # of every call that made the checkpoint
        return spent_before + time.perf_counter() - start

    while done < spinup_intervals:
        n = min(chunk_outputs, spinup_intervals - done)
        for _ in range(n):  # the output step, its fields unused: one compilation
            _, state = simulator.output_and_advance(state)
        done += n
        _save_checkpoint(checkpoint, state, done, config, wall_seconds())
        _report(verbose, label, "spin-up", done, spinup_intervals, start)
    while written < n_times:
        n = min(chunk_outputs, n_times - written)
        outputs = []
        for _ in range(n):
            fields, state = simulator.output_and_advance(state)
            outputs.append(fields)
        stacked = {k: np.stack([np.asarray(o[k]) for o in outputs]) for k in outputs[0]}
        _append(xr, store, simulator, config, stacked, written, initial_condition)
        written += n
        done += n
        _save_checkpoint(checkpoint, state, done, config, wall_seconds())
        _report(verbose, label, "output", written, n_times, start)


def simulation_wall_hours(path: str | os.PathLike) -> float:
    """Wall hours that made the run at `path` so far (from its checkpoint).

    NaN when the checkpoint is missing or predates this record.
    """
    checkpoint = _checkpoint_path(pathlib.Path(path))
    if not checkpoint.exists():
        return float("nan")
    with np.load(checkpoint) as stored:
        if "wall_seconds" not in stored:
            return float("nan")
        return float(stored["wall_seconds"]) / 3600


def _checkpoint_path(path: pathlib.Path) -> pathlib.Path:
    """``<path>.checkpoint.npz``: the model state a run at `path` continues from."""
    return path.with_name(path.name + ".checkpoint.npz")


def _initial_state(simulator, config: dict, start: pathlib.Path):
    """The rest atmosphere, or the state of ``config["start_from"]``.

    That checkpoint is frozen as `start` on first use, so its run may go on.
    """
    if "start_from" not in config:
        return simulator.initial_state(config["seed"])
    if not start.exists():
        held_suarez_restart.read_start(config["start_from"])  # checks it first
        shutil.copyfile(config["start_from"], start)
    arrays, _, _ = held_suarez_restart.read_start(start)
    return simulator.state_from_arrays(
        held_suarez_restart.restart_arrays(
            arrays, simulator.coords.horizontal.modal_shape, config["n_sigma_levels"]
        )
    )


def _report(verbose, label, stage, done, total, start) -> None:
    if verbose:
        elapsed = time.perf_counter() - start
        print(
            f"{label}: {stage} {done / 4:g}/{total / 4:g} days, {elapsed:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def _save_checkpoint(
    checkpoint: pathlib.Path, state, done: int, config, wall_seconds: float
) -> None:
    """Write the modal state atomically (temporary file, then rename).

    `wall_seconds`: the simulation's wall time so far, summed over the calls that
    made the state (work redone after an interruption counts once).
    """
    arrays = {k: np.asarray(v) for k, v in state.asdict().items() if k != "tracers"}
    temporary = checkpoint.with_name(checkpoint.name + ".tmp.npz")
    np.savez(
        temporary,
        done=np.int64(done),
        wall_seconds=np.float64(wall_seconds),
        config=np.str_(json.dumps(config, sort_keys=True)),
        **{f"state_{k}": v for k, v in arrays.items()},
    )
    os.replace(temporary, checkpoint)


def _load_checkpoint(simulator, checkpoint: pathlib.Path, config):
    """(state, 6 h intervals done, wall seconds) of the checkpoint, or (None, 0, 0)."""
    if not checkpoint.exists():
        return None, 0, 0.0
    with np.load(checkpoint) as stored:
        _check_config(json.loads(str(stored["config"])), config, checkpoint)
        arrays = {
            k[len("state_") :]: stored[k]
            for k in stored.files
            if k.startswith("state_")
        }
        # A checkpoint written before the wall time was recorded counts from here.
        spent = float(stored["wall_seconds"]) if "wall_seconds" in stored else 0.0
        return simulator.state_from_arrays(arrays), int(stored["done"]), spent


# --- storage -------------------------------------------------------------------


def _zarr_options() -> dict:
    """Zarr format 2 with consolidated metadata, as WeatherBench-2 stores are."""
    import zarr

    major = int(zarr.__version__.split(".")[0])
    return dict(consolidated=True, **({"zarr_format": 2} if major >= 3 else {}))


def _stored_times(xr, store: pathlib.Path, config) -> int:
    if not store.exists():
        return 0
    with xr.open_zarr(store, consolidated=True) as existing:
        _check_config(json.loads(existing.attrs.get(_CONFIG_ATTR, "{}")), config, store)
        return existing.sizes["time"]


def _append(
    xr, store, simulator, config, stacked: dict, written: int, initial_condition
) -> None:
    """Write states `written` ... onto the store (creating it for the first)."""
    n = len(stacked["surface_pressure"])
    times = EPOCH + np.timedelta64(OUTPUT_HOURS, "h") * np.arange(written, written + n)
    dims = ("time", "level", "latitude", "longitude")
    data = {
        name: (
            dims[:1] + dims[2:] if name == "surface_pressure" else dims,
            stacked[name],
        )
        for name in _VARIABLES
    }
    dataset = xr.Dataset(
        data,
        coords=dict(
            time=times,
            level=np.asarray(config["levels"], np.int64),
            latitude=simulator.latitude,
            longitude=simulator.longitude,
        ),
    )
    # An append rewrites the attributes.
    _describe(dataset, simulator, config, initial_condition)
    if written == 0:
        encoding = _encoding(dataset)
        dataset.to_zarr(store, mode="w-", encoding=encoding, **_zarr_options())
    else:
        dataset.to_zarr(store, append_dim="time", **_zarr_options())


def _encoding(dataset) -> dict:
    """Zarr chunks of one simulated day per variable; time in hours since EPOCH."""
    encoding = {
        name: {"chunks": (_TIME_CHUNK, *dataset[name].shape[1:])} for name in _VARIABLES
    }
    encoding["time"] = {
        "units": f"hours since {np.datetime_as_string(EPOCH, 'm')}",
        "dtype": "int64",
    }
    return encoding


def _describe(dataset, simulator, config, initial_condition=None) -> None:
    """Units, names and provenance, in place (`initial_condition`: a restart's)."""
    import keras_sphere

    for name, (units, long_name, standard_name) in _VARIABLES.items():
        dataset[name].attrs = dict(
            units=units, long_name=long_name, standard_name=standard_name
        )
    dataset["latitude"].attrs = dict(
        units="degrees_north", long_name="Latitude (Gaussian nodes, north first)"
    )
    dataset["longitude"].attrs = dict(units="degrees_east", long_name="Longitude")
    dataset["level"].attrs = dict(units="hPa", long_name="Pressure level")
    n_lat, n_lon = len(simulator.latitude), len(simulator.longitude)
    dataset.attrs = dict(
        title="Held-Suarez dry atmosphere simulated with dinosaur-dycore",
        Conventions="CF-1.8",
        generator=f"dinosaur-dycore {importlib.metadata.version('dinosaur-dycore')}",
        keras_sphere_version=keras_sphere.__version__,
        forcing="Held-Suarez (Held and Suarez 1994; dinosaur.held_suarez defaults)",
        truncation=config["truncation"],
        nodal_grid=f"gaussian {n_lat} x {n_lon} (n_lat x n_lon), no poles",
        n_sigma_levels=config["n_sigma_levels"],
        sigma_levels=[float(s) for s in simulator.sigma],
        time_step_minutes=config["time_step_minutes"],
        time_stepping=simulator.time_stepping,
        initial_condition=initial_condition or simulator.rest_atmosphere,
        seed=config["seed"],
        spinup_days=config["spinup_days"],
        epoch=(
            f"{np.datetime_as_string(EPOCH, 'm')} is the state after spinup_days; "
            "steady forcing, so the calendar has no meaning"
        ),
        output_interval_hours=OUTPUT_HOURS,
        extrapolation=EXTRAPOLATION_RULE,
        gas_constant=simulator.gas_constant,
        gravity=simulator.gravity,
        lapse_rate=LAPSE_RATE,
        **{_CONFIG_ATTR: json.dumps(config, sort_keys=True)},
    )


def _truncate_time(store: pathlib.Path, n_times: int) -> None:
    """Drop states from index `n_times` on (written before a crash, unrecorded)."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    for _, array in group.arrays():
        if array.attrs.get("_ARRAY_DIMENSIONS", [None])[0] == "time":
            array.resize((n_times, *array.shape[1:]))
    zarr.consolidate_metadata(str(store))


def _drop_encoding(dataset):
    """`dataset` without the on-disk encoding of the file it came from."""
    dataset = dataset.copy()
    for variable in dataset.variables.values():
        variable.encoding = {}
    dataset["time"].encoding = {
        "units": f"hours since {np.datetime_as_string(EPOCH, 'm')}"
    }
    return dataset


def _to_netcdf(xr, store: pathlib.Path, path: pathlib.Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with xr.open_zarr(store, consolidated=True) as dataset:
        _drop_encoding(dataset).to_netcdf(temporary)
    os.replace(temporary, path)
    shutil.rmtree(store)


def _open(xr, path: pathlib.Path):
    if path.suffix == ".nc":
        return xr.open_dataset(path)
    return xr.open_zarr(path, consolidated=True)
