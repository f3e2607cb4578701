"""`open_wb2`: any WeatherBench-2-layout dataset, checked, oriented and put on a grid.

WeatherBench-2 files differ in orientation (``data.md`` §2.1): some store latitude
north first, others south first; some longitudes run from 0°, others from -180°;
some store (..., longitude, latitude). The reference code fed a south-first file as if
it were north first, which reflects the scalars (harmless alone) but gives the wind
the wrong handedness as a spin-1 field. Here orientation comes from the coordinate
values only, never from positions:

* variables are selected by name, levels by value (hPa);
* dims are transposed by name to (time, [level,] latitude, longitude);
* latitude is sorted north first, longitude wrapped to [0, 360) and rolled to start
  at 0°; (u, v) keep their meaning (eastward, northward), so nothing changes sign;
* the grid is recognised from the latitudes: equiangular with both poles (`Grid`) or
  Gauss-Legendre (`GaussianGrid`); anything else (pole-free equiangular grids such as
  WB2's current 64 x 32) is refused rather than silently interpolated;
* the time step must be exactly 6 h everywhere;
* with ``grid=``, every field is resampled spectrally onto the model grid
  (`keras_sphere.sphere.regrid`): scalars as spin 0, each (u, v) pair as the spin-1
  field u + iv. Resampling is exact for the part of a field below the source's
  bandlimit; dropping degrees above the target's needs ``lmax=``.

What was done is recorded in the returned dataset's ``attrs["keras_sphere"]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from keras_sphere._checks import check_finite
from keras_sphere.sphere import GaussianGrid
from keras_sphere.sphere import Grid
from keras_sphere.sphere import regrid

__all__ = ["WIND_PAIRS", "open_wb2", "source_grid"]

# Wind components resampled together as u + iv (spin 1): eastward, northward.
WIND_PAIRS = {
    "u_component_of_wind": "v_component_of_wind",
    "10m_u_component_of_wind": "10m_v_component_of_wind",
    "100m_u_component_of_wind": "100m_v_component_of_wind",
}
_DIM_ALIASES = {
    "time": ("time",),
    "level": ("level", "pressure_level", "plev", "isobaricInhPa"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon"),
}
_SIX_HOURS = np.timedelta64(6, "h")
# Coordinates are stored in float32 in many files: 1e-4 degrees is ~10 m.
_DEGREE_TOLERANCE = 1e-4


def _xarray():
    try:
        import xarray
    except ImportError as error:  # pragma: no cover - xarray is in the extra
        raise ImportError(
            'open_wb2 needs xarray: pip install "keras-sphere[weather]"'
        ) from error
    return xarray


def _open(source):
    xarray = _xarray()
    if isinstance(source, xarray.Dataset):
        return source
    if isinstance(source, xarray.DataArray):
        return source.to_dataset()
    path = os.fspath(source)
    if not os.path.exists(path) and "://" not in path:
        raise FileNotFoundError(f"open_wb2: no dataset at {path!r}.")
    if path.rstrip("/").endswith(".zarr") or os.path.isdir(path):
        return xarray.open_zarr(path)
    return xarray.open_dataset(path)


def _rename_dims(dataset):
    renames = {}
    for canonical, aliases in _DIM_ALIASES.items():
        found = [name for name in aliases if name in dataset.dims]
        if len(found) > 1:
            raise ValueError(f"open_wb2: several {canonical} dimensions: {found}.")
        if found and found[0] != canonical:
            renames[found[0]] = canonical
    dataset = dataset.rename(renames)
    for required in ("time", "latitude", "longitude"):
        if required not in dataset.dims:
            raise ValueError(
                f"open_wb2: the dataset has no {required!r} dimension (dims: "
                f"{sorted(dataset.dims)}); accepted names: {_DIM_ALIASES[required]}."
            )
        if required not in dataset.coords:
            raise ValueError(f"open_wb2: dimension {required!r} has no coordinate.")
    return dataset


def _check_times(times: np.ndarray) -> None:
    if times.size < 2:
        return
    steps = np.diff(times.astype("datetime64[ns]"))
    wrong = np.flatnonzero(steps != _SIX_HOURS)
    if wrong.size:
        first = int(wrong[0])
        raise ValueError(
            f"open_wb2: the time coordinate must advance by exactly 6 h, but "
            f"{wrong.size} of {steps.size} steps do not: first between "
            f"{times[first]} and {times[first + 1]} "
            f"({steps[first].astype('timedelta64[m]')}). Select a 6-hourly subset "
            "first, e.g. dataset.sel(time=dataset.time.dt.hour % 6 == 0)."
        )


def _orient_longitudes(dataset):
    longitudes = np.asarray(dataset["longitude"].values, dtype=np.float64) % 360.0
    order = np.argsort(longitudes, kind="stable")
    longitudes = longitudes[order]
    n_lon = longitudes.size
    spacing = 360.0 / n_lon
    expected = longitudes[0] + spacing * np.arange(n_lon)
    if abs(longitudes[0]) > _DEGREE_TOLERANCE or not np.allclose(
        longitudes, expected, atol=_DEGREE_TOLERANCE
    ):
        raise ValueError(
            f"open_wb2: longitudes must be {n_lon} equally spaced values covering "
            f"the circle with one at 0 degrees (spacing {spacing:g}); got "
            f"{longitudes[:3]}... Regional or irregular grids are not supported."
        )
    dataset = dataset.isel(longitude=order)
    return dataset.assign_coords(longitude=spacing * np.arange(n_lon)), bool(
        np.any(order != np.arange(n_lon))
    )


def source_grid(latitudes_degrees: np.ndarray, n_lon: int) -> Grid | GaussianGrid:
    """The grid that north-first latitudes (degrees) with `n_lon` columns sample.

    Raises:
        ValueError: for latitudes that are neither equiangular with both poles nor
            Gauss-Legendre nodes (e.g. WB2's pole-free 64 x 32 grids).
    """
    latitudes = np.asarray(latitudes_degrees, dtype=np.float64)
    n_lat = latitudes.size
    candidates = []
    if n_lat >= 3:
        candidates.append(Grid(n_lat, n_lon))
    if n_lat >= 1:
        candidates.append(GaussianGrid(n_lat, n_lon))
    for grid in candidates:
        if np.allclose(latitudes, grid.latitudes, atol=_DEGREE_TOLERANCE):
            return grid
    raise ValueError(
        f"open_wb2: {n_lat} latitudes from {latitudes[0]:g} to {latitudes[-1]:g} are "
        "neither an equiangular grid with both poles nor Gauss-Legendre nodes. "
        "Pole-free equiangular grids (e.g. WB2's current 64x32 files) need a different "
        "quadrature and are not supported; use a 'with_poles' file."
    )


def _select(dataset, variables, levels):
    missing = [name for name in variables if name not in dataset.data_vars]
    if missing:
        raise KeyError(
            f"open_wb2: variables {missing} are not in the dataset; it has "
            f"{sorted(dataset.data_vars)}."
        )
    for name in variables:
        partner = WIND_PAIRS.get(name) or next(
            (u for u, v in WIND_PAIRS.items() if v == name), None
        )
        if partner is not None and partner not in variables:
            raise ValueError(
                f"open_wb2: {name!r} is a wind component and is resampled with "
                f"{partner!r} as one spin-1 field; select both."
            )
    dataset = dataset[list(variables)]
    if levels is not None:
        if "level" not in dataset.dims:
            raise ValueError("open_wb2: levels were given but no variable has levels.")
        available = np.asarray(dataset["level"].values)
        absent = [level for level in levels if level not in available]
        if absent:
            raise KeyError(
                f"open_wb2: levels {absent} hPa are not in the dataset; it has "
                f"{available.tolist()}."
            )
        dataset = dataset.sel(level=list(levels))
    return dataset


def _regrid_variables(dataset, source, target, lmax, chunk):
    xarray = _xarray()
    out = {}
    names = list(dataset.data_vars)
    for name in names:
        if name in out:
            continue
        partner = WIND_PAIRS.get(name)
        if partner is None and name in WIND_PAIRS.values():
            continue  # handled with its u component
        array = dataset[name]
        dims = array.dims
        if partner is None:
            values = _regrid_in_chunks(
                lambda x: regrid(x, source, target, 0, lmax=lmax), array, None, chunk
            )
            out[name] = (dims, values.astype(np.float32))
        else:
            wind = dataset[partner].transpose(*dims)
            values = _regrid_in_chunks(
                lambda x: regrid(x, source, target, 1, lmax=lmax), array, wind, chunk
            )
            out[name] = (dims, values.real.astype(np.float32))
            out[partner] = (dims, values.imag.astype(np.float32))
    coords = {
        name: dataset.coords[name]
        for name in dataset.coords
        if "latitude" not in dataset.coords[name].dims
        and "longitude" not in dataset.coords[name].dims
    }
    coords["latitude"] = target.latitudes
    coords["longitude"] = target.longitudes
    result = xarray.Dataset(
        {name: out[name] for name in names}, coords=coords, attrs=dataset.attrs
    )
    for name in names:
        result[name].attrs = dict(dataset[name].attrs)
    return result


def _regrid_in_chunks(transform, array, imaginary, chunk: int) -> np.ndarray:
    """Resample `array` (time first) `chunk` times at a time: bounded memory."""
    n_time = array.sizes["time"]
    pieces = []
    for start in range(0, n_time, chunk):
        part = np.asarray(array.isel(time=slice(start, start + chunk)).values)
        what = f"{array.name}[time {start}:{start + chunk}]"
        check_finite(part, what, axis=0)
        if imaginary is not None:
            v = np.asarray(imaginary.isel(time=slice(start, start + chunk)).values)
            check_finite(v, f"{imaginary.name}[time {start}:{start + chunk}]", axis=0)
            part = part.astype(np.float64) + 1j * v.astype(np.float64)
        else:
            part = part.astype(np.float64)
        pieces.append(transform(part))
    return np.concatenate(pieces, axis=0)


def open_wb2(
    source,
    variables: Sequence[str],
    *,
    levels: Sequence[int] | None = None,
    grid: Grid | None = None,
    lmax: int | None = None,
    time=None,
    chunk: int = 64,
    six_hourly: bool = True,
):
    """Open a WeatherBench-2-layout dataset, checked, oriented and optionally regridded.

    Args:
        source: an `xarray.Dataset`, or the path of a zarr store (directory or
            ``*.zarr``) or a NetCDF file.
        variables: WB2 variable names to keep, e.g. ``["geopotential",
            "temperature", "u_component_of_wind", "v_component_of_wind"]``. Wind
            components come in (u, v) pairs (`WIND_PAIRS`).
        levels: pressure levels in hPa to keep (all when None).
        grid: the model's equiangular `Grid` to resample onto, or None to keep the
            source grid (which must still be one this library can analyse).
        lmax: resample with degrees up to `lmax` only; required when the source
            resolves more degrees than `grid` (never truncated silently).
        time: a time selection passed to ``dataset.sel(time=...)`` before
            anything is read (a slice of dates, for instance).
        chunk: time steps resampled at once (memory: chunk x fields x grid).
        six_hourly: check that the times advance by exactly 6 h, as a series to
            train on or forecast from must. False for a set of independent states
            (the initial times of forecasts a day apart, say), whose times are
            then kept as they are.

    Returns:
        An `xarray.Dataset` with dims (time, [level,] latitude, longitude),
        latitude in degrees north from +90 (north first), longitude in degrees
        east from 0, float32 fields in their source units; ``attrs["keras_sphere"]``
        (a JSON string) records the source grid, the flips and the resampling.
        Without `grid` it stays lazy; with `grid` the fields are computed.

    Raises:
        FileNotFoundError, KeyError (variables or levels absent, naming what exists),
        ValueError (dims, coordinates, grid or time step wrong, saying which and how).
    """
    dataset = _rename_dims(_open(source))
    if time is not None:
        dataset = dataset.sel(time=time)
    dataset = _select(dataset, list(variables), levels)
    order = [d for d in ("time", "level", "latitude", "longitude") if d in dataset.dims]
    extra = [d for d in dataset.dims if d not in order]
    if extra:
        raise ValueError(
            f"open_wb2: unexpected dimensions {extra}; select them away first "
            "(e.g. dataset.isel(member=0))."
        )
    dataset = dataset.transpose(*order)
    for name in dataset.data_vars:
        missing = {"time", "latitude", "longitude"} - set(dataset[name].dims)
        if missing:
            raise ValueError(
                f"open_wb2: variable {name!r} lacks dimensions {sorted(missing)}; "
                "static fields are not supported as inputs yet."
            )
    if six_hourly:
        _check_times(np.asarray(dataset["time"].values))

    latitudes = np.asarray(dataset["latitude"].values, dtype=np.float64)
    flipped = bool(latitudes.size > 1 and latitudes[0] < latitudes[-1])
    if flipped:
        dataset = dataset.isel(latitude=slice(None, None, -1))
        latitudes = latitudes[::-1]
    if np.any(np.diff(latitudes) >= 0):
        raise ValueError("open_wb2: latitudes are not strictly monotonic.")
    dataset, rolled = _orient_longitudes(dataset)
    source = source_grid(latitudes, dataset.sizes["longitude"])
    dataset = dataset.assign_coords(latitude=source.latitudes)

    record = {
        "source_grid": f"{type(source).__name__}{source.shape}",
        "source_bandlimit": source.max_bandlimit,
        "latitude_flipped_to_north_first": flipped,
        "longitude_rolled_to_start_at_0": rolled,
        "variables": list(dataset.data_vars),
        "levels": None
        if "level" not in dataset.dims
        else [int(v) for v in dataset["level"].values],
    }
    if grid is not None:
        if not isinstance(grid, Grid):
            raise TypeError(
                f"open_wb2: grid must be a keras_sphere.sphere.Grid (the models' "
                f"equiangular grid); received {grid!r}."
            )
        dataset = _regrid_variables(dataset, source, grid, lmax, chunk)
        record.update(
            target_grid=f"Grid{grid.shape}",
            resampled_bandlimit=source.max_bandlimit if lmax is None else lmax,
            wind_resampled_as_spin_1=[
                [u, v] for u, v in WIND_PAIRS.items() if u in dataset.data_vars
            ],
        )
    dataset.attrs = {**dataset.attrs, "keras_sphere": json.dumps(record)}
    return dataset
