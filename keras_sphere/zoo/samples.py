"""Small held-out data shipped in a preset folder, to try a preset offline.

A weather preset ships ``sample_states.nc`` (one held-out initial state and the
simulated truth at a few lead times, WeatherBench-2 layout on the model grid) and
``sample_climatology.nc`` (the training block's time-mean state), both NetCDF 3
(written and read by SciPy through xarray, no netCDF4 library needed).

    >>> model = keras_sphere.zoo.load("weather_64")  # doctest: +SKIP
    >>> states = keras_sphere.zoo.load_sample("weather_64")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib

from keras_sphere.zoo.loading import PresetError
from keras_sphere.zoo.loading import _fetch
from keras_sphere.zoo.loading import resolve

__all__ = ["SAMPLE_FILES", "load_sample", "write_sample"]

# part -> file name in the preset folder.
SAMPLE_FILES = {
    "states": "sample_states.nc",
    "climatology": "sample_climatology.nc",
}


def _file_name(part: str) -> str:
    if part not in SAMPLE_FILES:
        raise ValueError(
            f"Unknown sample part {part!r}; a preset's samples are "
            f"{list(SAMPLE_FILES)}."
        )
    return SAMPLE_FILES[part]


def load_sample(name_or_handle: str, part: str = "states"):
    """A data sample shipped with a preset, as an `xarray.Dataset` (loaded in memory).

    Args:
        name_or_handle: a preset, as for `keras_sphere.zoo.load`.
        part: "states" (held-out states: time 0 is an initial state, later times
            the truth at a few lead times) or "climatology" (a time-mean state of
            the training data, without a time dimension).

    Returns:
        `xarray.Dataset` in WeatherBench-2 layout on the preset's model grid.

    Raises:
        PresetError: the preset ships no such sample.
        ValueError: unknown `part`.
        ImportError: xarray is missing (extra ``[weather]``).
    """
    filename = _file_name(part)
    try:
        import xarray
    except ImportError as error:
        raise ImportError(
            "Preset samples are xarray datasets: pip install 'keras-sphere[weather]'."
        ) from error
    preset, _ = resolve(name_or_handle)
    try:
        path = _fetch(preset, filename)
    except FileNotFoundError as error:
        raise PresetError(
            f"Preset {name_or_handle!r} ships no {part} sample ({filename}); samples "
            "come with the weather presets (weather_64, weather_256)."
        ) from error
    with xarray.open_dataset(path, engine="scipy") as dataset:
        return dataset.load()


def write_sample(dataset, directory: str | os.PathLike, part: str) -> pathlib.Path:
    """Write `dataset` as sample `part` of the preset folder `directory` (float32)."""
    path = pathlib.Path(directory) / _file_name(part)
    encoding = {name: {"dtype": "float32"} for name in dataset.data_vars}
    if "time" in dataset.coords:
        # NetCDF 3 has no 64-bit integers: times as float64 hours.
        encoding["time"] = {"units": "hours since 2000-01-01", "dtype": "float64"}
    dataset.to_netcdf(path, engine="scipy", encoding=encoding)
    return path
